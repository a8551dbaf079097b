//! The embedded store passes the conformance suite every store must pass, through the
//! `Store` trait alone, directly and behind the process-wide default store's dispatch.

use idempotency::store::conformance::{self, Settings};
use idempotency::MemoryStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::check_all(&MemoryStore::new(), &Settings::default()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn memory_store_conforms_on_a_current_thread_runtime() {
    conformance::check_all(&MemoryStore::new(), &Settings::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_pointers_to_a_store_conform() {
    let store = Arc::new(MemoryStore::new());
    conformance::check_all(&store, &Settings::default()).await;
    conformance::check_all(&Box::new(MemoryStore::new()), &Settings::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_store_conforms() {
    conformance::check_all(idempotency::default_store(), &Settings::default()).await;
}

/// On Tokio's clock, paused: the suite's leases and TTLs lapse in virtual time, at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn memory_store_conforms_on_a_paused_clock() {
    let store = MemoryStore::builder().tokio_clock().build();
    let started = std::time::Instant::now();
    conformance::check_all(&store, &Settings::default()).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "the suite waited for real time: {:?}",
        started.elapsed()
    );
}
