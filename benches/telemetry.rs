//! What telemetry adds to a call, in one run: the same hit and miss with the `tracing` and
//! `metrics` features compiled in, first with no subscriber and no recorder installed
//! (what an application that enables the features but not an exporter pays), then with a
//! real subscriber (a registry that keeps every span) and a Prometheus recorder.
//!
//! ```text
//! cargo bench --bench telemetry --features tracing,metrics
//! ```
//!
//! For the cost of the features themselves, compare `hit/idempotency` of
//! `cargo bench --bench hot_path` with and without `--features tracing,metrics`.

#[path = "../tests/support/mod.rs"]
mod support;

use contenders::{AppError, Order};
use criterion::{BenchmarkId, Criterion};
use idempotency::MemoryStore;
use std::hint::black_box;
use std::sync::LazyLock;
use std::time::Instant;
use support::contenders;
use tracing_subscriber::layer::SubscriberExt as _;

/// A layer that does nothing itself: spans still go through the registry, which records
/// them, as under any real subscriber.
struct Keep;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Keep {}

fn ours(result: Result<Order, AppError>) -> Order {
    result.expect("the benchmark workload cannot fail")
}

static MISS_STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);

fn calls(c: &mut Criterion, setting: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        ours(contenders::with_idempotency(42, "B-7".into(), 3).await);
    });
    let mut group = c.benchmark_group("telemetry");
    group.bench_function(BenchmarkId::new("hit", setting), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(ours(
                        contenders::with_idempotency(42, "B-7".into(), 3).await,
                    ));
                }
                start.elapsed()
            })
        });
    });
    group.bench_function(BenchmarkId::new("miss", setting), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                contenders::clear("idempotency", &MISS_STORE).await;
                let start = Instant::now();
                for customer in 0..iters {
                    let call =
                        contenders::with_idempotency_on(&MISS_STORE, customer, "B-7".into(), 3);
                    black_box(ours(call.await));
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    calls(&mut c, "quiet");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Keep))
        .expect("the bench's only subscriber");
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the bench's only recorder");
    calls(&mut c, "observed");
    c.final_summary();
    let median = |id: &str| contenders::median("telemetry", id).unwrap_or(f64::NAN);
    for call in ["hit", "miss"] {
        let (quiet, observed) = (
            median(&format!("{call}/quiet")),
            median(&format!("{call}/observed")),
        );
        eprintln!(
            "{call}: {quiet:.0} ns quiet, {observed:.0} ns observed ({:.2}×, +{:.0} ns)",
            observed / quiet,
            observed - quiet
        );
    }
}
