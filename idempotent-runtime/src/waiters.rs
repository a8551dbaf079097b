//! The local callers waiting for records of a remote store, by key: a store's listener
//! wakes them when it hears that a record changed (Redis pub/sub, PostgreSQL
//! `LISTEN`/`NOTIFY`).

use crate::key::Key;
use crate::store::record::Notification;
use parking_lot::Mutex;
use std::collections::hash_map::{Entry, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// The local callers waiting for records of this store, by key.
#[derive(Default)]
pub(crate) struct Waiters {
    by_key: Mutex<HashMap<Key, (Arc<Notify>, usize)>>,
}

/// One caller's interest in a key, withdrawn on drop.
pub(crate) struct Registration {
    waiters: Arc<Waiters>,
    key: Key,
    /// Enabled at once, so that no wake-up between registering and waiting is lost. A
    /// hand-over it received but did not act on (its caller was dropped) passes on to
    /// the next waiter when it is dropped.
    woken: Pin<Box<OwnedNotified>>,
}

impl Waiters {
    pub(crate) fn register(waiters: &Arc<Waiters>, key: Key) -> Registration {
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

    pub(crate) fn notification(mut registration: Registration) -> Notification {
        Notification::new(async move {
            registration.woken.as_mut().await;
            drop(registration);
        })
    }

    /// Acts on a notice from the store's channel: the key's hex when its record was
    /// completed, `r` and the key's hex when its claim was released. Anything else is
    /// ignored.
    pub(crate) fn on_notice(&self, payload: &[u8]) {
        match payload {
            [b'r', hex @ ..] => {
                if let Some(key) = parse_key(hex) {
                    self.hand_over(&key);
                }
            }
            hex => {
                if let Some(key) = parse_key(hex) {
                    self.wake(&key);
                }
            }
        }
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

    pub(crate) fn wake_all(&self) {
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

/// The key whose hex a notice carries.
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

/// A store's listening connection broke or went silent: notices may have been lost, so
/// every waiter looks again, and the failure is reported. `false` once the store is gone
/// (its listener then stops).
pub(crate) fn listener_broke(waiters: &std::sync::Weak<Waiters>, channel: &str) -> bool {
    crate::observe::store_failed(
        channel,
        crate::observe::Step::Listen,
        &"the listening connection broke or went silent; reconnecting",
    );
    match waiters.upgrade() {
        Some(waiters) => {
            waiters.wake_all();
            true
        }
        None => false,
    }
}
