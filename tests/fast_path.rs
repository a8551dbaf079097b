//! The memory store's replay fast path (`InProcess`) is a capability apart from the
//! `Store` steps: a wrapper that keeps it takes the fast path, and a wrapper that does not
//! behaves identically on the plain path, call for call.

mod support;

use idempotency::store::InProcess;
use idempotency::{idempotent, Error, MemoryStore, Outcome};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use support::{AppError, Plain, Probe};

/// A result that counts how often it is decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
struct Ticket(u64);

static DECODES: AtomicUsize = AtomicUsize::new(0);

impl<'de> Deserialize<'de> for Ticket {
    fn deserialize<D: serde::Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::SeqCst);
        u64::deserialize(decoder).map(Ticket)
    }
}

#[tokio::test]
async fn a_wrapper_that_keeps_the_capability_takes_the_fast_path() {
    static STORE: LazyLock<Probe> = LazyLock::new(Probe::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE, name = "fast_path.kept")]
    async fn ticket(n: u64) -> Result<Outcome<Ticket>, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::fresh(Ticket(n)))
    }

    assert!(STORE.memory().is_some());
    assert!(!ticket(1).await.unwrap().is_replayed());
    // The first replay goes through the wrapper's `begin` and decodes, once.
    assert!(ticket(1).await.unwrap().is_replayed());
    assert_eq!((STORE.begins(), DECODES.load(Ordering::SeqCst)), (2, 1));
    // Every later one clones the kept value, without the wrapper or a decode.
    for _ in 0..5 {
        let again = ticket(1).await.unwrap();
        assert!(again.is_replayed());
        assert_eq!(again.into_inner(), Ticket(1));
    }
    assert_eq!((STORE.begins(), DECODES.load(Ordering::SeqCst)), (2, 1));
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

/// Runs the same calls on one store and writes down everything a caller can observe.
macro_rules! transcript {
    ($name:ident, $store:ty, $make:expr, $memory:expr) => {
        async fn $name() -> Vec<String> {
            static STORE: LazyLock<$store> = LazyLock::new($make);
            static RUNS: AtomicUsize = AtomicUsize::new(0);
            #[idempotent(store = &*STORE, name = "fast_path.orders")]
            async fn order(
                customer: u64,
                qty: u32,
            ) -> Result<Outcome<(u64, u32, usize)>, AppError> {
                let run = RUNS.fetch_add(1, Ordering::SeqCst);
                if qty == 0 && run % 2 == 0 {
                    return Err(AppError::Body("declined"));
                }
                Ok(Outcome::fresh((customer, qty, run)))
            }
            #[idempotent(store = &*STORE, key = key, scope(tenant), name = "fast_path.charge")]
            async fn charge(key: &str, tenant: u32, cents: u64) -> Result<Outcome<u64>, AppError> {
                let _ = tenant;
                RUNS.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::fresh(cents))
            }

            let mut seen = Vec::new();
            let mut note = |what: String| seen.push(what);
            for (customer, qty) in [
                (1, 2),
                (1, 2),
                (2, 2),
                (1, 2),
                (3, 0),
                (3, 0),
                (3, 0),
                (2, 2),
            ] {
                note(match order(customer, qty).await {
                    Ok(outcome) => {
                        format!("order {:?} replayed={}", *outcome, outcome.is_replayed())
                    }
                    Err(err) => format!("order failed: {err:?}"),
                });
            }
            for (key, tenant, cents) in [
                ("k-1", 1, 500),
                ("k-1", 1, 500),
                ("k-1", 2, 700),
                ("k-1", 1, 600),
                ("", 1, 1),
            ] {
                note(match charge(key, tenant, cents).await {
                    Ok(outcome) => {
                        format!("charge {} replayed={}", *outcome, outcome.is_replayed())
                    }
                    Err(err) => match err.idempotency() {
                        Error::PayloadMismatch { namespace } => format!("mismatch in {namespace}"),
                        Error::InvalidKey(reason) => format!("invalid key: {reason}"),
                        other => format!("error {other:?}"),
                    },
                });
            }
            note(format!("runs {}", RUNS.load(Ordering::SeqCst)));
            let memory: fn(&$store) -> &MemoryStore = $memory;
            let memory = memory(&*STORE);
            note(format!(
                "records {} in flight {}",
                memory.len(),
                memory.in_flight()
            ));
            seen
        }
    };
}

transcript!(
    on_the_memory_store,
    MemoryStore,
    MemoryStore::new,
    |store| store
);
transcript!(
    through_a_wrapper_that_keeps_it,
    Probe,
    Probe::default,
    |probe| &probe.inner
);
transcript!(
    through_a_wrapper_without_it,
    Plain,
    Plain::default,
    |plain| &plain.0
);

#[tokio::test]
async fn a_wrapper_without_the_capability_behaves_identically() {
    let direct = on_the_memory_store().await;
    assert_eq!(
        direct,
        [
            "order (1, 2, 0) replayed=false",
            "order (1, 2, 0) replayed=true",
            "order (2, 2, 1) replayed=false",
            "order (1, 2, 0) replayed=true",
            "order failed: Body(\"declined\")",
            "order (3, 0, 3) replayed=false",
            "order (3, 0, 3) replayed=true",
            "order (2, 2, 1) replayed=true",
            "charge 500 replayed=false",
            "charge 500 replayed=true",
            "charge 700 replayed=false",
            "mismatch in fast_path.charge",
            "invalid key: the key is empty",
            "runs 6",
            "records 5 in flight 0",
        ]
    );
    assert_eq!(through_a_wrapper_that_keeps_it().await, direct);
    assert_eq!(through_a_wrapper_without_it().await, direct);
}

/// The user's `Clone` of a kept value runs after the store's lock is released: a `Clone`
/// that itself locks every shard of the store (`len`) would otherwise never return.
#[test]
fn the_users_clone_runs_outside_the_stores_locks() {
    static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Receipt(u64);
    impl Clone for Receipt {
        fn clone(&self) -> Self {
            // Locks each of the store's shards in turn, the kept value's among them.
            let _ = STORE.len();
            CLONES.fetch_add(1, Ordering::SeqCst);
            Receipt(self.0)
        }
    }
    #[idempotent(store = &*STORE)]
    async fn receipt(n: u64) -> Result<Receipt, AppError> {
        Ok(Receipt(n))
    }

    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let replays: Vec<Receipt> = runtime.block_on(async {
            let mut replays = Vec::new();
            for _ in 0..4 {
                replays.push(receipt(5).await.unwrap());
            }
            replays
        });
        done.send(replays).unwrap();
    });
    let replays = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("a clone under the store's lock deadlocked");
    assert_eq!(replays, vec![Receipt(5); 4]);
    // The first replay kept a clone of what it decoded; the next two cloned that.
    assert!(CLONES.load(Ordering::SeqCst) >= 3);
}
