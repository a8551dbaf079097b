//! What the library tells an operator: a `tracing` span per call and an event for every
//! failure it absorbs (feature `tracing`), and counters, histograms and a gauge through
//! the `metrics` facade (feature `metrics`). Without either feature everything here is
//! empty and compiles away.
//!
//! Nothing reported carries an argument value, a client key or a result: a call is known
//! by its namespace (bounded: a function's or a route's name) and, in spans only, by the
//! first 8 hex digits of its key, itself a keyed hash.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `idempotency_calls_total` | counter | `namespace`, `outcome` |
//! | `idempotency_wait_seconds` | histogram (calls that waited) | `namespace` |
//! | `idempotency_store_seconds` | histogram (time in store steps, per call) | `namespace` |
//! | `idempotency_claims_in_flight` | gauge | `namespace` |
//! | `idempotency_store_failures_total` | counter | `namespace`, `step` |

#[cfg(any(feature = "tracing", feature = "metrics"))]
use crate::store::record::Namespace;
use crate::store::record::Request;
use std::future::Future;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use std::time::{Duration, Instant};

/// How a call ended: the `outcome` of its span and of `idempotency_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The body ran and its result was stored (or could not be, and an event says why).
    Fresh,
    /// The body ran and asked to store nothing (an `Err`, a failure response).
    Failed,
    /// A stored result was replayed at once.
    Replayed,
    /// A stored result was replayed after waiting for the call in flight.
    Waited,
    /// The call stopped waiting for a duplicate in flight.
    InProgress,
    /// The key was used before with another payload.
    Mismatch,
    /// The claim was taken over while the body ran; its result was not stored.
    LeaseLost,
    /// The store failed before the body ran.
    StoreError,
    /// The key could not be derived, or the client's key was refused.
    InvalidKey,
    /// A stored record could not be decoded, or is an unreplayable marker.
    CodecError,
}

impl Ending {
    /// The label value.
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ending::Fresh => "fresh",
            Ending::Failed => "failed",
            Ending::Replayed => "replayed",
            Ending::Waited => "waited",
            Ending::InProgress => "in_progress",
            Ending::Mismatch => "mismatch",
            Ending::LeaseLost => "lease_lost",
            Ending::StoreError => "store_error",
            Ending::InvalidKey => "invalid_key",
            Ending::CodecError => "codec_error",
        }
    }

    /// How an engine error ends a call.
    pub(crate) fn of_error(err: &crate::Error) -> Self {
        use crate::Error;
        match err {
            Error::InProgress { .. } => Ending::InProgress,
            Error::PayloadMismatch { .. } => Ending::Mismatch,
            Error::LeaseLost { .. } => Ending::LeaseLost,
            Error::Store(_) => Ending::StoreError,
            Error::InvalidKey(_) | Error::Key(_) => Ending::InvalidKey,
            Error::Codec(_) => Ending::CodecError,
        }
    }
}

/// The store step a failure happened in: the `step` of `idempotency_store_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Begin,
    Renew,
    Complete,
    Release,
    #[cfg_attr(
        not(any(feature = "redis", feature = "postgres")),
        allow(
            dead_code,
            reason = "only the remote stores release abandoned claims later"
        )
    )]
    Abandon,
    /// A store's notification listener lost its connection.
    #[cfg_attr(
        not(any(feature = "redis", feature = "postgres")),
        allow(dead_code, reason = "only the remote stores listen")
    )]
    Listen,
}

impl Step {
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    fn as_str(self) -> &'static str {
        match self {
            Step::Begin => "begin",
            Step::Renew => "renew",
            Step::Complete => "complete",
            Step::Release => "release",
            Step::Abandon => "abandon",
            Step::Listen => "listen",
        }
    }
}

/// One call under observation: its span, and the time it spent in the store and waiting.
pub(crate) struct Observed {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    namespace: Namespace,
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    store: Duration,
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    waited: Duration,
}

impl Observed {
    /// Starts observing a call on `request`'s record.
    #[inline]
    pub(crate) fn start(request: &Request) -> Self {
        let _ = request;
        Observed {
            #[cfg(feature = "tracing")]
            span: call_span(&request.namespace, request.key.as_bytes()),
            #[cfg(feature = "metrics")]
            namespace: request.namespace.clone(),
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            store: Duration::ZERO,
            #[cfg(any(feature = "tracing", feature = "metrics"))]
            waited: Duration::ZERO,
        }
    }

    /// The call's span, to run the call inside.
    #[inline]
    pub(crate) fn span(&self) -> CallSpan {
        CallSpan {
            #[cfg(feature = "tracing")]
            span: self.span.clone(),
        }
    }

    /// Awaits a store step, adding its time to the call's store time.
    #[inline]
    pub(crate) async fn store<F: Future>(&mut self, step: F) -> F::Output {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        {
            let started = Instant::now();
            let output = step.await;
            self.store += started.elapsed();
            output
        }
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        step.await
    }

    /// Awaits a wait for the call in flight, adding its time to the call's wait if it
    /// waited (an `Err` is the refusal to wait any longer, at once).
    #[inline]
    pub(crate) async fn wait<T, E, F: Future<Output = Result<T, E>>>(
        &mut self,
        wait: F,
    ) -> F::Output {
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        {
            let started = Instant::now();
            let output = wait.await;
            if output.is_ok() {
                self.waited += started.elapsed();
            }
            output
        }
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        wait.await
    }

    /// Whether the call waited for a duplicate in flight.
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    pub(crate) fn has_waited(&self) -> bool {
        !self.waited.is_zero()
    }

    /// Whether the call waited for a duplicate in flight (not measured without
    /// telemetry).
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    pub(crate) fn has_waited(&self) -> bool {
        false
    }

    /// A claim is held from now until the returned guard drops.
    #[inline]
    pub(crate) fn claim(&self) -> ClaimHeld {
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!("idempotency_claims_in_flight", "namespace" => label(&self.namespace))
                .increment(1.0);
            ClaimHeld {
                namespace: self.namespace.clone(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        ClaimHeld {}
    }

    /// Ends the call with `ending`: records the span's outcome and the call's metrics.
    #[inline]
    pub(crate) fn end(self, ending: Ending) {
        self.end_with(ending, true);
    }

    #[inline]
    fn end_with(self, ending: Ending, asked_the_store: bool) {
        let _ = (ending, asked_the_store);
        #[cfg(feature = "tracing")]
        {
            self.span.record("outcome", ending.as_str());
            self.span.record("store_ms", millis(self.store));
            self.span.record("waited_ms", millis(self.waited));
        }
        #[cfg(feature = "metrics")]
        {
            let namespace = label(&self.namespace);
            metrics::counter!("idempotency_calls_total", "namespace" => namespace.clone(), "outcome" => ending.as_str())
                .increment(1);
            if asked_the_store {
                metrics::histogram!("idempotency_store_seconds", "namespace" => namespace.clone())
                    .record(self.store.as_secs_f64());
            }
            if !self.waited.is_zero() {
                metrics::histogram!("idempotency_wait_seconds", "namespace" => namespace)
                    .record(self.waited.as_secs_f64());
            }
        }
    }
}

/// The span of a call under observation (nothing without the `tracing` feature).
pub(crate) struct CallSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl CallSpan {
    /// Runs `call` inside the span: the body's own spans nest under it, and it nests
    /// under the caller's.
    #[inline]
    pub(crate) async fn within<F: Future>(self, call: F) -> F::Output {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument as _;
            call.instrument(self.span).await
        }
        #[cfg(not(feature = "tracing"))]
        call.await
    }
}

/// Held while a call holds a claim: the `idempotency_claims_in_flight` gauge.
pub(crate) struct ClaimHeld {
    #[cfg(feature = "metrics")]
    namespace: Namespace,
}

#[cfg(feature = "metrics")]
impl Drop for ClaimHeld {
    fn drop(&mut self) {
        metrics::gauge!("idempotency_claims_in_flight", "namespace" => label(&self.namespace))
            .decrement(1.0);
    }
}

/// A replay that never reached the engine (the memory store's fast path): a span that
/// opens and closes, and the call's count; no store time, since no store step ran.
#[inline]
pub(crate) fn replayed(request: &Request) {
    let _ = request;
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    Observed::start(request).end_with(Ending::Replayed, false);
}

/// A failure the call absorbed or reported: an event, and the failures' count.
#[inline]
pub(crate) fn store_failed(namespace: &str, step: Step, error: &dyn std::fmt::Display) {
    let _ = (namespace, step, error);
    #[cfg(feature = "tracing")]
    tracing::warn!(
        namespace,
        step = step.as_str(),
        error = %error,
        "idempotency store step failed"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "idempotency_store_failures_total",
        "namespace" => namespace.to_owned(),
        "step" => step.as_str()
    )
    .increment(1);
}

/// Something an operator should know that is not a store failure (a lost lease, an
/// abandoned claim, a record that does not decode): an event.
#[inline]
pub(crate) fn notice(namespace: &str, what: &'static str) {
    let _ = (namespace, what);
    #[cfg(feature = "tracing")]
    tracing::warn!(namespace, "{what}");
}

#[cfg(feature = "tracing")]
fn call_span(namespace: &Namespace, key: &[u8; 16]) -> tracing::Span {
    tracing::info_span!(
        "idempotency",
        namespace = namespace.as_str(),
        key = %KeyDigest(key),
        outcome = tracing::field::Empty,
        waited_ms = tracing::field::Empty,
        store_ms = tracing::field::Empty,
    )
}

/// The first 4 bytes of a key, in hex: enough to tell calls apart in a trace, nothing to
/// recover an argument or a client key from (the key is a keyed hash).
#[cfg(feature = "tracing")]
struct KeyDigest<'a>(&'a [u8; 16]);

#[cfg(feature = "tracing")]
impl std::fmt::Display for KeyDigest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0[..4]
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(feature = "tracing")]
fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A namespace as a label value, shared rather than copied when it was built at run time.
#[cfg(feature = "metrics")]
fn label(namespace: &Namespace) -> metrics::SharedString {
    namespace.label()
}
