//! A `RedisStore` installed as the process-wide default serves every runtime, including
//! after the runtime that created it has shut down. (A test binary of its own: the
//! default store is process-wide.)

mod support;

use idempotency::{idempotent, set_default_store, RedisStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use support::AppError;
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

    let values = support::on_many_runtimes(4, 25, || async { ping(21).await.unwrap() });
    assert_eq!(values, vec![42; 4 * 25]);
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
