//! For store implementers: the [`Store`] trait (where records live, and the five atomic
//! steps that move them), the [record types](record) its steps take and return, the
//! process-wide [default store](default_store), the [`InProcess`] capability of stores in
//! this process, and the conformance suite (feature `conformance`) that checks a store
//! against the contract.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod record;

mod default;
pub(crate) mod in_process;

pub use crate::error::StoreError;
pub use crate::key::{Fingerprint, Key};
pub use default::{default_store, set_default_store, DefaultStore, DefaultStoreAlreadySet};
pub use in_process::InProcess;
pub use record::{Begin, Claim, Completed, InFlight, Namespace, Notification, Request, Token};

#[cfg(doc)]
use crate::memory::MemoryStore;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Where records live, and the atomic steps that move a record between its states (see
/// [`record`]). [`MemoryStore`] is the embedded one; a store in another
/// process (Redis, a database) implements the same five steps with one atomic
/// server-side operation each.
///
/// # The contract
///
/// - [`begin`](Store::begin) is atomic: of any number of concurrent callers that find a
///   key vacant, exactly one gets [`Begin::Claimed`]. A claim whose lease has lapsed counts
///   as vacant, and the new claim gets a new [`Token`].
/// - [`renew`](Store::renew), [`complete`](Store::complete) and [`release`](Store::release)
///   act only if the claim's token is still the current one: this is the fencing that
///   stops an attempt which lost its lease from overwriting the attempt that took over.
///   `renew` and `complete` answer [`StoreError::lease_lost`] if another claim or a
///   completed record holds the key; `release` does nothing then.
/// - An absent record is not a rival: if the claim's record vanished (a restart without
///   persistence, an eviction, a lapsed lease nobody took over), `renew` claims it again
///   for the same token and `complete` stores the result, since no other attempt holds the
///   key. Dropping the result would make the next retry run the body a second time.
/// - `complete` refuses a value over the store's size limit with
///   [`StoreError::too_large`], storing nothing; the caller then completes the claim with
///   a short record that says so.
/// - A completed record is returned by `begin` until its TTL runs out, byte for byte.
/// - [`Begin::InProgress`] carries a [`Notification`] that resolves
///   when the record may have changed, so that waiters are woken rather than polling. A
///   completion wakes every waiter; a release wakes at least one, and may hand the key to
///   one waiter at a time (whose own claim then carries the turn on), so that a failing
///   body does not make every waiter race for the key after each attempt.
/// - [`abandon`](Store::abandon) is called from `Drop` when an attempt is cancelled or
///   panics: it must not block, and should release the claim promptly (a store that does
///   I/O spawns the release); the lease is only the backstop.
///
/// Nothing else is asked of a store. The embedded [`MemoryStore`] also gives replays in
/// this process a fast path (process-local keys, results cloned rather than decoded),
/// through the separate [`InProcess`] trait; a store that wraps it loses nothing else by
/// not implementing that trait.
///
/// The conformance suite (the `conformance` module, behind the feature of that name)
/// checks these rules; every store of this crate passes it.
///
/// # Example
///
/// A store that counts the calls of another, to show the shape of an implementation:
///
/// ```
/// use idempotent_runtime::store::{Begin, Claim, Request, Store, StoreError};
/// use idempotent_runtime::MemoryStore;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
///
/// struct Counting {
///     inner: MemoryStore,
///     begins: AtomicUsize,
/// }
///
/// impl Store for Counting {
///     async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
///         self.begins.fetch_add(1, Ordering::Relaxed);
///         self.inner.begin(request).await
///     }
///     async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
///         self.inner.renew(claim).await
///     }
///     async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
///         self.inner.complete(claim, value, ttl).await
///     }
///     async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
///         self.inner.release(claim).await
///     }
///     fn abandon(&self, claim: Claim) {
///         self.inner.abandon(claim);
///     }
/// }
/// ```
pub trait Store: Send + Sync {
    /// Atomically reads the record of `request.key`, claiming it if it is vacant.
    fn begin(&self, request: &Request) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    /// Extends the claim's lease by its full length, from now; claims the record again if
    /// it vanished.
    fn renew(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the claim (or its vanished record) with the completed record `value`,
    /// kept for `ttl`, and wakes the waiters.
    fn complete(
        &self,
        claim: &Claim,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the claim (the attempt failed) and wakes a waiter, so that the next caller
    /// runs the body at once.
    fn release(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Releases the claim of an attempt that was cancelled or panicked, without blocking.
    fn abandon(&self, claim: Claim);
}

macro_rules! forward_store {
    ($($target:ty),*) => {$(
        impl<S: Store + ?Sized> Store for $target {
            fn begin(&self, request: &Request) -> impl Future<Output = Result<Begin, StoreError>> + Send {
                (**self).begin(request)
            }
            fn renew(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).renew(claim)
            }
            fn complete(
                &self,
                claim: &Claim,
                value: &[u8],
                ttl: Duration,
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).complete(claim, value, ttl)
            }
            fn release(&self, claim: &Claim) -> impl Future<Output = Result<(), StoreError>> + Send {
                (**self).release(claim)
            }
            fn abandon(&self, claim: Claim) {
                (**self).abandon(claim);
            }
        }
    )*};
}

forward_store!(&S, Arc<S>, Box<S>);
