//! The memory store reclaims expired records in proportion to traffic: any call on a shard
//! (a hit, a replay of a kept value, a new key) sweeps it once its sweep interval has
//! passed, without a background task. The stores here read Tokio's clock, which these
//! tests pause and advance.

mod support;

use idempotency::store::{Begin, Request};
use idempotency::{idempotent, MemoryStore, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{AppError, Probe};

/// Records that outlive the test; enough keys that every shard holds some.
const LIVE: u64 = 1_024;
const EXPIRING: u64 = 10_000;
const TTL: Duration = Duration::from_millis(500);
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
fn store() -> MemoryStore {
    MemoryStore::builder()
        .sweep_interval(SWEEP_INTERVAL)
        .tokio_clock()
        .build()
}

fn request(label: &str, i: u64) -> Request {
    support::request("memory_reclaim", label, i)
}

async fn write(store: &MemoryStore, request: &Request, ttl: Duration) {
    support::write(store, request, b"receipt", ttl).await;
}

/// `LIVE` records, for an hour.
async fn write_live(store: &MemoryStore, label: &str) {
    for i in 0..LIVE {
        write(store, &request(label, i), Duration::from_secs(3600)).await;
    }
}

/// `EXPIRING` records for `TTL`; returns once they have expired and every shard's sweep
/// interval has passed, with nothing reclaimed yet.
async fn expire_a_burst(store: &MemoryStore) {
    let before = store.len() as u64;
    for i in 0..EXPIRING {
        write(store, &request("burst", i), TTL).await;
    }
    assert_eq!(store.len() as u64, before + EXPIRING);
    tokio::time::advance(TTL.max(SWEEP_INTERVAL)).await;
    assert_eq!(
        store.len() as u64,
        before + EXPIRING,
        "without traffic nothing is swept: there is no background task"
    );
}

/// Issue: with no new keys, expired records stayed for ever (`len` 11,024 here).
#[tokio::test(start_paused = true)]
async fn expired_records_leave_once_hits_touch_their_shards() {
    let store = store();
    write_live(&store, "live").await;
    expire_a_burst(&store).await;
    for i in 0..LIVE {
        let hit = store.begin(&request("live", i)).await.unwrap();
        assert!(matches!(hit, Begin::Completed(_)), "{hit:?}");
    }
    assert_eq!(store.len() as u64, LIVE, "only the live records are left");
}

/// Replays of a kept decoded value, the fast path that never calls `begin`, sweep too.
#[tokio::test(start_paused = true)]
async fn expired_records_leave_once_replays_of_kept_values_touch_their_shards() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(ttl = "1h", store = probe, skip(probe))]
    async fn receipt(probe: &Probe, i: u64) -> Result<u64, AppError> {
        let _ = probe;
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(i)
    }

    let probe = Probe::new(store());
    let store = &probe.inner;
    // A fresh call, then a replay that decodes the record and keeps the decoded value.
    for _ in 0..2 {
        for i in 0..LIVE {
            assert_eq!(receipt(&probe, i).await.unwrap(), i);
        }
    }
    assert_eq!(probe.begins() as u64, 2 * LIVE);
    expire_a_burst(store).await;
    let begins = probe.begins();
    for i in 0..LIVE {
        assert_eq!(
            receipt(&probe, i).await.unwrap(),
            i,
            "record {i} is replayed"
        );
    }
    assert_eq!(probe.begins(), begins, "every replay cloned a kept value");
    assert_eq!(
        RUNS.load(Ordering::SeqCst) as u64,
        LIVE,
        "every call but the first replayed"
    );
    assert_eq!(store.len() as u64, LIVE, "only the live records are left");
}

/// Issue: a shard was swept only once it had doubled since its last sweep, so after a
/// burst, new keys had to double the store before anything was reclaimed (`len` 11,024
/// here, after 1,024 new keys).
#[tokio::test(start_paused = true)]
async fn expired_records_leave_as_new_keys_arrive() {
    let store = store();
    write_live(&store, "old").await;
    expire_a_burst(&store).await;
    write_live(&store, "new").await;
    assert_eq!(
        store.len() as u64,
        2 * LIVE,
        "the old and new live records are left"
    );
}
