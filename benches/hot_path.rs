//! The hot path, side by side with what a user would pick instead: hits, misses, misses
//! into a store that already holds 10⁶ records, parallel duplicates, hit latency as the
//! store grows, hits on distinct keys across threads, and the key derivation of a call.
//! Ends with a table of medians and ratios (the README's).
//!
//! ```text
//! cargo bench --bench hot_path
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use support::contenders;

use contenders::{slow, AppError, Order, EXECUTIONS};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode};
use idempotency::key::NamespaceKey;
use idempotency::{KeyHasher, MemoryStore};
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::{Builder, Runtime};

const CONTENDERS: [&str; 5] = ["plain", "hand_map", "cached", "moka", "idempotency"];

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi_thread(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn ours(result: Result<Order, AppError>) -> Order {
    result.expect("the benchmark workload cannot fail")
}

/// Times `iters` sequential awaits of `call(i)` on `runtime`.
fn bench_calls<F, Fut, T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    runtime: &Runtime,
    call: F,
) where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = T>,
{
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(call(i).await);
                }
                start.elapsed()
            })
        });
    });
}

fn hits(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("hit");
    runtime.block_on(async {
        contenders::hand_map(42, "B-7".into(), 3).await;
        contenders::with_cached(42, "B-7".into(), 3).await;
        contenders::with_moka(42, "B-7".into(), 3).await;
        ours(contenders::with_idempotency(42, "B-7".into(), 3).await);
    });
    bench_calls(
        &mut group,
        BenchmarkId::from_parameter("plain"),
        &runtime,
        |_| contenders::plain(42, "B-7".into(), 3),
    );
    bench_calls(
        &mut group,
        BenchmarkId::from_parameter("hand_map"),
        &runtime,
        |_| contenders::hand_map(42, "B-7".into(), 3),
    );
    bench_calls(
        &mut group,
        BenchmarkId::from_parameter("cached"),
        &runtime,
        |_| contenders::with_cached(42, "B-7".into(), 3),
    );
    bench_calls(
        &mut group,
        BenchmarkId::from_parameter("moka"),
        &runtime,
        |_| contenders::with_moka(42, "B-7".into(), 3),
    );
    bench_calls(
        &mut group,
        BenchmarkId::from_parameter("idempotency"),
        &runtime,
        |_| async { ours(contenders::with_idempotency(42, "B-7".into(), 3).await) },
    );
    group.finish();
}

fn misses(c: &mut Criterion) {
    // Every call a customer never seen before, into a cache emptied before each sample:
    // each sample grows every contender's cache from nothing, so growth costs the same.
    static MISS_STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    let runtime = current_thread();
    let mut group = c.benchmark_group("miss");
    let mut bench = |name: &'static str| {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    contenders::clear(name, &MISS_STORE).await;
                    let start = Instant::now();
                    for customer in 0..iters {
                        match name {
                            "plain" => {
                                black_box(contenders::plain(customer, "B-7".into(), 3).await)
                            }
                            "hand_map" => {
                                black_box(contenders::hand_map(customer, "B-7".into(), 3).await)
                            }
                            "cached" => {
                                black_box(contenders::with_cached(customer, "B-7".into(), 3).await)
                            }
                            "moka" => {
                                black_box(contenders::with_moka(customer, "B-7".into(), 3).await)
                            }
                            _ => black_box(ours(
                                contenders::with_idempotency_on(
                                    &MISS_STORE,
                                    customer,
                                    "B-7".into(),
                                    3,
                                )
                                .await,
                            )),
                        };
                    }
                    start.elapsed()
                })
            });
        });
    };
    for name in CONTENDERS {
        bench(name);
    }
    group.finish();
}

/// Records already held when the growing-store misses start, and the misses timed.
const HELD: u64 = 1_000_000;
const GROWTH: u64 = 200_000;

fn misses_into_a_growing_store(c: &mut Criterion) {
    // Each iteration: an untimed fill of an emptied cache with `HELD` completed records,
    // then `GROWTH` distinct calls into it, timed. One iteration per sample.
    let runtime = current_thread();
    let mut group = c.benchmark_group("miss_into_1e6");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    for name in ["hand_map", "cached", "idempotency"] {
        let store = MemoryStore::new();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        contenders::clear(name, &store).await;
                        for customer in 0..HELD {
                            black_box(grow_call(name, &store, customer).await);
                        }
                        let start = Instant::now();
                        for customer in HELD..HELD + GROWTH {
                            black_box(grow_call(name, &store, customer).await);
                        }
                        total += start.elapsed();
                    }
                    total
                })
            });
        });
        runtime.block_on(contenders::clear(name, &store));
    }
    group.finish();
}

async fn grow_call(name: &str, store: &MemoryStore, customer: u64) -> Order {
    match name {
        "hand_map" => contenders::hand_map(customer, "B-7".into(), 3).await,
        "cached" => contenders::with_cached(customer, "B-7".into(), 3).await,
        _ => ours(contenders::with_idempotency_on(store, customer, "B-7".into(), 3).await),
    }
}

/// The key of one call of `create_order(customer, qty, sku)`, as the attribute derives
/// it: process-local (the memory store's) and stable (any other store's).
fn key_derivation(c: &mut Criterion) {
    let mut group = c.benchmark_group("key");
    let namespace =
        NamespaceKey::new("bench.create_order").with_params(&["customer", "qty", "sku"], &[]);
    let sku = String::from("B-7");
    group.bench_function("local", |b| {
        b.iter(|| {
            let mut hasher = KeyHasher::local(black_box(&namespace));
            hasher
                .arg("customer", &black_box(42u64))
                .arg("qty", &black_box(3u32))
                .arg("sku", black_box(&sku));
            hasher.finish()
        });
    });
    group.bench_function("stable", |b| {
        b.iter(|| {
            let mut hasher = KeyHasher::with_namespace(black_box(&namespace));
            hasher
                .arg("customer", &black_box(42u64))
                .arg("qty", &black_box(3u32))
                .arg("sku", black_box(&sku));
            hasher.finish()
        });
    });
    group.finish();
}

/// Executions per batch of parallel duplicates, by contender (the last batch's).
static PARALLEL_EXECUTIONS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

fn parallel_duplicates(c: &mut Criterion) {
    const TASKS: u64 = 1_000;
    static NEXT: AtomicU64 = AtomicU64::new(5_000_000);
    let runtime = multi_thread(2);
    let mut group = c.benchmark_group("parallel_1000x20ms");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    fn batch<F, Fut>(
        group: &mut BenchmarkGroup<'_, WallTime>,
        name: &'static str,
        runtime: &Runtime,
        call: F,
    ) where
        F: Fn(u64) -> Fut + Copy + Send + 'static,
        Fut: Future<Output = Order> + Send + 'static,
    {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let customer = NEXT.fetch_add(1, Ordering::Relaxed);
                    let before = EXECUTIONS.load(Ordering::SeqCst);
                    total += runtime.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> =
                            (0..TASKS).map(|_| tokio::spawn(call(customer))).collect();
                        for task in tasks {
                            black_box(task.await.unwrap());
                        }
                        start.elapsed()
                    });
                    let executions = EXECUTIONS.load(Ordering::SeqCst) - before;
                    let mut record = PARALLEL_EXECUTIONS.lock().unwrap();
                    record.retain(|(n, _)| *n != name);
                    record.push((name, executions));
                }
                total
            });
        });
    }
    batch(&mut group, "plain", &runtime, |c| {
        slow::plain(c, "B-7".into(), 3)
    });
    batch(&mut group, "cached", &runtime, |c| {
        slow::with_cached(c, "B-7".into(), 3)
    });
    batch(&mut group, "moka", &runtime, |c| {
        slow::with_moka(c, "B-7".into(), 3)
    });
    batch(&mut group, "idempotency", &runtime, |c| async move {
        ours(slow::with_idempotency(c, "B-7".into(), 3).await)
    });
    group.finish();
}

const SCALES: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];

fn scale(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("hit_by_live_records");
    for records in SCALES {
        let store = Arc::new(MemoryStore::new());
        runtime.block_on(async {
            for customer in 0..records {
                ours(contenders::with_idempotency_on(&store, customer, "B-7".into(), 3).await);
            }
        });
        assert_eq!(store.len() as u64, records);
        bench_calls(
            &mut group,
            BenchmarkId::new("idempotency", records),
            &runtime,
            |_| {
                let store = Arc::clone(&store);
                async move { ours(contenders::with_idempotency_on(&store, 42, "B-7".into(), 3).await) }
            },
        );
    }
    group.finish();
}

fn distinct_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("distinct_hot_keys");
    for threads in [1usize, 2] {
        let runtime = multi_thread(threads);
        for (name, contender) in [("moka", 0u8), ("idempotency", 1)] {
            let call = move |customer: u64| async move {
                match contender {
                    0 => contenders::with_moka(customer, "B-7".into(), 3).await,
                    _ => ours(contenders::with_idempotency(customer, "B-7".into(), 3).await),
                }
            };
            runtime.block_on(async {
                for t in 0..threads as u64 {
                    call(900 + t).await;
                }
            });
            // One iteration: every thread makes one hit on its own key.
            group.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..threads as u64)
                            .map(|t| {
                                tokio::spawn(async move {
                                    for _ in 0..iters {
                                        black_box(call(900 + t).await);
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        start.elapsed()
                    })
                });
            });
        }
    }
    group.finish();
}

use contenders::median;

fn cell(value: Option<f64>, unit: f64) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{:.0}", v / unit))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn summary() {
    println!("\n## Medians (ns per call unless said), this run\n");
    println!("| contender | hit ns | miss ns | 1,000 parallel duplicates, 20 ms body: wall ms | executions |");
    println!("|---|---:|---:|---:|---:|");
    let executions = PARALLEL_EXECUTIONS.lock().unwrap().clone();
    for name in CONTENDERS {
        let runs = executions
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| "—".into(), |(_, e)| e.to_string());
        println!(
            "| {name} | {} | {} | {} | {runs} |",
            cell(median("hit", name), 1.0),
            cell(median("miss", name), 1.0),
            cell(median("parallel_1000x20ms", name), 1e6),
        );
    }
    println!("\n| misses into a 10⁶-record store, {GROWTH} calls | ns per call |\n|---|---:|");
    for name in ["hand_map", "cached", "idempotency"] {
        println!(
            "| {name} | {} |",
            cell(median("miss_into_1e6", name), GROWTH as f64)
        );
    }
    println!("\n| key of a 3-argument call | ns |\n|---|---:|");
    for kind in ["local", "stable"] {
        println!("| {kind} | {} |", cell(median("key", kind), 1.0));
    }
    let ours = |group| median(group, "idempotency");
    println!("\n| ratio | value | target |\n|---|---:|---:|");
    println!(
        "| hit: idempotency / moka | {} | ≤ 0.5× |",
        ratio(ours("hit"), median("hit", "moka"))
    );
    println!(
        "| hit: idempotency / hand_map | {} | ≤ 2× |",
        ratio(ours("hit"), median("hit", "hand_map"))
    );
    println!(
        "| miss: idempotency / cached | {} | ≤ 1× |",
        ratio(ours("miss"), median("miss", "cached"))
    );
    println!(
        "| miss into 10⁶ records: idempotency / cached | {} | ≤ 1× |",
        ratio(ours("miss_into_1e6"), median("miss_into_1e6", "cached"))
    );
    println!(
        "| miss into 10⁶ records: idempotency / hand_map | {} | — |",
        ratio(ours("miss_into_1e6"), median("miss_into_1e6", "hand_map"))
    );
    println!(
        "| parallel wall: idempotency / moka | {} | ≤ 1× |",
        ratio(
            ours("parallel_1000x20ms"),
            median("parallel_1000x20ms", "moka")
        )
    );
    let scaled: Vec<Option<f64>> = SCALES
        .iter()
        .map(|n| median("hit_by_live_records", &format!("idempotency/{n}")))
        .collect();
    println!(
        "| hit at 10⁶ / at 10³ live records | {} | ≤ 1.5× |",
        ratio(scaled[3], scaled[0])
    );
    for name in ["moka", "idempotency"] {
        let one = median("distinct_hot_keys", &format!("{name}/1"));
        let two = median("distinct_hot_keys", &format!("{name}/2"));
        // An iteration is one hit per thread: throughput is threads / time.
        println!(
            "| {name}: hits/s on distinct keys, 2 threads / 1 thread | {} | > 1× |",
            ratio(one.map(|t| 2.0 * t), two)
        );
    }
    println!("\n| live records | 10³ | 10⁴ | 10⁵ | 10⁶ |\n|---|---:|---:|---:|---:|");
    println!(
        "| idempotency hit ns | {} |",
        scaled
            .iter()
            .map(|s| cell(*s, 1.0))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    hits(&mut criterion);
    misses(&mut criterion);
    misses_into_a_growing_store(&mut criterion);
    parallel_duplicates(&mut criterion);
    scale(&mut criterion);
    distinct_keys(&mut criterion);
    key_derivation(&mut criterion);
    criterion.final_summary();
    summary();
}
