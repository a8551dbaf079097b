//! Bytes per stored record at 200,000 records, for each contender that stores results,
//! counted by a global allocator (live heap bytes after minus before).
//!
//! ```text
//! cargo bench --bench memory
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use support::contenders;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const RECORDS: u64 = 200_000;

async fn bytes_per_record<F, Fut>(call: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future,
{
    // The first call builds the contender's cache itself; count the records only.
    drop(call(u64::MAX).await);
    let before = LIVE.load(Ordering::SeqCst);
    for customer in 0..RECORDS {
        drop(call(customer).await);
    }
    (LIVE.load(Ordering::SeqCst) - before) as f64 / RECORDS as f64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hand = bytes_per_record(|c| contenders::hand_map(c, "B-7".into(), 3)).await;
        let cached = bytes_per_record(|c| contenders::with_cached(c, "B-7".into(), 3)).await;
        let moka = bytes_per_record(|c| contenders::with_moka(c, "B-7".into(), 3)).await;
        let ours = bytes_per_record(|c| contenders::with_idempotency(c, "B-7".into(), 3)).await;
        println!("\n## Bytes per record at {RECORDS} records\n");
        println!("| contender | bytes/record |\n|---|---:|");
        for (name, bytes) in [
            ("hand_map", hand),
            ("cached", cached),
            ("moka", moka),
            ("idempotency", ours),
        ] {
            println!("| {name} | {bytes:.0} |");
        }
        println!("\n| ratio | value | target |\n|---|---:|---:|");
        println!("| idempotency / cached | {:.2}× | ≤ 1× |", ours / cached);
    });
}
