//! The engine: one idempotent call, at the level of bytes, on any [`Store`].
//!
//! [`run`] carries out the whole protocol of a call: it replays a completed record, waits
//! (woken by notification, bounded by the call's `wait`) while another attempt holds the
//! key, or claims the key and runs the body under the claim, renewing its lease, then
//! completes the record with the body's result, or releases the claim when the body says
//! not to store, or abandons it when the call is cancelled or the body panics.
//!
//! It knows nothing of the result's type: the body hands it something that
//! [encodes](Encode) to the bytes to store, and a replay hands back the stored bytes. The
//! `#[idempotent]` attribute is a typed adapter on it (JSON records of the function's
//! `Ok` type); an HTTP layer is another (a response's status, headers and body).
//!
//! ```
//! use idempotent_runtime::engine::{self, Call, Finished, Produced};
//! use idempotent_runtime::store::{Namespace, Request};
//! use idempotent_runtime::{Fingerprint, KeyHasher, MemoryStore};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), idempotent_runtime::Error> {
//! let store = MemoryStore::new();
//! let mut key = KeyHasher::new("POST /orders");
//! key.client_key("8e03978e-40d5-43e8-bc93-6894a57f9324").expect("a valid key");
//! let call = Call::new(Request {
//!     namespace: Namespace::from(format!("POST {}", "/orders")),
//!     key: key.finish().expect("a key"),
//!     fingerprint: Fingerprint::NONE,
//!     lease: None,
//! })
//! .ttl(Duration::from_secs(3600));
//!
//! // The body yields the bytes to store; a failure would be `Produced::Discard(..)`.
//! let body = || async { Produced::<Vec<u8>, ()>::Store(b"order 7".to_vec()) };
//! let first = engine::run(&store, &call, body()).await?;
//! assert!(matches!(first, Finished::Fresh(ref bytes) if bytes == b"order 7"));
//! let retry = engine::run(&store, &call, body()).await?;
//! assert!(matches!(retry, Finished::Replayed(ref bytes) if &bytes[..] == b"order 7"));
//! # Ok(()) }
//! ```

mod lease;

use crate::error::Error;
use crate::observe::{self, Ending, Observed, Step};
use crate::store::record::{Begin, InFlight, Request};
use crate::store::Store;
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Extra time a waiter gives a holder past the end of its lease before looking again, so
/// that a renewal in flight is not mistaken for a dead holder.
const LEASE_MARGIN: Duration = Duration::from_millis(25);

/// One call: the record it concerns, and how long to keep and to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The record's namespace, key and fingerprint, and the lease a claim asks for.
    pub request: Request,
    /// How long a completed result is kept (default [`Call::DEFAULT_TTL`]).
    pub ttl: Duration,
    /// How long a duplicate waits for an attempt in flight before
    /// [`Error::InProgress`]; zero fails at once (default [`Call::DEFAULT_WAIT`]).
    pub wait: Duration,
}

impl Call {
    /// The default `ttl`: 24 hours, the usual retention of idempotency keys.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    /// The default `wait`: 30 seconds, the usual timeout of an HTTP client.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

    /// A call on `request`'s record with the default TTL and wait.
    #[must_use]
    pub fn new(request: Request) -> Self {
        Call {
            request,
            ttl: Self::DEFAULT_TTL,
            wait: Self::DEFAULT_WAIT,
        }
    }

    /// Sets how long a completed result is kept.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how long a duplicate waits for an attempt in flight.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

/// What a body yields: a result to store, or one to hand back without storing it.
#[derive(Debug)]
pub enum Produced<R, F> {
    /// Store `R`'s bytes for the call's TTL, then hand `R` back to the caller (as
    /// [`Finished::Fresh`]).
    Store(R),
    /// Store nothing and free the key at once, so that the next caller runs the body; hand
    /// `F` back to the caller (as [`Finished::Failed`]).
    Discard(F),
}

/// How a call ended, when the idempotency layer did not fail it.
#[derive(Debug)]
pub enum Finished<R, F> {
    /// This call ran the body, which produced `R`: it was stored (or could not be, see
    /// [`run`]).
    Fresh(R),
    /// This call ran the body, which asked to store nothing.
    Failed(F),
    /// An earlier call's stored result, byte for byte as [`Encode`] made it.
    Replayed(Arc<[u8]>),
}

/// A result that can be encoded into the bytes of its record.
///
/// [`run`] calls [`encode_within`](Encode::encode_within) first while the body's claim
/// still holds; an encoding that would take longer than the budget gives up (`None`) and
/// is done again by [`encode`](Encode::encode) beside a thread that keeps the claim
/// renewed, so that a slow or huge encoding cannot let the lease lapse.
///
/// Records should begin with a format version and a kind byte of the adapter's choosing
/// (the attribute writes `1` and `J`, for JSON): a result too large for the store is
/// completed with a record of kind `X` instead ([`run`] says why), which every adapter
/// reads as "succeeded, but cannot be replayed".
///
/// ```
/// use idempotent_runtime::engine::Encode;
/// use std::borrow::Cow;
///
/// /// A response as an HTTP layer would store it: status, then body.
/// struct Response {
///     status: u16,
///     body: Vec<u8>,
/// }
///
/// impl Encode for Response {
///     fn encode(&self) -> Cow<'_, [u8]> {
///         let mut record = vec![1, b'H'];
///         record.extend_from_slice(&self.status.to_be_bytes());
///         record.extend_from_slice(&self.body);
///         Cow::Owned(record)
///     }
/// }
///
/// let created = Response { status: 201, body: b"{\"id\":7}".to_vec() };
/// assert_eq!(&created.encode()[..4], &[1, b'H', 0, 201]);
/// ```
pub trait Encode {
    /// The bytes to store.
    fn encode(&self) -> Cow<'_, [u8]>;

    /// The bytes to store, if they take less than about `budget` to make. The default
    /// assumes they always do.
    fn encode_within(&self, budget: Duration) -> Option<Cow<'_, [u8]>> {
        let _ = budget;
        Some(self.encode())
    }
}

/// Bytes that are already encoded are stored as they are.
impl Encode for Vec<u8> {
    fn encode(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

/// Runs one call on `store`: replays the completed record of `call.request`, waits for an
/// attempt of it in flight, or claims it and runs `body`.
///
/// - **Completed** (with the call's fingerprint): [`Finished::Replayed`] with its bytes;
///   `body` is dropped unpolled.
/// - **In progress**: waits to be notified of the holder's completion or release, at most
///   `call.wait` in all, and looks again; then [`Error::InProgress`].
/// - **Vacant**: claims it and polls `body`, renewing the claim at a third of its lease.
///   [`Produced::Store`] is encoded and completes the record (renewed too), then comes
///   back as [`Finished::Fresh`]; [`Produced::Discard`] releases the claim and comes back
///   as [`Finished::Failed`]. If the call is dropped or `body` panics, the claim is
///   abandoned: the key is free again at once.
///
/// A body that succeeded is never undone: if its record cannot be written (the store is
/// down), the caller still gets [`Finished::Fresh`], and the claim is left to its lease
/// so that duplicates wait rather than run the body again at once. A result over the
/// store's size limit is completed with a record that says so, which duplicates replay
/// as an error rather than run the body again for the whole TTL.
///
/// # Errors
///
/// [`Error::PayloadMismatch`] if the record carries another fingerprint,
/// [`Error::InProgress`] after the wait, [`Error::LeaseLost`] if another attempt took the
/// key over while the body ran (its result is not stored), [`Error::Store`] if the store
/// failed before the body ran.
pub async fn run<S, B, R, F>(store: &S, call: &Call, body: B) -> Result<Finished<R, F>, Error>
where
    S: Store + ?Sized,
    B: Future<Output = Produced<R, F>>,
    R: Encode,
{
    let mut observed = Observed::start(&call.request);
    let span = observed.span();
    let finished = span
        .within(run_observed(store, call, body, &mut observed))
        .await;
    let ending = match &finished {
        Ok(Finished::Fresh(_)) => Ending::Fresh,
        Ok(Finished::Failed(_)) => Ending::Failed,
        Ok(Finished::Replayed(_)) if observed.has_waited() => Ending::Waited,
        Ok(Finished::Replayed(_)) => Ending::Replayed,
        Err(err) => Ending::of_error(err),
    };
    observed.end(ending);
    finished
}

async fn run_observed<S, B, R, F>(
    store: &S,
    call: &Call,
    body: B,
    observed: &mut Observed,
) -> Result<Finished<R, F>, Error>
where
    S: Store + ?Sized,
    B: Future<Output = Produced<R, F>>,
    R: Encode,
{
    let request = &call.request;
    let mut started = None;
    loop {
        let begun = observed.store(store.begin(request)).await;
        match begun.map_err(|err| {
            observe::store_failed(&request.namespace, Step::Begin, &err);
            Error::Store(err)
        })? {
            Begin::Completed(record) if record.fingerprint != request.fingerprint => {
                return Err(mismatch(call));
            }
            Begin::Completed(record) => return Ok(Finished::Replayed(record.value)),
            Begin::InProgress(flight) if flight.fingerprint != request.fingerprint => {
                return Err(mismatch(call));
            }
            Begin::InProgress(flight) => {
                // Boxed, like the claimed path: the replay path's future stays small.
                observed
                    .wait(Box::pin(wait_for(call, &mut started, flight)))
                    .await?;
            }
            Begin::Claimed(claim) => {
                // Boxed: every call builds this future, and most only replay.
                return Box::pin(lease::run_claimed(store, call, claim, body, observed)).await;
            }
        }
    }
}

/// Waits for the holder of `flight` to complete or release its claim (or for its lease to
/// end), within what is left of the call's `wait` since `started`; then the caller looks
/// again.
pub(crate) async fn wait_for(
    call: &Call,
    started: &mut Option<Instant>,
    flight: InFlight,
) -> Result<(), Error> {
    let now = Instant::now();
    let since = *started.get_or_insert(now);
    let deadline = since + call.wait;
    if now >= deadline {
        return Err(Error::InProgress {
            namespace: call.request.namespace.to_string(),
            waited: now - since,
        });
    }
    // Woken by the holder's completion or release; the lease bounds the wait on a holder
    // that died, which sends no notice.
    let recheck = deadline.min(now + flight.lease_remaining + LEASE_MARGIN);
    let _ = tokio::time::timeout_at(recheck, flight.changed).await;
    Ok(())
}

pub(crate) fn mismatch(call: &Call) -> Error {
    Error::PayloadMismatch {
        namespace: call.request.namespace.to_string(),
    }
}
