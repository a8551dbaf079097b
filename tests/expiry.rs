//! TTLs: results expire, expired records are reclaimed, and idle keys leave no lock state.
//! The stores whose records expire read Tokio's clock (`MemoryStoreBuilder::tokio_clock`),
//! which these tests pause and advance: time passes exactly, and at once.

mod support;

use idempotency::{idempotent, MemoryStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;
use support::AppError;

/// A store on Tokio's clock.
fn paused_store() -> MemoryStore {
    MemoryStore::builder().tokio_clock().build()
}

#[tokio::test(start_paused = true)]
async fn after_the_ttl_the_body_runs_again() {
    static STORE: LazyLock<MemoryStore> = LazyLock::new(paused_store);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(ttl = "1s", store = &*STORE)]
    async fn quote(sku: &str) -> Result<usize, AppError> {
        let _ = sku;
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }

    assert_eq!(quote("a").await.unwrap(), 0);
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(
        quote("a").await.unwrap(),
        0,
        "within its TTL the record is replayed"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        quote("a").await.unwrap(),
        1,
        "after its TTL the record is gone"
    );
    assert_eq!(quote("a").await.unwrap(), 1);
    assert_eq!(STORE.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn expired_records_are_reclaimed_under_unique_keys() {
    const WINDOWS: u64 = 40;
    const PER_WINDOW: u64 = 1_000;
    static STORE: LazyLock<MemoryStore> = LazyLock::new(paused_store);
    #[idempotent(ttl = "20ms", store = &*STORE)]
    async fn track(event: u64) -> Result<u64, AppError> {
        Ok(event)
    }

    let mut peak = 0;
    for window in 0..WINDOWS {
        for i in 0..PER_WINDOW {
            track(window * PER_WINDOW + i).await.unwrap();
        }
        peak = peak.max(STORE.len());
        // Every record of this window expires before the next one is written.
        tokio::time::advance(Duration::from_millis(20)).await;
    }
    // 40,000 records were written; at most one window's worth is live at a time, and a
    // shard is swept whenever it doubles (and a second after its last sweep), so the store
    // stays within a small multiple of it.
    assert!(peak <= 4 * PER_WINDOW as usize + 64 * 64, "peak {peak}");
    assert!(STORE.len() < 10_000);
    STORE.purge_expired();
    assert_eq!(STORE.len(), 0);
    assert_eq!(STORE.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keys_keep_no_lock_state() {
    static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE)]
    async fn work(id: u64, fail: bool) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        if fail {
            return Err(AppError::Body("failed"));
        }
        Ok(id)
    }

    let calls: Vec<_> = (0..200)
        .map(|i| tokio::spawn(work(i % 10, i % 20 >= 10)))
        .collect();
    for call in calls {
        let _ = call.await.unwrap();
    }
    assert_eq!(STORE.in_flight(), 0);
    // Only the ten successful keys hold a record; failed ones left nothing behind.
    assert_eq!(STORE.len(), 10);
}

/// After `clear`, a new caller runs at once; its completed record then fences off the
/// holder whose claim was forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_store_forgets_every_record_and_a_new_callers_record_stands() {
    use idempotency::Error;
    use support::Gate;
    static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE, wait = "0s")]
    async fn work(id: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 1 {
            STARTED.open();
            GATE.wait().await;
        }
        Ok(id)
    }

    assert_eq!(work(1).await.unwrap(), 1);
    let held = tokio::spawn(work(2));
    STARTED.wait().await;
    assert_eq!((STORE.len(), STORE.in_flight()), (2, 1));

    STORE.clear();
    assert!(STORE.is_empty());
    assert_eq!(
        work(1).await.unwrap(),
        1,
        "the completed record is gone: the body runs"
    );
    assert_eq!(
        work(2).await.unwrap(),
        2,
        "the claim is gone: a new caller runs at once"
    );
    GATE.open();
    let fenced = held.await.unwrap().unwrap_err().idempotency();
    assert!(
        matches!(fenced, Error::LeaseLost { .. }),
        "the key holds another attempt's record: {fenced:?}"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 4);
    assert_eq!(work(2).await.unwrap(), 2, "the new caller's record stands");
    assert_eq!(RUNS.load(Ordering::SeqCst), 4);
}

/// An absent record is not a rival: a holder whose claim `clear` forgot, and that nobody
/// claimed since, completes and stores its result (it was refused as a lost lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_clearing_the_store_a_holder_alone_on_its_key_stores_its_result() {
    use support::Gate;
    static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(store = &*STORE)]
    async fn work(id: u64) -> Result<usize, AppError> {
        let _ = id;
        let run = RUNS.fetch_add(1, Ordering::SeqCst);
        STARTED.open();
        GATE.wait().await;
        Ok(run)
    }

    let held = tokio::spawn(work(2));
    STARTED.wait().await;
    STORE.clear();
    assert!(STORE.is_empty());
    GATE.open();
    assert_eq!(held.await.unwrap().unwrap(), 0, "the holder's result");
    assert_eq!((STORE.len(), STORE.in_flight()), (1, 0), "and it is stored");
    assert_eq!(work(2).await.unwrap(), 0, "replayed");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

/// Through the `Store` trait: a claim whose record is gone, whether forgotten or swept
/// after its lease lapsed, renews (the claim is made again) and completes; a rival's live
/// claim still fences it off.
#[tokio::test(start_paused = true)]
async fn a_claim_whose_record_is_gone_renews_and_completes() {
    use idempotency::store::{Begin, Claim, Fingerprint, Request};
    use idempotency::{KeyHasher, Store};
    let store = paused_store();
    let request = |label: &str, lease: Duration| {
        let mut key = KeyHasher::new("expiry");
        key.arg("label", label);
        Request {
            namespace: "expiry".into(),
            key: key.finish().unwrap(),
            fingerprint: Fingerprint::from_bytes([7; 16]),
            lease: Some(lease),
        }
    };
    let claim = |request: &Request| {
        let (store, request) = (&store, request.clone());
        async move {
            match store.begin(&request).await.unwrap() {
                Begin::Claimed(claim) => claim,
                other => panic!("a vacant key must be claimed, got {other:?}"),
            }
        }
    };
    let in_progress = |request: &Request| {
        let (store, request) = (&store, request.clone());
        async move { matches!(store.begin(&request).await.unwrap(), Begin::InProgress(_)) }
    };

    // Forgotten by `clear`: a renewal makes the claim again, with its fingerprint.
    let forgotten_request = request("forgotten", Duration::from_secs(60));
    let forgotten: Claim = claim(&forgotten_request).await;
    store.clear();
    store.renew(&forgotten).await.unwrap();
    match store.begin(&forgotten_request).await.unwrap() {
        Begin::InProgress(flight) => assert_eq!(flight.fingerprint, forgotten.fingerprint()),
        other => panic!("the renewal must claim the key again, got {other:?}"),
    }
    store
        .complete(&forgotten, b"forgotten", Duration::from_secs(60))
        .await
        .unwrap();

    // Swept after its lease lapsed.
    let lease = Duration::from_millis(50);
    let swept_request = request("swept", lease);
    let swept = claim(&swept_request).await;
    tokio::time::advance(lease).await;
    store.purge_expired();
    assert_eq!(store.in_flight(), 0, "the lapsed claim was swept");
    store
        .complete(&swept, b"swept", Duration::from_secs(60))
        .await
        .unwrap();
    for (request, value) in [
        (forgotten_request, b"forgotten".as_slice()),
        (swept_request, b"swept"),
    ] {
        match store.begin(&request).await.unwrap() {
            Begin::Completed(record) => assert_eq!(&*record.value, value),
            other => panic!("the result must be stored, got {other:?}"),
        }
    }

    // A rival's live claim, or its completed record, is still a lost lease.
    let rival_request = request("rival", lease);
    let lapsed = claim(&rival_request).await;
    tokio::time::advance(lease).await;
    let rival = claim(&rival_request).await;
    assert!(in_progress(&rival_request).await);
    assert!(store.renew(&lapsed).await.unwrap_err().is_lease_lost());
    assert!(store
        .complete(&lapsed, b"stale", Duration::from_secs(60))
        .await
        .unwrap_err()
        .is_lease_lost());
    store
        .complete(&rival, b"rival", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(store
        .complete(&lapsed, b"stale", Duration::from_secs(60))
        .await
        .unwrap_err()
        .is_lease_lost());
}
