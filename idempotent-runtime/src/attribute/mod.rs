//! One call of an `#[idempotent]` function: replay, wait, or claim and run the body.

pub(crate) mod options;

use crate::attribute::options::{Options, LEASE_MARGIN};
use crate::codec;
use crate::error::{CodecDetail, CodecError, Error, StoreError};
use crate::key::{Fingerprint, KeyHasher, NamespaceKey};
use crate::store::record::{Begin, Claim, Decoded, Request};
use crate::store::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// The return types an `#[idempotent]` function can have: `Result<T, E>`, where `T` is
/// [`Stored`] and `E` is an [`IdempotencyError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the return type of an `#[idempotent]` function",
    label = "expected `Result<T, E>` with `T: Serialize + DeserializeOwned` and `E: From<idempotency::Error>`",
    note = "only `Ok` values are stored and replayed, so `T` must serialize and deserialize; `E` receives the idempotency layer's own errors"
)]
pub trait IdempotentResult: Sized {
    /// The stored type.
    type Ok;
    /// The function's error type.
    type Err;
    /// Splits off the value to store; a failure is returned as it is.
    fn into_ok(self) -> Result<Self::Ok, Self>;
    /// The result of a replay or a fresh success.
    fn from_ok(value: Self::Ok) -> Self;
    /// The result of a failure.
    fn from_err(error: Self::Err) -> Self;
}

impl<T, E> IdempotentResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_ok(self) -> Result<T, Self> {
        self.map_err(Err)
    }
    fn from_ok(value: T) -> Self {
        Ok(value)
    }
    fn from_err(error: E) -> Self {
        Err(error)
    }
}

/// The `Ok` type of an `#[idempotent]` function: stored, then replayed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the `Ok` value of an `#[idempotent]` function",
    label = "the `Ok` value is stored and replayed, so it must implement `Serialize` and `Deserialize`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to it"
)]
pub trait Stored: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Stored for T {}

/// The error type of an `#[idempotent]` function: it carries the idempotency layer's
/// own errors too.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry the errors of an `#[idempotent]` function",
    label = "the error type must implement `From<idempotency::Error>`",
    note = "add `impl From<idempotency::Error> for {Self}`, e.g. as a variant of your error enum"
)]
pub trait IdempotencyError: From<Error> {}

impl<E: From<Error>> IdempotencyError for E {}

/// The `key = ..` parameter: the client's idempotency key, as text.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a client-supplied idempotency key",
    label = "the `key = ..` parameter must be text, such as `String` or `&str`",
    note = "convert the client's key to a string first, or remove `key = ..` to derive the key from the arguments"
)]
pub trait ClientKey: AsRef<str> {}

impl<T: AsRef<str> + ?Sized> ClientKey for T {}

/// How a replay gets its result `R`: by cloning the decoded value a store in this
/// process kept ([`CloneReplayer`], for a `Result<T, E>` whose `T` is `Clone`), or by
/// decoding the stored bytes ([`DecodeReplayer`]). Generated code picks one per return
/// type with [`ReplayProbe`]; both are zero-sized and statically dispatched, so the
/// clone is written straight into the caller's result.
pub trait Replay<R> {
    /// The result of a replay of the value a store in this process kept, if it has one.
    fn kept<S: Store + ?Sized>(&self, store: &S, request: &Request) -> Option<R>;

    /// The value to keep for a record whose replay decoded `result`.
    fn to_keep(&self, result: &R) -> Option<Decoded>;
}

/// Replays a `Result<T, E>` by cloning the `T` a store in this process kept.
pub struct CloneReplayer<T, E>(PhantomData<fn() -> Result<T, E>>);

impl<T, E> fmt::Debug for CloneReplayer<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CloneReplayer")
    }
}

impl<T: Clone + Send + Sync + 'static, E> CloneReplayer<T, E> {
    /// The replay fast path, run by generated code before the call's future is built: a
    /// store in this process that kept the decoded value of the completed record hands
    /// over a clone of it. `None` means the call goes through [`execute`].
    #[inline]
    pub fn replay_kept<S: Store + ?Sized>(
        &self,
        store: &S,
        derived: &Derived,
    ) -> Option<Result<T, E>> {
        self.kept(store, derived.0.as_ref().ok()?)
    }
}

impl<T: Clone + Send + Sync + 'static, E> Replay<Result<T, E>> for CloneReplayer<T, E> {
    #[inline]
    fn kept<S: Store + ?Sized>(&self, store: &S, request: &Request) -> Option<Result<T, E>> {
        let mut result = None;
        store.with_decoded(request, &mut |decoded| match decoded.downcast_ref::<T>() {
            Some(value) => {
                result = Some(Ok(value.clone()));
                true
            }
            None => false,
        });
        result
    }

    fn to_keep(&self, result: &Result<T, E>) -> Option<Decoded> {
        // A clone of the decoded form, so that a replayed `Outcome` stays replayed.
        result
            .as_ref()
            .ok()
            .map(|value| Arc::new(value.clone()) as Decoded)
    }
}

/// Replays by decoding the stored bytes, every time.
pub struct DecodeReplayer<R>(PhantomData<fn() -> R>);

impl<R> fmt::Debug for DecodeReplayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecodeReplayer")
    }
}

impl<R> DecodeReplayer<R> {
    /// Nothing is kept for such a result: always `None`.
    #[inline]
    pub fn replay_kept<S: Store + ?Sized>(&self, _store: &S, _derived: &Derived) -> Option<R> {
        None
    }
}

impl<R> Replay<R> for DecodeReplayer<R> {
    fn kept<S: Store + ?Sized>(&self, _store: &S, _request: &Request) -> Option<R> {
        None
    }

    fn to_keep(&self, _result: &R) -> Option<Decoded> {
        None
    }
}

/// Picks the replayer of a return type `R` at the call site, by autoref specialization:
/// a `Result<T, E>` whose `T` is `Clone` replays by cloning, any other by decoding.
/// Generated code calls `(&&ReplayProbe::<R>::new()).replayer()` with both traits in
/// scope. No bound is asked of `R` here: what an `#[idempotent]` function may return is
/// checked once, by [`execute`].
pub struct ReplayProbe<R>(PhantomData<R>);

impl<R> ReplayProbe<R> {
    /// The probe.
    #[must_use]
    pub const fn new() -> Self {
        ReplayProbe(PhantomData)
    }
}

impl<R> Default for ReplayProbe<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// Chosen for `Result<T, E>` with a `Clone` `T`.
pub trait ReplayByClone {
    /// What replays by cloning.
    type Replayer;
    /// The replayer.
    fn replayer(&self) -> Self::Replayer;
}

impl<T, E> ReplayByClone for &ReplayProbe<Result<T, E>>
where
    T: Clone + Send + Sync + 'static,
{
    type Replayer = CloneReplayer<T, E>;
    #[inline]
    fn replayer(&self) -> CloneReplayer<T, E> {
        CloneReplayer(PhantomData)
    }
}

/// Chosen for every other type.
pub trait ReplayByDecode {
    /// What replays by decoding.
    type Replayer;
    /// The replayer.
    fn replayer(&self) -> Self::Replayer;
}

impl<R> ReplayByDecode for ReplayProbe<R> {
    type Replayer = DecodeReplayer<R>;
    #[inline]
    fn replayer(&self) -> DecodeReplayer<R> {
        DecodeReplayer(PhantomData)
    }
}

/// The parameters that take part in the key must be serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of an idempotency key",
    label = "this argument is hashed into the key, so its type must implement `serde::Serialize`",
    note = "derive or implement `Serialize` for it, or leave it out of the key with `skip(..)`"
)]
pub trait KeyArg: Serialize {}

impl<T: Serialize + ?Sized> KeyArg for T {}

/// A function's namespace and the keys derived from it, computed at its first call: a
/// `static` of the generated code.
#[derive(Debug)]
pub struct NamespaceCache(OnceLock<(&'static str, NamespaceKey)>);

impl NamespaceCache {
    /// An empty cache.
    #[must_use]
    pub const fn new() -> Self {
        NamespaceCache(OnceLock::new())
    }
}

impl Default for NamespaceCache {
    fn default() -> Self {
        Self::new()
    }
}

/// A function's namespace and the key material of one call, gathered by generated code.
#[derive(Debug)]
pub struct Derivation {
    namespace: &'static str,
    lease: Option<Duration>,
    key: KeyHasher,
    fingerprint: Option<KeyHasher>,
    invalid: Option<Error>,
}

/// The outcome of a [`Derivation`]: the request of a call, or why there is none.
#[derive(Debug)]
pub struct Derived(Result<Request, Error>);

impl Derivation {
    /// Starts the key of a call of the function described by `options`, whose path is the
    /// type name of a marker defined in its body (`site`).
    #[must_use]
    #[inline(always)]
    pub fn new<S: Store + ?Sized>(
        options: &Options,
        cache: &NamespaceCache,
        site: &'static str,
        store: &S,
    ) -> Self {
        let (namespace, keys) = cache.0.get_or_init(|| {
            let namespace = namespace(options, site);
            let keys = NamespaceKey::new(namespace)
                .with_params(options.key_params, options.payload_params);
            (namespace, keys)
        });
        // Records that never leave this process need no key that other processes share.
        let local = store.in_process();
        let key = if local {
            KeyHasher::local(keys)
        } else {
            KeyHasher::with_namespace(keys)
        };
        let fingerprint = options.client_key.then(|| {
            if local {
                KeyHasher::local_fingerprint(keys)
            } else {
                KeyHasher::fingerprint_with_namespace(keys)
            }
        });
        Derivation {
            namespace,
            lease: options.lease,
            key,
            fingerprint,
            invalid: None,
        }
    }

    /// Adds a generic argument's type name, to key and fingerprint alike.
    pub fn generic(&mut self, type_name: &str) {
        self.key.generic(type_name);
        if let Some(fingerprint) = &mut self.fingerprint {
            fingerprint.generic(type_name);
        }
    }

    /// Adds a parameter to the key.
    pub fn key_arg<T: KeyArg + ?Sized>(&mut self, name: &str, value: &T) {
        self.key.arg(name, value);
    }

    /// Adds the concrete type of an `impl Trait` parameter's argument to the key, before
    /// the argument ([`key_arg`](Self::key_arg)).
    pub fn key_arg_type(&mut self, name: &str, type_name: &str) {
        self.key.arg_type(name, type_name);
    }

    /// Adds the concrete type of an `impl Trait` parameter's argument to the payload
    /// fingerprint, before the argument ([`payload_arg`](Self::payload_arg)): a client
    /// key reused with another type is a payload mismatch, not a new record.
    pub fn payload_arg_type(&mut self, name: &str, type_name: &str) {
        if let Some(fingerprint) = &mut self.fingerprint {
            fingerprint.arg_type(name, type_name);
        }
    }

    /// Adds a parameter to the payload fingerprint.
    pub fn payload_arg<T: KeyArg + ?Sized>(&mut self, name: &str, value: &T) {
        if let Some(fingerprint) = &mut self.fingerprint {
            fingerprint.arg(name, value);
        }
    }

    /// Adds the client-supplied key.
    pub fn client_key<K: ClientKey + ?Sized>(&mut self, key: &K) {
        if let Err(err) = self.key.client_key(key.as_ref()) {
            self.invalid = Some(Error::InvalidKey(err));
        }
    }

    /// Hashes what was gathered.
    #[must_use]
    pub fn finish(&mut self) -> Derived {
        Derived(self.digests())
    }

    fn digests(&mut self) -> Result<Request, Error> {
        let namespace = self.namespace;
        if let Some(err) = self.invalid.take() {
            return Err(err);
        }
        let codec = |err| Error::Codec(CodecError::new(namespace, CodecDetail::Key(err)));
        let key = self.key.finish().map_err(codec)?;
        let fingerprint = match &self.fingerprint {
            Some(hasher) => hasher.finish_fingerprint().map_err(codec)?,
            None => Fingerprint::NONE,
        };
        Ok(Request {
            namespace,
            key,
            fingerprint,
            lease: self.lease,
        })
    }
}

/// The namespace of a function: its `name`, or its path: the path of a marker type
/// declared in its body, less the marker and the `{{closure}}` segment that stands for
/// the body of an `async fn`.
fn namespace(options: &Options, site: &'static str) -> &'static str {
    options.name.unwrap_or_else(|| {
        let path = site.strip_suffix("::__IdempotentSite").unwrap_or(site);
        path.strip_suffix("::{{closure}}").unwrap_or(path)
    })
}

/// Runs one call: replays a completed record, waits for an attempt in flight, or claims
/// the key and runs `body` under the claim.
pub async fn execute<R, S, F, P>(
    store: &S,
    options: &Options,
    derived: Derived,
    replayer: P,
    body: F,
) -> R
where
    R: IdempotentResult,
    P: Replay<R>,
    R::Ok: Stored,
    R::Err: IdempotencyError,
    S: Store + ?Sized,
    F: Future<Output = R>,
{
    let request = match derived.0 {
        Ok(request) => request,
        Err(err) => return fail::<R>(err),
    };
    let Request {
        namespace,
        key,
        fingerprint,
        ..
    } = request;
    let mismatch = || {
        fail::<R>(Error::PayloadMismatch {
            namespace: namespace.to_owned(),
        })
    };
    let mut started = None;
    loop {
        // The replay fast path again after every wait (the generated code tried it before
        // the first look): a duplicate woken by a completion clones what the first replay
        // decoded.
        if started.is_some() {
            if let Some(replay) = replayer.kept(store, &request) {
                return replay;
            }
        }
        let begin = match store.begin(&request).await {
            Ok(begin) => begin,
            Err(err) => return fail::<R>(Error::Store(err)),
        };
        match begin {
            Begin::Completed(record) if record.fingerprint != fingerprint => return mismatch(),
            Begin::Completed(record) => {
                return match codec::decode(&record.value) {
                    Ok(value) => {
                        let replay = R::from_ok(value);
                        if let Some(kept) = replayer.to_keep(&replay) {
                            store.keep_decoded(&key, &record, kept);
                        }
                        replay
                    }
                    Err(detail) => fail::<R>(Error::Codec(CodecError::new(namespace, detail))),
                };
            }
            Begin::InProgress(flight) if flight.fingerprint != fingerprint => return mismatch(),
            Begin::InProgress(flight) => {
                let now = Instant::now();
                let since = *started.get_or_insert(now);
                let deadline = since + options.wait;
                if now >= deadline {
                    return fail::<R>(Error::InProgress {
                        namespace: namespace.to_owned(),
                        waited: now - since,
                    });
                }
                // Woken by the holder's completion or release; the lease bounds the wait
                // on a holder that died, which sends no notice.
                let recheck = deadline.min(now + flight.lease_remaining + LEASE_MARGIN);
                // Boxed, like the claimed path: the hit path's future stays small.
                let _ = Box::pin(tokio::time::timeout_at(recheck, flight.changed)).await;
            }
            Begin::Claimed(claim) => {
                // Boxed: the replay path builds this future, so it is kept small.
                return Box::pin(run_claimed(store, options, namespace, claim, body)).await;
            }
        }
    }
}

/// The call's result when the idempotency layer itself fails it.
fn fail<R: IdempotentResult>(error: Error) -> R
where
    R::Err: IdempotencyError,
{
    R::from_err(R::Err::from(error))
}

/// Releases the claim if the call is dropped (cancelled) or its body panics.
struct AbandonGuard<'a, S: Store + ?Sized> {
    store: &'a S,
    claim: Option<Claim>,
}

impl<S: Store + ?Sized> AbandonGuard<'_, S> {
    fn claim(&self) -> &Claim {
        self.claim
            .as_ref()
            .expect("the claim is held until disarmed")
    }

    fn disarm(&mut self) {
        self.claim = None;
    }
}

impl<S: Store + ?Sized> Drop for AbandonGuard<'_, S> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.store.abandon(claim);
        }
    }
}

async fn run_claimed<R, S, F>(
    store: &S,
    options: &Options,
    namespace: &str,
    claim: Claim,
    body: F,
) -> R
where
    R: IdempotentResult,
    R::Ok: Stored,
    R::Err: IdempotencyError,
    S: Store + ?Sized,
    F: Future<Output = R>,
{
    let mut guard = AbandonGuard {
        store,
        claim: Some(claim),
    };
    let claim = guard.claim().clone();
    // The lease covers the body, the encoding of its result and the completion write: a
    // claim that lapsed before its record was written would let a duplicate run the body.
    let step = match with_renewal(store, &claim, body).await.into_ok() {
        Ok(value) => {
            let completed =
                with_renewal(store, &claim, complete(store, &claim, &value, options.ttl)).await;
            Ok((value, completed))
        }
        Err(failure) => Err(failure),
    };
    match step {
        Ok((value, completed)) => {
            guard.disarm();
            match completed {
                Err(err) if err.is_lease_lost() => fail::<R>(Error::LeaseLost {
                    namespace: namespace.to_owned(),
                }),
                // The body ran and succeeded: its caller gets the value even if the store
                // could not record it. The claim is not released, so duplicates wait for its
                // lease to lapse rather than run the body again at once.
                Ok(()) | Err(_) => R::from_ok(value),
            }
        }
        Err(failure) => {
            // Nothing is stored: the next caller runs the body. If the release fails, the
            // lease frees the key instead.
            let _ = store.release(&claim).await;
            guard.disarm();
            failure
        }
    }
}

/// Encodes `value` and completes the claim with it. A result over the store's size limit
/// completes it with a record that says so instead: its duplicates then get
/// [`Error::Codec`] rather than run the body again, every one of them, for the TTL.
async fn complete<S, T>(
    store: &S,
    claim: &Claim,
    value: &T,
    ttl: Duration,
) -> Result<(), StoreError>
where
    S: Store + ?Sized,
    T: Serialize,
{
    let (bytes, _unencodable) = encode_renewing(store, claim, value);
    let completed = store.complete(claim, &bytes, ttl).await;
    codec::recycle(bytes);
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
fn encode_renewing<S, T>(store: &S, claim: &Claim, value: &T) -> (Vec<u8>, Option<CodecDetail>)
where
    S: Store + ?Sized,
    T: Serialize,
{
    if let Some(encoded) = codec::encode_within(value, claim.lease() / 4) {
        return encoded;
    }
    let stop = Stop::default();
    std::thread::scope(|scope| {
        // A machine out of threads encodes unrenewed, as before: still no panic.
        let renewing = std::thread::Builder::new()
            .name("idempotency-renew".into())
            .spawn_scoped(scope, || keep_renewing(store, claim, &stop));
        let encoded = codec::encode(value);
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
    let interval = (claim.lease() / 3).max(Duration::from_millis(1));
    loop {
        let renewed =
            runtime.block_on(async { tokio::time::timeout(interval, store.renew(claim)).await });
        if matches!(renewed, Ok(Err(err)) if err.is_lease_lost()) || stop.wait(interval) {
            return;
        }
    }
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
        // Never a busy loop, whatever lease a store grants.
        let interval = (claim.lease() / 3).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(interval).await;
            match store.renew(claim).await {
                // Fenced off: the completion will be refused too; let the body finish.
                Err(err) if err.is_lease_lost() => break,
                // A store hiccup: the next renewal may succeed, well within the lease.
                Ok(()) | Err(_) => {}
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
