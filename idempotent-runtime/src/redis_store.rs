//! [`RedisStore`]: records in Redis, shared by every process and machine that uses it.

use crate::error::{Error, StoreError};
use crate::key::{Fingerprint, Key};
use crate::record::{Begin, Claim, Completed, InFlight, Notification, Request, Token};
use crate::store::Store;
use parking_lot::Mutex;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::AsyncConnectionConfig;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

/// A store in Redis: one record per key, shared by every process that connects to the
/// same server (or cluster) with the same prefix.
///
/// - **Atomic steps**: a record is one string. Claiming a vacant record or reading a held
///   one is a single plain `SET .. NX PX .. GET` (Redis 7.0 or later), so a replay is one
///   round trip, as cheap as a `GET`; the fenced steps (renew, complete, release) are one
///   Lua script each, so a fresh call is two round trips (claim; complete and notify)
///   besides the body.
/// - **Leases and fencing**: a claim is a record with an expiry (its lease), which a
///   running body renews; a holder that died stops renewing and its claim lapses. Every
///   claim has a random 64-bit token in its record, and only the current token may renew,
///   complete or release, so an attempt that lost its lease cannot overwrite its
///   successor.
/// - **Waiting by notification**: a duplicate that finds a record in progress flags it
///   (`<record>:waiting`); the completion or release of a flagged record is published on
///   one channel per prefix, to which each `RedisStore` subscribes once, so waiters on any node wake
///   within a round trip. A holder that died sends nothing: waiters also wake when the
///   lease they saw ends.
/// - **Cluster**: the parts of a key name that Redis hashes (`{..}`) are the record's key,
///   so each step touches one slot.
/// - **Names and expiry**: records are `<prefix>:{<key hex>}:<function namespace>`; no
///   argument value appears in a key name, and every key written has an expiry (the
///   lease, then the TTL).
/// - **Any runtime**: the store runs its connections on a dedicated I/O thread of its
///   own, so it works from any Tokio runtime (or none), including after the runtime that
///   created it has shut down, and reconnects by itself after Redis comes back.
///
/// ```no_run
/// use idempotent_runtime::{set_default_store, RedisStore};
/// use std::time::Duration;
///
/// # async fn start() -> Result<(), idempotent_runtime::Error> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .prefix("orders-service")
///     .lease(Duration::from_secs(10))
///     .connect()
///     .await?;
/// set_default_store(store)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    io: Handle,
    _runtime: IoRuntime,
    prefix: String,
    channel: String,
    lease: Duration,
    response_timeout: Duration,
    waiters: Arc<Waiters>,
}

/// Owns the store's I/O thread, and shuts it down without blocking when dropped, which
/// may well happen inside an async task.
struct IoRuntime(Option<Runtime>);

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("lease", &self.inner.lease)
            .field("response_timeout", &self.inner.response_timeout)
            .finish_non_exhaustive()
    }
}

/// The store's way to Redis. Commands go straight from the caller's task to a multiplexed
/// connection whose driver runs on the store's I/O thread; reconnecting happens on that
/// thread too, so no caller's runtime ever hosts a connection it may outlive.
enum Connection {
    Single(Arc<SingleNode>),
    /// The cluster connection routes by slot and reconnects its nodes itself, from the
    /// tasks it started on the I/O thread.
    Cluster(ClusterConnection),
}

/// One server's connection, replaced on the I/O thread when it breaks.
struct SingleNode {
    client: redis::Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    current: parking_lot::RwLock<MultiplexedConnection>,
    reconnecting: std::sync::atomic::AtomicBool,
}

impl SingleNode {
    async fn connect(&self) -> Result<MultiplexedConnection, Error> {
        tokio::time::timeout(
            self.connect_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&self.config),
        )
        .await
        .map_err(|_| {
            backend(format!(
                "could not connect to Redis within {:?}",
                self.connect_timeout
            ))
        })?
        .map_err(backend)
    }

    /// Reconnects in the background, once at a time, retrying until the server is back.
    fn reconnect(self: &Arc<Self>, io: &Handle) {
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let node = Arc::downgrade(self);
        io.spawn(async move {
            let mut delay = Duration::from_millis(50);
            while let Some(node) = node.upgrade() {
                if let Ok(fresh) = node.connect().await {
                    *node.current.write() = fresh;
                    node.reconnecting.store(false, Ordering::Release);
                    return;
                }
                drop(node);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        });
    }
}

/// One call's handle on the connection: cheap clones of shared handles.
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Where the store connects.
#[derive(Debug, Clone)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
}

/// Configures and connects a [`RedisStore`].
///
/// ```no_run
/// use idempotent_runtime::RedisStore;
/// use std::time::Duration;
///
/// # async fn start() -> Result<(), idempotent_runtime::Error> {
/// let store = RedisStore::cluster_builder(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .connect_timeout(Duration::from_secs(1))
///     .response_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    target: Target,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    lease: Duration,
}

impl RedisStoreBuilder {
    /// The first part of every key name (default `idempotency`). Stores with different
    /// prefixes never share records; it must not contain `{` or `}`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long connecting may take before it fails (default 2 seconds).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one step may wait for its answer before the call fails with
    /// [`Error::Store`] (default 2 seconds). No body runs without a claim, so an
    /// unreachable server fails calls within this time, before their bodies.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The lease of a claim made without an explicit one (default 30 seconds): how long a
    /// key stays blocked after its holder died. Running bodies renew their claims.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Connects, and starts listening for completions.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the prefix is invalid, or the server cannot be reached within
    /// the connect timeout.
    pub async fn connect(self) -> Result<RedisStore, Error> {
        if self.prefix.contains(['{', '}']) {
            return Err(backend(format!(
                "the key prefix {:?} must not contain `{{` or `}}`: Redis Cluster would hash the wrong part",
                self.prefix
            )));
        }
        let runtime = IoRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("idempotency-redis")
                .enable_all()
                .build()
                .map_err(backend)?,
        ));
        let io = runtime
            .0
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| backend("no I/O runtime"))?;
        let target = self.target.clone();
        let (connect_timeout, response_timeout) = (self.connect_timeout, self.response_timeout);
        let connecting = io.spawn(async move {
            tokio::time::timeout(
                connect_timeout,
                open(&target, connect_timeout, response_timeout),
            )
            .await
            .map_err(|_| {
                backend(format!(
                    "could not connect to Redis within {connect_timeout:?}"
                ))
            })?
        });
        let conn = connecting.await.map_err(backend)??;

        let waiters = Arc::new(Waiters::default());
        let channel = format!("{}:completions", self.prefix);
        io.spawn(listen(
            self.target,
            channel.clone(),
            Arc::downgrade(&waiters),
            connect_timeout,
        ));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                io,
                _runtime: runtime,
                prefix: self.prefix,
                channel,
                lease: self.lease,
                response_timeout,
                waiters,
            }),
        })
    }
}

fn backend(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Store(StoreError::backend(err))
}

async fn open(
    target: &Target,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Connection, Error> {
    match target {
        Target::Single(url) => {
            let client = redis::Client::open(url.as_str()).map_err(backend)?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(response_timeout));
            let first = tokio::time::timeout(
                connect_timeout,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await
            .map_err(|_| {
                backend(format!(
                    "could not connect to Redis within {connect_timeout:?}"
                ))
            })?
            .map_err(backend)?;
            Ok(Connection::Single(Arc::new(SingleNode {
                client,
                config,
                connect_timeout,
                current: parking_lot::RwLock::new(first),
                reconnecting: std::sync::atomic::AtomicBool::new(false),
            })))
        }
        Target::Cluster(nodes) => {
            let client = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                .connection_timeout(connect_timeout)
                .response_timeout(response_timeout)
                .retries(2)
                .build()
                .map_err(backend)?;
            Ok(Connection::Cluster(
                client.get_async_connection().await.map_err(backend)?,
            ))
        }
    }
}

impl RedisStore {
    /// The default prefix of key names.
    pub const DEFAULT_PREFIX: &'static str = "idempotency";
    /// The default lease of a claim.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
    /// The default connect and response timeouts.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Connects to one server with the default settings.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the server cannot be reached within the connect timeout.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder(url).connect().await
    }

    /// A builder for a store on one server (`redis://host:port/db`, `rediss://..`).
    #[must_use]
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        Self::with_target(Target::Single(url.into()))
    }

    /// A builder for a store on a Redis Cluster, given some of its nodes.
    #[must_use]
    pub fn cluster_builder<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_target(Target::Cluster(nodes.into_iter().map(Into::into).collect()))
    }

    fn with_target(target: Target) -> RedisStoreBuilder {
        RedisStoreBuilder {
            target,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Self::DEFAULT_TIMEOUT,
            response_timeout: Self::DEFAULT_TIMEOUT,
            lease: Self::DEFAULT_LEASE,
        }
    }

    /// The prefix of this store's key names.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key that holds the record of `key`, in `namespace`.
    ///
    /// ```
    /// # use idempotent_runtime::{Key, RedisStore};
    /// // idempotency:{f4e91bbf452e806d53b9f5d36711a4e3}:orders.create
    /// ```
    #[must_use]
    pub fn record_key(&self, namespace: &str, key: &Key) -> String {
        format!("{}:{{{key}}}:{namespace}", self.inner.prefix)
    }

    /// One call's handle on the connection.
    fn conn(&self) -> Conn {
        match &self.inner.conn {
            Connection::Single(node) => Conn::Single(node.current.read().clone()),
            Connection::Cluster(cluster) => Conn::Cluster(cluster.clone()),
        }
    }

    /// Turns a client error into a store error; a broken connection to a single server is
    /// replaced in the background (this call fails meanwhile).
    fn failed(&self, err: redis::RedisError) -> StoreError {
        if let Connection::Single(node) = &self.inner.conn {
            if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
                node.reconnect(&self.inner.io);
            }
        }
        StoreError::backend(err)
    }

    /// Runs one script on the record and its waiters' flag. The connection's response
    /// timeout bounds the wait.
    async fn script(
        &self,
        script: &'static Script,
        record: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<Value, StoreError> {
        let mut invocation = script.key(record);
        invocation.key(format!("{record}:waiting"));
        for arg in args {
            invocation.arg(arg);
        }
        invocation
            .invoke_async::<Value>(&mut self.conn())
            .await
            .map_err(|err| self.failed(err))
    }

    /// The record of a claim, as stored while it is held: what fenced steps compare.
    fn claimed_record(claim: &Claim) -> Vec<u8> {
        claimed_record(claim.token(), claim.fingerprint())
    }
}

/// A record is one string: a kind, the layout version, then its fields.
///
/// | kind | bytes |
/// |---|---|
/// | in progress | `P`, `1`, token (8 bytes little-endian), fingerprint (16 bytes) |
/// | completed | `C`, `1`, fingerprint (16 bytes), the encoded result |
const IN_PROGRESS: &[u8; 2] = b"P1";
const COMPLETED: &[u8; 2] = b"C1";

fn claimed_record(token: Token, fingerprint: Fingerprint) -> Vec<u8> {
    let mut record = Vec::with_capacity(26);
    record.extend_from_slice(IN_PROGRESS);
    record.extend_from_slice(&token.0.to_le_bytes());
    record.extend_from_slice(fingerprint.as_bytes());
    record
}

fn completed_record(fingerprint: Fingerprint, value: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(18 + value.len());
    record.extend_from_slice(COMPLETED);
    record.extend_from_slice(fingerprint.as_bytes());
    record.extend_from_slice(value);
    record
}

fn fingerprint_at(bytes: &[u8]) -> Option<Fingerprint> {
    bytes
        .get(..16)?
        .try_into()
        .ok()
        .map(Fingerprint::from_bytes)
}

static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/renew.lua")));
static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("redis/complete.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redis/release.lua")));

/// A fencing token no other claim has had: random, from the process's hasher keys, a
/// clock and a counter.
fn fresh_token() -> Token {
    static STATE: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Token(STATE.hash_one((
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos,
        std::process::id(),
    )))
}

fn millis(duration: Duration) -> Vec<u8> {
    duration.as_millis().max(1).to_string().into_bytes()
}

fn unexpected(what: &str, value: &Value) -> StoreError {
    StoreError::backend(format!("unexpected answer to {what}: {value:?}"))
}

/// What one look at a record found.
enum Found {
    Claimed,
    Completed(Completed),
    InProgress(Fingerprint),
}

impl RedisStore {
    /// Claims the record if it is vacant, or reads it: one plain `SET .. NX PX .. GET`,
    /// atomic on the server. A replay is this one command.
    fn claim_or_read(record: &str, claim: &[u8], lease: Duration) -> Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(record)
            .arg(claim)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease))
            .arg("GET");
        cmd
    }

    fn found(answer: &Value) -> Result<Found, StoreError> {
        match answer {
            Value::Nil | Value::Okay => Ok(Found::Claimed),
            Value::BulkString(bytes) => match bytes.split_at_checked(2) {
                Some((kind, rest)) if kind == COMPLETED => {
                    let fingerprint =
                        fingerprint_at(rest).ok_or_else(|| unexpected("a read", answer))?;
                    Ok(Found::Completed(Completed {
                        fingerprint,
                        value: Arc::from(&rest[16..]),
                    }))
                }
                Some((kind, rest)) if kind == IN_PROGRESS => rest
                    .get(8..)
                    .and_then(fingerprint_at)
                    .map(Found::InProgress)
                    .ok_or_else(|| unexpected("a read", answer)),
                _ => Err(StoreError::backend(format!(
                    "a record in a layout this version does not read: {:?}",
                    bytes.get(..2)
                ))),
            },
            other => Err(unexpected("a read", other)),
        }
    }
}

impl Store for RedisStore {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        let lease = request.lease.unwrap_or(self.inner.lease);
        let token = fresh_token();
        let claim = claimed_record(token, request.fingerprint);
        let record = self.record_key(request.namespace, &request.key);
        let claimed = || Begin::Claimed(Claim::new(request, token, lease));
        let mut conn = self.conn();
        let answer: Value = Self::claim_or_read(&record, &claim, lease)
            .query_async(&mut conn)
            .await
            .map_err(|err| self.failed(err))?;
        match Self::found(&answer)? {
            Found::Claimed => return Ok(claimed()),
            Found::Completed(completed) => return Ok(Begin::Completed(completed)),
            Found::InProgress(_) => {}
        }
        // In progress. Listen from now on, flag the record so that its completion is
        // published, and look again: a completion after this look cannot be missed.
        let registration = Waiters::register(&self.inner.waiters, request.key);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("{record}:waiting"))
            .arg(1)
            .arg("PX")
            .arg(millis(lease * 2))
            .ignore();
        pipe.add_command(Self::claim_or_read(&record, &claim, lease));
        pipe.cmd("PTTL").arg(&record);
        let (answer, pttl): (Value, i64) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|err| self.failed(err))?;
        Ok(match Self::found(&answer)? {
            Found::Claimed => claimed(),
            Found::Completed(completed) => Begin::Completed(completed),
            Found::InProgress(fingerprint) => Begin::InProgress(InFlight {
                fingerprint,
                lease_remaining: u64::try_from(pttl).map_or(lease, Duration::from_millis),
                changed: Waiters::notification(registration),
            }),
        })
    }

    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        let record = self.record_key(claim.namespace(), claim.key());
        let args = vec![Self::claimed_record(claim), millis(claim.lease())];
        match self.script(&RENEW, &record, args).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::lease_lost()),
            other => Err(unexpected("renew", &other)),
        }
    }

    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let record = self.record_key(claim.namespace(), claim.key());
        let args = vec![
            Self::claimed_record(claim),
            completed_record(claim.fingerprint(), value),
            millis(ttl),
            self.inner.channel.clone().into_bytes(),
            claim.key().to_string().into_bytes(),
        ];
        match self.script(&COMPLETE, &record, args).await? {
            Value::Int(1) => Ok(()),
            Value::Int(0) => Err(StoreError::lease_lost()),
            other => Err(unexpected("complete", &other)),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let record = self.record_key(claim.namespace(), claim.key());
        let args = vec![
            Self::claimed_record(claim),
            self.inner.channel.clone().into_bytes(),
            claim.key().to_string().into_bytes(),
        ];
        match self.script(&RELEASE, &record, args).await? {
            Value::Int(0 | 1) => Ok(()),
            other => Err(unexpected("release", &other)),
        }
    }

    fn abandon(&self, claim: Claim) {
        let store = self.clone();
        // On the store's own thread: no runtime is needed where the call was dropped.
        drop(self.inner.io.spawn(async move {
            let _ = store.release(&claim).await;
        }));
    }
}

/// The local callers waiting for records of this store, by key.
#[derive(Default)]
struct Waiters {
    by_key: Mutex<HashMap<Key, (watch::Sender<()>, usize)>>,
}

/// One caller's interest in a key, withdrawn on drop.
struct Registration {
    waiters: Arc<Waiters>,
    key: Key,
    changed: watch::Receiver<()>,
}

impl Waiters {
    fn register(waiters: &Arc<Waiters>, key: Key) -> Registration {
        let mut by_key = waiters.by_key.lock();
        let (sender, count) = by_key
            .entry(key)
            .or_insert_with(|| (watch::Sender::new(()), 0));
        *count += 1;
        Registration {
            waiters: Arc::clone(waiters),
            key,
            changed: sender.subscribe(),
        }
    }

    fn notification(mut registration: Registration) -> Notification {
        Notification::new(async move {
            let _ = registration.changed.changed().await;
            drop(registration);
        })
    }

    fn wake(&self, key: &Key) {
        if let Some((sender, _)) = self.by_key.lock().get(key) {
            sender.send_replace(());
        }
    }

    fn wake_all(&self) {
        for (sender, _) in self.by_key.lock().values() {
            sender.send_replace(());
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_key = self.waiters.by_key.lock();
        if let Entry::Occupied(mut entry) = by_key.entry(self.key) {
            entry.get_mut().1 -= 1;
            if entry.get().1 == 0 {
                entry.remove();
            }
        }
    }
}

fn parse_key(hex: &[u8]) -> Option<Key> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(Key::from_bytes(out))
}

/// Listens for completions on the store's channel for as long as the store lives, and
/// wakes the local waiters of each completed key. After a reconnection every waiter is
/// woken to look again, since notices may have been missed meanwhile.
async fn listen(
    target: Target,
    channel: String,
    waiters: std::sync::Weak<Waiters>,
    connect_timeout: Duration,
) {
    use futures_util::StreamExt as _;
    let nodes = match target {
        Target::Single(url) => vec![url],
        Target::Cluster(nodes) => nodes,
    };
    let mut attempt = 0usize;
    loop {
        let url = &nodes[attempt % nodes.len()];
        attempt += 1;
        let subscribed = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        if let Ok(Ok(mut pubsub)) = tokio::time::timeout(connect_timeout, subscribed).await {
            attempt = 0;
            match waiters.upgrade() {
                Some(waiters) => waiters.wake_all(),
                None => return,
            }
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(waiters) = waiters.upgrade() else {
                    return;
                };
                if let Some(key) = parse_key(message.get_payload_bytes()) {
                    waiters.wake(&key);
                }
            }
        }
        if waiters.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt.min(10) as u64))).await;
    }
}
