//! [`ConnectError`]: why [`RedisStoreBuilder::connect`](super::RedisStoreBuilder::connect)
//! failed. Setting up is not a call: its failures have their own type, which a program
//! can match to decide whether to retry, fix its configuration or fix the server.

use std::error::Error as StdError;
use std::fmt;

/// Why a [`RedisStore`](super::RedisStore) could not connect.
///
/// [`kind`](Self::kind) says what to do about it; the message says what to change. A
/// failure that the Redis client reported is the [`source`](StdError::source), which the
/// message does not repeat, so a report that prints the whole chain (such as `anyhow`'s
/// `{:#}`) shows each cause once.
///
/// ```no_run
/// use idempotent_runtime::{ConnectErrorKind, RedisStore};
/// use std::time::Duration;
///
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// let store = loop {
///     match RedisStore::connect("redis://127.0.0.1:6379").await {
///         Ok(store) => break store,
///         // Redis may still be starting: try again.
///         Err(err) if err.kind() == ConnectErrorKind::Unreachable => {
///             eprintln!("idempotency: {err}; retrying");
///             tokio::time::sleep(Duration::from_secs(1)).await;
///         }
///         // The configuration or the server needs a change: retrying will not help.
///         Err(err) => return Err(err.into()),
///     }
/// };
/// # drop(store); Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnectError {
    kind: ConnectErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What kind of failure a [`ConnectError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The store's configuration is invalid: a prefix with `{` or `}`, a URL that does not
    /// parse. Fix the configuration.
    InvalidConfig,
    /// No server answered within the connect timeout, or the connection was refused or
    /// broke. Retrying later may succeed.
    Unreachable,
    /// The server can evict records (a `maxmemory-policy` other than `noeviction`), and
    /// the store was not built to
    /// [`accept_eviction`](super::RedisStoreBuilder::accept_eviction).
    Eviction,
    /// The server keeps records only in memory, and the store was built to
    /// [`require_persistence`](super::RedisStoreBuilder::require_persistence).
    MemoryOnly,
    /// The server runs a Redis older than 7.0.
    Version,
    /// The TLS handshake failed (`rediss://`, the `redis-tls` feature): the server's
    /// certificate is not signed by a trusted CA (give its CA with the builder's
    /// `tls_root_certificates`), is not for the URL's host, or has expired; or the server
    /// requires a client certificate (`tls_client_certificate`), or refused the one given.
    /// Fix the certificates: retrying will not help.
    Tls,
    /// The server refused a command of the check: wrong or missing credentials, an ACL
    /// that denies a command or the store's channel, or another error of the server.
    CommandRefused,
    /// The store's own I/O thread could not start.
    IoThread,
}

impl ConnectError {
    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// A failure described by `message` alone.
    pub(super) fn new(kind: ConnectErrorKind, message: impl Into<String>) -> Self {
        ConnectError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A failure caused by `source`, whose text `message` must not repeat.
    pub(super) fn caused_by(
        kind: ConnectErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        ConnectError {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A failure of the Redis client while the store tried to `what` ("connect", "answer
    /// PING"): unreachable if the connection failed, refused if the server said no.
    pub(super) fn redis(what: &str, err: redis::RedisError) -> Self {
        use redis::ErrorKind;
        #[cfg(feature = "redis-tls")]
        if let Some(problem) = super::tls::handshake_problem(&err) {
            return Self::caused_by(ConnectErrorKind::Tls, format!("{problem} ({what})"), err);
        }
        if super::broke(&err) {
            Self::caused_by(
                ConnectErrorKind::Unreachable,
                format!("Redis could not be reached ({what})"),
                err,
            )
        } else if err.kind() == ErrorKind::AuthenticationFailed || err.code() == Some("NOAUTH") {
            Self::caused_by(
                ConnectErrorKind::CommandRefused,
                format!(
                    "Redis refused the connection's credentials ({what}); give them in the URL, `redis://user:password@host:port`"
                ),
                err,
            )
        } else if err.code() == Some("NOPERM") {
            Self::caused_by(
                ConnectErrorKind::CommandRefused,
                format!(
                    "the Redis user may not {what}; grant it (ACL SETUSER <user> +@all ~<prefix>:* &<prefix>:completions)"
                ),
                err,
            )
        } else if err.kind() == ErrorKind::InvalidClientConfig {
            Self::caused_by(
                ConnectErrorKind::InvalidConfig,
                format!("the Redis client configuration is invalid ({what})"),
                err,
            )
        } else {
            Self::caused_by(
                ConnectErrorKind::CommandRefused,
                format!("Redis failed to {what}"),
                err,
            )
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_does_not_repeat_its_source() {
        let cause = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "WRONGPASS"));
        let err = ConnectError::redis("answer PING", cause);
        assert_eq!(err.kind(), ConnectErrorKind::CommandRefused);
        let message = err.to_string();
        let source = err.source().expect("the client's error").to_string();
        assert!(message.contains("credentials"), "{message}");
        assert!(!message.contains(&source), "{message} repeats {source}");
    }
}
