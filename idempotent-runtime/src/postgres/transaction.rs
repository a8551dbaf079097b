//! Completion inside the caller's transaction: [`PostgresStore::once`] and [`Once`].

use super::{backend, PostgresStore};
use crate::codec;
use crate::engine::{self, Call};
use crate::error::{CodecError, Error, StoreError};
use crate::key::KeyHasher;
use crate::observe::{self, Ending, Observed, Step};
use crate::store::record::{Begin, Claim, Namespace, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};
use std::marker::PhantomData;
use std::time::Duration;

/// The isolation level of the transaction that [`Once::transaction`] opens.
///
/// The store's own statements are correct at every level: its claim is committed before
/// the transaction starts, and the transaction only locks and completes its own row.
/// At REPEATABLE READ and SERIALIZABLE the server may refuse the transaction
/// (`40001 serialization_failure`, or `40P01` for a deadlock) because of the *body's*
/// reads and writes; the store then rolls it back, frees the key, and returns
/// [`Error::Store`] with an error for which [`StoreError::is_retryable`] is true: the
/// call can be made again as it is. It never hangs on a lock for longer than the
/// store's `lock_timeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// `READ COMMITTED`, PostgreSQL's default.
    #[default]
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl Isolation {
    fn sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// The default lease of a transactional claim: it only has to cover the two round trips
/// from the claim to the transaction's row lock, on the same connection.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(2);

/// A [`Once`] that has no key yet: give it a client key or arguments.
#[derive(Debug)]
pub enum Unkeyed {}

/// A [`Once`] with a key: it can run.
#[derive(Debug)]
pub enum Keyed {}

/// One idempotent call whose body writes into a transaction that also completes its
/// record: built by [`PostgresStore::once`], run by [`transaction`](Once::transaction).
///
/// The key is the namespace with a client key ([`client_key`](Once::client_key)) or
/// arguments ([`arg`](Once::arg)); a call without either does not compile, since all its
/// calls would share one record. A [`payload`](Once::payload) is fingerprinted: the same
/// key with another payload is refused with [`Error::PayloadMismatch`].
///
/// ```compile_fail
/// # async fn f(store: idempotent_runtime::PostgresStore) {
/// // No key: every call would be the same call.
/// let order = store.once("orders.create").transaction(async |_tx| Ok::<u64, idempotent_runtime::Error>(7)).await;
/// # }
/// ```
#[must_use = "a `Once` does nothing until `transaction` runs it"]
pub struct Once<'s, K = Unkeyed> {
    store: &'s PostgresStore,
    namespace: Namespace,
    key: KeyHasher,
    fingerprint: KeyHasher,
    ttl: Duration,
    wait: Duration,
    lease: Option<Duration>,
    isolation: Isolation,
    invalid: Option<Error>,
    keyed: PhantomData<K>,
}

impl PostgresStore {
    /// Starts an idempotent call in `namespace` (a name of the operation, such as
    /// `"orders.create"`, part of every key) whose body runs inside a transaction of this
    /// store's pool, and whose completed record is written in that transaction.
    ///
    /// ```no_run
    /// use idempotent_runtime::{Error, PostgresStore};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Order { id: i64 }
    ///
    /// #[derive(Debug)]
    /// enum AppError { Idempotency(Error), Db(sqlx::Error) }
    /// impl From<Error> for AppError { fn from(e: Error) -> Self { AppError::Idempotency(e) } }
    /// impl From<sqlx::Error> for AppError { fn from(e: sqlx::Error) -> Self { AppError::Db(e) } }
    ///
    /// # async fn handler(store: PostgresStore, key: &str, customer: i64, sku: String) -> Result<(), AppError> {
    /// let order = store
    ///     .once("orders.create")
    ///     .client_key(key)
    ///     .payload("order", &(customer, &sku))
    ///     .transaction(async |tx| {
    ///         let id: i64 = sqlx::query_scalar(
    ///             "INSERT INTO orders (customer, sku) VALUES ($1, $2) RETURNING id",
    ///         )
    ///         .bind(customer)
    ///         .bind(&sku)
    ///         .fetch_one(&mut *tx)
    ///         .await?;
    ///         Ok::<_, AppError>(Order { id })
    ///     })
    ///     .await?;
    /// # let _ = order; Ok(()) }
    /// ```
    pub fn once(&self, namespace: impl Into<Namespace>) -> Once<'_, Unkeyed> {
        let namespace = namespace.into();
        Once {
            store: self,
            key: KeyHasher::new(&namespace),
            fingerprint: KeyHasher::fingerprint(&namespace),
            namespace,
            ttl: Call::DEFAULT_TTL,
            wait: Call::DEFAULT_WAIT,
            lease: None,
            isolation: Isolation::ReadCommitted,
            invalid: None,
            keyed: PhantomData,
        }
    }
}

impl<'s, K> Once<'s, K> {
    fn keyed(self) -> Once<'s, Keyed> {
        Once {
            store: self.store,
            namespace: self.namespace,
            key: self.key,
            fingerprint: self.fingerprint,
            ttl: self.ttl,
            wait: self.wait,
            lease: self.lease,
            isolation: self.isolation,
            invalid: self.invalid,
            keyed: PhantomData,
        }
    }

    /// Keys the call by the client's idempotency key (an `Idempotency-Key` header, a
    /// message id). An invalid key ([`validate_client_key`](crate::validate_client_key))
    /// fails the call with [`Error::InvalidKey`] before anything runs.
    pub fn client_key(mut self, key: &str) -> Once<'s, Keyed> {
        if let Err(invalid) = self.key.client_key(key) {
            self.invalid.get_or_insert(Error::InvalidKey(invalid));
        }
        self.keyed()
    }

    /// Adds an argument to the key (or, after a client key, a scope such as a tenant).
    /// Give arguments in ascending order of their names, as the attribute does, if the
    /// keys must equal an `#[idempotent]` function's.
    pub fn arg<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Once<'s, Keyed> {
        self.key.arg(name, value);
        self.keyed()
    }

    /// Adds a value to the payload fingerprint: a later call with the same key and
    /// another payload gets [`Error::PayloadMismatch`] rather than the first result.
    pub fn payload<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        self.fingerprint.arg(name, value);
        self
    }

    /// How long the completed result is kept (default 24 hours).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a duplicate waits for the call in flight before [`Error::InProgress`]
    /// (default 30 s; zero fails at once).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The lease of the claim until the transaction locks its row (default
    /// [`CLAIM_WINDOW`]). From the lock on, the row lock holds the key for as long as the
    /// transaction lives, so the lease only decides how soon a duplicate takes over from
    /// a holder that died, and how often a waiter looks again without a notification.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The transaction's isolation level (default READ COMMITTED).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }
}

/// How a claimed attempt ended.
enum Attempt<T, E, F> {
    /// The body succeeded and its record committed with its writes.
    Done(T),
    /// The body failed: its transaction was rolled back and the key freed.
    Failed(E),
    /// The claim was taken over before the transaction locked it, so the body did not
    /// run: here it is back, to look again.
    Lost(F),
}

impl Once<'_, Keyed> {
    /// Runs the call: replays the completed record of its key, waits for the attempt in
    /// flight, or claims the key and runs `body` inside a new transaction.
    ///
    /// The body gets the transaction's connection: its statements run inside the
    /// transaction, and it may open savepoints (`tx.begin()`), but it must not end the
    /// transaction itself (`COMMIT`, `ROLLBACK`): the store does.
    ///
    /// - `Ok(value)`: the store writes the completed record (`value` as JSON) in the same
    ///   transaction and commits. Commit publishes the body's writes and the record
    ///   together; every duplicate then replays `value`. If `COMMIT` fails, the store
    ///   reads the record to learn whether it committed: if it did, this call returns
    ///   `Ok(value)`; if it did not, the key is freed and the call fails with
    ///   [`Error::Store`].
    /// - `Err(e)`: the transaction is rolled back, the key is freed at once and waiters
    ///   are told, and `e` is returned.
    /// - A panic, a cancelled call (the future dropped) or a dead process: the
    ///   transaction is rolled back by the server, and the key is free again.
    ///
    /// While the transaction is open its row lock is the claim's lease: it never lapses,
    /// and a holder whose session is gone cannot commit.
    ///
    /// # Errors
    ///
    /// The body's `E`, or an [`Error`] converted into `E`: [`Error::PayloadMismatch`],
    /// [`Error::InProgress`] after the wait, [`Error::InvalidKey`], [`Error::Key`],
    /// [`Error::Codec`] if a stored record does not decode as `T`, and [`Error::Store`]
    /// when the database fails (with [`StoreError::is_retryable`] for serialization
    /// failures and deadlocks) or when the body ended the transaction itself.
    pub async fn transaction<T, E, F>(self, body: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    {
        let store = self.store;
        let isolation = self.isolation;
        let call = self.call().map_err(E::from)?;
        let mut observed = Observed::start(&call.request);
        let span = observed.span();
        let ended = span
            .within(run(store, &call, isolation, body, &mut observed))
            .await;
        let ending = match &ended {
            Ok(Ran::Fresh(_)) => Ending::Fresh,
            Ok(Ran::Replayed(_)) if observed.has_waited() => Ending::Waited,
            Ok(Ran::Replayed(_)) => Ending::Replayed,
            Err(Failure::Body(_)) => Ending::Failed,
            Err(Failure::Idempotency(err)) => Ending::of_error(err),
        };
        observed.end(ending);
        match ended {
            Ok(Ran::Fresh(value) | Ran::Replayed(value)) => Ok(value),
            Err(Failure::Body(failure)) => Err(failure),
            Err(Failure::Idempotency(err)) => Err(E::from(err)),
        }
    }

    fn call(self) -> Result<Call, Error> {
        if let Some(invalid) = self.invalid {
            return Err(invalid);
        }
        let request = Request {
            key: self.key.finish().map_err(Error::Key)?,
            fingerprint: self.fingerprint.finish_fingerprint().map_err(Error::Key)?,
            namespace: self.namespace,
            lease: Some(self.lease.unwrap_or(CLAIM_WINDOW)),
        };
        Ok(Call {
            request,
            ttl: self.ttl,
            wait: self.wait,
        })
    }
}

/// How a transactional call succeeded.
enum Ran<T> {
    Fresh(T),
    Replayed(T),
}

/// How a transactional call failed: the body's own error, or the idempotency layer's.
enum Failure<E> {
    Body(E),
    Idempotency(Error),
}

impl<E> From<Error> for Failure<E> {
    fn from(err: Error) -> Self {
        Failure::Idempotency(err)
    }
}

/// The protocol of [`Once::transaction`]: replay, wait, or claim and run.
async fn run<T, E, F>(
    store: &PostgresStore,
    call: &Call,
    isolation: Isolation,
    body: F,
    observed: &mut Observed,
) -> Result<Ran<T>, Failure<E>>
where
    T: Serialize + DeserializeOwned,
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
{
    let mut started = None;
    let mut body = body;
    loop {
        let namespace = &call.request.namespace;
        let acquired = observed.store(store.inner.pool.acquire()).await;
        let mut conn = acquired.map_err(|err| {
            observe::store_failed(namespace, Step::Begin, &err);
            Error::Store(backend(err))
        })?;
        let begun = observed
            .store(store.begin_on(&mut conn, &call.request))
            .await;
        match begun.map_err(|err| {
            observe::store_failed(namespace, Step::Begin, &err);
            Error::Store(err)
        })? {
            Begin::Completed(record) if record.fingerprint != call.request.fingerprint => {
                return Err(engine::mismatch(call).into());
            }
            Begin::Completed(record) => {
                return codec::decode(&record.value)
                    .map(Ran::Replayed)
                    .map_err(|detail| Error::Codec(CodecError::new(namespace, detail)).into());
            }
            Begin::InProgress(flight) if flight.fingerprint != call.request.fingerprint => {
                return Err(engine::mismatch(call).into());
            }
            Begin::InProgress(flight) => {
                // No connection is held while waiting.
                drop(conn);
                observed
                    .wait(engine::wait_for(call, &mut started, flight))
                    .await?;
            }
            Begin::Claimed(claim) => {
                let _held = observed.claim();
                let mut guard = Abandon {
                    store,
                    claim: Some(claim.clone()),
                };
                let attempt = run_claimed(store, &mut conn, call, &claim, isolation, body).await;
                guard.claim = None;
                match attempt {
                    Ok(Attempt::Done(value)) => return Ok(Ran::Fresh(value)),
                    Ok(Attempt::Failed(failure)) => return Err(Failure::Body(failure)),
                    Ok(Attempt::Lost(unrun)) => body = unrun,
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }
}

/// Runs `body` under `claim` inside a transaction on `conn` that first locks the claim's
/// row, then completes the record in it and commits.
async fn run_claimed<T, E, F>(
    store: &PostgresStore,
    conn: &mut PgConnection,
    call: &Call,
    claim: &Claim,
    isolation: Isolation,
    body: F,
) -> Result<Attempt<T, E, F>, Error>
where
    T: Serialize,
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
{
    let inner = &store.inner;
    // One round trip: the transaction, with the store's bounds on locks and on a client
    // that went away, whatever pool the connection came from.
    let begin = format!(
        "BEGIN ISOLATION LEVEL {}; SET LOCAL lock_timeout = '{}ms'; \
         SET LOCAL client_connection_check_interval = '{}ms'",
        isolation.sql(),
        inner.lock_timeout.as_millis(),
        inner.check_interval.as_millis(),
    );
    let mut tx = match conn.begin_with(begin).await {
        Ok(tx) => tx,
        Err(err) => {
            release(store, claim).await;
            return Err(Error::Store(backend(err)));
        }
    };
    // From here the row lock holds the key for as long as the transaction lives.
    let locked: Result<Option<String>, _> = sqlx::query_scalar(&inner.sql.lock)
        .bind(&claim.key().as_bytes()[..])
        .bind(claim.token().0 as i64)
        .fetch_optional(&mut *tx)
        .await;
    let transaction_id = match locked {
        Ok(Some(id)) => id,
        Ok(None) => {
            let _ = tx.rollback().await;
            return Ok(Attempt::Lost(body));
        }
        Err(err) => {
            drop(tx);
            release(store, claim).await;
            return Err(Error::Store(backend(err)));
        }
    };
    let value = match body(&mut tx).await {
        Ok(value) => value,
        Err(failure) => {
            let _ = tx.rollback().await;
            release(store, claim).await;
            return Ok(Attempt::Failed(failure));
        }
    };
    let (mut record, _) = codec::encode(&value);
    if record.len() > inner.max_value_len {
        let too_large = StoreError::too_large(record.len(), inner.max_value_len);
        record = codec::unreplayable(&too_large.to_string());
    }
    let completed: Result<Option<String>, _> = sqlx::query_scalar(&inner.sql.complete_in)
        .bind(&claim.key().as_bytes()[..])
        .bind(claim.token().0 as i64)
        .bind(&record[..])
        .bind(super::millis(call.ttl))
        .bind(&transaction_id)
        .bind(store.channel())
        .fetch_optional(&mut *tx)
        .await;
    codec::recycle(record);
    match completed {
        Ok(Some(_)) => {}
        Ok(None) => {
            drop(tx);
            release(store, claim).await;
            return Err(Error::Store(StoreError::backend(
                "the body ended the store's transaction (COMMIT or ROLLBACK); it must leave \
                 that to the store, and may use savepoints",
            )));
        }
        Err(err) => {
            drop(tx);
            release(store, claim).await;
            return Err(Error::Store(backend(err)));
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(Attempt::Done(value)),
        Err(err) => settle(store, claim, err)
            .await
            .map(|()| Attempt::Done(value)),
    }
}

/// Finds out, after a `COMMIT` that failed, whether it committed: waits for the
/// transaction that held the row to end (bounded by `lock_timeout`) and reads the record.
/// Committed: the call succeeded. Not committed: the key is freed and the call fails.
/// Unknown (the database is unreachable): the call fails, and the claim is left to its
/// lease; a retry finds out.
async fn settle(store: &PostgresStore, claim: &Claim, failed: sqlx::Error) -> Result<(), Error> {
    let found: Result<Option<(i64, bool)>, _> = sqlx::query_as(&store.inner.sql.settle)
        .bind(&claim.key().as_bytes()[..])
        .fetch_optional(&store.inner.pool)
        .await;
    match found {
        Ok(Some((token, true))) if token == claim.token().0 as i64 => Ok(()),
        Ok(_) => {
            release(store, claim).await;
            Err(Error::Store(backend(failed)))
        }
        Err(_) => {
            observe::notice(
                claim.namespace(),
                "a COMMIT failed and its outcome could not be read: the claim is left to its window",
            );
            Err(Error::Store(backend(failed)))
        }
    }
}

/// Frees the claim of an attempt that ended without a record; if that fails, the claim's
/// window frees the key instead, and an event says so.
async fn release(store: &PostgresStore, claim: &Claim) {
    if let Err(err) = store.release_claim(claim).await {
        observe::store_failed(claim.namespace(), Step::Release, &err);
    }
}

/// Frees the claim if the call is dropped (cancelled) or its body panics; the server
/// rolls the transaction back when sqlx returns its connection to the pool.
struct Abandon<'s> {
    store: &'s PostgresStore,
    claim: Option<Claim>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            crate::store::Store::abandon(self.store, claim);
        }
    }
}
