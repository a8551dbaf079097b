//! The runtime behind [`idempotency`](https://docs.rs/idempotency): keys, the engine, the
//! [`Store`] trait, the embedded [`MemoryStore`] and the [`Error`] type.
//!
//! Applications depend on the `idempotency` crate, which re-exports everything here
//! together with the `#[idempotent]` attribute. Depend on this crate directly only to
//! implement a [`Store`].
//!
//! # How a call runs
//!
//! 1. The arguments (less `skip(..)`) hash into a [`Key`] (see [`key`]).
//! 2. A memory store in this process that kept the decoded value of the completed record
//!    hands over a clone of it ([`InProcess`](store::InProcess)): the replay fast path.
//! 3. Otherwise the [engine](engine::run) runs the call on the store's atomic steps:
//!    [`Store::begin`] looks the key up and, atomically, claims it if it is vacant.
//!    - **Completed**: the stored result is decoded and returned (a replay).
//!    - **In progress**: the call waits to be notified of the holder's completion or
//!      release, at most the function's `wait`, then looks again.
//!    - **Claimed**: the body runs, renewing the claim's lease at a third of its length,
//!      until its result is encoded and written.
//!      `Ok` is encoded and stored with [`Store::complete`]; `Err` is returned and
//!      [`Store::release`] frees the key at once; a panic or cancellation calls
//!      [`Store::abandon`].
//!
//! The [`key`] module specifies how keys are derived, byte for byte.
//!
//! # Layout
//!
//! One module per concept: [`key`] (key derivation), [`engine`] (one call's protocol, on
//! bytes), [`store`] (the `Store` trait, its record types, the default store and the
//! conformance suite), then the stores: the memory store, and the Redis store behind the
//! `redis` feature. The attribute's typed adapter and the record format are private.
#![warn(missing_docs)]

mod attribute;
mod clock;
mod codec;
pub mod engine;
mod error;
#[cfg(feature = "tower")]
pub mod http;
pub mod key;
mod memory;
mod observe;
mod outcome;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
mod redis;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod waiters;

pub use codec::binary::Binary;
pub use error::{CodecError, Error, InvalidKey, StoreError};
pub use key::{
    validate_client_key, Fingerprint, Key, KeyError, KeyHasher, NamespaceKey, MAX_CLIENT_KEY_LEN,
};
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use outcome::Outcome;
#[cfg(feature = "postgres")]
pub use postgres::{Isolation, PostgresError, PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis-sentinel")]
pub use redis::SentinelMaster;
#[cfg(feature = "redis")]
pub use redis::{
    ConnectError, ConnectErrorKind, Persistence, RedisStore, RedisStoreBuilder, ServerInfo,
};
pub use store::{default_store, set_default_store, DefaultStore, DefaultStoreAlreadySet, Store};

/// Support for the code `#[idempotent]` generates. Not a stable API: it changes without
/// notice between any two releases.
#[doc(hidden)]
pub mod __private {
    pub use crate::attribute::options::{wait, Options, WaitDuration};
    pub use crate::attribute::{
        execute, ClientKey, CloneReplayer, DecodeReplayer, Derivation, Derived, IdempotencyError,
        IdempotentResult, KeyArg, NamespaceCache, Replay, ReplayByClone, ReplayByDecode,
        ReplayProbe, Stored,
    };
    pub use crate::store::default_store;
    pub use crate::store::in_process::{ByMemory, ByStore, StoreProbe};
    pub use core::any::{type_name, type_name_of_val};
    pub use core::time::Duration;
}
