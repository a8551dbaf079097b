//! How waiters of a [`RedisStore`](super::RedisStore) hear that a record changed: the
//! local waiters by key, and the connection that listens on the store's channel for as
//! long as the store lives, checked at every heartbeat.

use super::{nodes_of, subscribe, Target};
use crate::key::Key;
use crate::store::record::Notification;
use parking_lot::Mutex;
use redis::Value;
use std::collections::hash_map::{Entry, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// The local callers waiting for records of this store, by key.
#[derive(Default)]
pub(super) struct Waiters {
    by_key: Mutex<HashMap<Key, (Arc<Notify>, usize)>>,
}

/// One caller's interest in a key, withdrawn on drop.
pub(super) struct Registration {
    waiters: Arc<Waiters>,
    key: Key,
    /// Enabled at once, so that no wake-up between registering and waiting is lost. A
    /// hand-over it received but did not act on (its caller was dropped) passes on to
    /// the next waiter when it is dropped.
    woken: Pin<Box<OwnedNotified>>,
}

impl Waiters {
    pub(super) fn register(waiters: &Arc<Waiters>, key: Key) -> Registration {
        let mut by_key = waiters.by_key.lock();
        let (notify, count) = by_key
            .entry(key)
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        *count += 1;
        let mut woken = Box::pin(Arc::clone(notify).notified_owned());
        woken.as_mut().enable();
        Registration {
            waiters: Arc::clone(waiters),
            key,
            woken,
        }
    }

    pub(super) fn notification(mut registration: Registration) -> Notification {
        Notification::new(async move {
            registration.woken.as_mut().await;
            drop(registration);
        })
    }

    /// The record was completed: every waiter replays it.
    fn wake(&self, key: &Key) {
        if let Some((notify, _)) = self.by_key.lock().get(key) {
            notify.notify_waiters();
        }
    }

    /// The record was released: one waiter here tries to claim it. The others wait on,
    /// for that attempt's completion or release.
    fn hand_over(&self, key: &Key) {
        if let Some((notify, _)) = self.by_key.lock().get(key) {
            notify.notify_one();
        }
    }

    fn wake_all(&self) {
        for (notify, _) in self.by_key.lock().values() {
            notify.notify_waiters();
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

/// What the listener needs to hear completions for as long as the store lives.
pub(super) struct Listener {
    pub(super) target: Target,
    pub(super) channel: String,
    pub(super) waiters: std::sync::Weak<Waiters>,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) heartbeat: Duration,
}

/// A notice on the store's channel.
enum Notice {
    /// The record of this key was completed (the key's hex).
    Completed(Key),
    /// The claim on this key was released (`r` and the key's hex).
    Released(Key),
}

fn parse_notice(payload: &[u8]) -> Option<Notice> {
    match payload {
        [b'r', hex @ ..] => parse_key(hex).map(Notice::Released),
        hex => parse_key(hex).map(Notice::Completed),
    }
}

/// Listens for completions on the store's channel for as long as the store lives, and
/// wakes the local waiters of each key. The connection is checked with a `PING` at every
/// heartbeat: one that fails or goes silent is replaced. After any break every waiter is
/// woken to look again, since notices may have been missed meanwhile.
pub(super) async fn listen(listener: Listener, first: redis::aio::PubSub) {
    use futures_util::StreamExt as _;
    let nodes = nodes_of(&listener.target);
    let mut subscribed = Some(first);
    let mut attempt = 0usize;
    loop {
        let pubsub = match subscribed.take() {
            Some(pubsub) => pubsub,
            None => {
                let url = &nodes[attempt % nodes.len()];
                attempt += 1;
                let again = tokio::time::timeout(
                    listener.connect_timeout,
                    subscribe(url, &listener.channel),
                );
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
                    match parse_notice(message.get_payload_bytes()) {
                        Some(Notice::Completed(key)) => waiters.wake(&key),
                        Some(Notice::Released(key)) => waiters.hand_over(&key),
                        None => {}
                    }
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
        match listener.waiters.upgrade() {
            Some(waiters) => waiters.wake_all(),
            None => return,
        }
    }
}
