//! [`RedisStore`]: records in Redis, shared by every process and machine that uses it.

use crate::error::{Error, StoreError};
use crate::key::{Fingerprint, Key};
use crate::store::record::{Begin, Claim, Completed, InFlight, Request, Token};
use crate::store::Store;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::AsyncConnectionConfig;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

mod connect_error;
#[cfg(feature = "redis-sentinel")]
mod sentinel;
mod server;
#[cfg(feature = "redis-tls")]
mod tls;
mod waiters;

use crate::waiters::Waiters;
pub use connect_error::{ConnectError, ConnectErrorKind};
#[cfg(feature = "redis-sentinel")]
pub use sentinel::SentinelMaster;
use server::Refusal;
pub use server::{Persistence, ServerInfo};
use waiters::{listen, Listener};

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
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
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
    servers: Vec<ServerInfo>,
    /// The longest record the servers accept.
    max_record_len: usize,
    /// Replicas that must acknowledge a completion, and how long to wait for them.
    replicas: Option<(u64, Duration)>,
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
///
/// Hand-written rather than `redis::aio::ConnectionManager` (redis 1.8), which was tried
/// (created on the I/O runtime, response timeouts kept per call) and cannot keep two
/// behaviours:
/// - It replaces a connection only on errors it deems unrecoverable, and a response
///   timeout (`io::ErrorKind::TimedOut`, a retry-immediately error) is not one: a
///   connection that a NAT froze times out every call for good
///   (`a_frozen_subscriber_is_replaced_and_waiters_wake_at_once` failed: "the command
///   connection was never replaced"). It has no public way to ask for a replacement.
/// - It reconnects with `tokio::spawn` from the task whose command failed, so the new
///   connection's driver lives on the caller's runtime, not the I/O thread, and dies
///   with it: the scenario of `a_reconnection_on_a_runtime_that_shut_down_outlives_it`
///   failed in 4 of 5 runs ("broken pipe"); a caller with no Tokio runtime would panic.
struct SingleNode {
    client: redis::Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    current: parking_lot::RwLock<MultiplexedConnection>,
    reconnecting: std::sync::atomic::AtomicBool,
    /// How many times the connection was replaced, and a signal of each time.
    generation: AtomicU64,
    replaced: Notify,
    /// Where to ask for the master at every reconnection, for a store built on Sentinel.
    #[cfg(feature = "redis-sentinel")]
    sentinels: Option<sentinel::Sentinels>,
}

impl SingleNode {
    async fn connect(&self) -> Result<MultiplexedConnection, Error> {
        tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| {
                backend(format!(
                    "could not connect to Redis within {:?}",
                    self.connect_timeout
                ))
            })?
            .map_err(backend)
    }

    /// A fresh connection: to the server, or to the master the sentinels name now.
    async fn open(&self) -> redis::RedisResult<MultiplexedConnection> {
        #[cfg(feature = "redis-sentinel")]
        if let Some(sentinels) = &self.sentinels {
            return sentinels.connect(&self.config).await;
        }
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
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
                    node.generation.fetch_add(1, Ordering::AcqRel);
                    node.replaced.notify_waiters();
                    return;
                }
                drop(node);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        });
    }

    /// Waits, at most the connect timeout, until the connection has been replaced since it
    /// was at `generation`; whether it was.
    async fn replaced_since(&self, generation: u64) -> bool {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        loop {
            let replaced = self.replaced.notified();
            if self.generation.load(Ordering::Acquire) != generation {
                return true;
            }
            if tokio::time::timeout_at(deadline, replaced).await.is_err() {
                return false;
            }
        }
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
    /// The master that the sentinels name at each connection.
    #[cfg(feature = "redis-sentinel")]
    Sentinel(sentinel::Sentinels),
}

/// Configures and connects a [`RedisStore`].
///
/// ```no_run
/// use idempotent_runtime::RedisStore;
/// use std::time::Duration;
///
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
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
    heartbeat: Duration,
    accept_eviction: bool,
    require_persistence: bool,
    max_value_len: Option<usize>,
    replicas: Option<(u64, Duration)>,
    #[cfg(feature = "redis-tls")]
    tls: tls::TlsOptions,
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
    /// unreachable server fails calls within this time, before their bodies. A connection
    /// that times out is replaced. Give results of tens of megabytes more: their replay is
    /// one reply that must arrive within this time (the completion of a large result
    /// gets more time by itself, in proportion to its size).
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

    /// How often the connection that hears completions is checked with a `PING` (default
    /// 1 second). A connection that went silent (a NAT or load balancer dropped the flow
    /// without a FIN or RST) fails the check within this time plus the response timeout;
    /// it is then replaced, and every waiter looks at its record again, so no waiter
    /// trusts a dead channel for longer.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(10));
        self
    }

    /// Connects even if the server can evict records (any `maxmemory-policy` but
    /// `noeviction`, which [`connect`](Self::connect) otherwise refuses: `volatile-*`
    /// policies evict records too, since every record has an expiry). A record evicted
    /// before its TTL is forgotten: the next duplicate runs the body again. Only for a
    /// Redis that is a cache by design, where that is acceptable.
    #[must_use]
    pub fn accept_eviction(mut self) -> Self {
        self.accept_eviction = true;
        self
    }

    /// Refuses, at [`connect`](Self::connect), a server that keeps records only in memory
    /// (neither `appendonly` nor snapshots), whose restart would forget every record. A
    /// server that does not say (`CONFIG` disabled) is accepted; see
    /// [`RedisStore::servers`] for what it said.
    #[must_use]
    pub fn require_persistence(mut self) -> Self {
        self.require_persistence = true;
        self
    }

    /// The largest result to store, in bytes of its encoding (default: what the server
    /// accepts, its `proto-max-bulk-len`, 512 MiB unless configured). The caller of a
    /// larger result still gets it, and its duplicates get [`Error::Codec`] (the record
    /// says the result was too large to keep) instead of running the body again. A
    /// value above the server's own limit is lowered to it.
    #[must_use]
    pub fn max_value_len(mut self, bytes: usize) -> Self {
        self.max_value_len = Some(bytes);
        self
    }

    /// Waits, after every completion, until `replicas` replicas have acknowledged it
    /// (`WAIT`), for at most `timeout`, before the caller gets its fresh result: a failover
    /// to a replica then cannot lose a record whose result a caller has already seen. If
    /// fewer acknowledge in time, the caller still gets its result (the body ran), and
    /// the record may be lost in a failover within the next moments.
    #[must_use]
    pub fn wait_for_replicas(mut self, replicas: u64, timeout: Duration) -> Self {
        self.replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Trusts the CAs in `pem` (one or more `-----BEGIN CERTIFICATE-----` blocks) to sign
    /// the servers' certificates, **instead of** the system's root certificates: for a
    /// server whose certificate a private CA signed. Replaces the roots given before. With
    /// the `redis-tls` feature.
    ///
    /// Without it, a `rediss://` URL trusts the system's roots (as `openssl` and `curl` on
    /// the machine do), which is what a managed Redis with a public certificate needs. The
    /// store connects only with `rediss://` URLs once a TLS option is given; each server's
    /// certificate must name the host or IP address of its URL (for a cluster, also the
    /// addresses the nodes announce).
    ///
    /// ```no_run
    /// use idempotent_runtime::RedisStore;
    ///
    /// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder("rediss://redis.internal:6380")
    ///     .tls_root_certificates(std::fs::read("/etc/redis/tls/ca.crt")?)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// A PEM that holds no certificate, or one that does not parse, fails
    /// [`connect`](Self::connect) with [`ConnectErrorKind::InvalidConfig`]; a server whose
    /// certificate these CAs did not sign fails it with [`ConnectErrorKind::Tls`].
    #[cfg(feature = "redis-tls")]
    #[must_use]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.roots = Some(pem.into());
        self
    }

    /// Presents a client certificate to the servers that ask for one (Redis's
    /// `tls-auth-clients yes`): `certificate_chain` is the PEM of the client's certificate,
    /// followed by any intermediate CAs, and `private_key` the PEM of its key (PKCS#8,
    /// PKCS#1 or SEC1). Replaces the certificate given before. With the `redis-tls` feature.
    ///
    /// ```no_run
    /// use idempotent_runtime::RedisStore;
    ///
    /// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder("rediss://redis.internal:6380")
    ///     .tls_root_certificates(std::fs::read("/etc/redis/tls/ca.crt")?)
    ///     .tls_client_certificate(
    ///         std::fs::read("/etc/orders/tls/client.crt")?,
    ///         std::fs::read("/etc/orders/tls/client.key")?,
    ///     )
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// A PEM that holds no certificate or no key, or a key that is not the certificate's,
    /// fails [`connect`](Self::connect) with [`ConnectErrorKind::InvalidConfig`] before
    /// anything connects; a server that refuses the certificate fails it with
    /// [`ConnectErrorKind::Tls`].
    #[cfg(feature = "redis-tls")]
    #[must_use]
    pub fn tls_client_certificate(
        mut self,
        certificate_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((certificate_chain.into(), private_key.into()));
        self
    }

    /// Connects, checks the server, and starts listening for completions.
    ///
    /// The check: the server answers with the credentials given (`PING`), runs Redis 7.0
    /// or later, does not evict keys (unless [`accept_eviction`](Self::accept_eviction)),
    /// persists records if [`require_persistence`](Self::require_persistence) asks, and
    /// lets this user subscribe to the store's channel (Redis 7 gives new ACL users no
    /// channel at all). For a cluster, every node given is checked.
    ///
    /// # Errors
    ///
    /// A [`ConnectError`] that says what to change, of the kind
    /// ([`ConnectError::kind`]):
    /// - [`InvalidConfig`](ConnectErrorKind::InvalidConfig): the prefix contains `{` or
    ///   `}`, a URL does not parse, a TLS option was given for a URL that is not
    ///   `rediss://`, or a certificate or key does not read;
    /// - [`Unreachable`](ConnectErrorKind::Unreachable): no server answered within the
    ///   connect timeout, or the connection was refused or broke;
    /// - [`Tls`](ConnectErrorKind::Tls): the TLS handshake failed (a server certificate
    ///   that is not trusted or not for its host, a client certificate missing or refused);
    /// - [`Eviction`](ConnectErrorKind::Eviction), [`MemoryOnly`](ConnectErrorKind::MemoryOnly),
    ///   [`Version`](ConnectErrorKind::Version),
    ///   [`CommandRefused`](ConnectErrorKind::CommandRefused): the server failed the check
    ///   (its eviction policy, its persistence, its version; credentials, an ACL or another
    ///   refusal of a command);
    /// - [`IoThread`](ConnectErrorKind::IoThread): the store's I/O thread could not start.
    pub async fn connect(self) -> Result<RedisStore, ConnectError> {
        if self.prefix.contains(['{', '}']) {
            return Err(ConnectError::new(
                ConnectErrorKind::InvalidConfig,
                format!(
                    "the key prefix {:?} must not contain `{{` or `}}`: Redis Cluster would hash the wrong part",
                    self.prefix
                ),
            ));
        }
        let clients = self.clients()?;
        let runtime = IoRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("idempotency-redis")
                .enable_all()
                .build()
                .map_err(|err| {
                    ConnectError::caused_by(
                        ConnectErrorKind::IoThread,
                        "the store's I/O thread could not start",
                        err,
                    )
                })?,
        ));
        let io = runtime
            .0
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| ConnectError::new(ConnectErrorKind::IoThread, "no I/O runtime"))?;
        let channel = format!("{}:completions", self.prefix);
        let setup = self.clone();
        let subscribe_to = channel.clone();
        let listeners: Vec<redis::Client> = clients
            .nodes
            .iter()
            .map(|(_, client)| client.clone())
            .collect();
        let connecting = io.spawn(async move {
            let connect_timeout = setup.connect_timeout;
            tokio::time::timeout(connect_timeout, setup.open_checked(&clients, &subscribe_to))
                .await
                .map_err(|_| timed_out(connect_timeout))?
        });
        let (conn, servers, pubsub) = connecting.await.map_err(|err| {
            ConnectError::caused_by(
                ConnectErrorKind::IoThread,
                "the store's I/O thread failed while connecting",
                err,
            )
        })??;
        let server_limit = servers
            .iter()
            .map(|server| usize::try_from(server.max_bulk_len).unwrap_or(usize::MAX))
            .min()
            .unwrap_or(usize::MAX);
        let max_record_len = self.max_value_len.map_or(server_limit, |max| {
            max.saturating_add(COMPLETED_HEADER).min(server_limit)
        });

        let waiters = Arc::new(Waiters::default());
        io.spawn(listen(
            Listener {
                nodes: listeners,
                channel: channel.clone(),
                waiters: Arc::downgrade(&waiters),
                connect_timeout: self.connect_timeout,
                response_timeout: self.response_timeout,
                heartbeat: self.heartbeat,
                #[cfg(feature = "redis-sentinel")]
                sentinels: match &self.target {
                    Target::Sentinel(sentinels) => Some(sentinels.clone()),
                    _ => None,
                },
            },
            pubsub,
        ));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                io,
                _runtime: runtime,
                prefix: self.prefix,
                channel,
                lease: self.lease,
                response_timeout: self.response_timeout,
                waiters,
                servers,
                max_record_len,
                replicas: self.replicas,
            }),
        })
    }

    /// Opens the connection, checks every server, and subscribes to `channel`.
    async fn open_checked(
        &self,
        clients: &Clients,
        channel: &str,
    ) -> Result<(Connection, Vec<ServerInfo>, redis::aio::PubSub), ConnectError> {
        let refused = ConnectError::from;
        let mut servers = Vec::new();
        let conn = match &self.target {
            Target::Single(url) => {
                let conn =
                    open_single(clients, self.connect_timeout, self.response_timeout).await?;
                let mut handle = conn.current.read().clone();
                servers.push(server::inspect(&mut handle, url).await.map_err(refused)?);
                Connection::Single(conn)
            }
            #[cfg(feature = "redis-sentinel")]
            Target::Sentinel(sentinels) => {
                let conn =
                    sentinel::open(sentinels, self.connect_timeout, self.response_timeout).await?;
                if let Connection::Single(node) = &conn {
                    let mut handle = node.current.read().clone();
                    let address = sentinel::address(&node.client);
                    servers.push(
                        server::inspect(&mut handle, &address)
                            .await
                            .map_err(refused)?,
                    );
                }
                conn
            }
            Target::Cluster(_) => {
                // Every seed node that answers is checked; one that is down (a failed
                // master, a node being replaced) is no reason to refuse the cluster. Checked
                // before the cluster connects, whose errors keep only their text: a failed
                // TLS handshake is told apart here.
                for (url, client) in &clients.nodes {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.connect_timeout))
                        .set_response_timeout(Some(self.response_timeout));
                    match client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                    {
                        Ok(mut node) => {
                            servers.push(server::inspect(&mut node, url).await.map_err(refused)?);
                        }
                        Err(err) if broke(&err) && !tls_failure(&err) => {}
                        Err(err) => return Err(ConnectError::redis("connect", err)),
                    }
                }
                if servers.is_empty() {
                    return Err(ConnectError::new(
                        ConnectErrorKind::Unreachable,
                        "no node of the Redis Cluster answered",
                    ));
                }
                open_cluster(clients, self.connect_timeout, self.response_timeout).await?
            }
        };
        for server in &servers {
            if server.maxmemory_policy != "noeviction" && !self.accept_eviction {
                return Err(refused(Refusal::Eviction(server.maxmemory_policy.clone())));
            }
            if server.memory_only() && self.require_persistence {
                return Err(refused(Refusal::MemoryOnly));
            }
        }
        // The first node that answers listens; every node hears every notice.
        let mut last = None;
        #[cfg(feature = "redis-sentinel")]
        if let Target::Sentinel(sentinels) = &self.target {
            return match sentinels.subscribe(channel).await {
                Ok(pubsub) => Ok((conn, servers, pubsub)),
                Err(err) => Err(refused(Refusal::Command(
                    "subscribe to the store's channel",
                    err,
                ))),
            };
        }
        for (_, client) in clients
            .nodes
            .iter()
            .filter(|(url, _)| servers.iter().any(|server| server.address == *url))
        {
            match subscribe(client, channel).await {
                Ok(pubsub) => return Ok((conn, servers, pubsub)),
                Err(err) if broke(&err) && !tls_failure(&err) => last = Some(err),
                Err(err) => {
                    return Err(refused(Refusal::Command(
                        "subscribe to the store's channel",
                        err,
                    )))
                }
            }
        }
        Err(match last {
            Some(err) => ConnectError::redis("subscribe to the store's channel", err),
            None => ConnectError::new(ConnectErrorKind::Unreachable, "no Redis node to listen on"),
        })
    }

    /// A client for each node, with the TLS options: the URLs and the certificates are
    /// checked here, before anything connects.
    fn clients(&self) -> Result<Clients, ConnectError> {
        #[cfg(feature = "redis-tls")]
        let certificates = if self.tls.is_set() {
            Some(self.tls.certificates()?)
        } else {
            None
        };
        let mut nodes = Vec::new();
        for url in nodes_of(&self.target) {
            let client = client(&url)?;
            #[cfg(feature = "redis-tls")]
            let client = tls::configured(client, certificates.as_ref())?;
            nodes.push((url, client));
        }
        Ok(Clients {
            nodes,
            #[cfg(feature = "redis-tls")]
            certificates,
        })
    }
}

/// The clients of the nodes a builder names, configured for TLS where asked.
struct Clients {
    /// One per node given, in order, with its URL.
    nodes: Vec<(String, redis::Client)>,
    /// The certificates the cluster client needs too.
    #[cfg(feature = "redis-tls")]
    certificates: Option<redis::TlsCertificates>,
}

/// Whether `err` is a failed TLS handshake: a reason to stop, where another broken
/// connection is one to try the next node.
fn tls_failure(err: &redis::RedisError) -> bool {
    #[cfg(feature = "redis-tls")]
    {
        tls::handshake_problem(err).is_some()
    }
    #[cfg(not(feature = "redis-tls"))]
    {
        let _ = err;
        false
    }
}

/// The nodes a target names.
fn nodes_of(target: &Target) -> Vec<String> {
    match target {
        Target::Single(url) => vec![url.clone()],
        Target::Cluster(nodes) => nodes.clone(),
        // Not subscribed to by URL (see `subscribe_to`).
        #[cfg(feature = "redis-sentinel")]
        Target::Sentinel(sentinels) => sentinels.urls.clone(),
    }
}

/// A connection that listens on `channel`.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

fn backend(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::Store(StoreError::backend(err))
}

/// A client for `url`, or why the URL does not parse (the URL itself is not repeated: it
/// may hold a password).
fn client(url: &str) -> Result<redis::Client, ConnectError> {
    redis::Client::open(url).map_err(|err| {
        #[cfg(not(feature = "redis-tls"))]
        if url
            .split_once("://")
            .is_some_and(|(scheme, _)| ["rediss", "valkeys"].contains(&scheme))
        {
            return ConnectError::caused_by(
                ConnectErrorKind::InvalidConfig,
                "a `rediss://` URL needs TLS: enable the `redis-tls` feature of `idempotency`",
                err,
            );
        }
        ConnectError::caused_by(
            ConnectErrorKind::InvalidConfig,
            "the Redis URL is invalid",
            err,
        )
    })
}

fn timed_out(connect_timeout: Duration) -> ConnectError {
    ConnectError::new(
        ConnectErrorKind::Unreachable,
        format!("could not connect to Redis within {connect_timeout:?}"),
    )
}

/// The connection to one server, with its client for reconnecting.
async fn open_single(
    clients: &Clients,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Arc<SingleNode>, ConnectError> {
    let Some((_, client)) = clients.nodes.first() else {
        return Err(ConnectError::new(
            ConnectErrorKind::InvalidConfig,
            "no Redis URL was given",
        ));
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout));
    let first = tokio::time::timeout(
        connect_timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| timed_out(connect_timeout))?
    .map_err(|err| ConnectError::redis("connect", err))?;
    Ok(Arc::new(SingleNode {
        client: client.clone(),
        config,
        connect_timeout,
        current: parking_lot::RwLock::new(first),
        reconnecting: std::sync::atomic::AtomicBool::new(false),
        generation: AtomicU64::new(0),
        replaced: Notify::new(),
        #[cfg(feature = "redis-sentinel")]
        sentinels: None,
    }))
}

/// The connection to a cluster, which finds its nodes and reconnects them itself, with
/// the same TLS options as the seed nodes.
async fn open_cluster(
    clients: &Clients,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Connection, ConnectError> {
    let builder =
        redis::cluster::ClusterClient::builder(clients.nodes.iter().map(|(url, _)| url.as_str()))
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            .retries(2);
    #[cfg(feature = "redis-tls")]
    let builder = match &clients.certificates {
        Some(certificates) => builder.certs(certificates.clone()),
        None => builder,
    };
    let client = builder.build().map_err(|err| {
        ConnectError::caused_by(
            ConnectErrorKind::InvalidConfig,
            "the Redis Cluster nodes are invalid",
            err,
        )
    })?;
    Ok(Connection::Cluster(
        client
            .get_async_connection()
            .await
            .map_err(|err| ConnectError::redis("connect to the cluster", err))?,
    ))
}

impl RedisStore {
    /// The default prefix of key names.
    pub const DEFAULT_PREFIX: &'static str = "idempotency";
    /// The default lease of a claim.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
    /// The default connect and response timeouts.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default interval of the listening connection's liveness check.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

    /// Connects to one server with the default settings.
    ///
    /// # Errors
    ///
    /// A [`ConnectError`], as [`RedisStoreBuilder::connect`] says.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
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
            heartbeat: Self::DEFAULT_HEARTBEAT,
            accept_eviction: false,
            require_persistence: false,
            max_value_len: None,
            replicas: None,
            #[cfg(feature = "redis-tls")]
            tls: tls::TlsOptions::default(),
        }
    }

    /// What each server said about itself at connect: version, eviction policy,
    /// persistence, replicas. Log its [`ServerInfo::warnings`] at start-up.
    #[must_use]
    pub fn servers(&self) -> &[ServerInfo] {
        &self.inner.servers
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
            if broke(&err) {
                node.reconnect(&self.inner.io);
            }
        }
        StoreError::backend(err)
    }

    /// The generation of the single server's connection, to wait for its replacement.
    fn generation(&self) -> Option<u64> {
        match &self.inner.conn {
            Connection::Single(node) => Some(node.generation.load(Ordering::Acquire)),
            Connection::Cluster(_) => None,
        }
    }

    /// Runs one script on the record and its waiters' flag. The connection's response
    /// timeout bounds the wait.
    ///
    /// A small call is an `EVALSHA`. A large one (a big result) is one `EVAL` with the
    /// script's source, so that it crosses the network once: after a restart the server
    /// has forgotten its scripts, and an `EVALSHA` answered `NOSCRIPT` would be sent again,
    /// payload and all. It also gets more time, in proportion to its size.
    async fn script(
        &self,
        script: &Lua,
        record: &str,
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        self.run_script(script, record, args)
            .await
            .map_err(|err| self.failed(err))
    }

    async fn run_script(
        &self,
        script: &Lua,
        record: &str,
        args: &[&[u8]],
    ) -> Result<Value, redis::RedisError> {
        let size: usize = args.iter().map(|arg| arg.len()).sum();
        if size <= LARGE_CALL {
            let mut invocation = script.compiled.key(record);
            invocation.key(format!("{record}:waiting"));
            for &arg in args {
                invocation.arg(arg);
            }
            invocation.invoke_async::<Value>(&mut self.conn()).await
        } else {
            let mut eval = redis::cmd("EVAL");
            eval.arg(script.source)
                .arg(2)
                .arg(record)
                .arg(format!("{record}:waiting"));
            for &arg in args {
                eval.arg(arg);
            }
            eval.query_async::<Value>(&mut self.conn_with_more_time(transfer_time(size)))
                .await
        }
    }

    /// A handle whose response timeout is `extra` longer than the store's, for a step that
    /// legitimately takes longer (a large transfer, a `WAIT`). A cluster connection has one
    /// timeout for all, so its handle keeps it.
    fn conn_with_more_time(&self, extra: Duration) -> Conn {
        let mut conn = self.conn();
        if let Conn::Single(single) = &mut conn {
            single.set_response_timeout(self.inner.response_timeout + extra);
        }
        conn
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
    let mut record = Vec::with_capacity(COMPLETED_HEADER + value.len());
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

/// A Lua script of the store: its source, and the handle that sends it by its hash.
struct Lua {
    source: &'static str,
    compiled: Script,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Lua {
            source,
            compiled: Script::new(source),
        }
    }
}

static RENEW: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("renew.lua")));
static COMPLETE: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("complete.lua")));
static RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("release.lua")));

/// Script calls with more argument bytes than this are sent as one `EVAL`.
const LARGE_CALL: usize = 64 * 1024;

/// The bytes a completed record adds to its value: kind, version, fingerprint.
const COMPLETED_HEADER: usize = 18;

/// A fencing token no other claim has had: 64 bits from the operating system's CSPRNG, so
/// that no two processes (restarted, forked, with the same clock) draw the same one. Should
/// the OS refuse, the process's hasher keys, a clock and a counter stand in.
fn fresh_token() -> Token {
    if let Ok(token) = getrandom::u64() {
        return Token(token);
    }
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

/// A claim that may exist on the server while no caller knows of it yet: from the moment
/// the claim is sent until its answer is read. If the call is dropped meanwhile (a client
/// timed out, a connection closed), the server still executes the claim, so it is released
/// here, fenced by its token, rather than left to block the key for a whole lease.
struct Unconfirmed<'a> {
    store: &'a RedisStore,
    claim: Claim,
    armed: bool,
}

impl Unconfirmed<'_> {
    /// The claim was granted: the caller holds it from now on.
    fn confirm(mut self) -> Claim {
        self.armed = false;
        self.claim.clone()
    }

    /// The claim was not granted: nothing to release.
    fn dismiss(mut self) {
        self.armed = false;
    }

    /// Reads the answer to the claim. An answer that does not read is someone else's
    /// record, not a claim granted: nothing to release then either.
    fn read(&mut self, answer: &Value) -> Result<Found, StoreError> {
        let found = RedisStore::found(answer);
        self.armed &= found.is_ok();
        found
    }
}

impl Drop for Unconfirmed<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.store.abandon(self.claim.clone());
        }
    }
}

/// How long sending and storing `size` bytes may take, at a pessimistic 16 MiB a second.
#[allow(
    clippy::cast_precision_loss,
    reason = "a time estimate; sizes are far below 2^52"
)]
fn transfer_time(size: usize) -> Duration {
    Duration::from_secs_f64(size as f64 / f64::from(16u32 << 20))
}

/// Whether a failure means the connection is no good any more. A timeout counts: a
/// connection that went silent (a NAT dropped the flow, no FIN or RST) would otherwise
/// time out every call for good.
fn broke(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
}

/// A record held by another attempt, as a waiter sees it: `pttl` is what Redis said is left
/// of the holder's lease (negative if it said nothing useful, then the full `lease`).
fn in_flight(
    fingerprint: Fingerprint,
    pttl: i64,
    lease: Duration,
    registration: crate::waiters::Registration,
) -> InFlight {
    InFlight {
        fingerprint,
        lease_remaining: u64::try_from(pttl).map_or(lease, Duration::from_millis),
        changed: Waiters::notification(registration),
    }
}

/// Whether a command failed because the server is out of memory (`noeviction` and full):
/// writes fail, reads still work.
fn out_of_memory(err: &redis::RedisError) -> bool {
    err.code() == Some("OOM")
}

impl Store for RedisStore {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        let lease = request.lease.unwrap_or(self.inner.lease);
        let token = fresh_token();
        let claim = claimed_record(token, request.fingerprint);
        let record = self.record_key(&request.namespace, &request.key);
        let mut conn = self.conn();
        let mut unconfirmed = Unconfirmed {
            store: self,
            claim: Claim::new(request, token, lease),
            armed: true,
        };
        let answer: Value = match Self::claim_or_read(&record, &claim, lease)
            .query_async(&mut conn)
            .await
        {
            Ok(answer) => answer,
            Err(err) if out_of_memory(&err) => {
                unconfirmed.dismiss();
                return self.read_only(request, &record, lease, err).await;
            }
            Err(err) => return Err(self.failed(err)),
        };
        match unconfirmed.read(&answer)? {
            Found::Claimed => return Ok(Begin::Claimed(unconfirmed.confirm())),
            Found::Completed(completed) => {
                unconfirmed.dismiss();
                return Ok(Begin::Completed(completed));
            }
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
        let (answer, pttl): (Value, i64) = match pipe.query_async(&mut conn).await {
            Ok(answers) => answers,
            Err(err) if out_of_memory(&err) => {
                unconfirmed.dismiss();
                return self.read_only(request, &record, lease, err).await;
            }
            Err(err) => return Err(self.failed(err)),
        };
        Ok(match unconfirmed.read(&answer)? {
            Found::Claimed => Begin::Claimed(unconfirmed.confirm()),
            Found::Completed(completed) => {
                unconfirmed.dismiss();
                Begin::Completed(completed)
            }
            Found::InProgress(fingerprint) => {
                unconfirmed.dismiss();
                Begin::InProgress(in_flight(fingerprint, pttl, lease, registration))
            }
        })
    }

    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        let record = self.record_key(claim.namespace(), claim.key());
        let (held, lease) = (Self::claimed_record(claim), millis(claim.lease()));
        match self.script(&RENEW, &record, &[&held, &lease]).await? {
            Value::Int(1 | 2) => Ok(()),
            Value::Int(0) => Err(StoreError::lease_lost()),
            other => Err(unexpected("renew", &other)),
        }
    }

    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let completed = completed_record(claim.fingerprint(), value);
        let limit = self.inner.max_record_len;
        if completed.len() > limit {
            return Err(StoreError::too_large(
                value.len(),
                limit.saturating_sub(COMPLETED_HEADER),
            ));
        }
        let record = self.record_key(claim.namespace(), claim.key());
        if completed.len() > LARGE_CALL {
            // The claim must outlive the transfer: a renewal sent now would queue behind it
            // on the connection, so extend the lease by the transfer's time first.
            let transfer = transfer_time(completed.len());
            let (held, lease) = (
                Self::claimed_record(claim),
                millis(claim.lease() + transfer),
            );
            if let Value::Int(0) = self.script(&RENEW, &record, &[&held, &lease]).await? {
                return Err(StoreError::lease_lost());
            }
        }
        let (held, ttl, key) = (
            Self::claimed_record(claim),
            millis(ttl),
            claim.key().to_string(),
        );
        let args: [&[u8]; 5] = [
            &held,
            &completed,
            &ttl,
            self.inner.channel.as_bytes(),
            key.as_bytes(),
        ];
        let generation = self.generation();
        let answer = match self.run_script(&COMPLETE, &record, &args).await {
            Ok(answer) => answer,
            // The connection broke (a restart, a cut): the result is worth a second try on
            // a fresh one. It is safe: a completion that did arrive answers 1 again.
            Err(err) if broke(&err) => {
                let failed = self.failed(err);
                let replaced = match (&self.inner.conn, generation) {
                    (Connection::Single(node), Some(generation)) => {
                        node.replaced_since(generation).await
                    }
                    _ => false,
                };
                if !replaced {
                    return Err(failed);
                }
                self.script(&COMPLETE, &record, &args).await?
            }
            Err(err) => return Err(self.failed(err)),
        };
        match answer {
            Value::Int(1 | 2) => self.replicated(&record).await,
            Value::Int(0) => Err(StoreError::lease_lost()),
            other => Err(unexpected("complete", &other)),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let record = self.record_key(claim.namespace(), claim.key());
        let (held, key) = (Self::claimed_record(claim), claim.key().to_string());
        let args: [&[u8]; 3] = [&held, self.inner.channel.as_bytes(), key.as_bytes()];
        match self.script(&RELEASE, &record, &args).await? {
            Value::Int(0 | 1) => Ok(()),
            other => Err(unexpected("release", &other)),
        }
    }

    fn abandon(&self, claim: Claim) {
        let store = self.clone();
        // On the store's own thread: no runtime is needed where the call was dropped.
        drop(self.inner.io.spawn(async move {
            if let Err(err) = store.release(&claim).await {
                crate::observe::store_failed(
                    claim.namespace(),
                    crate::observe::Step::Abandon,
                    &err,
                );
            }
        }));
    }
}

impl RedisStore {
    /// The look of a server that is out of memory and refuses writes: a plain `GET`, so
    /// that completed records are still replayed and calls in flight still waited for. A
    /// vacant record cannot be claimed: that call fails with the server's error.
    async fn read_only(
        &self,
        request: &Request,
        record: &str,
        lease: Duration,
        refused: redis::RedisError,
    ) -> Result<Begin, StoreError> {
        // Registered before the look: a completion after it cannot be missed (if its
        // record carries a waiters' flag, which this call cannot set).
        let registration = Waiters::register(&self.inner.waiters, request.key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(record).cmd("PTTL").arg(record);
        let (answer, pttl): (Value, i64) = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|err| self.failed(err))?;
        match Self::found(&answer)? {
            Found::Claimed => Err(StoreError::backend(refused)),
            Found::Completed(completed) => Ok(Begin::Completed(completed)),
            Found::InProgress(fingerprint) => Ok(Begin::InProgress(in_flight(
                fingerprint,
                pttl,
                lease,
                registration,
            ))),
        }
    }

    /// Waits for the replicas the store was built to wait for to acknowledge the writes
    /// so far on the connection that wrote `record`.
    async fn replicated(&self, record: &str) -> Result<(), StoreError> {
        let Some((replicas, timeout)) = self.inner.replicas else {
            return Ok(());
        };
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(millis(timeout));
        let acknowledged: i64 = match &self.inner.conn {
            Connection::Single(_) => {
                wait.query_async(&mut self.conn_with_more_time(timeout))
                    .await
            }
            Connection::Cluster(cluster) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(record, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                match cluster.clone().route_command(wait, routing).await {
                    Ok(value) => redis::from_redis_value(value).map_err(redis::RedisError::from),
                    Err(err) => Err(err),
                }
            }
        }
        .map_err(|err| self.failed(err))?;
        if u64::try_from(acknowledged).unwrap_or(0) >= replicas {
            Ok(())
        } else {
            Err(StoreError::backend(format!(
                "the completion reached {acknowledged} of {replicas} replicas within {timeout:?}; a failover now could lose it"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_prefix_or_url_is_invalid_configuration() {
        for builder in [
            RedisStore::builder("redis://127.0.0.1:1").prefix("orders{1}"),
            RedisStore::builder("not a url"),
        ] {
            let err = builder.connect().await.unwrap_err();
            assert_eq!(err.kind(), ConnectErrorKind::InvalidConfig, "{err}");
        }
    }

    /// The failure that issue 12 reported: "the feature is not enabled", naming no feature.
    #[cfg(not(feature = "redis-tls"))]
    #[tokio::test]
    async fn a_rediss_url_without_the_tls_feature_names_the_feature() {
        let err = RedisStore::connect("rediss://127.0.0.1:1")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ConnectErrorKind::InvalidConfig, "{err}");
        assert!(err.to_string().contains("`redis-tls` feature"), "{err}");
    }

    #[test]
    fn fresh_tokens_do_not_repeat() {
        let tokens: std::collections::HashSet<Token> =
            (0..100_000).map(|_| fresh_token()).collect();
        assert_eq!(tokens.len(), 100_000);
    }
}
