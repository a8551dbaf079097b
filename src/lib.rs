//! Make an async handler idempotent with one attribute.
//!
//! ```
//! use idempotency::idempotent;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Order {
//!     id: u64,
//!     sku: String,
//!     qty: u32,
//! }
//!
//! #[derive(Debug)]
//! enum AppError {
//!     Idempotency(idempotency::Error),
//! }
//!
//! impl From<idempotency::Error> for AppError {
//!     fn from(err: idempotency::Error) -> Self {
//!         AppError::Idempotency(err)
//!     }
//! }
//!
//! #[idempotent(ttl = "24h")]
//! async fn create_order(customer: u64, sku: String, qty: u32) -> Result<Order, AppError> {
//!     // Charge, insert, send: this runs once per distinct (customer, sku, qty) for 24 hours.
//!     Ok(Order { id: customer * 100, sku, qty })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let first = create_order(7, "B-7".into(), 2).await.unwrap();
//! let retry = create_order(7, "B-7".into(), 2).await.unwrap();
//! assert_eq!(first, retry);
//! # }
//! ```
#![warn(missing_docs)]

#[doc(inline)]
pub use idempotent_macros::idempotent;

#[doc(inline)]
pub use idempotent_runtime::{
    default_store, key, record, set_default_store, validate_client_key, Begin, Claim, CodecError,
    Completed, DefaultStore, Error, Fingerprint, InFlight, InvalidKey, Key, KeyError, KeyHasher,
    MemoryStore, MemoryStoreBuilder, Notification, Outcome, Request, Store, StoreError, Token,
    MAX_CLIENT_KEY_LEN,
};

#[doc(hidden)]
pub use idempotent_runtime::__private;
