//! Sequential and parallel duplicates, failures, panics, cancellation and `wait`: the
//! seed's guarantees in one process.

mod support;

use idempotency::{idempotent, Error, MemoryStore, Outcome};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use support::{AppError, Gate, Plain, Probe};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: usize,
    customer: u64,
    sku: String,
    qty: u32,
}

#[tokio::test]
async fn sequential_duplicates_run_body_once_and_replay_an_equal_value() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(ttl = "1h")]
    async fn create_order(
        customer: u64,
        sku: String,
        qty: u32,
    ) -> Result<Outcome<Order>, AppError> {
        let id = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Outcome::fresh(Order {
            id,
            customer,
            sku,
            qty,
        }))
    }

    let first = create_order(1, "book".into(), 2).await.unwrap();
    assert!(!first.is_replayed());
    for _ in 0..4 {
        let again = create_order(1, "book".into(), 2).await.unwrap();
        assert!(again.is_replayed());
        assert_eq!(*again, *first);
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);

    // Other arguments are another operation.
    let other = create_order(1, "book".into(), 3).await.unwrap();
    assert!(!other.is_replayed());
    assert_eq!(other.id, 2);
}

/// The parallel-duplicate tests, on each path a memory store can be called by: the
/// in-process fast path (`Probe` keeps it), and the path of a store without it (`Plain`:
/// stable keys, a decode on every replay).
macro_rules! parallel_duplicates {
    ($($path:ident: $inner:ty),* $(,)?) => {$(
    mod $path {
        use super::*;

        type Inner = $inner;

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn parallel_duplicates_wait_on_the_keyed_mutex_and_run_body_once() {
            const CALLS: usize = 500;
            static STORE: LazyLock<Probe<Inner>> = LazyLock::new(Probe::default);
            static RUNS: AtomicUsize = AtomicUsize::new(0);
            #[idempotent(store = &*STORE)]
            async fn create_order(
                customer: u64,
                sku: String,
                qty: u32,
            ) -> Result<Outcome<Order>, AppError> {
                let id = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
                // Hold the key until every other caller has found it in progress.
                STORE.until_busy(CALLS - 1).await;
                Ok(Outcome::fresh(Order {
                    id,
                    customer,
                    sku,
                    qty,
                }))
            }

            let start = Arc::new(tokio::sync::Barrier::new(CALLS));
            let calls: Vec<_> = (0..CALLS)
                .map(|_| {
                    let start = Arc::clone(&start);
                    tokio::spawn(async move {
                        start.wait().await;
                        create_order(9, "lamp".into(), 1).await.unwrap()
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for call in calls {
                outcomes.push(call.await.unwrap());
            }

            assert_eq!(RUNS.load(Ordering::SeqCst), 1);
            assert_eq!(outcomes.iter().filter(|o| !o.is_replayed()).count(), 1);
            assert!(outcomes.iter().all(|o| **o == *outcomes[0]));
            // No spinning: one claim, one "in progress" answer per waiter, then one look after the
            // wake-up that finds the result.
            assert_eq!(STORE.claims(), 1);
            assert_eq!(STORE.busy(), CALLS - 1);
            assert_eq!(STORE.begins(), 1 + 2 * (CALLS - 1));
            assert_eq!(STORE.inner.in_flight(), 0);
            assert_eq!(STORE.inner.len(), 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn a_failed_attempt_stores_nothing_and_the_next_waiter_runs() {
            const CALLS: usize = 20;
            static STORE: LazyLock<Probe<Inner>> = LazyLock::new(Probe::default);
            static RUNS: AtomicUsize = AtomicUsize::new(0);
            #[idempotent(store = &*STORE)]
            async fn charge(customer: u64, amount: u64) -> Result<String, AppError> {
                let attempt = RUNS.fetch_add(1, Ordering::SeqCst);
                if attempt == 0 {
                    STORE.until_busy(CALLS - 1).await;
                    return Err(AppError::Body("card declined"));
                }
                Ok(format!("charged {customer} {amount} on attempt {attempt}"))
            }

            let calls: Vec<_> = (0..CALLS).map(|_| tokio::spawn(charge(5, 100))).collect();
            let mut failures = 0;
            let mut values = Vec::new();
            for call in calls {
                match call.await.unwrap() {
                    Err(AppError::Body("card declined")) => failures += 1,
                    Ok(value) => values.push(value),
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(failures, 1);
            assert_eq!(values.len(), CALLS - 1);
            assert!(values.iter().all(|v| v == "charged 5 100 on attempt 1"));
            assert_eq!(RUNS.load(Ordering::SeqCst), 2);
            assert_eq!(STORE.releases(), 1);
            assert_eq!(STORE.completes(), 1);
        }
    }
    )*};
}

parallel_duplicates! {
    fast_path: MemoryStore,
    plain_path: Plain,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distinct_keys_never_wait_for_each_other() {
    const CALLS: usize = 100;
    static ALL_INSIDE: LazyLock<tokio::sync::Barrier> =
        LazyLock::new(|| tokio::sync::Barrier::new(CALLS));
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent]
    async fn slow(customer: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        // Every body must be running at once for any of them to finish: if distinct keys
        // shared a lock, this would never complete.
        ALL_INSIDE.wait().await;
        Ok(customer * 2)
    }

    let calls: Vec<_> = (0..CALLS as u64).map(|c| tokio::spawn(slow(c))).collect();
    let all = async {
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.unwrap().unwrap());
        }
        results
    };
    let results = tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("distinct keys ran one after another");
    assert_eq!(
        results,
        (0..CALLS as u64).map(|c| c * 2).collect::<Vec<_>>()
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), CALLS);
}

#[tokio::test]
async fn after_a_failure_the_next_caller_runs_at_once() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(wait = "0s")]
    async fn flaky(id: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(AppError::Body("timeout upstream"));
        }
        Ok(id)
    }
    assert!(matches!(
        flaky(3).await,
        Err(AppError::Body("timeout upstream"))
    ));
    // With `wait = "0s"` any leftover claim would be an immediate `InProgress`.
    assert_eq!(flaky(3).await.unwrap(), 3);
    assert_eq!(flaky(3).await.unwrap(), 3);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_attempt_releases_the_key_at_once() {
    static STORE: LazyLock<Probe> = LazyLock::new(Probe::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE, wait = "0s")]
    async fn explode_once(id: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("the body panicked");
        }
        Ok(id + 1)
    }

    let panicked = tokio::spawn(explode_once(1)).await.unwrap_err();
    assert!(panicked.is_panic());
    assert_eq!(STORE.inner.in_flight(), 0);
    assert_eq!(explode_once(1).await.unwrap(), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    // The store's locks are not poisoned: other keys and replays work.
    assert_eq!(explode_once(1).await.unwrap(), 2);
    assert_eq!(explode_once(2).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_attempt_releases_the_key_at_once() {
    static STORE: LazyLock<Probe> = LazyLock::new(Probe::default);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE, wait = "0s")]
    async fn hang_once(id: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            STARTED.open();
            std::future::pending::<()>().await;
        }
        Ok(id)
    }

    let first = tokio::spawn(hang_once(8));
    STARTED.wait().await;
    assert_eq!(STORE.inner.in_flight(), 1);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(STORE.inner.in_flight(), 0);
    assert_eq!(hang_once(8).await.unwrap(), 8);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dropped_call_releases_the_key_at_once() {
    static STORE: LazyLock<Probe> = LazyLock::new(Probe::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE, wait = "0s")]
    async fn hang_once(id: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            std::future::pending::<()>().await;
        }
        Ok(id)
    }

    let mut call = Box::pin(hang_once(9));
    assert!(poll_once(call.as_mut()).await.is_none());
    assert_eq!(STORE.inner.in_flight(), 1);
    drop(call);
    assert_eq!(STORE.inner.in_flight(), 0);
    assert_eq!(hang_once(9).await.unwrap(), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

/// Polls a future once: `Some` if it finished.
async fn poll_once<F: std::future::Future + ?Sized>(
    future: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    let mut future = Some(future);
    std::future::poll_fn(|cx| {
        let polled = future.take().expect("polled once").poll(cx);
        std::task::Poll::Ready(match polled {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_waits_up_to_wait_then_gets_in_progress() {
    static STORE: LazyLock<Probe> = LazyLock::new(Probe::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(wait = "250ms", store = &*STORE)]
    async fn slow(id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        STARTED.open();
        GATE.wait().await;
        Ok(id)
    }

    let first = tokio::spawn(slow(1));
    STARTED.wait().await;
    let before = tokio::time::Instant::now();
    match slow(1).await.unwrap_err().idempotency() {
        Error::InProgress { waited, namespace } => {
            assert_eq!(waited, Duration::from_millis(250));
            assert!(namespace.ends_with("slow"), "{namespace}");
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
    assert_eq!(before.elapsed(), Duration::from_millis(250));

    // Within its wait, a duplicate receives the result.
    let second = tokio::spawn(slow(1));
    STORE.until_busy(3).await;
    GATE.open();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(second.await.unwrap().unwrap(), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn wait_zero_fails_fast() {
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(wait = "0s")]
    async fn slow(id: u64) -> Result<u64, AppError> {
        STARTED.open();
        GATE.wait().await;
        Ok(id)
    }

    let first = tokio::spawn(slow(1));
    STARTED.wait().await;
    let before = tokio::time::Instant::now();
    match slow(1).await.unwrap_err().idempotency() {
        Error::InProgress { waited, .. } => assert_eq!(waited, Duration::ZERO),
        other => panic!("expected InProgress, got {other:?}"),
    }
    assert_eq!(before.elapsed(), Duration::ZERO);
    GATE.open();
    assert_eq!(first.await.unwrap().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn wait_from_an_expression_is_read_on_each_call() {
    use std::sync::atomic::AtomicU64;
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    /// The configuration: how long a duplicate waits, in milliseconds.
    static WAIT_MS: AtomicU64 = AtomicU64::new(0);
    static READS: AtomicUsize = AtomicUsize::new(0);
    fn configured_wait() -> Duration {
        READS.fetch_add(1, Ordering::SeqCst);
        Duration::from_millis(WAIT_MS.load(Ordering::SeqCst))
    }
    #[idempotent(wait = configured_wait())]
    async fn slow(id: u64) -> Result<u64, AppError> {
        STARTED.open();
        GATE.wait().await;
        Ok(id)
    }

    let first = tokio::spawn(slow(1));
    STARTED.wait().await;
    // Fail-fast by configuration...
    let before = tokio::time::Instant::now();
    match slow(1).await.unwrap_err().idempotency() {
        Error::InProgress { waited, .. } => assert_eq!(waited, Duration::ZERO),
        other => panic!("expected InProgress, got {other:?}"),
    }
    assert_eq!(before.elapsed(), Duration::ZERO);
    // ...then waiting, without a rebuild.
    WAIT_MS.store(250, Ordering::SeqCst);
    match slow(1).await.unwrap_err().idempotency() {
        Error::InProgress { waited, .. } => assert_eq!(waited, Duration::from_millis(250)),
        other => panic!("expected InProgress, got {other:?}"),
    }
    assert_eq!(before.elapsed(), Duration::from_millis(250));
    GATE.open();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(READS.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn empty_looking_results_are_memoized_like_any_other() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    macro_rules! empty_result {
        ($name:ident, $ty:ty, $value:expr) => {
            #[idempotent]
            async fn $name(id: u64) -> Result<$ty, AppError> {
                let _ = id;
                RUNS.fetch_add(1, Ordering::SeqCst);
                Ok($value)
            }
        };
    }
    empty_result!(unit, (), ());
    empty_result!(zero, u64, 0);
    empty_result!(no, bool, false);
    empty_result!(empty_string, String, String::new());
    empty_result!(nothing, Option<u64>, None);
    empty_result!(empty_vec, Vec<u8>, Vec::new());

    for _ in 0..3 {
        unit(1).await.unwrap();
        assert_eq!(zero(1).await.unwrap(), 0);
        assert!(!no(1).await.unwrap());
        assert_eq!(empty_string(1).await.unwrap(), "");
        assert_eq!(nothing(1).await.unwrap(), None);
        assert_eq!(empty_vec(1).await.unwrap(), Vec::<u8>::new());
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_result_that_cannot_be_stored_reaches_its_caller_and_is_never_run_again() {
    use std::collections::HashMap;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    // JSON cannot have tuple map keys: the result encodes only at run time, after the
    // side effect.
    #[idempotent]
    async fn tally(id: u64) -> Result<HashMap<(u8, u8), u64>, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok([((1, 2), id)].into())
    }
    assert_eq!(tally(4).await.unwrap()[&(1, 2)], 4);
    match tally(4).await.unwrap_err().idempotency() {
        Error::Codec(err) => {
            assert!(err.namespace().ends_with("tally"));
            assert!(err.to_string().contains("could not be stored"), "{err}");
        }
        other => panic!("expected Codec, got {other:?}"),
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn results_that_are_not_clone_replay_by_decoding() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    /// Deliberately not `Clone`: every replay decodes the stored bytes.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Receipt {
        id: usize,
        lines: Vec<String>,
    }
    #[idempotent]
    async fn receipt(order: u64) -> Result<Outcome<Receipt>, AppError> {
        let id = RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::fresh(Receipt {
            id,
            lines: vec![format!("order {order}")],
        }))
    }
    let first = receipt(3).await.unwrap();
    assert!(!first.is_replayed());
    for _ in 0..3 {
        let again = receipt(3).await.unwrap();
        assert!(again.is_replayed());
        assert_eq!(*again, *first);
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn clone_results_are_decoded_once_then_cloned() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static DECODES: AtomicUsize = AtomicUsize::new(0);
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    /// Stored as its number; counts its decodes and clones.
    #[derive(Debug, PartialEq, Serialize)]
    #[serde(transparent)]
    struct Ticket(usize);
    impl Clone for Ticket {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Ticket(self.0)
        }
    }
    impl<'de> Deserialize<'de> for Ticket {
        fn deserialize<D: serde::Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
            DECODES.fetch_add(1, Ordering::SeqCst);
            usize::deserialize(decoder).map(Ticket)
        }
    }
    #[idempotent]
    async fn ticket(event: u64) -> Result<Outcome<Ticket>, AppError> {
        Ok(Outcome::fresh(Ticket(
            RUNS.fetch_add(1, Ordering::SeqCst) + event as usize,
        )))
    }

    let first = ticket(7).await.unwrap();
    assert!(!first.is_replayed());
    assert_eq!(DECODES.load(Ordering::SeqCst), 0);
    // The first replay decodes the record, and the store keeps a clone of what it decoded.
    let second = ticket(7).await.unwrap();
    assert!(second.is_replayed());
    assert_eq!(
        (
            DECODES.load(Ordering::SeqCst),
            CLONES.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    // Every later replay clones the kept value: no decode, one clone each.
    for n in 1..=5 {
        let again = ticket(7).await.unwrap();
        assert!(again.is_replayed(), "the kept value is the replayed form");
        assert_eq!(*again, *first);
        assert_eq!(
            (
                DECODES.load(Ordering::SeqCst),
                CLONES.load(Ordering::SeqCst)
            ),
            (1, 1 + n)
        );
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}
