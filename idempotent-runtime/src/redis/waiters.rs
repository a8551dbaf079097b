//! How waiters of a [`RedisStore`](super::RedisStore) hear that a record changed: the
//! connection that listens on the store's channel for as long as the store lives, checked
//! at every heartbeat, and wakes the [local waiters](crate::waiters) of each key.

use super::subscribe;
use crate::waiters::Waiters;
use redis::Value;
use std::time::Duration;

/// What the listener needs to hear completions for as long as the store lives.
pub(super) struct Listener {
    /// A client for each node given, with the store's TLS options: any of them can listen.
    pub(super) nodes: Vec<redis::Client>,
    pub(super) channel: String,
    pub(super) waiters: std::sync::Weak<Waiters>,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) heartbeat: Duration,
    /// For a store built on Sentinel: the master the sentinels name now listens instead.
    #[cfg(feature = "redis-sentinel")]
    pub(super) sentinels: Option<super::sentinel::Sentinels>,
}

impl Listener {
    /// A connection that listens on the store's channel: on `node`, or on the master the
    /// sentinels name now.
    async fn subscribe(
        &self,
        node: &redis::Client,
    ) -> Result<redis::aio::PubSub, redis::RedisError> {
        #[cfg(feature = "redis-sentinel")]
        if let Some(sentinels) = &self.sentinels {
            return sentinels.subscribe(&self.channel).await;
        }
        subscribe(node, &self.channel).await
    }
}

/// Listens for completions on the store's channel for as long as the store lives, and
/// wakes the local waiters of each key. The connection is checked with a `PING` at every
/// heartbeat: one that fails or goes silent is replaced. After any break every waiter is
/// woken to look again, since notices may have been missed meanwhile.
pub(super) async fn listen(listener: Listener, first: redis::aio::PubSub) {
    use futures_util::StreamExt as _;
    let nodes = &listener.nodes;
    let mut subscribed = Some(first);
    let mut attempt = 0usize;
    loop {
        let pubsub = match subscribed.take() {
            Some(pubsub) => pubsub,
            None => {
                let node = &nodes[attempt % nodes.len()];
                attempt += 1;
                let again =
                    tokio::time::timeout(listener.connect_timeout, listener.subscribe(node));
                match again.await {
                    Ok(Ok(pubsub)) => {
                        attempt = 0;
                        // Notices may have been missed while no connection listened.
                        match listener.waiters.upgrade() {
                            Some(waiters) => waiters.wake_all(),
                            None => return,
                        }
                        pubsub
                    }
                    _ if listener.waiters.strong_count() == 0 => return,
                    _ => {
                        let backoff = 100 * (attempt.min(10) as u64);
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                        continue;
                    }
                }
            }
        };
        let (mut sink, mut messages) = pubsub.split();
        let mut beat = tokio::time::Instant::now() + listener.heartbeat;
        loop {
            match tokio::time::timeout_at(beat, messages.next()).await {
                Ok(Some(message)) => {
                    let Some(waiters) = listener.waiters.upgrade() else {
                        return;
                    };
                    waiters.on_notice(message.get_payload_bytes());
                }
                // The server closed the connection.
                Ok(None) => break,
                Err(_) => {
                    if listener.waiters.strong_count() == 0 {
                        return;
                    }
                    let pong =
                        tokio::time::timeout(listener.response_timeout, sink.ping::<Value>());
                    if !matches!(pong.await, Ok(Ok(_))) {
                        break;
                    }
                    beat = tokio::time::Instant::now() + listener.heartbeat;
                }
            }
        }
        // Broken or silent: notices may be lost from here on, so everyone looks again.
        if !crate::waiters::listener_broke(&listener.waiters, &listener.channel) {
            return;
        }
    }
}
