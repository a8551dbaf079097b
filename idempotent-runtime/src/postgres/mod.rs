//! [`PostgresStore`]: records in a PostgreSQL table, shared by every process that uses it,
//! and completion inside the caller's own transaction.

use crate::error::StoreError;
use crate::key::Fingerprint;
use crate::store::record::{Begin, Claim, Completed, InFlight, Request, Token};
use crate::store::Store;
use crate::waiters::Waiters;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::PgConnection;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

mod listener;
mod sql;
mod transaction;

use sql::Statements;
pub use transaction::{Isolation, Keyed, Once, Unkeyed, CLAIM_WINDOW};

/// A store in a PostgreSQL table: one row per key, shared by every process that connects
/// to the same database and table. PostgreSQL 14 or later.
///
/// # Two ways to use it
///
/// - **As any [`Store`]**: the `#[idempotent]` attribute, the HTTP layer and the engine
///   use it as they use the Redis store. Each step is one statement at READ COMMITTED,
///   fenced by the claim's token (`… WHERE key = $1 AND token = $2`); tokens come from a
///   sequence, so none is ever given twice. A replay is one round trip (one statement
///   that claims a vacant key or reads its row), a fresh call two besides the body
///   (claim; complete and notify).
/// - **Inside the caller's transaction**, with [`once`](PostgresStore::once): the body
///   gets the connection of a transaction that the store opens, its writes go into it,
///   and the completed record is written in the *same* transaction. Commit publishes the
///   writes and the record together; an `Err`, a panic, a cancelled call or a dead
///   process rolls both back, and the key is free again. This is exactly once for the
///   body's database writes, whatever fails. See [`Once`].
///
/// # Waiting, expiry, settings
///
/// - **Waiters** are woken by `LISTEN`/`NOTIFY` on one dedicated connection per store
///   (the channel is the table's name; a notification is sent only when its transaction
///   commits). A timer on the holder's lease is the fallback for lost notifications and
///   reconnections; nothing polls in a tight loop.
/// - **Expiry**: a row past its `until` (a completed record past its TTL, a lapsed
///   claim) counts as vacant at once. The store's reaper deletes such rows in batches of
///   [`reap_batch`](PostgresStoreBuilder::reap_batch) (`… FOR UPDATE SKIP LOCKED LIMIT n`,
///   never waiting on a row a live transaction holds), every
///   [`reap_every`](PostgresStoreBuilder::reap_every) from every process; it is safe to
///   run from all of them at once, and [`reap`](PostgresStore::reap) runs one batch on
///   demand (for a cron job, with `reap_every(Duration::ZERO)` turning the timer off).
/// - **Connections**: a store built from a URL sets `lock_timeout` (so no statement waits
///   for a lock without bound) and `client_connection_check_interval` (so the server
///   notices a killed client in the middle of a long statement and frees its locks) on
///   its connections. A store built on your pool sets both inside its transactions; set
///   them on the pool too, with [`tune`](PostgresStore::tune).
///
/// ```no_run
/// use idempotent_runtime::PostgresStore;
/// use std::time::Duration;
///
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::builder("postgres://app@127.0.0.1/orders")
///     .lease(Duration::from_secs(10))
///     .migrate()
///     .connect()
///     .await?;
/// // `migrate()` creates the table; or run `PostgresStore::SCHEMA` with your migrations.
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    sql: Arc<Statements>,
    table: String,
    lease: Duration,
    lock_timeout: Duration,
    check_interval: Duration,
    max_value_len: usize,
    reap_batch: u32,
    waiters: Arc<Waiters>,
    /// Where `abandon` spawns its release.
    runtime: Handle,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.table)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

/// Why a [`PostgresStore`] could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The URL is not a PostgreSQL URL.
    #[error("not a PostgreSQL URL")]
    Url(#[source] sqlx::Error),
    /// The server could not be reached, or refused the connection.
    #[error("could not connect to PostgreSQL")]
    Connect(#[source] sqlx::Error),
    /// The server is older than PostgreSQL 14.
    #[error("PostgreSQL {found} is too old: the store needs version 14 or later")]
    Version {
        /// The server's `server_version_num` (e.g. 130012).
        found: i64,
    },
    /// The table name is not a plain SQL identifier.
    #[error(
        "`{0}` cannot be the store's table: use lower-case letters, digits and `_` (at most \
         50), optionally after a schema name and a dot"
    )]
    InvalidTable(String),
    /// The table (or its token sequence) is missing or has other columns.
    #[error(
        "the table `{table}` is missing or is not a store's table: build the store with \
         `migrate()`, or run `PostgresStore::SCHEMA` first"
    )]
    Table {
        /// The table's name.
        table: String,
        /// The server's error.
        #[source]
        source: sqlx::Error,
    },
    /// The migration failed.
    #[error("the migration of `{table}` failed")]
    Migrate {
        /// The table's name.
        table: String,
        /// The server's error.
        #[source]
        source: sqlx::Error,
    },
}

/// Builds a [`PostgresStore`]: from a URL (the store's own pool) or from an existing pool.
///
/// ```no_run
/// use idempotent_runtime::PostgresStore;
/// use std::time::Duration;
///
/// # async fn start(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// // On the application's pool, in the application's schema.
/// let store = PostgresStore::with_pool(pool)
///     .table("app.idempotency")
///     .reap_every(Duration::from_secs(60))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct PostgresStoreBuilder {
    source: Source,
    table: String,
    lease: Duration,
    lock_timeout: Duration,
    check_interval: Duration,
    max_connections: u32,
    acquire_timeout: Duration,
    max_value_len: usize,
    reap_every: Duration,
    reap_batch: u32,
    heartbeat: Duration,
    migrate: bool,
}

enum Source {
    Url(String),
    Pool(PgPool),
}

impl PostgresStore {
    /// The default lease of a claim made through the [`Store`] trait, which a running
    /// body renews at a third. (A claim of [`Once::transaction`] is held by its
    /// transaction's row lock instead; see [`CLAIM_WINDOW`].)
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
    /// The default `lock_timeout`.
    pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default `client_connection_check_interval`.
    pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
    /// The default time between two runs of the reaper.
    pub const DEFAULT_REAP_EVERY: Duration = Duration::from_secs(60);
    /// The default number of rows one reaper batch deletes.
    pub const DEFAULT_REAP_BATCH: u32 = 1000;
    /// The default largest value a record may hold: 64 MiB.
    pub const DEFAULT_MAX_VALUE_LEN: usize = 64 << 20;
    /// The migration for the default table, `idempotency_records` (the file
    /// `src/postgres/schema.sql` of `idempotent-runtime`).
    pub const SCHEMA: &'static str = sql::SCHEMA;

    /// A builder for a store with a pool of its own on `url`
    /// (`postgres://user:password@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(Source::Url(url.into()))
    }

    /// A builder for a store on the application's own pool, so that its transactions and
    /// the application's share connections.
    pub fn with_pool(pool: PgPool) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(Source::Pool(pool))
    }

    /// `options` with the settings the store wants on every connection of a pool it
    /// shares: `lock_timeout` and `client_connection_check_interval`, at their defaults.
    ///
    /// ```no_run
    /// use idempotent_runtime::PostgresStore;
    /// use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    ///
    /// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
    /// let options: PgConnectOptions = "postgres://app@127.0.0.1/orders".parse()?;
    /// let pool = PgPoolOptions::new().connect_with(PostgresStore::tune(options)).await?;
    /// let store = PostgresStore::with_pool(pool.clone()).connect().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tune(options: PgConnectOptions) -> PgConnectOptions {
        with_settings(
            options,
            Self::DEFAULT_LOCK_TIMEOUT,
            Self::DEFAULT_CHECK_INTERVAL,
        )
    }

    /// Deletes one batch of rows past their `until` (completed records past their TTL,
    /// lapsed claims) that no transaction holds; how many it deleted. The store runs it
    /// by itself every [`reap_every`](PostgresStoreBuilder::reap_every).
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn reap(&self) -> Result<u64, StoreError> {
        reap(&self.inner.pool, &self.inner.sql, self.inner.reap_batch).await
    }

    /// The pool the store's statements run on.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The store's table.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The channel of the store's notifications: the table's name.
    fn channel(&self) -> &str {
        &self.inner.table
    }

    fn lease_of(&self, request: &Request) -> Duration {
        request.lease.unwrap_or(self.inner.lease)
    }

    /// Claims `request.key` if it is vacant, or reads its record, on `conn`.
    async fn begin_on(
        &self,
        conn: &mut PgConnection,
        request: &Request,
    ) -> Result<Begin, StoreError> {
        let lease = self.lease_of(request);
        let mut registration = None;
        let mut looked_again = false;
        loop {
            let row: Option<BeginRow> = sqlx::query_as(&self.inner.sql.begin)
                .bind(&request.key.as_bytes()[..])
                .bind(request.namespace.as_str())
                .bind(&request.fingerprint.as_bytes()[..])
                .bind(millis(lease))
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
            // No row: the key's row was written after this statement's snapshot. Look again.
            let Some((claimed, found, stored_fingerprint, value, remaining)) = row else {
                continue;
            };
            if claimed {
                return Ok(Begin::Claimed(Claim::new(request, token(found), lease)));
            }
            let fingerprint = fingerprint(stored_fingerprint.as_deref())?;
            let remaining = remaining.unwrap_or(0);
            if remaining > 0 {
                if let Some(value) = value {
                    return Ok(Begin::Completed(Completed {
                        fingerprint,
                        value: value.into(),
                    }));
                }
                // In progress. Listen from now on and look again: a completion after that
                // look cannot be missed.
                match registration.take() {
                    None => {
                        registration = Some(Waiters::register(&self.inner.waiters, request.key));
                        continue;
                    }
                    Some(registration) => {
                        return Ok(Begin::InProgress(InFlight {
                            fingerprint,
                            lease_remaining: Duration::from_millis(remaining.unsigned_abs()),
                            changed: Waiters::notification(registration),
                        }));
                    }
                }
            }
            // Past its `until`: vacant, unless a live transaction holds its row.
            let taken: Option<i64> = sqlx::query_scalar(&self.inner.sql.take_over)
                .bind(&request.key.as_bytes()[..])
                .bind(request.namespace.as_str())
                .bind(&request.fingerprint.as_bytes()[..])
                .bind(millis(lease))
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
            if let Some(taken) = taken {
                return Ok(Begin::Claimed(Claim::new(request, token(taken), lease)));
            }
            // Not taken: the reaper deleted the row meanwhile, another caller claimed it,
            // or a transaction holds it. Look once more before waiting.
            if !looked_again {
                looked_again = true;
                continue;
            }
            // Held by a transaction (its row lock is its lease), or claimed by another
            // caller just now: wait for its notification, looking again after a lease.
            let registration = registration
                .take()
                .unwrap_or_else(|| Waiters::register(&self.inner.waiters, request.key));
            return Ok(Begin::InProgress(InFlight {
                fingerprint,
                lease_remaining: lease,
                changed: Waiters::notification(registration),
            }));
        }
    }

    async fn release_claim(&self, claim: &Claim) -> Result<(), StoreError> {
        sqlx::query(&self.inner.sql.release)
            .bind(&claim.key().as_bytes()[..])
            .bind(claim.token().0 as i64)
            .bind(self.channel())
            .execute(&self.inner.pool)
            .await
            .map(drop)
            .map_err(backend)
    }
}

/// One row of the `begin` statement: claimed, token, fingerprint, value, milliseconds
/// left until `until`.
type BeginRow = (bool, i64, Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

impl Store for PostgresStore {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        let mut conn = self.inner.pool.acquire().await.map_err(backend)?;
        self.begin_on(&mut conn, request).await
    }

    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        let renewed: Option<i64> = sqlx::query_scalar(&self.inner.sql.renew)
            .bind(&claim.key().as_bytes()[..])
            .bind(claim.token().0 as i64)
            .bind(millis(claim.lease()))
            .bind(claim.namespace().as_str())
            .bind(&claim.fingerprint().as_bytes()[..])
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(backend)?;
        match renewed {
            Some(_) => Ok(()),
            None => Err(StoreError::lease_lost()),
        }
    }

    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        if value.len() > self.inner.max_value_len {
            return Err(StoreError::too_large(value.len(), self.inner.max_value_len));
        }
        let done: Option<String> = sqlx::query_scalar(&self.inner.sql.complete)
            .bind(&claim.key().as_bytes()[..])
            .bind(claim.token().0 as i64)
            .bind(value)
            .bind(millis(ttl))
            .bind(claim.namespace().as_str())
            .bind(&claim.fingerprint().as_bytes()[..])
            .bind(self.channel())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(backend)?;
        match done {
            Some(_) => Ok(()),
            None => Err(StoreError::lease_lost()),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.release_claim(claim).await
    }

    fn abandon(&self, claim: Claim) {
        let store = self.clone();
        drop(self.inner.runtime.spawn(async move {
            if let Err(err) = store.release_claim(&claim).await {
                crate::observe::store_failed(
                    claim.namespace(),
                    crate::observe::Step::Abandon,
                    &err,
                );
            }
        }));
    }
}

impl PostgresStoreBuilder {
    fn new(source: Source) -> Self {
        PostgresStoreBuilder {
            source,
            table: sql::DEFAULT_TABLE.to_owned(),
            lease: PostgresStore::DEFAULT_LEASE,
            lock_timeout: PostgresStore::DEFAULT_LOCK_TIMEOUT,
            check_interval: PostgresStore::DEFAULT_CHECK_INTERVAL,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            max_value_len: PostgresStore::DEFAULT_MAX_VALUE_LEN,
            reap_every: PostgresStore::DEFAULT_REAP_EVERY,
            reap_batch: PostgresStore::DEFAULT_REAP_BATCH,
            heartbeat: Duration::from_secs(5),
            migrate: false,
        }
    }

    /// The table (default `idempotency_records`), optionally schema-qualified
    /// (`app.idempotency`). Its sequence is `<table>_token`; the notification channel is
    /// the table's name.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The lease of a claim (default [`PostgresStore::DEFAULT_LEASE`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a statement may wait for a row lock before it fails (default 5 s): set on
    /// the store's own connections and inside its transactions.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How often the server checks, while a statement runs, that its client is still
    /// connected (`client_connection_check_interval`, default 1 s), so that a killed
    /// holder's transaction ends, and its locks go, even in the middle of a long statement.
    pub fn connection_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// The size of the store's own pool (default 10; ignored on a pool of yours).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections;
        self
    }

    /// How long to wait for a connection of the store's own pool (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The largest value a record may hold (default 64 MiB): a larger result is completed
    /// with a short record that says so, and its duplicates get an error instead of
    /// running the body again.
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.max_value_len = len;
        self
    }

    /// How often the reaper deletes a batch of expired rows (default 60 s; it runs again
    /// at once while batches come back full). `Duration::ZERO` turns it off, for
    /// schedules of your own around [`PostgresStore::reap`].
    pub fn reap_every(mut self, every: Duration) -> Self {
        self.reap_every = every;
        self
    }

    /// How many rows one reaper batch deletes at most (default 1000).
    pub fn reap_batch(mut self, rows: u32) -> Self {
        self.reap_batch = rows.max(1);
        self
    }

    /// How long the listening connection may stay silent before it is checked with a
    /// query (default 5 s); one that fails the check is replaced, and every waiter looks
    /// again.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Creates the table, its sequence and its index when connecting, if they do not
    /// exist ([`PostgresStore::SCHEMA`], for the configured table). Without it, `connect`
    /// only checks that they do.
    pub fn migrate(mut self) -> Self {
        self.migrate = true;
        self
    }

    /// Connects, checks the server's version and the table, and starts listening for
    /// notifications (and the reaper). Call it inside the Tokio runtime the store will be
    /// used from: its connections and tasks live there.
    ///
    /// # Errors
    ///
    /// [`PostgresError`] saying what is wrong.
    pub async fn connect(self) -> Result<PostgresStore, PostgresError> {
        if !sql::valid_table(&self.table) {
            return Err(PostgresError::InvalidTable(self.table));
        }
        let pool = match self.source {
            Source::Pool(pool) => pool,
            Source::Url(url) => {
                let options = PgConnectOptions::from_str(&url).map_err(PostgresError::Url)?;
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.acquire_timeout)
                    .connect_with(with_settings(
                        options,
                        self.lock_timeout,
                        self.check_interval,
                    ))
                    .await
                    .map_err(PostgresError::Connect)?
            }
        };
        let version: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(&pool)
            .await
            .map_err(PostgresError::Connect)?;
        let version: i64 = version.trim().parse().unwrap_or(0);
        if version < 140_000 {
            return Err(PostgresError::Version { found: version });
        }
        if self.migrate {
            sqlx::raw_sql(&Statements::schema(&self.table))
                .execute(&pool)
                .await
                .map_err(|source| PostgresError::Migrate {
                    table: self.table.clone(),
                    source,
                })?;
        }
        let sql = Arc::new(Statements::new(&self.table));
        sqlx::query(&sql.probe)
            .execute(&pool)
            .await
            .map_err(|source| PostgresError::Table {
                table: self.table.clone(),
                source,
            })?;
        let waiters = Arc::new(Waiters::default());
        let listening = listener::Listener {
            options: pool.connect_options().as_ref().clone(),
            channel: self.table.clone(),
            waiters: Arc::downgrade(&waiters),
            heartbeat: self.heartbeat,
        };
        let first = listening.connect().await.map_err(PostgresError::Connect)?;
        let mut tasks = vec![tokio::spawn(listener::listen(listening, first))];
        if !self.reap_every.is_zero() {
            let (pool, sql) = (pool.clone(), Arc::clone(&sql));
            let (every, batch) = (self.reap_every, self.reap_batch);
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    while let Ok(deleted) = reap(&pool, &sql, batch).await {
                        if deleted < u64::from(batch) {
                            break;
                        }
                    }
                }
            }));
        }
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sql,
                table: self.table,
                lease: self.lease,
                lock_timeout: self.lock_timeout,
                check_interval: self.check_interval,
                max_value_len: self.max_value_len,
                reap_batch: self.reap_batch,
                waiters,
                runtime: Handle::current(),
                tasks,
            }),
        };
        Ok(store)
    }
}

async fn reap(pool: &PgPool, sql: &Statements, batch: u32) -> Result<u64, StoreError> {
    sqlx::query(&sql.reap)
        .bind(i64::from(batch))
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(backend)
}

fn with_settings(
    options: PgConnectOptions,
    lock_timeout: Duration,
    check_interval: Duration,
) -> PgConnectOptions {
    options.options([
        ("lock_timeout", format!("{}ms", lock_timeout.as_millis())),
        (
            "client_connection_check_interval",
            format!("{}ms", check_interval.as_millis()),
        ),
    ])
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Tokens are the sequence's `bigint`s, carried as the same 64 bits.
fn token(value: i64) -> Token {
    Token(value as u64)
}

fn fingerprint(bytes: Option<&[u8]>) -> Result<Fingerprint, StoreError> {
    bytes
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .map(Fingerprint::from_bytes)
        .ok_or_else(|| StoreError::backend("a record's fingerprint is not 16 bytes"))
}

/// The server's error as a store's; a serialization failure, a deadlock or a lock
/// timeout is [retryable](StoreError::is_retryable).
fn backend(err: sqlx::Error) -> StoreError {
    let retryable = matches!(
        &err,
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01" | "55P03"))
    );
    if retryable {
        StoreError::retryable(err)
    } else {
        StoreError::backend(err)
    }
}
