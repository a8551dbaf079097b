//! The [`Store`] trait: where records live, and the atomic steps that move them.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod record;

use crate::error::{Error, StoreError};
use crate::key::Key;
use crate::memory::MemoryStore;
use crate::store::record::{Begin, Claim, Completed, Decoded, Request};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Where records live, and the atomic steps that move a record between its states (see
/// [`record`](crate::store::record)). [`MemoryStore`] is the embedded one; a store in another
/// process (Redis, a database) implements the same five steps with one atomic
/// server-side operation each.
///
/// # The contract
///
/// - [`begin`](Store::begin) is atomic: of any number of concurrent callers that find a
///   key vacant, exactly one gets [`Begin::Claimed`]. A claim whose lease has lapsed counts
///   as vacant, and the new claim gets a new [`Token`](crate::Token).
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
/// - [`Begin::InProgress`] carries a [`Notification`](crate::Notification) that resolves
///   when the record may have changed, so that waiters are woken rather than polling. A
///   completion wakes every waiter; a release wakes at least one, and may hand the key to
///   one waiter at a time (whose own claim then carries the turn on), so that a failing
///   body does not make every waiter race for the key after each attempt.
/// - [`abandon`](Store::abandon) is called from `Drop` when an attempt is cancelled or
///   panics: it must not block, and should release the claim promptly (a store that does
///   I/O spawns the release); the lease is only the backstop.
///
/// Three provided methods are for stores in this process only, and keep their defaults
/// elsewhere: [`in_process`](Store::in_process) (process-local keys),
/// [`keep_decoded`](Store::keep_decoded) and [`with_decoded`](Store::with_decoded) (replays
/// that clone a decoded value instead of decoding).
///
/// The conformance suite (the `conformance` module, behind the feature of that name)
/// checks these rules; every store of this crate passes it.
///
/// # Example
///
/// A store that counts the calls of another, to show the shape of an implementation:
///
/// ```
/// use idempotent_runtime::{Begin, Claim, MemoryStore, Request, Store, StoreError};
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

    /// Offers the decoded form of `record`, which this process just replayed from `key`,
    /// so that later replays here can clone it instead of decoding the bytes again (see
    /// [`Store::with_decoded`]). Only a store in this process can keep it, and only while
    /// the record is the same one (`record.value` the same bytes); the default ignores it.
    fn keep_decoded(&self, key: &Key, record: &Completed, decoded: Decoded) {
        let _ = (key, record, decoded);
    }

    /// The replay fast path of a store in this process: if `request.key` is completed, with
    /// `request.fingerprint`, and a decoded value is kept for it, passes that value to
    /// `replay` (under whatever protects it) and returns what `replay` returned. `false`
    /// means the caller goes the usual way, through [`Store::begin`]. The default always
    /// returns `false`.
    fn with_decoded(&self, request: &Request, replay: &mut dyn FnMut(&Decoded) -> bool) -> bool {
        let _ = (request, replay);
        false
    }

    /// Whether the records live in this process only, as in [`MemoryStore`]. Such a store
    /// is given process-local keys ([`KeyHasher::local`](crate::KeyHasher::local)), which
    /// are cheaper to compute; a store shared between processes must keep the default,
    /// `false`, so that every process derives the same keys.
    fn in_process(&self) -> bool {
        false
    }
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
            fn keep_decoded(&self, key: &Key, record: &Completed, decoded: Decoded) {
                (**self).keep_decoded(key, record, decoded);
            }
            fn in_process(&self) -> bool {
                (**self).in_process()
            }
            fn with_decoded(&self, request: &Request, replay: &mut dyn FnMut(&Decoded) -> bool) -> bool {
                (**self).with_decoded(request, replay)
            }
        }
    )*};
}

forward_store!(&S, Arc<S>, Box<S>);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Store`] with boxed futures, so that any store can sit behind one pointer.
trait ErasedStore: Send + Sync {
    fn begin<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Begin, StoreError>>;
    fn renew<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), StoreError>>;
    fn complete<'a>(
        &'a self,
        claim: &'a Claim,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), StoreError>>;
    fn abandon(&self, claim: Claim);
    fn keep_decoded(&self, key: &Key, record: &Completed, decoded: Decoded);
    fn in_process(&self) -> bool;
    fn with_decoded(&self, request: &Request, replay: &mut dyn FnMut(&Decoded) -> bool) -> bool;
}

impl<S: Store> ErasedStore for S {
    fn begin<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Begin, StoreError>> {
        Box::pin(Store::begin(self, request))
    }
    fn renew<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(Store::renew(self, claim))
    }
    fn complete<'a>(
        &'a self,
        claim: &'a Claim,
        value: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(Store::complete(self, claim, value, ttl))
    }
    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(Store::release(self, claim))
    }
    fn abandon(&self, claim: Claim) {
        Store::abandon(self, claim);
    }
    fn keep_decoded(&self, key: &Key, record: &Completed, decoded: Decoded) {
        Store::keep_decoded(self, key, record, decoded);
    }
    fn in_process(&self) -> bool {
        Store::in_process(self)
    }
    fn with_decoded(&self, request: &Request, replay: &mut dyn FnMut(&Decoded) -> bool) -> bool {
        Store::with_decoded(self, request, replay)
    }
}

/// The process-wide default store: the embedded [`MemoryStore`], unless the application
/// installed another one with [`set_default_store`] before the first call.
///
/// The memory store is called directly, without boxing, since its hits are the hot path.
pub struct DefaultStore(Inner);

impl std::fmt::Debug for DefaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Memory(store) => f.debug_tuple("DefaultStore").field(store).finish(),
            Inner::Installed(_) => f.write_str("DefaultStore(installed)"),
        }
    }
}

enum Inner {
    Memory(MemoryStore),
    Installed(Box<dyn ErasedStore>),
}

static DEFAULT: OnceLock<DefaultStore> = OnceLock::new();

/// The store used by `#[idempotent]` functions that have no `store = ..` option.
///
/// The first use fixes it: [`set_default_store`] fails afterwards.
///
/// ```
/// let store = idempotent_runtime::default_store();
/// # let _ = store;
/// ```
pub fn default_store() -> &'static DefaultStore {
    DEFAULT.get_or_init(|| DefaultStore(Inner::Memory(MemoryStore::new())))
}

/// Installs `store` as the process-wide default, for every `#[idempotent]` function
/// without a `store = ..` option. Call it once at start-up, before the first such call.
///
/// # Errors
///
/// [`Error::DefaultStoreAlreadySet`] if a default store was already installed, or was
/// already used (and so fixed to the embedded memory store): records already written to
/// one store must not silently vanish behind another.
///
/// ```
/// use idempotent_runtime::{set_default_store, Error, MemoryStore};
/// use std::time::Duration;
///
/// let store = MemoryStore::builder().lease(Duration::from_secs(10)).build();
/// set_default_store(store).expect("first install");
/// assert!(matches!(set_default_store(MemoryStore::new()), Err(Error::DefaultStoreAlreadySet)));
/// ```
pub fn set_default_store<S: Store + 'static>(store: S) -> Result<(), Error> {
    DEFAULT
        .set(DefaultStore(Inner::Installed(Box::new(store))))
        .map_err(|_| Error::DefaultStoreAlreadySet)
}

impl Store for DefaultStore {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        match &self.0 {
            Inner::Memory(store) => Store::begin(store, request).await,
            Inner::Installed(store) => ErasedStore::begin(&**store, request).await,
        }
    }
    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        match &self.0 {
            Inner::Memory(store) => Store::renew(store, claim).await,
            Inner::Installed(store) => ErasedStore::renew(&**store, claim).await,
        }
    }
    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        match &self.0 {
            Inner::Memory(store) => Store::complete(store, claim, value, ttl).await,
            Inner::Installed(store) => ErasedStore::complete(&**store, claim, value, ttl).await,
        }
    }
    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        match &self.0 {
            Inner::Memory(store) => Store::release(store, claim).await,
            Inner::Installed(store) => ErasedStore::release(&**store, claim).await,
        }
    }
    fn abandon(&self, claim: Claim) {
        match &self.0 {
            Inner::Memory(store) => Store::abandon(store, claim),
            Inner::Installed(store) => ErasedStore::abandon(&**store, claim),
        }
    }
    fn keep_decoded(&self, key: &Key, record: &Completed, decoded: Decoded) {
        match &self.0 {
            Inner::Memory(store) => Store::keep_decoded(store, key, record, decoded),
            Inner::Installed(store) => ErasedStore::keep_decoded(&**store, key, record, decoded),
        }
    }
    fn in_process(&self) -> bool {
        match &self.0 {
            Inner::Memory(store) => Store::in_process(store),
            Inner::Installed(store) => ErasedStore::in_process(&**store),
        }
    }
    fn with_decoded(&self, request: &Request, replay: &mut dyn FnMut(&Decoded) -> bool) -> bool {
        match &self.0 {
            Inner::Memory(store) => Store::with_decoded(store, request, replay),
            Inner::Installed(store) => ErasedStore::with_decoded(&**store, request, replay),
        }
    }
}
