//! `idempotency::testing` (feature `testing`): an application's tests run its annotated
//! functions with idempotency off, or on a throwaway store, without touching them — and
//! tests that run at once keep their own mode.

mod support;

use idempotency::testing::{self, Mode};
use idempotency::{idempotent, MemoryStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use support::{AppError, Probe};

/// The configured stores: the tests check that a mode keeps calls away from them.
static CONFIGURED: LazyLock<Probe<MemoryStore>> = LazyLock::new(|| Probe::new(MemoryStore::new()));
static SENT: AtomicUsize = AtomicUsize::new(0);

#[idempotent(name = "testing.welcome", store = &*CONFIGURED, key = user)]
async fn send_welcome(user: String) -> Result<usize, AppError> {
    Ok(SENT.fetch_add(1, Ordering::SeqCst) + 1)
}

static CHARGE_STORE: LazyLock<Probe<MemoryStore>> =
    LazyLock::new(|| Probe::new(MemoryStore::new()));
static CHARGED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(name = "testing.charge", store = &*CHARGE_STORE, key = card)]
async fn charge(card: String) -> Result<usize, AppError> {
    Ok(CHARGED.fetch_add(1, Ordering::SeqCst) + 1)
}

#[tokio::test]
async fn off_runs_the_body_on_every_call_and_asks_no_store() {
    let before = CONFIGURED.begins();
    let runs = testing::scope(Mode::Off, async {
        let first = send_welcome("off-user".into()).await.unwrap();
        let second = send_welcome("off-user".into()).await.unwrap();
        second - first
    })
    .await;
    assert_eq!(runs, 1, "the second call ran the body again");
    assert_eq!(CONFIGURED.begins(), before);
}

#[tokio::test]
async fn isolated_deduplicates_on_a_store_of_its_own() {
    let before = CHARGE_STORE.begins();
    let (a, b) = testing::scope(Mode::Isolated, async {
        (
            charge("iso-card".into()).await.unwrap(),
            charge("iso-card".into()).await.unwrap(),
        )
    })
    .await;
    assert_eq!(a, b, "the retry replayed");
    // Another scope starts empty: the same call runs again there.
    let c = testing::scope(Mode::Isolated, charge("iso-card".into()))
        .await
        .unwrap();
    assert_eq!(c, a + 1);
    assert_eq!(
        CHARGE_STORE.begins(),
        before,
        "the configured store was never asked"
    );
    // Outside any scope, the configured store is used as before.
    let d = charge("iso-card".into()).await.unwrap();
    let e = charge("iso-card".into()).await.unwrap();
    assert_eq!(d, e);
    assert_eq!(
        CHARGE_STORE.begins(),
        before + 2,
        "a fresh call and its replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_running_at_once_keep_their_own_mode() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "testing.mixed", store = &*CONFIGURED, key = id)]
    async fn mixed(id: String) -> Result<usize, AppError> {
        tokio::task::yield_now().await;
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let off = {
        let barrier = barrier.clone();
        tokio::spawn(testing::scope(Mode::Off, async move {
            barrier.wait().await;
            for _ in 0..10 {
                mixed("mixed-1".into()).await.unwrap();
            }
        }))
    };
    let on = tokio::spawn(async move {
        barrier.wait().await;
        for _ in 0..10 {
            mixed("mixed-2".into()).await.unwrap();
        }
    });
    off.await.unwrap();
    on.await.unwrap();
    assert_eq!(RUNS.load(Ordering::SeqCst), 10 + 1, "ten runs off, one on");
}
