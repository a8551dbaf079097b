//! A `RedisStore` installed as the process-wide default serves every runtime, including
//! after the runtime that created it has shut down. (A test binary of its own: the
//! default store is process-wide.)

mod common;
mod support;

use common::AppError;
use idempotency::{idempotent, set_default_store, RedisStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use support::RedisServer;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(name = "defaults.ping")]
async fn ping(n: u32) -> Result<u32, AppError> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    Ok(n * 2)
}

#[test]
fn a_default_redis_store_outlives_the_runtime_that_created_it() {
    let server = RedisServer::start();
    {
        let creator = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = creator
            .block_on(
                RedisStore::builder(server.url())
                    .prefix("defaults")
                    .connect(),
            )
            .unwrap();
        set_default_store(store).unwrap();
        assert_eq!(creator.block_on(ping(1)).unwrap(), 2);
    }

    const THREADS: usize = 4;
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let runtime = if i % 2 == 0 {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                }
                .unwrap();
                start.wait();
                runtime.block_on(async {
                    let calls: Vec<_> = (0..25).map(|_| tokio::spawn(ping(21))).collect();
                    let mut values = Vec::new();
                    for call in calls {
                        values.push(call.await.unwrap().unwrap());
                    }
                    values
                })
            })
        })
        .collect();
    let values: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(values, vec![42; THREADS * 25]);
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        2,
        "one run for ping(1), one for ping(21)"
    );
    // A replay from yet another runtime, the first ones all gone.
    let last = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(last.block_on(ping(1)).unwrap(), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}
