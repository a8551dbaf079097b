//! How waiters of a [`PostgresStore`](super::PostgresStore) hear that a record changed:
//! one connection per store that `LISTEN`s on the store's channel for as long as the store
//! lives, checked with a query whenever it has been silent for a heartbeat, and replaced
//! when it breaks.

use crate::waiters::Waiters;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::Executor as _;
use std::sync::Weak;
use std::time::Duration;

/// What the listener needs to hear completions for as long as the store lives.
pub(super) struct Listener {
    /// The store's connection options: the listening connection is a pool of one of its
    /// own, outside the store's pool.
    pub(super) options: PgConnectOptions,
    pub(super) channel: String,
    pub(super) waiters: Weak<Waiters>,
    pub(super) heartbeat: Duration,
}

impl Listener {
    /// A connection that listens on the channel.
    pub(super) async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.heartbeat)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        // A lost connection is replaced here, where waiters can be told to look again,
        // rather than inside `PgListener`.
        listener.eager_reconnect(false);
        listener.listen(&self.channel).await?;
        Ok(listener)
    }
}

/// Listens for notices on the store's channel for as long as the store lives, and wakes
/// the local waiters of each key. After any break every waiter is woken to look again,
/// since notices may have been missed meanwhile.
pub(super) async fn listen(listener: Listener, first: PgListener) {
    let mut connected = Some(first);
    let mut attempt = 0u64;
    loop {
        let mut current = match connected.take() {
            Some(current) => current,
            None => match listener.connect().await {
                Ok(current) => {
                    attempt = 0;
                    match listener.waiters.upgrade() {
                        Some(waiters) => waiters.wake_all(),
                        None => return,
                    }
                    current
                }
                Err(_) if listener.waiters.strong_count() == 0 => return,
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempt.min(10))).await;
                    continue;
                }
            },
        };
        loop {
            match tokio::time::timeout(listener.heartbeat, current.try_recv()).await {
                Ok(Ok(Some(notice))) => match listener.waiters.upgrade() {
                    Some(waiters) => waiters.on_notice(notice.payload().as_bytes()),
                    None => return,
                },
                // The connection broke.
                Ok(Ok(None) | Err(_)) => break,
                Err(_silent) => {
                    if listener.waiters.strong_count() == 0 {
                        return;
                    }
                    let check =
                        tokio::time::timeout(listener.heartbeat, current.execute("SELECT 1"));
                    if !matches!(check.await, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        if !crate::waiters::listener_broke(&listener.waiters, &listener.channel) {
            return;
        }
    }
}
