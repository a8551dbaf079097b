//! Running the body under a claim: renewing its lease, completing, releasing, abandoning.

use super::{Call, Encode, Finished, Produced};
use crate::codec;
use crate::error::{Error, StoreError};
use crate::observe::{self, Observed, Step};
use crate::store::record::Claim;
use crate::store::Store;
use std::borrow::Cow;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Releases the claim if the call is dropped (cancelled) or its body panics.
struct AbandonGuard<'a, S: Store + ?Sized> {
    store: &'a S,
    claim: Option<Claim>,
}

impl<S: Store + ?Sized> AbandonGuard<'_, S> {
    fn disarm(&mut self) {
        self.claim = None;
    }
}

impl<S: Store + ?Sized> Drop for AbandonGuard<'_, S> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            observe::notice(
                claim.namespace(),
                "a call was cancelled or its body panicked: its claim is abandoned",
            );
            self.store.abandon(claim);
        }
    }
}

pub(super) async fn run_claimed<S, B, R, F>(
    store: &S,
    call: &Call,
    claim: Claim,
    body: B,
    observed: &mut Observed,
) -> Result<Finished<R, F>, Error>
where
    S: Store + ?Sized,
    B: Future<Output = Produced<R, F>>,
    R: Encode,
{
    let _held = observed.claim();
    let mut guard = AbandonGuard {
        store,
        claim: Some(claim.clone()),
    };
    // The lease covers the body, the encoding of its result and the completion write: a
    // claim that lapsed before its record was written would let a duplicate run the body.
    match with_renewal(store, &claim, body).await {
        Produced::Store(result) => {
            let completing =
                with_renewal(store, &claim, complete(store, &claim, &result, call.ttl));
            let completed = observed.store(completing).await;
            guard.disarm();
            match completed {
                Err(err) if err.is_lease_lost() => {
                    observe::notice(
                        claim.namespace(),
                        "the claim was taken over while the body ran: its result is not stored",
                    );
                    Err(Error::LeaseLost {
                        namespace: claim.namespace().to_string(),
                    })
                }
                // The body ran and succeeded: its caller gets the result even if the store
                // could not record it. The claim is not released, so duplicates wait for its
                // lease to lapse rather than run the body again at once.
                Err(err) => {
                    observe::store_failed(claim.namespace(), Step::Complete, &err);
                    Ok(Finished::Fresh(result))
                }
                Ok(()) => Ok(Finished::Fresh(result)),
            }
        }
        Produced::Discard(failure) => {
            // Nothing is stored: the next caller runs the body. If the release fails, the
            // lease frees the key instead.
            if let Err(err) = observed.store(store.release(&claim)).await {
                observe::store_failed(claim.namespace(), Step::Release, &err);
            }
            guard.disarm();
            Ok(Finished::Failed(failure))
        }
    }
}

/// Encodes `result` and completes the claim with it. A result over the store's size limit
/// completes it with a record that says so instead: its duplicates then get an error
/// rather than run the body again, every one of them, for the TTL.
async fn complete<S, R>(
    store: &S,
    claim: &Claim,
    result: &R,
    ttl: Duration,
) -> Result<(), StoreError>
where
    S: Store + ?Sized,
    R: Encode,
{
    let bytes = encode_renewing(store, claim, result);
    let completed = store.complete(claim, &bytes, ttl).await;
    if let Cow::Owned(buffer) = bytes {
        codec::recycle(buffer);
    }
    match completed {
        Err(err) if err.is_too_large() => {
            let marker = codec::unreplayable(&err.to_string());
            store.complete(claim, &marker, ttl).await
        }
        completed => completed,
    }
}

/// Encodes a result while its claim stays renewed. The task that encodes cannot renew
/// meanwhile, so an encoding that runs past a quarter of the lease (a slow `Serialize`) or
/// writes a megabyte at once (a large result) starts again beside a thread of its own that
/// renews the claim.
fn encode_renewing<'r, S, R>(store: &S, claim: &Claim, result: &'r R) -> Cow<'r, [u8]>
where
    S: Store + ?Sized,
    R: Encode,
{
    if let Some(encoded) = result.encode_within(claim.lease() / 4) {
        return encoded;
    }
    let stop = Stop::default();
    std::thread::scope(|scope| {
        // A machine out of threads encodes unrenewed: still no panic.
        let renewing = std::thread::Builder::new()
            .name("idempotency-renew".into())
            .spawn_scoped(scope, || keep_renewing(store, claim, &stop));
        let encoded = result.encode();
        stop.set();
        drop(renewing);
        encoded
    })
}

/// Renews `claim` now and at every third of its lease, until `stop` is set, on a runtime
/// of this thread's own: the caller's may be a current-thread runtime that is busy
/// encoding.
fn keep_renewing<S: Store + ?Sized>(store: &S, claim: &Claim, stop: &Stop) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    let interval = renewal_interval(claim);
    loop {
        let renewed =
            runtime.block_on(async { tokio::time::timeout(interval, store.renew(claim)).await });
        if matches!(renewed, Ok(Err(err)) if err.is_lease_lost()) || stop.wait(interval) {
            return;
        }
    }
}

/// A third of the lease: two renewals can fail before it lapses. Never a busy loop,
/// whatever lease a store grants.
fn renewal_interval(claim: &Claim) -> Duration {
    (claim.lease() / 3).max(Duration::from_millis(1))
}

/// A flag one thread sets and another waits for.
#[derive(Default)]
struct Stop {
    set: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Stop {
    fn set(&self) {
        *self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Waits at most `timeout` for the flag; whether it is set.
    fn wait(&self, timeout: Duration) -> bool {
        let set = self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, _) = self
            .changed
            .wait_timeout_while(set, timeout, |set| !*set)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *set
    }
}

/// Polls `body` and, while it runs, renews the claim at a third of its lease so that a
/// slow body keeps its claim for as long as its process lives.
async fn with_renewal<S, F>(store: &S, claim: &Claim, body: F) -> F::Output
where
    S: Store + ?Sized,
    F: Future,
{
    let mut body = pin!(body);
    let mut renewal = pin!(async {
        let interval = renewal_interval(claim);
        loop {
            tokio::time::sleep(interval).await;
            match store.renew(claim).await {
                // Fenced off: the completion will be refused too; let the body finish.
                Err(err) if err.is_lease_lost() => break,
                // A store hiccup: the next renewal may succeed, well within the lease.
                Err(err) => observe::store_failed(claim.namespace(), Step::Renew, &err),
                Ok(()) => {}
            }
        }
        std::future::pending::<()>().await;
    });
    poll_fn(|cx| {
        if let Poll::Ready(output) = body.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        let _ = renewal.as_mut().poll(cx);
        Poll::Pending
    })
    .await
}
