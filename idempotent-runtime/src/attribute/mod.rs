//! The typed adapter that `#[idempotent]` generates calls to: it derives a call's key from
//! the function's arguments, runs the call on the [engine](crate::engine) with the `Ok`
//! value as a JSON record, and replays by decoding, or, on a store in this process, by
//! cloning the value an earlier replay decoded.

pub(crate) mod options;

use crate::codec;
use crate::engine::{self, Call, Encode, Finished, Produced};
use crate::error::{CodecError, Error};
use crate::key::{Fingerprint, KeyHasher, NamespaceKey};
use crate::memory::{Decoded, MemoryStore};
use crate::store::record::{Namespace, Request};
use crate::store::Store;
use options::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

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
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to it",
    note = "if it is an HTTP response (a `Json<T>`, a `Response`, a tuple of parts), it is not a stored value: return the value itself, e.g. `Created<T>` (201 fresh, 200 replayed) or `Outcome<T>`, and let it become the response"
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

/// How a replay gets its result `R`: by cloning the decoded value a memory store in this
/// process kept ([`CloneReplayer`], for a `Result<T, E>` whose `T` is `Clone`), or by
/// decoding the stored bytes ([`DecodeReplayer`]). Generated code picks one per return
/// type with [`ReplayProbe`]; both are zero-sized and statically dispatched, so the
/// clone is written straight into the caller's result.
pub trait Replay<R> {
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
    /// memory store in this process that kept the decoded value of the completed record
    /// hands over a reference to it, which is cloned here, outside the store's lock.
    /// `None` means the call goes through [`execute`].
    #[inline]
    pub fn replay_kept(
        &self,
        local: Option<&MemoryStore>,
        derived: &Derived,
    ) -> Option<Result<T, E>> {
        #[cfg(feature = "testing")]
        if crate::testing::active() {
            return None;
        }
        let request = derived.0.as_ref().ok()?;
        let kept = local?.kept(request)?;
        let value = kept.downcast_ref::<T>()?.clone();
        crate::observe::replayed(request);
        Some(Ok(value))
    }
}

impl<T: Clone + Send + Sync + 'static, E> Replay<Result<T, E>> for CloneReplayer<T, E> {
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
    pub fn replay_kept(&self, _local: Option<&MemoryStore>, _derived: &Derived) -> Option<R> {
        None
    }
}

impl<R> Replay<R> for DecodeReplayer<R> {
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
    pub fn new(
        options: &Options,
        cache: &NamespaceCache,
        site: &'static str,
        local: Option<&MemoryStore>,
    ) -> Self {
        let (namespace, keys) = cache.0.get_or_init(|| {
            let namespace = namespace(options, site);
            let keys = NamespaceKey::new(namespace)
                .with_params(options.key_params, options.payload_params);
            (namespace, keys)
        });
        // Records that never leave this process need no key that other processes share.
        let local = local.is_some();
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
        let key = self.key.finish().map_err(Error::Key)?;
        let fingerprint = match &self.fingerprint {
            Some(hasher) => hasher.finish_fingerprint().map_err(Error::Key)?,
            None => Fingerprint::NONE,
        };
        Ok(Request {
            namespace: Namespace::from_static(namespace),
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

/// Runs one call on the engine: replays a completed record (decoding it, and keeping the
/// decoded value for the next replays if `local` is a memory store in this process),
/// waits for an attempt in flight, or claims the key and runs `body` under the claim.
///
/// A duplicate waits `wait`, the value of a `wait = <expr>` evaluated for this call, or,
/// when `None` (a literal `wait = "30s"`, or none), `options.wait`.
pub async fn execute<R, S, F, P>(
    store: &S,
    local: Option<&MemoryStore>,
    options: &Options,
    wait: Option<Duration>,
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
    #[cfg(feature = "testing")]
    match crate::testing::current() {
        None => {}
        // Idempotency off for this test: the body, as if it had no attribute.
        Some(crate::testing::Override::Off) => return body.await,
        // This test's throwaway store, whatever the function's own.
        Some(crate::testing::Override::Store(memory)) => {
            let call = execute_on(
                &memory,
                Some(&memory),
                options,
                wait,
                derived,
                replayer,
                body,
            );
            return Box::pin(call).await;
        }
    }
    execute_on(store, local, options, wait, derived, replayer, body).await
}

/// [`execute`] on `store`.
async fn execute_on<R, S, F, P>(
    store: &S,
    local: Option<&MemoryStore>,
    options: &Options,
    wait: Option<Duration>,
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
    let call = Call {
        request,
        ttl: options.ttl,
        wait: wait.unwrap_or(options.wait),
    };
    let body = async move {
        match body.await.into_ok() {
            Ok(value) => Produced::Store(Json(value)),
            Err(failure) => Produced::Discard(failure),
        }
    };
    match engine::run(store, &call, body).await {
        Ok(Finished::Fresh(Json(value))) => R::from_ok(value),
        Ok(Finished::Failed(failure)) => failure,
        Ok(Finished::Replayed(record)) => match codec::decode(&record) {
            Ok(value) => {
                let replay = R::from_ok(value);
                if let (Some(memory), Some(kept)) = (local, replayer.to_keep(&replay)) {
                    memory.keep(&call.request.key, &record, kept);
                }
                replay
            }
            Err(detail) => {
                crate::observe::notice(
                    &call.request.namespace,
                    "a stored result does not decode as the function's return type, or cannot be replayed",
                );
                fail::<R>(Error::Codec(CodecError::new(
                    &call.request.namespace,
                    detail,
                )))
            }
        },
        Err(err) => fail::<R>(err),
    }
}

/// A function's `Ok` value, stored as a JSON record.
struct Json<T>(T);

impl<T: Serialize> Encode for Json<T> {
    fn encode(&self) -> Cow<'_, [u8]> {
        Cow::Owned(codec::encode(&self.0).0)
    }

    fn encode_within(&self, budget: Duration) -> Option<Cow<'_, [u8]>> {
        codec::encode_within(&self.0, budget).map(|(bytes, _)| Cow::Owned(bytes))
    }
}

/// The call's result when the idempotency layer itself fails it.
fn fail<R: IdempotentResult>(error: Error) -> R
where
    R::Err: IdempotencyError,
{
    R::from_err(R::Err::from(error))
}
