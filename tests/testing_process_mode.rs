//! `testing::set_process_mode`: a mode for every task of the process, such as the tasks of
//! a server a test spawned. Alone in its binary, since it changes the whole process.

mod support;

use idempotency::idempotent;
use idempotency::testing::{self, Mode};
use std::sync::atomic::{AtomicUsize, Ordering};
use support::AppError;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(name = "testing.process", key = id)]
async fn ship(id: String) -> Result<usize, AppError> {
    Ok(RUNS.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_mode_reaches_spawned_tasks_until_it_is_cleared() {
    testing::set_process_mode(Some(Mode::Off));
    for _ in 0..3 {
        tokio::spawn(ship("p-1".into())).await.unwrap().unwrap();
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);
    testing::set_process_mode(None);
    for _ in 0..3 {
        tokio::spawn(ship("p-1".into())).await.unwrap().unwrap();
    }
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        4,
        "deduplicated again: one more run"
    );
}
