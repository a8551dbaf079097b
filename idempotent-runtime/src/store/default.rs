//! The process-wide default store, used by `#[idempotent]` functions without `store = ..`.

use super::{Begin, Claim, InProcess, Request, Store, StoreError};
use crate::memory::MemoryStore;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

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
/// A [`MemoryStore`] installed this way (one with a longer lease, say) keeps its replay
/// fast path.
///
/// # Errors
///
/// [`DefaultStoreAlreadySet`] if a default store was already installed, or was already
/// used (and so fixed to the embedded memory store): records already written to one
/// store must not silently vanish behind another.
///
/// ```
/// use idempotent_runtime::{set_default_store, DefaultStoreAlreadySet, MemoryStore};
/// use std::time::Duration;
///
/// let store = MemoryStore::builder().lease(Duration::from_secs(10)).build();
/// set_default_store(store).expect("first install");
/// assert_eq!(set_default_store(MemoryStore::new()), Err(DefaultStoreAlreadySet));
/// ```
pub fn set_default_store<S: Store + 'static>(store: S) -> Result<(), DefaultStoreAlreadySet> {
    let inner = match (&store as &dyn Any).downcast_ref::<MemoryStore>() {
        Some(memory) => Inner::Memory(memory.clone()),
        None => Inner::Installed(Box::new(store)),
    };
    DEFAULT
        .set(DefaultStore(inner))
        .map_err(|_| DefaultStoreAlreadySet)
}

/// [`set_default_store`] was called after a default store had already been installed or
/// used: a set-up mistake, to fix at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the default idempotency store was already installed or used; install it once, before the first call")]
pub struct DefaultStoreAlreadySet;

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
}

/// The fast path is the embedded store's, whichever way it was installed.
impl InProcess for DefaultStore {
    fn memory(&self) -> Option<&MemoryStore> {
        match &self.0 {
            Inner::Memory(store) => Some(store),
            Inner::Installed(_) => None,
        }
    }
}
