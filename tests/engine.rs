//! The byte-level engine, driven directly as an HTTP layer would: namespaces built at run
//! time, bodies that yield bytes or a failure to hand back, and the whole protocol around
//! them (replay, wait, claim, renew, complete, release, abandon).

use idempotency::engine::{self, Call, Encode, Finished, Produced};
use idempotency::store::{Fingerprint, Namespace, Request};
use idempotency::{Error, KeyHasher, MemoryStore};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The call of `route` with the client's `key` and a payload `fingerprint` byte.
fn call(route: &str, key: &str, fingerprint: u8) -> Call {
    let namespace = Namespace::from(format!("POST {route}"));
    let mut hasher = KeyHasher::new(&namespace);
    hasher.client_key(key).unwrap();
    Call::new(Request {
        namespace,
        key: hasher.finish().unwrap(),
        fingerprint: Fingerprint::from_bytes([fingerprint; 16]),
        lease: None,
    })
}

type Run = Result<Finished<Vec<u8>, &'static str>, Error>;

fn bytes(run: &Run) -> (&'static str, Vec<u8>) {
    match run {
        Ok(Finished::Fresh(bytes)) => ("fresh", bytes.clone()),
        Ok(Finished::Replayed(bytes)) => ("replayed", bytes.to_vec()),
        other => panic!("expected a result, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_duplicates_of_a_runtime_route_run_the_body_once() {
    const CALLS: usize = 200;
    let store = Arc::new(MemoryStore::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(CALLS));
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let (store, runs, start) = (store.clone(), runs.clone(), start.clone());
            tokio::spawn(async move {
                let call = call("/orders", "8e03978e", 1);
                start.wait().await;
                engine::run(&*store, &call, async {
                    let run = runs.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Produced::<_, &str>::Store(format!("order {run}").into_bytes())
                })
                .await
            })
        })
        .collect();
    let mut fresh = 0;
    for call in calls {
        let run = call.await.unwrap();
        let (how, bytes) = bytes(&run);
        assert_eq!(bytes, b"order 0");
        fresh += usize::from(how == "fresh");
    }
    assert_eq!((runs.load(Ordering::SeqCst), fresh), (1, 1));
    assert_eq!((store.len(), store.in_flight()), (1, 0));
}

#[tokio::test]
async fn a_discarded_result_is_handed_back_and_the_next_caller_runs() {
    let store = MemoryStore::new();
    let call = call("/charges", "k-1", 1).wait(Duration::ZERO);
    let declined = engine::run(&store, &call, async {
        Produced::<Vec<u8>, _>::Discard("402 declined")
    })
    .await;
    assert!(matches!(declined, Ok(Finished::Failed("402 declined"))));
    assert_eq!((store.len(), store.in_flight()), (0, 0));
    let charged = engine::run(&store, &call, async {
        Produced::<_, &str>::Store(b"201 charged".to_vec())
    })
    .await;
    assert_eq!(bytes(&charged), ("fresh", b"201 charged".to_vec()));
}

#[tokio::test]
async fn another_payload_under_the_same_key_is_a_mismatch_and_runs_nothing() {
    let store = MemoryStore::new();
    let first = engine::run(&store, &call("/charges", "k-2", 1), async {
        Produced::<_, &str>::Store(b"ok".to_vec())
    })
    .await;
    assert_eq!(bytes(&first).0, "fresh");
    let other = engine::run(&store, &call("/charges", "k-2", 2), async {
        panic!("a mismatched payload must not run the body");
        #[allow(unreachable_code)]
        Produced::<Vec<u8>, &str>::Discard("")
    })
    .await;
    match other {
        Err(Error::PayloadMismatch { namespace }) => assert_eq!(namespace, "POST /charges"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cancelled_call_abandons_its_claim_at_once() {
    let store = MemoryStore::new();
    let call = call("/exports", "k-3", 1).wait(Duration::ZERO);
    let mut hung = Box::pin(engine::run(&store, &call, async {
        std::future::pending::<Produced<Vec<u8>, &str>>().await
    }));
    assert!(futures_poll_once(hung.as_mut()).await);
    assert_eq!(store.in_flight(), 1);
    let busy = engine::run(&store, &call, async {
        Produced::<_, &str>::Store(Vec::new())
    })
    .await;
    assert!(matches!(busy, Err(Error::InProgress { .. })), "{busy:?}");
    drop(hung);
    assert_eq!(store.in_flight(), 0);
    let retried = engine::run(&store, &call, async {
        Produced::<_, &str>::Store(b"done".to_vec())
    })
    .await;
    assert_eq!(bytes(&retried), ("fresh", b"done".to_vec()));
}

/// Polls once; whether the future is still pending.
async fn futures_poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
    let mut future = Some(future);
    std::future::poll_fn(|cx| {
        let pending = future.take().unwrap().poll(cx).is_pending();
        std::task::Poll::Ready(pending)
    })
    .await
}

/// A result whose encoding blocks its thread for three leases.
#[derive(Debug)]
struct Slow {
    encoding: Arc<tokio::sync::Notify>,
    blocked: Duration,
}

impl Encode for Slow {
    fn encode(&self) -> Cow<'_, [u8]> {
        self.encoding.notify_one();
        std::thread::sleep(self.blocked);
        Cow::Borrowed(b"slow")
    }

    fn encode_within(&self, _budget: Duration) -> Option<Cow<'_, [u8]>> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoding_that_outlasts_the_lease_keeps_its_claim() {
    let lease = Duration::from_millis(100);
    let store = Arc::new(MemoryStore::builder().lease(lease).build());
    let call = call("/reports", "k-4", 1).wait(Duration::ZERO);
    let encoding = Arc::new(tokio::sync::Notify::new());
    let holder = {
        let (store, call, encoding) = (store.clone(), call.clone(), encoding.clone());
        tokio::spawn(async move {
            let result = Slow {
                encoding,
                blocked: 3 * lease,
            };
            match engine::run(&*store, &call, async { Produced::<_, ()>::Store(result) }).await {
                Ok(Finished::Fresh(_)) => {}
                other => panic!("expected the holder's fresh result, got {other:?}"),
            }
        })
    };
    // Duplicates during the encoding find the key held, well past the lease.
    encoding.notified().await;
    let mut busy = 0;
    while !holder.is_finished() {
        let duplicate = engine::run(&*store, &call, async {
            Produced::<Vec<u8>, ()>::Store(b"second run".to_vec())
        })
        .await;
        match duplicate {
            Err(Error::InProgress { .. }) => busy += 1,
            Ok(Finished::Replayed(bytes)) => {
                assert_eq!(&*bytes, b"slow");
                break;
            }
            other => panic!("a duplicate ran the body while the holder encoded: {other:?}"),
        }
        tokio::time::sleep(lease / 4).await;
    }
    holder.await.unwrap();
    assert!(busy >= 8, "the duplicates saw the claim {busy} times");
    let replay = engine::run(&*store, &call, async {
        Produced::<Vec<u8>, ()>::Store(b"second run".to_vec())
    })
    .await;
    assert!(matches!(replay, Ok(Finished::Replayed(ref bytes)) if &bytes[..] == b"slow"));
}
