//! The conformance suite: the [`Store`] contract as executable checks, for every store.
//!
//! Each check uses fresh keys, so it can run against a store that other tests (or other
//! processes) share. A violation panics with a message that names the rule, which makes
//! a check a test body as it is:
//!
//! ```
//! use idempotent_runtime::store::conformance::{self, Settings};
//! use idempotent_runtime::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In a test of your own store: #[tokio::test(flavor = "multi_thread")]
//! conformance::check_all(&MemoryStore::new(), &Settings::default()).await;
//! # }
//! ```
//!
//! Enable it with the `conformance` feature. Lease and TTL checks wait for real time to
//! pass (a remote store's clock cannot be paused), a few times the short lease in
//! [`Settings`]; the whole suite takes a few seconds.

use crate::key::{Fingerprint, Key, KeyHasher};
use crate::store::record::{Begin, Claim, Completed, InFlight, Request};
use crate::store::Store;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::time::{sleep, timeout, Instant};

/// Timings of the suite.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A lease short enough to let lapse in a test (default 300 ms).
    pub short_lease: Duration,
    /// A lease that never lapses during a check (default 60 s).
    pub long_lease: Duration,
    /// How soon a waiter must be notified of a completion or release (default 1 s).
    pub notify_within: Duration,
    /// How many callers race for one claim (default 64).
    pub racers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            short_lease: Duration::from_millis(300),
            long_lease: Duration::from_secs(60),
            notify_within: Duration::from_secs(1),
            racers: 64,
        }
    }
}

/// Runs every check, in order.
///
/// # Panics
///
/// On the first violation of the contract, naming the rule.
pub async fn check_all<S: Store>(store: &S, settings: &Settings) {
    claim_is_exclusive(store, settings).await;
    keys_are_independent(store, settings).await;
    completed_records_replay_byte_for_byte(store, settings).await;
    release_frees_the_key_at_once(store, settings).await;
    abandon_frees_the_key_promptly(store, settings).await;
    completion_and_release_notify_waiters(store, settings).await;
    renewal_keeps_a_claim_past_its_lease(store, settings).await;
    a_lapsed_claim_is_taken_over_and_fenced_off(store, settings).await;
    completed_records_expire_after_their_ttl(store, settings).await;
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A key no other check, test run or process has used.
#[must_use]
pub fn fresh_key(label: &str) -> Key {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = KeyHasher::new("idempotency.conformance");
    hasher
        .arg("label", label)
        .arg("nanos", &nanos)
        .arg("pid", &std::process::id())
        .arg("seq", &SEQUENCE.fetch_add(1, Ordering::Relaxed));
    hasher.finish().expect("plain values encode")
}

fn fingerprint(byte: u8) -> Fingerprint {
    Fingerprint::from_bytes([byte; 16])
}

fn request(key: Key, fingerprint: Fingerprint, lease: Duration) -> Request {
    Request {
        namespace: "idempotency.conformance",
        key,
        fingerprint,
        lease: Some(lease),
    }
}

async fn begin<S: Store>(store: &S, request: &Request, rule: &str) -> Begin {
    match store.begin(request).await {
        Ok(begin) => begin,
        Err(err) => panic!("{rule}: begin failed: {err}"),
    }
}

async fn claim<S: Store>(store: &S, request: &Request, rule: &str) -> Claim {
    match begin(store, request, rule).await {
        Begin::Claimed(claim) => claim,
        other => panic!("{rule}: a vacant key must be claimed, got {other:?}"),
    }
}

async fn in_flight<S: Store>(store: &S, request: &Request, rule: &str) -> InFlight {
    match begin(store, request, rule).await {
        Begin::InProgress(flight) => flight,
        other => panic!("{rule}: a held key must be in progress, got {other:?}"),
    }
}

async fn completed<S: Store>(store: &S, request: &Request, rule: &str) -> Completed {
    match begin(store, request, rule).await {
        Begin::Completed(record) => record,
        other => panic!("{rule}: a completed key must replay, got {other:?}"),
    }
}

/// Of many callers that find a key vacant at once, exactly one claims it; the others see
/// it in progress, with the claimant's fingerprint.
pub async fn claim_is_exclusive<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "claim_is_exclusive";
    let key = fresh_key(RULE);
    let racers = (0..settings.racers).map(|i| {
        let fp = fingerprint(u8::try_from(i % 200).unwrap_or(0) + 1);
        async move {
            (
                fp,
                store.begin(&request(key, fp, settings.long_lease)).await,
            )
        }
    });
    let results = futures_join_all(racers).await;
    let mut claims = Vec::new();
    for (fp, result) in &results {
        match result {
            Ok(Begin::Claimed(claim)) => {
                assert_eq!(
                    claim.fingerprint(),
                    *fp,
                    "{RULE}: a claim keeps its fingerprint"
                );
                claims.push(claim.clone());
            }
            Ok(Begin::InProgress(_)) => {}
            Ok(Begin::Completed(_)) => panic!("{RULE}: nothing was completed"),
            Err(err) => panic!("{RULE}: begin failed: {err}"),
        }
    }
    assert_eq!(
        claims.len(),
        1,
        "{RULE}: exactly one of {} racers claims",
        settings.racers
    );
    for (_, result) in &results {
        if let Ok(Begin::InProgress(flight)) = result {
            assert_eq!(
                flight.fingerprint,
                claims[0].fingerprint(),
                "{RULE}: waiters see the claimant's fingerprint"
            );
            assert!(
                flight.lease_remaining <= settings.long_lease,
                "{RULE}: lease_remaining within the lease"
            );
        }
    }
    release(store, &claims[0], RULE).await;
}

async fn release<S: Store>(store: &S, claim: &Claim, rule: &str) {
    if let Err(err) = store.release(claim).await {
        panic!("{rule}: release failed: {err}");
    }
}

async fn complete<S: Store>(store: &S, claim: &Claim, value: &[u8], ttl: Duration, rule: &str) {
    if let Err(err) = store.complete(claim, value, ttl).await {
        panic!("{rule}: complete failed: {err}");
    }
}

/// A claim on one key leaves every other key vacant.
pub async fn keys_are_independent<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "keys_are_independent";
    let (a, b) = (fresh_key(RULE), fresh_key(RULE));
    let held = claim(
        store,
        &request(a, Fingerprint::NONE, settings.long_lease),
        RULE,
    )
    .await;
    let other = claim(
        store,
        &request(b, Fingerprint::NONE, settings.long_lease),
        RULE,
    )
    .await;
    assert_ne!(held.key(), other.key());
    release(store, &held, RULE).await;
    release(store, &other, RULE).await;
}

/// A completed record is returned as given, with its fingerprint, to every later caller,
/// including empty values.
pub async fn completed_records_replay_byte_for_byte<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "completed_records_replay_byte_for_byte";
    for value in [
        &b""[..],
        b"\x01J0",
        &[0u8, 255, 10, 13, 0][..],
        &[7u8; 70_000][..],
    ] {
        let key = fresh_key(RULE);
        let req = request(key, fingerprint(9), settings.long_lease);
        let held = claim(store, &req, RULE).await;
        complete(store, &held, value, Duration::from_secs(60), RULE).await;
        for _ in 0..2 {
            let record = completed(store, &req, RULE).await;
            assert_eq!(
                &*record.value, value,
                "{RULE}: the stored bytes come back unchanged"
            );
            assert_eq!(
                record.fingerprint,
                fingerprint(9),
                "{RULE}: the record keeps its fingerprint"
            );
        }
        // A caller with another fingerprint is told the record's, to refuse the mismatch.
        let other = completed(
            store,
            &request(key, fingerprint(3), settings.long_lease),
            RULE,
        )
        .await;
        assert_eq!(
            other.fingerprint,
            fingerprint(9),
            "{RULE}: fingerprints are reported, not matched"
        );
    }
}

/// After `release`, the next caller claims the key at once, with a new token; a release
/// with a stale token does nothing.
pub async fn release_frees_the_key_at_once<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "release_frees_the_key_at_once";
    let req = request(fresh_key(RULE), Fingerprint::NONE, settings.long_lease);
    let first = claim(store, &req, RULE).await;
    release(store, &first, RULE).await;
    let second = claim(store, &req, RULE).await;
    assert_ne!(
        first.token(),
        second.token(),
        "{RULE}: every claim gets a new token"
    );
    release(store, &first, RULE).await;
    let _ = in_flight(
        store,
        &req,
        "a stale release must not free the current claim",
    )
    .await;
    release(store, &second, RULE).await;
}

/// `abandon` (cancellation, panic) frees the key well before the lease would.
pub async fn abandon_frees_the_key_promptly<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "abandon_frees_the_key_promptly";
    let req = request(fresh_key(RULE), Fingerprint::NONE, settings.long_lease);
    let held = claim(store, &req, RULE).await;
    let flight = in_flight(store, &req, RULE).await;
    store.abandon(held);
    if timeout(settings.notify_within, flight.changed)
        .await
        .is_err()
    {
        panic!("{RULE}: waiters must be notified of an abandoned claim");
    }
    // A notification may come without a change: wait for the next one, within the bound.
    let deadline = Instant::now() + settings.notify_within;
    loop {
        match begin(store, &req, RULE).await {
            Begin::Claimed(claim) => return release(store, &claim, RULE).await,
            Begin::InProgress(flight) if Instant::now() < deadline => {
                let _ = tokio::time::timeout_at(deadline, flight.changed).await;
            }
            other => panic!(
                "{RULE}: still held {:?} after abandon: {other:?}",
                settings.notify_within
            ),
        }
    }
}

/// Waiters are woken long before the holder's lease ends: every waiter by a completion
/// (they all replay it), and at least one by a release, which may hand the key over to
/// one waiter at a time (so that a failing body does not make every waiter race for the
/// key each time): the waiters left are woken by the releases or the completion of the
/// attempts that follow.
pub async fn completion_and_release_notify_waiters<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "completion_and_release_notify_waiters";
    let req = request(fresh_key(RULE), Fingerprint::NONE, settings.long_lease);
    let held = claim(store, &req, RULE).await;
    let waiters = [
        in_flight(store, &req, RULE).await,
        in_flight(store, &req, RULE).await,
    ];
    complete(store, &held, b"done", Duration::from_secs(60), RULE).await;
    for waiter in waiters {
        assert!(
            timeout(settings.notify_within, waiter.changed)
                .await
                .is_ok(),
            "{RULE}: every waiter must be notified within {:?} of a completion",
            settings.notify_within,
        );
    }
    match begin(store, &req, RULE).await {
        Begin::Completed(record) => assert_eq!(&*record.value, b"done"),
        other => panic!("{RULE}: unexpected state after the completion: {other:?}"),
    }

    let req = request(fresh_key(RULE), Fingerprint::NONE, settings.long_lease);
    let mut held = claim(store, &req, RULE).await;
    let mut waiters = vec![
        in_flight(store, &req, RULE).await.changed,
        in_flight(store, &req, RULE).await.changed,
    ];
    while !waiters.is_empty() {
        release(store, &held, RULE).await;
        let woken = timeout(
            settings.notify_within,
            std::future::poll_fn(|cx| {
                let ready = waiters
                    .iter_mut()
                    .position(|waiter| std::pin::Pin::new(waiter).poll(cx).is_ready());
                ready.map_or(std::task::Poll::Pending, std::task::Poll::Ready)
            }),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{RULE}: a release must notify a waiter within {:?}",
                settings.notify_within
            )
        });
        drop(waiters.swap_remove(woken));
        // The woken waiter takes the key over, as a caller would.
        held = match begin(store, &req, RULE).await {
            Begin::Claimed(claim) => claim,
            other => panic!("{RULE}: the key must be vacant after a release: {other:?}"),
        };
    }
    release(store, &held, RULE).await;
}

/// A claim renewed before its lease ends stays held past the original lease.
pub async fn renewal_keeps_a_claim_past_its_lease<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "renewal_keeps_a_claim_past_its_lease";
    let lease = settings.short_lease;
    let req = request(fresh_key(RULE), Fingerprint::NONE, lease);
    let held = claim(store, &req, RULE).await;
    assert_eq!(
        held.lease(),
        lease,
        "{RULE}: the claim carries the requested lease"
    );
    let started = Instant::now();
    while started.elapsed() < lease * 2 {
        sleep(lease / 3).await;
        if let Err(err) = store.renew(&held).await {
            panic!("{RULE}: renewing a live claim failed: {err}");
        }
    }
    let _ = in_flight(store, &req, RULE).await;
    complete(
        store,
        &held,
        b"late but fine",
        Duration::from_secs(60),
        RULE,
    )
    .await;
    assert_eq!(&*completed(store, &req, RULE).await.value, b"late but fine");
}

/// A claim that is not renewed lapses after its lease: the next caller takes over with a
/// new token, and the old claim can no longer renew, complete or release.
pub async fn a_lapsed_claim_is_taken_over_and_fenced_off<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "a_lapsed_claim_is_taken_over_and_fenced_off";
    let lease = settings.short_lease;
    let req = request(fresh_key(RULE), fingerprint(1), lease);
    let stale = claim(store, &req, RULE).await;
    let flight = in_flight(store, &req, RULE).await;
    assert!(
        flight.lease_remaining <= lease,
        "{RULE}: lease_remaining within the lease"
    );
    sleep(lease + lease / 2).await;
    let current = claim(store, &req, "a claim must lapse after its lease").await;
    assert_ne!(
        stale.token(),
        current.token(),
        "{RULE}: the takeover gets a new token"
    );

    let renewed = store.renew(&stale).await;
    assert!(
        renewed
            .as_ref()
            .is_err_and(crate::StoreError::is_lease_lost),
        "{RULE}: a lapsed claim's renewal must be refused as lease lost, got {renewed:?}"
    );
    let overwritten = store
        .complete(&stale, b"stale", Duration::from_secs(60))
        .await;
    assert!(
        overwritten
            .as_ref()
            .is_err_and(crate::StoreError::is_lease_lost),
        "{RULE}: a lapsed claim's completion must be refused as lease lost, got {overwritten:?}"
    );
    release(store, &stale, RULE).await;
    let _ = in_flight(store, &req, "a stale release must not free the takeover").await;

    complete(store, &current, b"current", Duration::from_secs(60), RULE).await;
    assert_eq!(&*completed(store, &req, RULE).await.value, b"current");
}

/// A completed record is gone after its TTL, and the key is vacant again.
pub async fn completed_records_expire_after_their_ttl<S: Store>(store: &S, settings: &Settings) {
    const RULE: &str = "completed_records_expire_after_their_ttl";
    let ttl = settings.short_lease;
    let req = request(fresh_key(RULE), Fingerprint::NONE, settings.long_lease);
    let held = claim(store, &req, RULE).await;
    complete(store, &held, b"short-lived", ttl, RULE).await;
    let _ = completed(store, &req, RULE).await;
    sleep(ttl + ttl / 2).await;
    let again = claim(store, &req, "a record must expire after its TTL").await;
    release(store, &again, RULE).await;
}

/// Polls all futures together (no spawning, so any runtime flavour works).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        *output = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
