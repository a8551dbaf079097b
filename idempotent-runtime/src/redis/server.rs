//! What [`RedisStore`](super::RedisStore) reads of a server when it connects, and the
//! settings it refuses: a server that can evict records, or is too old to run the store's
//! commands, would run bodies twice.

use super::{ConnectError, ConnectErrorKind};
use redis::aio::ConnectionLike;
use redis::Value;
use std::collections::HashMap;

/// Redis's own limit on one value (`proto-max-bulk-len`) when the server does not say.
const DEFAULT_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;

/// What a Redis server told [`RedisStore`](super::RedisStore) about itself at connect: the
/// settings that decide whether records survive. Read it with
/// [`RedisStore::servers`](super::RedisStore::servers), and log
/// [`ServerInfo::warnings`] at start-up.
///
/// ```no_run
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// let store = idempotent_runtime::RedisStore::connect("redis://127.0.0.1:6379").await?;
/// for server in store.servers() {
///     for warning in server.warnings() {
///         eprintln!("idempotency: {}: {warning}", server.address);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// The address the store connected to.
    pub address: String,
    /// `redis_version`, as the server reports it (Valkey reports a Redis version too).
    pub version: String,
    /// `maxmemory-policy`: only `noeviction` keeps every record until its TTL.
    pub maxmemory_policy: String,
    /// Whether, and how, records reach the disk.
    pub persistence: Persistence,
    /// How many replicas were connected to this server.
    pub replicas: u64,
    /// The largest value the server accepts (`proto-max-bulk-len`), in bytes.
    pub max_bulk_len: u64,
}

/// How a server keeps its data across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// Neither snapshots nor an append-only file: a restart loses every record, and each
    /// retry after it runs its body again.
    None,
    /// RDB snapshots only (`save` points): a restart loses the records written since the
    /// last snapshot.
    Snapshots(String),
    /// An append-only file, with its `appendfsync` policy (`everysec` loses at most about a
    /// second of records in a crash of the machine, `always` none).
    AppendOnly(String),
    /// The server did not say (`CONFIG` is disabled, as on many managed services).
    Unknown,
}

impl ServerInfo {
    /// What about this server can lose records: none for a server that persists every
    /// write, refuses to evict and has replicas.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.maxmemory_policy != "noeviction" {
            warnings.push(format!(
                "maxmemory-policy is {}: records can be evicted before their TTL, and a retry of an evicted one runs its body again",
                self.maxmemory_policy
            ));
        }
        match &self.persistence {
            Persistence::None => warnings.push(
                "the server keeps records only in memory (no AOF, no snapshots): a restart loses them all".to_owned(),
            ),
            Persistence::Snapshots(save) => warnings.push(format!(
                "the server persists only snapshots (save {save}): a restart loses the records written since the last one; enable appendonly"
            )),
            Persistence::AppendOnly(_) => {}
            Persistence::Unknown => warnings.push(
                "the server does not say how it persists records (CONFIG is disabled): check that appendonly is on".to_owned(),
            ),
        }
        warnings
    }

    /// Whether the server keeps records only in memory.
    #[must_use]
    pub fn memory_only(&self) -> bool {
        self.persistence == Persistence::None
    }
}

/// Why [`RedisStore`](super::RedisStore) refused a server at connect.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A command failed: credentials, permissions, a dead server.
    Command(&'static str, redis::RedisError),
    /// `redis_version` is older than 7.0, which `SET .. NX GET` needs.
    Version(String),
    /// The eviction policy can evict records.
    Eviction(String),
    /// The store was built with `require_persistence` and the server keeps records only in
    /// memory.
    MemoryOnly,
}

impl From<Refusal> for ConnectError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Command(what, err) => ConnectError::redis(what, err),
            Refusal::Version(version) => ConnectError::new(
                ConnectErrorKind::Version,
                format!("Redis {version} is too old: the store needs 7.0 or later (SET with NX and GET)"),
            ),
            Refusal::Eviction(policy) => ConnectError::new(
                ConnectErrorKind::Eviction,
                format!(
                    "Redis evicts keys (maxmemory-policy {policy}), so records could vanish before their TTL and bodies run twice; \
                     set `maxmemory-policy noeviction`, or accept it with `RedisStoreBuilder::accept_eviction`"
                ),
            ),
            Refusal::MemoryOnly => ConnectError::new(
                ConnectErrorKind::MemoryOnly,
                "Redis keeps records only in memory (no AOF, no snapshots), and the store requires persistence; \
                 enable `appendonly yes`, or drop `RedisStoreBuilder::require_persistence`",
            ),
        }
    }
}

/// Checks the server at the other end of `conn`: that it answers with the credentials
/// given (`PING`), that it runs Redis 7.0 or later, and reads the settings that decide
/// whether records survive.
pub(crate) async fn inspect(
    conn: &mut impl ConnectionLike,
    address: &str,
) -> Result<ServerInfo, Refusal> {
    redis::cmd("PING")
        .query_async::<Value>(conn)
        .await
        .map_err(|err| Refusal::Command("answer PING", err))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .arg("memory")
        .arg("persistence")
        .arg("replication")
        .query_async(conn)
        .await
        .map_err(|err| Refusal::Command("answer INFO", err))?;
    let fields: HashMap<&str, &str> = info
        .lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect();
    let version = fields.get("redis_version").copied().unwrap_or("unknown");
    if !supported(version) {
        return Err(Refusal::Version(version.to_owned()));
    }
    // `CONFIG` is often disabled on managed services: then what it would say is unknown.
    let save = config_value(conn, "save").await;
    let fsync = config_value(conn, "appendfsync").await;
    let max_bulk_len = config_value(conn, "proto-max-bulk-len")
        .await
        .and_then(|len| len.parse().ok())
        .unwrap_or(DEFAULT_MAX_BULK_LEN);
    let persistence = match (fields.get("aof_enabled").copied(), save) {
        (Some("1"), _) => Persistence::AppendOnly(fsync.unwrap_or_else(|| "unknown".to_owned())),
        (Some("0"), Some(save)) if save.trim().is_empty() => Persistence::None,
        (Some("0"), Some(save)) => Persistence::Snapshots(save),
        _ => Persistence::Unknown,
    };
    Ok(ServerInfo {
        address: address.to_owned(),
        version: version.to_owned(),
        maxmemory_policy: fields
            .get("maxmemory_policy")
            .copied()
            .unwrap_or("unknown")
            .to_owned(),
        persistence,
        replicas: fields
            .get("connected_slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        max_bulk_len,
    })
}

/// Whether a `redis_version` has `SET .. NX GET`: 7.0 or later.
fn supported(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 7)
}

/// The value of one `CONFIG GET`, or `None` if the server refuses or lacks it.
async fn config_value(conn: &mut impl ConnectionLike, name: &str) -> Option<String> {
    let mut values: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .ok()?;
    values.remove(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(policy: &str, persistence: Persistence) -> ServerInfo {
        ServerInfo {
            address: "redis://127.0.0.1:6379".to_owned(),
            version: "7.0.15".to_owned(),
            maxmemory_policy: policy.to_owned(),
            persistence,
            replicas: 0,
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
        }
    }

    #[test]
    fn redis_before_7_is_not_supported() {
        for old in ["6.2.14", "5.0.7", "unknown", ""] {
            assert!(!supported(old), "{old}");
        }
        for new in ["7.0.15", "7.2.4", "8.0.0", "10.1"] {
            assert!(supported(new), "{new}");
        }
    }

    #[test]
    fn a_durable_server_has_no_warnings_and_a_memory_only_one_says_so() {
        let durable = info("noeviction", Persistence::AppendOnly("everysec".to_owned()));
        assert!(durable.warnings().is_empty());
        assert!(!durable.memory_only());
        let volatile = info("allkeys-lru", Persistence::None);
        assert!(volatile.memory_only());
        let warnings = volatile.warnings();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("allkeys-lru"));
        assert!(warnings[1].contains("only in memory"));
    }
}
