//! The generated future is `Send`, and the default store serves any number of runtimes.

mod common;

use common::AppError;
use idempotency::idempotent;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: usize,
    amount: u64,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent]
async fn pay(customer: u64, amount: u64) -> Result<Receipt, AppError> {
    let _ = customer;
    let id = RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    Ok(Receipt { id, amount })
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn the_generated_future_is_send_when_the_body_is() {
    struct Service;
    impl Service {
        #[idempotent(skip(self))]
        async fn handle(&self, name: &str) -> Result<String, AppError> {
            tokio::task::yield_now().await;
            Ok(name.to_owned())
        }
    }
    assert_send(&pay(1, 2));
    assert_send(&Service.handle("x"));
}

#[test]
fn the_default_store_serves_many_runtimes_at_once() {
    const THREADS: usize = 6;
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
                    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(pay(77, 1_000))).collect();
                    let mut receipts = Vec::new();
                    for call in calls {
                        receipts.push(call.await.unwrap().unwrap());
                    }
                    receipts
                })
            })
        })
        .collect();
    let receipts: Vec<Receipt> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(receipts.len(), THREADS * 50);
    assert!(receipts.iter().all(|r| *r == receipts[0]));
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}
