//! Records and their states, as a [`Store`](crate::Store) reports them.
//!
//! A key's record moves through three states: **vacant** (no record, or an expired one),
//! **in progress** (claimed by one attempt, under a lease; the seed's "created") and
//! **completed** (the encoded result, kept for the function's TTL; the seed's "consumed").
//! A failed or cancelled attempt takes the record from in progress back to vacant.

use crate::key::{Fingerprint, Key};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The name of a family of records: a function's `name = ".."` or path, or a route built
/// at run time. It is already part of every [`Key`] made in it, which alone identifies a
/// record; stores use it for bookkeeping a person can read (a Redis key name).
///
/// A static name costs nothing to clone; a name built at run time is shared, not copied.
///
/// ```
/// use idempotent_runtime::store::Namespace;
///
/// let fixed = Namespace::from_static("orders.create");
/// let route = Namespace::from(format!("POST {}", "/orders"));
/// assert_eq!(fixed.as_str(), "orders.create");
/// assert_eq!(route, Namespace::from("POST /orders"));
/// ```
#[derive(Clone)]
pub struct Namespace(Name);

#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Namespace {
    /// A namespace known at compile time.
    #[must_use]
    pub const fn from_static(name: &'static str) -> Self {
        Namespace(Name::Static(name))
    }

    /// The name as a metrics label value: borrowed if static, shared if built at run
    /// time, never copied.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(&self) -> metrics::SharedString {
        match &self.0 {
            Name::Static(name) => metrics::SharedString::const_str(name),
            Name::Shared(name) => metrics::SharedString::from(Arc::clone(name)),
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }
}

impl std::ops::Deref for Namespace {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Namespace {}

impl std::hash::Hash for Namespace {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Namespace {
    fn from(name: &'static str) -> Self {
        Namespace::from_static(name)
    }
}

impl From<String> for Namespace {
    fn from(name: String) -> Self {
        Namespace(Name::Shared(name.into()))
    }
}

impl From<Arc<str>> for Namespace {
    fn from(name: Arc<str>) -> Self {
        Namespace(Name::Shared(name))
    }
}

/// What one call asks of the store in [`Store::begin`](crate::Store::begin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The namespace of the record, for the store's own bookkeeping.
    pub namespace: Namespace,
    /// The record's key.
    pub key: Key,
    /// The payload fingerprint the record is claimed with, or that it must already have.
    pub fingerprint: Fingerprint,
    /// The lease a claim should get; `None` means the store's default.
    pub lease: Option<Duration>,
}

/// A fencing token: which claim on a key is the current one. A store gives every claim a
/// token never given before for that key and accepts [`Store::renew`](crate::Store::renew),
/// [`Store::complete`](crate::Store::complete) and [`Store::release`](crate::Store::release)
/// only from the claim whose token is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// The right to run the body for a key, granted by [`Begin::Claimed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    request: Request,
    token: Token,
    lease: Duration,
}

impl Claim {
    /// A claim granted for `request`, with its fencing `token` and the `lease` it holds
    /// (which the caller renews at a third of its length while it runs).
    #[must_use]
    pub fn new(request: &Request, token: Token, lease: Duration) -> Self {
        Claim {
            request: request.clone(),
            token,
            lease,
        }
    }

    /// The claimed key.
    #[must_use]
    pub fn key(&self) -> &Key {
        &self.request.key
    }

    /// The namespace of the record.
    #[must_use]
    pub fn namespace(&self) -> &Namespace {
        &self.request.namespace
    }

    /// The claim's fencing token.
    #[must_use]
    pub fn token(&self) -> Token {
        self.token
    }

    /// The fingerprint the record was claimed with.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        self.request.fingerprint
    }

    /// How long the claim survives without renewal.
    #[must_use]
    pub fn lease(&self) -> Duration {
        self.lease
    }
}

/// A completed record: the encoded result of the attempt that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The fingerprint the record was claimed with.
    pub fingerprint: Fingerprint,
    /// The encoded result, exactly the bytes given to [`Store::complete`](crate::Store::complete).
    pub value: Arc<[u8]>,
}

/// An in-progress record held by another attempt.
pub struct InFlight {
    /// The fingerprint the record was claimed with.
    pub fingerprint: Fingerprint,
    /// How much of the holder's lease is left; a waiter looks again after that long even
    /// without a notification, since a holder that died sends none.
    pub lease_remaining: Duration,
    /// Resolves when the record may have changed state (completed, released, taken over).
    pub changed: Notification,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("fingerprint", &self.fingerprint)
            .field("lease_remaining", &self.lease_remaining)
            .finish_non_exhaustive()
    }
}

/// A future that resolves when a record may have changed. Waking without a change is
/// allowed (the caller looks again); never waking is allowed too (the caller's timers
/// bound the wait), but then waiters notice a completion only when the lease runs out.
///
/// ```
/// use idempotent_runtime::store::Notification;
///
/// let (tx, mut rx) = tokio::sync::watch::channel(());
/// let changed = Notification::new(async move {
///     let _ = rx.changed().await;
/// });
/// drop(tx); // the holder finished
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(changed);
/// ```
pub struct Notification(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Notification {
    /// Wraps the future that resolves on a change.
    pub fn new(changed: impl Future<Output = ()> + Send + 'static) -> Self {
        Notification(Box::pin(changed))
    }
}

impl Future for Notification {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// What [`Store::begin`](crate::Store::begin) found, atomically.
#[derive(Debug)]
pub enum Begin {
    /// The record was vacant (or its holder's lease had lapsed): this caller now holds it
    /// and must run the body, then complete or release the claim.
    Claimed(Claim),
    /// Another attempt holds the record.
    InProgress(InFlight),
    /// The record is completed: replay it.
    Completed(Completed),
}
