//! A failed attempt hands the key to one waiter, not to all of them: duplicates of a body
//! that keeps failing take turns instead of stampeding after every release, and a waiter
//! woken for its turn but cancelled passes the turn on.

mod support;

use idempotency::{idempotent, MemoryStore};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};
use support::{AppError, Gate, Probe};
use tokio::sync::Notify;

const CALLS: usize = 100;
/// Long enough that a caller stranded until a lease lapses would blow `BOUND`.
const LEASE: Duration = Duration::from_secs(30);
const BOUND: Duration = Duration::from_secs(5);

fn probe() -> Probe {
    Probe::new(MemoryStore::builder().lease(LEASE).build())
}

/// Starts `CALLS` duplicates of `call` at once, each on a task of its own.
async fn duplicates<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    call: impl Fn() -> F,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let start = Arc::new(tokio::sync::Barrier::new(CALLS));
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let (start, call) = (Arc::clone(&start), call());
            tokio::spawn(async move {
                start.wait().await;
                call.await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await);
    }
    results
}

/// Issue: a release woke every waiter, and all of them raced to claim: 100 duplicates of
/// a failing body cost ~n²/2 = 5,000 `begin`s. Each release now wakes one waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_of_a_failing_body_take_turns_instead_of_stampeding() {
    static STORE: LazyLock<Probe> = LazyLock::new(probe);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE)]
    async fn charge(customer: u64) -> Result<u64, AppError> {
        let _ = customer;
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            // Every other caller waits on the first attempt, as in a burst of retries.
            STORE.until_busy(CALLS - 1).await;
        }
        // A body that awaits (a request upstream), so that others look while it runs.
        tokio::task::yield_now().await;
        Err(AppError::Body("card declined"))
    }

    let started = Instant::now();
    let results = duplicates(|| charge(7)).await;
    let elapsed = started.elapsed();

    for result in results {
        assert!(matches!(
            result.unwrap(),
            Err(AppError::Body("card declined"))
        ));
    }
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        CALLS,
        "every caller runs the body once"
    );
    assert_eq!(STORE.claims(), CALLS);
    assert_eq!(STORE.releases(), CALLS);
    assert!(elapsed < BOUND, "a caller waited for a lease: {elapsed:?}");
    // One look to find the key in progress, one after the wake-up that claims it, and a
    // few more for waiters that a caller arriving between a release and the woken waiter's
    // claim sends back to wait.
    let begins = STORE.begins();
    println!("begins for {CALLS} failing duplicates: {begins}");
    assert!(begins <= 3 * CALLS, "{begins} begins for {CALLS} callers");
    assert_eq!((STORE.inner.in_flight(), STORE.inner.len()), (0, 0));
}

/// The same, with a body that panics: the turn passes on through `abandon`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_of_a_panicking_body_take_turns_instead_of_stampeding() {
    static STORE: LazyLock<Probe> = LazyLock::new(probe);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE)]
    async fn explode(customer: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            STORE.until_busy(CALLS - 1).await;
        }
        tokio::task::yield_now().await;
        panic!("the body panicked for customer {customer}");
    }

    let started = Instant::now();
    let results = duplicates(|| explode(7)).await;
    let elapsed = started.elapsed();

    assert!(results
        .iter()
        .all(|r| r.as_ref().is_err_and(|e| e.is_panic())));
    assert_eq!(RUNS.load(Ordering::SeqCst), CALLS);
    assert_eq!(STORE.releases(), CALLS, "every attempt was abandoned");
    assert!(elapsed < BOUND, "a caller waited for a lease: {elapsed:?}");
    let begins = STORE.begins();
    println!("begins for {CALLS} panicking duplicates: {begins}");
    assert!(begins <= 3 * CALLS, "{begins} begins for {CALLS} callers");
    assert_eq!((STORE.inner.in_flight(), STORE.inner.len()), (0, 0));
}

/// A waker that records that it was woken, and signals it.
#[derive(Default)]
struct Woken {
    woken: AtomicBool,
    notify: Notify,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// A release wakes the longest waiting caller; if that caller is cancelled before it
/// claims, dropping it must pass the turn to the next one, or the rest would wait out the
/// holder's 30 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_cancelled_after_its_wake_up_passes_the_turn_on() {
    static STORE: LazyLock<Probe> = LazyLock::new(probe);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE)]
    async fn charge(customer: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            STARTED.open();
            GATE.wait().await;
            return Err(AppError::Body("card declined"));
        }
        Ok(customer)
    }

    let holder = tokio::spawn(charge(3));
    STARTED.wait().await;
    // The first waiter, polled by hand with a waker that tells when its turn comes.
    let woken = Arc::new(Woken::default());
    let mut first: Pin<Box<_>> = Box::pin(charge(3));
    let waker = Waker::from(Arc::clone(&woken));
    assert!(first
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    STORE.until_busy(1).await;
    let second = tokio::spawn(charge(3));
    STORE.until_busy(2).await;

    let started = Instant::now();
    let turn = woken.notify.notified();
    GATE.open();
    assert!(matches!(
        holder.await.unwrap(),
        Err(AppError::Body("card declined"))
    ));
    turn.await;
    assert!(
        woken.woken.load(Ordering::SeqCst),
        "the first waiter got the turn"
    );
    // Cancelled between its wake-up and its claim.
    drop(first);

    let second = tokio::time::timeout(BOUND, second)
        .await
        .expect("the second waiter was stranded until the lease");
    assert_eq!(second.unwrap().unwrap(), 3);
    assert!(started.elapsed() < BOUND);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    assert_eq!((STORE.claims(), STORE.busy()), (2, 2));
    assert_eq!(STORE.inner.in_flight(), 0);
}
