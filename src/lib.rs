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
//!
//! Over HTTP, the `axum` feature lets the attribute sit on an axum handler (the
//! `IdempotencyKey` extractor, `Created` for `201`/`200`, problems as responses), and the
//! `tower` feature adds `IdempotencyLayer` for any service: see the `http` module.
#![warn(missing_docs)]

/// Makes an `async fn` idempotent: duplicates of a call, sequential or parallel, run its
/// body once and all receive that run's result.
///
/// ```
/// # use idempotency::idempotent;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Order { id: u64 }
/// # #[derive(Debug)] struct AppError;
/// # impl From<idempotency::Error> for AppError { fn from(_: idempotency::Error) -> Self { AppError } }
/// #[idempotent(ttl = "24h")]
/// async fn create_order(customer: u64, sku: String, qty: u32) -> Result<Order, AppError> {
///     # let _ = (sku, qty);
///     Ok(Order { id: customer })
/// }
/// ```
///
/// The function must be an `async fn` returning `Result<T, E>` (an alias such as
/// `AppResult<T>` works) where `T: Serialize + DeserializeOwned` and
/// `E: From<idempotency::Error>`. The type must be named, not `impl Trait`: a replay
/// decodes the stored value into it. Its signature is kept; its body is rewritten to:
///
/// 1. hash its arguments into a [`Key`], before the body can change them;
/// 2. replay the stored result if the key's record is completed;
/// 3. otherwise wait (up to `wait`) while another call holds the key, being woken when it
///    finishes, not polling;
/// 4. otherwise claim the key, run the body, store `Ok` for `ttl` and return it. An `Err`
///    is returned and nothing is stored, so the next caller runs the body at once. A panic
///    or a cancellation (the future dropped) frees the key at once too.
///
/// # Options
///
/// All optional, in any order. Mistakes are compile errors on the offending tokens, all of
/// them in one build: a broken option (`ttl = ,`, `skip(a,,b)`) is reported and the
/// options after it are still checked.
///
/// | option | meaning | default |
/// |---|---|---|
/// | `ttl = "24h"` | how long a completed result is kept: `"500ms"`, `"30s"`, `"15m"`, `"24h"`, `"2d"`, `"1h30m"` | `"24h"` |
/// | `wait = "30s"` | how long a duplicate waits for a call in flight before [`Error::InProgress`]; `"0s"` fails fast (HTTP 409) | `"30s"` |
/// | `wait = expr` | the same, from an expression of type [`Duration`](std::time::Duration) evaluated on each call before the key is derived (`wait = settings::wait()`, `wait = Duration::ZERO`, `wait = self.wait`): fail-fast or waiting by configuration | — |
/// | `lease = "30s"` | how long a claim survives a holder that died; a running body renews it | the store's (30 s for [`MemoryStore`]) |
/// | `skip(a, b)` | parameters left out of the key (they need not be `Serialize`); a method must list `self`; a destructured parameter is named by the variables it binds (see [Pattern parameters](#pattern-parameters)) | none |
/// | `key = param` | a client-supplied idempotency key (`String`, `&str`, any `AsRef<str>`, 1 to 255 bytes without control characters, compared byte for byte); the other parameters form a payload fingerprint, and reusing the key with another payload is [`Error::PayloadMismatch`] | the key is derived from all parameters |
/// | `scope(a, ..)` | with `key`: parameters (tenant, user) that partition the key space | none |
/// | `name = "orders.create"` | the key namespace; keeps keys stable across renames and moves | the function's path |
/// | `store = expr` | the [`Store`] for this function, evaluated per call (`&S`, `Arc<S>` or `S`) | [`default_store()`] |
/// | `crate = path` | where the generated code finds this crate, for a renamed dependency (`crate = ::idem`) or a re-export (`crate = my_sdk::idempotency`, `crate = $crate::idempotency` in a `macro_rules!`); every path the expansion writes goes through it | `::idempotency` |
///
/// # Keys and namespaces
///
/// Records are keyed by namespace and arguments (see [`key`] for the exact encoding).
/// Parameters enter by name, sorted, so reordering parameters keeps keys and renaming one
/// changes them. Map arguments give the same key whatever their iteration order. Sets
/// serialize as sequences, so a `HashSet` argument should be a `BTreeSet` (or sorted
/// first).
///
/// The default namespace is the function's path (`my_app::orders::create_order`, or
/// `my_app::orders::Orders::create` for an associated function), as
/// [`core::any::type_name`] reports it: renaming or moving the function, or a compiler
/// release that prints paths differently, changes it, so production handlers should set
/// `name`. Each instantiation of a generic function has its own records: the type names
/// of its generic arguments are part of the key, `name` or not. So is the concrete type of
/// an `impl Trait` argument (`item: impl Serialize`): a `Charge` and a `Refund` with the
/// same fields are two calls, not one (beside a client key, two payloads).
///
/// # Pattern parameters
///
/// A parameter may destructure, as axum handlers do: `State(db): State<Db>`,
/// `Json(order): Json<NewOrder>`, `Path((shop, id)): Path<(u32, u64)>`,
/// `Filter { sort, limit: max, .. }: Filter`, tuples, `&`, `mut`, `ref` and `x @ ..`
/// bindings. Such a parameter enters the key (or, with `key = ..`, the fingerprint or the
/// scope) through the variables it binds, each exactly as a plain parameter of that name
/// would, sorted by name with the other parameters: `fn f(Json(order): Json<T>)` keys as
/// `fn f(order: T)` does, as if `Json` were transparent. `skip(..)`, `key = ..` and
/// `scope(..)` name those variables; `_` and `..` bind nothing and need no `skip`. The
/// wrapper's type plays no part, so each bound variable must be `Serialize` (the error is
/// on the variable). If the parameter's type holds an `impl Trait`, every variable it
/// binds carries its concrete type name, as an `impl Trait` parameter does.
///
/// ```
/// # use idempotency::idempotent;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug)] struct ApiError;
/// # impl From<idempotency::Error> for ApiError { fn from(_: idempotency::Error) -> Self { ApiError } }
/// // Stand-ins for axum's extractors.
/// struct State<T>(T);
/// struct Json<T>(T);
/// #[derive(Clone)] struct Db;
/// #[derive(Serialize)] struct NewOrder { sku: String, qty: u32 }
/// #[derive(Clone, Serialize, Deserialize)] struct Order { id: u64 }
/// # mod settings { pub fn wait() -> std::time::Duration { std::time::Duration::ZERO } }
///
/// #[idempotent(key = key, scope(tenant), skip(db), ttl = "24h", wait = settings::wait())]
/// async fn create_order(
///     State(db): State<Db>,
///     tenant: u64,
///     key: String,
///     Json(order): Json<NewOrder>,
/// ) -> Result<Order, ApiError> {
///     # let _ = (db, tenant, key, order.sku);
///     Ok(Order { id: u64::from(order.qty) })
/// }
/// ```
///
/// The `Ok` value is what is stored and replayed, so it is the value, not the HTTP
/// response made of it: `Result<Json<T>, E>`, `Result<Response, E>` or
/// `Result<(StatusCode, Json<T>), E>` are compile errors. Return the value (or an
/// [`Outcome<T>`](Outcome), to tell a replay) and let it become the response.
///
/// # Fresh or replayed
///
/// Return `Result<Outcome<T>, E>` to learn whether a call ran the body or replayed a
/// stored result, without a second lookup (see [`Outcome`]).
///
/// # Client-supplied keys
///
/// ```
/// # use idempotency::idempotent;
/// # #[derive(Debug)] struct AppError;
/// # impl From<idempotency::Error> for AppError { fn from(_: idempotency::Error) -> Self { AppError } }
/// #[idempotent(key = idempotency_key, scope(tenant), skip(request_id), wait = "0s")]
/// async fn charge(idempotency_key: String, tenant: u64, amount: u64, request_id: u128) -> Result<u64, AppError> {
///     # let _ = (tenant, request_id);
///     Ok(amount)
/// }
/// ```
#[doc(inline)]
pub use idempotent_macros::idempotent;

#[doc(inline)]
pub use idempotent_runtime::{
    default_store, set_default_store, validate_client_key, Binary, CodecError, DefaultStore,
    DefaultStoreAlreadySet, Error, InvalidKey, Key, KeyError, KeyHasher, MemoryStore,
    MemoryStoreBuilder, Outcome, Store, StoreError, MAX_CLIENT_KEY_LEN,
};

#[doc(inline)]
pub use idempotent_runtime::key;

#[doc(inline)]
pub use idempotent_runtime::engine;

#[doc(inline)]
pub use idempotent_runtime::store;

#[cfg(feature = "tower")]
#[doc(inline)]
pub use idempotent_runtime::http;

#[cfg(feature = "redis")]
#[doc(inline)]
pub use idempotent_runtime::{
    ConnectError, ConnectErrorKind, Persistence, RedisStore, RedisStoreBuilder, ServerInfo,
};

#[cfg(feature = "redis-sentinel")]
#[doc(inline)]
pub use idempotent_runtime::SentinelMaster;

#[cfg(feature = "postgres")]
#[doc(inline)]
pub use idempotent_runtime::postgres;

#[cfg(feature = "testing")]
#[doc(inline)]
pub use idempotent_runtime::testing;

#[cfg(feature = "postgres")]
#[doc(inline)]
pub use idempotent_runtime::{Isolation, PostgresError, PostgresStore, PostgresStoreBuilder};

#[doc(hidden)]
pub use idempotent_runtime::__private;

/// The README's examples, compiled and run as doc tests.
#[cfg(all(
    doctest,
    feature = "redis-tls",
    feature = "redis-sentinel",
    feature = "axum",
    feature = "postgres"
))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
