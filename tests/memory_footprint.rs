//! The memory store gives memory back: after a burst of records has expired and been
//! reclaimed, the bytes it holds return to near where they were before the burst, not to
//! its peak. A counting global allocator measures every byte this process holds, so the
//! tests of this binary take turns. The stores read Tokio's clock, which the tests pause
//! and advance.

mod support;

use idempotency::store::{Begin, Request};
use idempotency::{MemoryStore, Store};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting the bytes it holds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time: the count is process-wide.
static TURN: Mutex<()> = Mutex::const_new(());

const BURST: u64 = 100_000;
const TTL: Duration = Duration::from_millis(1000);

fn held() -> usize {
    HELD.load(Ordering::SeqCst)
}

fn request(label: &str, i: u64) -> Request {
    support::request("memory_footprint", label, i)
}

async fn write(store: &MemoryStore, request: &Request, ttl: Duration) {
    support::write(store, request, b"a 16-byte value.", ttl).await;
}

/// Writes `BURST` records for `TTL` and waits until they have expired; returns the bytes
/// held at the peak.
async fn expired_burst(store: &MemoryStore) -> usize {
    let before = store.len() as u64;
    for i in 0..BURST {
        write(store, &request("burst", i), TTL).await;
    }
    assert_eq!(store.len() as u64, before + BURST);
    let peak = held();
    tokio::time::advance(TTL).await;
    peak
}

/// Issue: the maps never shrank, so after a purge the store held its peak capacity for
/// ever (here two thirds of the peak).
#[tokio::test(start_paused = true)]
async fn purged_records_give_their_memory_back() {
    let _turn = TURN.lock().await;
    // No sweep by traffic: only the purge reclaims.
    let store = MemoryStore::builder()
        .sweep_interval(Duration::from_secs(3600))
        .tokio_clock()
        .build();
    let baseline = held();
    let peak = expired_burst(&store).await;
    store.purge_expired();
    assert_eq!(store.len(), 0);
    let after = held();
    let (grown, kept) = (peak - baseline, after.saturating_sub(baseline));
    println!("purge: {grown} bytes at the peak, {kept} kept after the purge");
    assert!(
        kept * 10 < grown,
        "{kept} of {grown} bytes kept after the purge"
    );
}

/// The same when traffic, not a purge, sweeps the shards.
#[tokio::test(start_paused = true)]
async fn records_swept_by_traffic_give_their_memory_back() {
    let _turn = TURN.lock().await;
    let store = MemoryStore::builder()
        .sweep_interval(Duration::from_millis(100))
        .tokio_clock()
        .build();
    // Enough live records that every shard has a hit, written before the baseline.
    for i in 0..1_024 {
        write(&store, &request("live", i), Duration::from_secs(3600)).await;
    }
    let baseline = held();
    let peak = expired_burst(&store).await;
    for i in 0..1_024 {
        let hit = store.begin(&request("live", i)).await.unwrap();
        assert!(matches!(hit, Begin::Completed(_)));
    }
    let after = held();
    let (grown, kept) = (peak - baseline, after.saturating_sub(baseline));
    println!("traffic: {grown} bytes at the peak, {kept} kept after the sweeps");
    assert_eq!(store.len(), 1_024);
    assert!(
        kept * 10 < grown,
        "{kept} of {grown} bytes kept after the sweeps"
    );
}
