//! What an operator sees (features `tracing` and `metrics`): one span per call with its
//! outcome, nested under the caller's span, events for the failures the library absorbs,
//! and the documented metrics per outcome — captured with a real `tracing` subscriber and
//! a real `metrics` recorder. No argument value, client key or result ever appears.

mod support;

use idempotency::{idempotent, MemoryStore};
use metrics::{SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use support::{AppError, Gate, Probe};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A span as the subscriber saw it: its name, its fields, and its parent's name.
#[derive(Debug, Clone, Default)]
struct SeenSpan {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

/// What the capturing layer saw: closed spans in order, and events' messages and fields.
#[derive(Default)]
struct Seen {
    open: BTreeMap<u64, SeenSpan>,
    closed: Vec<SeenSpan>,
    events: Vec<BTreeMap<String, String>>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Seen>>);

impl Capture {
    /// The closed `idempotency` spans of `namespace`.
    fn calls(&self, namespace: &str) -> Vec<SeenSpan> {
        let seen = self.0.lock().unwrap();
        seen.closed
            .iter()
            .filter(|span| span.name == "idempotency")
            .filter(|span| span.fields.get("namespace").map(String::as_str) == Some(namespace))
            .cloned()
            .collect()
    }

    fn outcomes(&self, namespace: &str) -> Vec<String> {
        self.calls(namespace)
            .iter()
            .map(|span| span.fields.get("outcome").cloned().unwrap_or_default())
            .collect()
    }

    /// The events of `namespace`.
    fn events(&self, namespace: &str) -> Vec<BTreeMap<String, String>> {
        let seen = self.0.lock().unwrap();
        seen.events
            .iter()
            .filter(|event| event.get("namespace").map(String::as_str) == Some(namespace))
            .cloned()
            .collect()
    }

    fn everything(&self) -> String {
        let seen = self.0.lock().unwrap();
        format!("{:?} {:?}", seen.closed, seen.events)
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut span = SeenSpan {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.name().to_owned()),
            ..SeenSpan::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.0.lock().unwrap().open.insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.0.lock().unwrap().open.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().events.push(fields);
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut seen = self.0.lock().unwrap();
        if let Some(span) = seen.open.remove(&id.into_u64()) {
            seen.closed.push(span);
        }
    }
}

/// The capturing subscriber, installed once as the global default of this test binary:
/// a scoped one would miss what the stores' own threads report (tracing caches a
/// callsite's interest from the thread that first reaches it). Tests tell their calls
/// apart by namespace.
fn capture() -> &'static Capture {
    static CAPTURE: LazyLock<Capture> = LazyLock::new(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(capture.clone()),
        )
        .expect("the only global subscriber of this binary");
        capture
    });
    &CAPTURE
}

/// Runs `test` on a current-thread runtime with a debugging metrics recorder installed
/// for this thread only, so that tests running at once do not count each other's calls.
fn observed<F: std::future::Future<Output = ()>>(
    test: impl FnOnce() -> F,
) -> (&'static Capture, Metrics) {
    let capture = capture();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test()));
    // Read once: reading a counter resets it.
    (capture, Metrics(snapshotter.snapshot().into_vec()))
}

/// The metrics a test recorded.
struct Metrics(Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>);

/// The value of the counter `name` with these labels.
fn counter(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics
        .0
        .iter()
        .find_map(|(key, _, _, value)| {
            let (kind, key) = (key.kind(), key.key());
            let matches = kind == MetricKind::Counter
                && key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
            match value {
                DebugValue::Counter(n) if matches => Some(*n),
                _ => None,
            }
        })
        .unwrap_or(0)
}

/// How many values the histogram `name` of `namespace` recorded.
fn histogram_len(metrics: &Metrics, name: &str, namespace: &str) -> usize {
    metrics
        .0
        .iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let matches = key.name() == name
                && key
                    .labels()
                    .any(|l| l.key() == "namespace" && l.value() == namespace);
            match value {
                DebugValue::Histogram(values) if matches => Some(values.len()),
                _ => None,
            }
        })
        .unwrap_or(0)
}

static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
static RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(name = "telemetry.charge", store = &*STORE, key = card, ttl = "1h")]
async fn charge(card: String, cents: u64) -> Result<u64, AppError> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    if cents == 0 {
        return Err(AppError::Body("nothing to charge"));
    }
    Ok(cents)
}

#[idempotent(name = "telemetry.nested", store = &*STORE, key = card)]
async fn nested_charge(card: String, cents: u64) -> Result<u64, AppError> {
    Ok(cents)
}

#[tracing::instrument]
async fn handler(card: String, cents: u64) -> Result<u64, AppError> {
    nested_charge(card, cents).await
}

#[test]
fn every_outcome_has_its_span_and_its_count() {
    let (capture, metrics) = observed(|| async {
        assert_eq!(charge("4242-secret-card".into(), 250).await.unwrap(), 250);
        assert_eq!(charge("4242-secret-card".into(), 250).await.unwrap(), 250);
        // The same key with another payload.
        assert!(charge("4242-secret-card".into(), 999).await.is_err());
        // A failed body stores nothing.
        assert!(charge("zero-card".into(), 0).await.is_err());
        // An invalid client key never reaches the store.
        assert!(charge(String::new(), 1).await.is_err());
    });
    let outcomes = capture.outcomes("telemetry.charge");
    assert_eq!(
        outcomes,
        ["fresh", "replayed", "mismatch", "failed"],
        "{}",
        capture.everything()
    );
    for outcome in ["fresh", "replayed", "mismatch", "failed"] {
        let labels = [("namespace", "telemetry.charge"), ("outcome", outcome)];
        assert_eq!(
            counter(&metrics, "idempotency_calls_total", &labels),
            1,
            "{outcome}"
        );
    }
    // Store time of every call that asked the store (the first replay does: it decodes
    // the record and keeps the value, which later replays clone without a store step).
    assert_eq!(
        histogram_len(&metrics, "idempotency_store_seconds", "telemetry.charge"),
        4
    );
    for span in capture.calls("telemetry.charge") {
        assert_eq!(span.fields["namespace"], "telemetry.charge");
        assert_eq!(span.fields["key"].len(), 8, "{span:?}");
        assert!(span.fields.contains_key("store_ms"), "{span:?}");
    }
    // Neither the client key, nor an argument, nor the result appears anywhere.
    let everything = capture.everything();
    for secret in ["4242-secret-card", "zero-card"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    for span in capture.calls("telemetry.charge") {
        for amount in ["250", "999"] {
            assert!(
                !span.fields.values().any(|v| v == amount),
                "{amount} leaked: {span:?}"
            );
        }
    }
}

#[test]
fn the_call_span_nests_under_the_callers_span() {
    let (capture, _) = observed(|| async {
        handler("nested-card".into(), 5).await.unwrap();
    });
    let calls = capture.calls("telemetry.nested");
    assert_eq!(calls.len(), 1, "{}", capture.everything());
    assert_eq!(calls[0].parent.as_deref(), Some("handler"));
}

static WAIT_STORE: LazyLock<Probe<MemoryStore>> = LazyLock::new(|| Probe::new(MemoryStore::new()));
static ENTERED: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);
static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);

#[idempotent(name = "telemetry.slow", store = &*WAIT_STORE, key = id, wait = "10s")]
async fn slow(id: String) -> Result<u64, AppError> {
    ENTERED.notify_one();
    GATE.wait().await;
    Ok(7)
}

#[idempotent(name = "telemetry.slow", store = &*WAIT_STORE, key = id, wait = "0s")]
async fn slow_fail_fast(id: String) -> Result<u64, AppError> {
    Ok(id.len() as u64)
}

#[test]
fn a_waiter_reports_its_wait_and_a_fail_fast_duplicate_reports_in_progress() {
    let (capture, metrics) = observed(|| async {
        let holder = tokio::spawn(slow("w-1".into()));
        ENTERED.notified().await;
        assert!(slow_fail_fast("w-1".into()).await.is_err());
        let waiter = tokio::spawn(slow("w-1".into()));
        WAIT_STORE.until_busy(2).await;
        GATE.open();
        assert_eq!(holder.await.unwrap().unwrap(), 7);
        assert_eq!(waiter.await.unwrap().unwrap(), 7);
    });
    let mut outcomes = capture.outcomes("telemetry.slow");
    outcomes.sort();
    assert_eq!(
        outcomes,
        ["fresh", "in_progress", "waited"],
        "{}",
        capture.everything()
    );
    assert_eq!(
        histogram_len(&metrics, "idempotency_wait_seconds", "telemetry.slow"),
        1
    );
    let waited = capture
        .calls("telemetry.slow")
        .into_iter()
        .find(|span| span.fields["outcome"] == "waited")
        .unwrap();
    assert!(waited.fields["waited_ms"].parse::<f64>().unwrap() > 0.0);
}

#[test]
fn claims_in_flight_go_up_and_down() {
    static GAUGE_STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    #[idempotent(name = "telemetry.gauge", store = &*GAUGE_STORE)]
    async fn held(n: u64) -> Result<u64, AppError> {
        Ok(n)
    }
    let (_, metrics) = observed(|| async {
        held(1).await.unwrap();
        held(2).await.unwrap();
    });
    let gauge = metrics.0.iter().find_map(|(key, _, _, value)| match value {
        DebugValue::Gauge(v) if key.key().name() == "idempotency_claims_in_flight" => {
            Some(v.into_inner())
        }
        _ => None,
    });
    assert_eq!(gauge, Some(0.0), "two claims taken and given back");
}

#[test]
fn a_store_that_fails_is_an_event_a_count_and_an_outcome() {
    let server = support::RedisServer::start();
    let url = server.url();
    let (capture, metrics) = observed(|| async move {
        let store = support::connect(&url, "telemetry", Duration::from_millis(300)).await;
        drop(server); // the store is now unreachable
        #[idempotent(name = "telemetry.down", store = store, key = id, skip(store))]
        async fn down(store: &idempotency::RedisStore, id: String) -> Result<u64, AppError> {
            let _ = store;
            Ok(1)
        }
        assert!(down(&store, "d-1".into()).await.is_err());
    });
    assert_eq!(
        capture.outcomes("telemetry.down"),
        ["store_error"],
        "{}",
        capture.everything()
    );
    let labels = [("namespace", "telemetry.down"), ("step", "begin")];
    assert_eq!(
        counter(&metrics, "idempotency_store_failures_total", &labels),
        1
    );
    let events = capture.events("telemetry.down");
    assert!(
        events
            .iter()
            .any(|e| e.get("step").map(String::as_str) == Some("begin")),
        "{events:?}"
    );
}
