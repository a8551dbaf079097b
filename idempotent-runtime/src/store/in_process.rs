//! [`InProcess`]: the replay fast path of a store whose records live in this process.

use super::Store;
use crate::memory::MemoryStore;
use std::sync::Arc;

/// A store whose records live in a [`MemoryStore`] of this process, which gives its calls
/// the memory store's fast path: process-local keys, which are cheaper to compute than
/// keys every process shares (see [`key`](crate::key)), and replays that clone the value
/// an earlier replay decoded instead of decoding the record again.
///
/// This is a capability apart from the [`Store`] steps, which a store that is not in this
/// process (Redis, a database) never implements. A store that wraps a `MemoryStore` may
/// implement it by returning the memory store its steps act on: replays of kept values
/// then read that store directly, without the wrapper's `begin`. A wrapper that does not
/// implement it behaves identically, with stable keys and a decode on every replay.
///
/// The capability is picked at the call site, from the store's type: a store held as a
/// generic `S: Store` takes the plain path.
///
/// ```
/// use idempotent_runtime::store::{Begin, Claim, InProcess, Request, Store, StoreError};
/// use idempotent_runtime::MemoryStore;
/// use std::time::Duration;
///
/// /// A store that logs every claim of its memory store.
/// struct Logged(MemoryStore);
///
/// impl Store for Logged {
///     async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
///         let begin = self.0.begin(request).await?;
///         if matches!(begin, Begin::Claimed(_)) {
///             println!("claimed {}", request.key);
///         }
///         Ok(begin)
///     }
///     async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
///         self.0.renew(claim).await
///     }
///     async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
///         self.0.complete(claim, value, ttl).await
///     }
///     async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
///         self.0.release(claim).await
///     }
///     fn abandon(&self, claim: Claim) {
///         self.0.abandon(claim);
///     }
/// }
///
/// impl InProcess for Logged {
///     fn memory(&self) -> Option<&MemoryStore> {
///         Some(&self.0)
///     }
/// }
/// ```
pub trait InProcess: Store {
    /// The memory store that this store's steps read and write, if its records are in
    /// this process now. Returning any other store would replay records this store never
    /// wrote.
    fn memory(&self) -> Option<&MemoryStore>;
}

impl InProcess for MemoryStore {
    fn memory(&self) -> Option<&MemoryStore> {
        Some(self)
    }
}

macro_rules! forward_in_process {
    ($($target:ty),*) => {$(
        impl<S: InProcess + ?Sized> InProcess for $target {
            fn memory(&self) -> Option<&MemoryStore> {
                (**self).memory()
            }
        }
    )*};
}

forward_in_process!(&S, Arc<S>, Box<S>);

/// Picks a store's fast path at the call site, by autoref specialization: generated code
/// calls `(&&StoreProbe(store)).local()` with both traits in scope, which is the store's
/// [`InProcess::memory`] if its type implements [`InProcess`], and `None` otherwise.
#[doc(hidden)]
#[derive(Debug)]
pub struct StoreProbe<'a, S: ?Sized>(pub &'a S);

/// Chosen for a store that implements [`InProcess`].
#[doc(hidden)]
pub trait ByMemory<'a> {
    /// The memory store of the fast path.
    fn local(&self) -> Option<&'a MemoryStore>;
}

impl<'a, S: InProcess + ?Sized> ByMemory<'a> for &StoreProbe<'a, S> {
    #[inline]
    fn local(&self) -> Option<&'a MemoryStore> {
        self.0.memory()
    }
}

/// Chosen for every other store.
#[doc(hidden)]
pub trait ByStore<'a> {
    /// No fast path: always `None`.
    fn local(&self) -> Option<&'a MemoryStore>;
}

impl<'a, S: ?Sized> ByStore<'a> for StoreProbe<'a, S> {
    #[inline]
    fn local(&self) -> Option<&'a MemoryStore> {
        None
    }
}
