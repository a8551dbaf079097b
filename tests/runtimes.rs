//! The generated future is `Send`, and the default store serves any number of runtimes.

mod support;

use idempotency::idempotent;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use support::AppError;

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
    let receipts = support::on_many_runtimes(6, 50, || async { pay(77, 1_000).await.unwrap() });
    assert_eq!(receipts.len(), 6 * 50);
    assert!(receipts.iter().all(|r| *r == receipts[0]));
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}
