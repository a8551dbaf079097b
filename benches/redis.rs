//! A replay through `RedisStore` against a raw `GET` of the same bytes through the same
//! client (`redis`'s multiplexed connection), on a `redis-server` this benchmark starts on a
//! free loopback port. The store keeps its connection's driver on an I/O thread of its
//! own (so that it serves every runtime and outlives the one that created it), so the raw
//! `GET` is timed both ways: with the driver on the calling thread, and on another thread
//! as the store's is.
//!
//! ```text
//! cargo bench --bench redis --features redis
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use support::contenders;

use contenders::{AppError, Order};
use criterion::{BenchmarkId, Criterion};
use idempotency::{idempotent, RedisStore};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static STORE: OnceLock<RedisStore> = OnceLock::new();

#[idempotent(ttl = "24h", name = "bench.redis", store = STORE.get().expect("connected first"))]
async fn create_order(customer: u64, sku: String, qty: u32) -> Result<Order, AppError> {
    Ok(Order {
        id: customer,
        customer,
        sku,
        qty,
    })
}

fn main() {
    let server = support::RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut raw, record_key) = runtime.block_on(async {
        let store = RedisStore::builder(server.url())
            .prefix("bench")
            .connect()
            .await
            .unwrap();
        STORE.set(store).unwrap();
        create_order(42, "B-7".into(), 3).await.unwrap();
        // The replayed record's own bytes, under a plain key, for the raw GET.
        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg("bench:*")
            .query_async(&mut raw)
            .await
            .unwrap();
        let record: Vec<u8> = redis::cmd("GET")
            .arg(&keys[0])
            .query_async(&mut raw)
            .await
            .unwrap();
        let () = redis::cmd("SET")
            .arg("bench-raw")
            .arg(&record)
            .query_async(&mut raw)
            .await
            .unwrap();
        (raw, "bench-raw")
    });
    // The same client with its driver on another thread, as the store's.
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = server.url();
    let mut raw_io = runtime
        .block_on(io.spawn(async move {
            redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }))
        .unwrap();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("redis_replay");
    for (id, conn) in [("raw_get", &mut raw), ("raw_get_io_thread", &mut raw_io)] {
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let bytes: Vec<u8> = redis::cmd("GET")
                            .arg(record_key)
                            .query_async(conn)
                            .await
                            .unwrap();
                        black_box(bytes);
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.bench_function(BenchmarkId::from_parameter("idempotency"), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(create_order(42, "B-7".into(), 3).await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    criterion.final_summary();
    let median = |id: &str| contenders::median("redis_replay", id);
    println!("\n| Redis replay | median µs | idempotency / this |\n|---|---:|---:|");
    let ours = median("idempotency");
    for id in ["raw_get", "raw_get_io_thread", "idempotency"] {
        let value = median(id);
        let ratio = match (ours, value) {
            (Some(a), Some(b)) => format!("{:.2}×", a / b),
            _ => "—".into(),
        };
        println!(
            "| {id} | {} | {ratio} |",
            value.map_or_else(|| "—".into(), |v| format!("{:.1}", v / 1e3))
        );
    }
    drop(io);
    drop(server);
}
