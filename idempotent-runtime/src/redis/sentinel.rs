//! Redis Sentinel (feature `redis-sentinel`): a [`RedisStore`] that asks the sentinels for
//! the current master at every (re)connection, of its commands and of its listener, so that
//! after a failover it follows the promoted replica by itself.
//!
//! Nothing else changes: the store talks to the master as it would to one server
//! ([`RedisStore::builder`]), with the same checks at connect, the same reconnection on the
//! store's I/O thread, and the same `WAIT` for replicas.

use super::{timed_out, ConnectError, ConnectErrorKind, Connection, SingleNode, Target};
use super::{RedisStore, RedisStoreBuilder};
use redis::aio::{MultiplexedConnection, PubSub};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError, RedisResult};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The master a Sentinel store follows: its name in the sentinels' configuration
/// (`sentinel monitor <name> <ip> <port> <quorum>`), and how to log in to it. The
/// sentinels' own credentials, if any, go in their URLs.
///
/// A `&str` or `String` is a master with no password on database 0.
///
/// ```no_run
/// use idempotent_runtime::{RedisStore, SentinelMaster};
///
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// let master = SentinelMaster::new("orders").credentials("orders-service", "s3cret").db(2);
/// let store = RedisStore::sentinel_builder(
///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
///     master,
/// )
/// .connect()
/// .await?;
/// # drop(store); Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelMaster {
    name: String,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl SentinelMaster {
    /// The master the sentinels monitor under `name`.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        SentinelMaster {
            name: name.into(),
            username: None,
            password: None,
            db: 0,
        }
    }

    /// Logs in to the master (and, after a failover, to the replica promoted in its place)
    /// with `requirepass`'s password, as the `default` user.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.username = None;
        self.password = Some(password.into());
        self
    }

    /// Logs in to the master as an ACL user.
    #[must_use]
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// The database of the records (default 0).
    #[must_use]
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// The master's name in the sentinels' configuration.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn connection_info(&self) -> SentinelNodeConnectionInfo {
        let mut info = RedisConnectionInfo::default().set_db(self.db);
        if let Some(username) = &self.username {
            info = info.set_username(username);
        }
        if let Some(password) = &self.password {
            info = info.set_password(password);
        }
        SentinelNodeConnectionInfo::default().set_redis_connection_info(info)
    }
}

impl From<&str> for SentinelMaster {
    fn from(name: &str) -> Self {
        SentinelMaster::new(name)
    }
}

impl From<String> for SentinelMaster {
    fn from(name: String) -> Self {
        SentinelMaster::new(name)
    }
}

impl fmt::Debug for SentinelMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelMaster")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

impl RedisStore {
    /// A builder for a store on the master that Redis Sentinel names `master`, given some
    /// of the sentinels (`redis://host:26379`, with the sentinels' own credentials if they
    /// need any).
    ///
    /// Every connection the store opens, at [`connect`](RedisStoreBuilder::connect) and
    /// after any break, goes to the master the sentinels name at that moment, and only once
    /// it confirms that it is a master (`ROLE`). After a failover, the old master's
    /// connections break (it died, or the sentinels demoted it and closed its clients), and
    /// the store reconnects, commands and listener alike, to the promoted replica: calls
    /// fail with [`Error::Store`](crate::Error::Store) until then, and no body runs without
    /// a claim. Add [`wait_for_replicas`](RedisStoreBuilder::wait_for_replicas) so that the
    /// promoted replica has every record whose result a caller has seen.
    ///
    /// The checks at connect run against the master. Every option of
    /// [`RedisStoreBuilder`] applies.
    ///
    /// ```no_run
    /// use idempotent_runtime::RedisStore;
    /// use std::time::Duration;
    ///
    /// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::sentinel_builder(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///     "orders",
    /// )
    /// .wait_for_replicas(1, Duration::from_millis(500))
    /// .connect()
    /// .await?;
    /// # drop(store); Ok(()) }
    /// ```
    ///
    /// [`connect`](RedisStoreBuilder::connect) fails with a [`ConnectError`] of kind
    /// [`InvalidConfig`](ConnectErrorKind::InvalidConfig) if no sentinel URL is given or one
    /// does not parse, or if no sentinel that answers monitors a master of that name;
    /// [`Unreachable`](ConnectErrorKind::Unreachable) if no sentinel answers, or they name
    /// a master that is down or cannot be reached (during a failover, say).
    #[must_use]
    pub fn sentinel_builder<I, S>(
        sentinels: I,
        master: impl Into<SentinelMaster>,
    ) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_target(Target::Sentinel(Sentinels {
            urls: sentinels.into_iter().map(Into::into).collect(),
            master: master.into(),
        }))
    }
}

/// The sentinels a store asks for its master, and the master's name and credentials.
#[derive(Debug, Clone)]
pub(super) struct Sentinels {
    pub(super) urls: Vec<String>,
    master: SentinelMaster,
}

impl Sentinels {
    /// A client for the master the sentinels name now, checked to be a master. A fresh
    /// sentinel client each time: reconnections are rare, and no connection to a sentinel
    /// that died since is kept.
    async fn master(&self) -> RedisResult<redis::Client> {
        let mut client = SentinelClient::build(
            self.urls.clone(),
            self.master.name.clone(),
            Some(self.master.connection_info()),
            SentinelServerType::Master,
        )?;
        client.async_get_client().await
    }

    /// A connection to the current master.
    pub(super) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        self.master()
            .await?
            .get_multiplexed_async_connection_with_config(config)
            .await
    }

    /// A connection to the current master that listens on `channel`.
    pub(super) async fn subscribe(&self, channel: &str) -> RedisResult<PubSub> {
        let mut pubsub = self.master().await?.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    }

    /// Why no master was found, as a [`ConnectError`]: the client says "not found" both
    /// for a name that no sentinel monitors and for a master they know but see down, so
    /// the sentinels are asked which it is.
    async fn not_found(&self, err: RedisError) -> ConnectError {
        if err.kind() != ErrorKind::MasterNameNotFoundBySentinel {
            return ConnectError::redis(
                &format!("ask the sentinels for the master {:?}", self.master.name),
                err,
            );
        }
        let mut known = None;
        for url in &self.urls {
            if let Ok(address) = self.address_by_name(url).await {
                known = known.or(address);
            }
        }
        match known {
            Some((host, port)) => ConnectError::caused_by(
                ConnectErrorKind::Unreachable,
                format!(
                    "the sentinels know the master {:?} at {host}:{port}, but it is down or not a master (a failover may be under way)",
                    self.master.name
                ),
                err,
            ),
            None => ConnectError::caused_by(
                ConnectErrorKind::InvalidConfig,
                format!(
                    "no sentinel that answered monitors a master named {:?}; use the name of its `sentinel monitor` line",
                    self.master.name
                ),
                err,
            ),
        }
    }

    /// `SENTINEL get-master-addr-by-name` on the sentinel at `url`.
    async fn address_by_name(&self, url: &str) -> RedisResult<Option<(String, u16)>> {
        let mut conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master.name)
            .query_async(&mut conn)
            .await
    }
}

/// The address of a master, as [`ServerInfo::address`](super::ServerInfo::address) shows
/// it: `redis://host:port`, without credentials.
pub(super) fn address(client: &redis::Client) -> String {
    format!("redis://{}", client.get_connection_info().addr())
}

/// Connects to the master the sentinels name now.
pub(super) async fn open(
    sentinels: &Sentinels,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Connection, ConnectError> {
    if sentinels.urls.is_empty() {
        return Err(ConnectError::new(
            ConnectErrorKind::InvalidConfig,
            "a Sentinel store needs the URL of at least one sentinel",
        ));
    }
    for url in &sentinels.urls {
        redis::Client::open(url.as_str()).map_err(|err| {
            ConnectError::caused_by(
                ConnectErrorKind::InvalidConfig,
                "a sentinel's URL is invalid",
                err,
            )
        })?;
    }
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout));
    let client = match tokio::time::timeout(connect_timeout, sentinels.master()).await {
        Ok(Ok(client)) => client,
        Ok(Err(err)) => return Err(sentinels.not_found(err).await),
        Err(_) => return Err(timed_out(connect_timeout)),
    };
    let first = tokio::time::timeout(
        connect_timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| timed_out(connect_timeout))?
    .map_err(|err| ConnectError::redis("connect to the master", err))?;
    Ok(Connection::Single(Arc::new(SingleNode {
        client,
        config,
        connect_timeout,
        current: parking_lot::RwLock::new(first),
        reconnecting: AtomicBool::new(false),
        generation: AtomicU64::new(0),
        replaced: Notify::new(),
        sentinels: Some(sentinels.clone()),
    })))
}
