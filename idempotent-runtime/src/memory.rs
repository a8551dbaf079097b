//! [`MemoryStore`]: the embedded store, for applications that run in one process.

use crate::error::StoreError;
use crate::key::{Fingerprint, Key};
use crate::record::{Begin, Claim, Completed, InFlight, Notification, Request, Token};
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The embedded store: records in this process's memory, for the TTL of each.
///
/// - **Sharded**: keys are spread over independently locked shards, so calls on unrelated
///   keys do not contend; a lock is held only for a map operation, never across an
///   `.await` or the body.
/// - **Leases**: a claim that is neither completed nor released (its holder hangs and
///   stopped renewing) lapses after its lease, and the next caller takes over.
/// - **Waiting**: callers that find a record in progress are woken when it completes or
///   is released; they do not poll.
/// - **Reclamation**: expired records are removed as new keys arrive (a shard is swept
///   whenever it has doubled since its last sweep) and when an expired key is looked up,
///   so memory tracks the live records; no background task is needed, so the store works
///   from any number of Tokio runtimes, or none.
///
/// Cloning is cheap and gives another handle to the same records.
///
/// ```
/// use idempotent_runtime::MemoryStore;
/// use std::time::Duration;
///
/// let store = MemoryStore::builder().lease(Duration::from_secs(60)).build();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Shared>,
}

struct Shared {
    shards: Box<[Padded<Mutex<Shard>>]>,
    tokens: AtomicU64,
    lease: Duration,
    epoch: Instant,
}

/// Keeps each shard's lock on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

type Map = HashMap<Key, Slot, BuildHasherDefault<KeyBits>>;

struct Shard {
    map: Map,
    /// Sweep expired records when the map reaches this many entries.
    sweep_at: usize,
}

/// Nanoseconds since the store's epoch: 8 bytes per deadline instead of an `Instant`'s 16.
type Nanos = u64;

enum Slot {
    Claimed {
        token: Token,
        fingerprint: Fingerprint,
        lease_until: Nanos,
        /// Dropped with the slot, which wakes every waiter's `changed()`.
        changed: watch::Sender<()>,
    },
    Completed {
        fingerprint: Fingerprint,
        value: Arc<[u8]>,
        expires_at: Nanos,
    },
}

impl Slot {
    fn is_claim(&self, of: Token) -> bool {
        matches!(self, Slot::Claimed { token, .. } if *token == of)
    }

    fn is_live(&self, now: Nanos) -> bool {
        match self {
            Slot::Claimed { lease_until, .. } => *lease_until > now,
            Slot::Completed { expires_at, .. } => *expires_at > now,
        }
    }
}

/// Keys are already uniform hashes: their first eight bytes are a perfect map hash.
#[derive(Default)]
struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `Key` hashes as one 16-byte array: a length prefix, then the bytes.
        if let Some(head) = bytes.get(..8) {
            self.0 = u64::from_le_bytes(head.try_into().unwrap_or_default());
        }
    }
    fn write_usize(&mut self, _len: usize) {}
}

const SHARDS: usize = 64;
const MIN_SWEEP: usize = 64;

/// Configures a [`MemoryStore`].
///
/// ```
/// use idempotent_runtime::MemoryStore;
/// use std::time::Duration;
///
/// let store = MemoryStore::builder().lease(Duration::from_secs(5)).build();
/// # let _ = store;
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    lease: Duration,
}

impl MemoryStoreBuilder {
    /// The lease of a claim made without an explicit one (default 30 seconds). Running
    /// bodies renew their claim, so this only bounds how long a hung holder blocks a key.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Builds the store.
    #[must_use]
    pub fn build(self) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Shared {
                shards: (0..SHARDS)
                    .map(|_| {
                        Padded(Mutex::new(Shard {
                            map: Map::default(),
                            sweep_at: MIN_SWEEP,
                        }))
                    })
                    .collect(),
                tokens: AtomicU64::new(1),
                lease: self.lease,
                epoch: Instant::now(),
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.len())
            .field("lease", &self.inner.lease)
            .finish()
    }
}

impl MemoryStore {
    /// The default lease of a claim.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

    /// A store with the default settings.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to change the default lease.
    #[must_use]
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            lease: Self::DEFAULT_LEASE,
        }
    }

    /// How many records the store holds: in progress, completed, and expired ones not yet
    /// reclaimed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.0.lock().map.len()).sum()
    }

    /// Whether the store holds no record at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records are in progress: claims whose holder has not finished. Once no
    /// call is in flight this is zero: the store keeps no lock state for idle keys.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                let shard = s.0.lock();
                shard
                    .map
                    .values()
                    .filter(|slot| matches!(slot, Slot::Claimed { .. }))
                    .count()
            })
            .sum()
    }

    /// Removes every expired record and lapsed claim now, instead of as keys arrive.
    pub fn purge_expired(&self) {
        let now = self.now();
        for shard in self.inner.shards.iter() {
            shard.0.lock().sweep(now);
        }
    }

    fn now(&self) -> Nanos {
        let elapsed = Instant::now().saturating_duration_since(self.inner.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    fn deadline(now: Nanos, after: Duration) -> Nanos {
        now.saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX))
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let bits = u64::from_le_bytes(key.as_bytes()[8..].try_into().unwrap_or_default());
        // SHARDS is a power of two; the mask keeps the index in range.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "masked to fewer than 64 values"
        )]
        let index = (bits as usize) & (SHARDS - 1);
        &self.inner.shards[index].0
    }

    /// Applies `step` to the key's slot under its shard lock; whatever slot `step` replaces
    /// or removes is dropped after the lock is released, since dropping a claim wakes its
    /// waiters.
    fn with_slot<T>(
        &self,
        key: &Key,
        step: impl FnOnce(&mut Map, Nanos) -> (T, Option<Slot>),
    ) -> T {
        let now = self.now();
        let (out, dropped) = {
            let mut shard = self.shard(key).lock();
            step(&mut shard.map, now)
        };
        drop(dropped);
        out
    }

    /// Releases `claim` if it is still the current one.
    fn remove_claim(&self, claim: &Claim) {
        self.with_slot(claim.key(), |map, _| {
            let current = map
                .get(claim.key())
                .is_some_and(|slot| slot.is_claim(claim.token()));
            (
                (),
                if current {
                    map.remove(claim.key())
                } else {
                    None
                },
            )
        });
    }
}

impl Shard {
    fn sweep(&mut self, now: Nanos) {
        self.map.retain(|_, slot| slot.is_live(now));
        self.sweep_at = MIN_SWEEP.max(self.map.len() * 2);
    }
}

enum Found {
    Claimed(Claim),
    InProgress(Fingerprint, Duration, watch::Receiver<()>),
    Completed(Completed),
}

impl Store for MemoryStore {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        let now = self.now();
        let (found, lapsed) = {
            let mut shard = self.shard(&request.key).lock();
            match shard.map.get(&request.key) {
                Some(Slot::Completed {
                    fingerprint,
                    value,
                    expires_at,
                }) if *expires_at > now => (
                    Found::Completed(Completed {
                        fingerprint: *fingerprint,
                        value: Arc::clone(value),
                    }),
                    None,
                ),
                Some(Slot::Claimed {
                    fingerprint,
                    lease_until,
                    changed,
                    ..
                }) if *lease_until > now => (
                    Found::InProgress(
                        *fingerprint,
                        Duration::from_nanos(lease_until - now),
                        changed.subscribe(),
                    ),
                    None,
                ),
                vacant_or_expired => {
                    if vacant_or_expired.is_none() && shard.map.len() >= shard.sweep_at {
                        shard.sweep(now);
                    }
                    let lease = request.lease.unwrap_or(self.inner.lease);
                    let token = Token(self.inner.tokens.fetch_add(1, Ordering::Relaxed));
                    let claimed = Slot::Claimed {
                        token,
                        fingerprint: request.fingerprint,
                        lease_until: Self::deadline(now, lease),
                        changed: watch::Sender::new(()),
                    };
                    // A lapsed claim is replaced; dropping it (after the lock) wakes its
                    // waiters, who then find this new claim.
                    let lapsed = shard.map.insert(request.key, claimed);
                    let claim = Claim::new(request, token, lease);
                    (Found::Claimed(claim), lapsed)
                }
            }
        };
        drop(lapsed);
        Ok(match found {
            Found::Claimed(claim) => Begin::Claimed(claim),
            Found::Completed(record) => Begin::Completed(record),
            Found::InProgress(fingerprint, lease_remaining, mut changed) => {
                Begin::InProgress(InFlight {
                    fingerprint,
                    lease_remaining,
                    changed: Notification::new(async move {
                        // Err means the holder's slot is gone: completed, released or replaced.
                        let _ = changed.changed().await;
                    }),
                })
            }
        })
    }

    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        self.with_slot(claim.key(), |map, now| match map.get_mut(claim.key()) {
            Some(Slot::Claimed {
                token, lease_until, ..
            }) if *token == claim.token() => {
                *lease_until = Self::deadline(now, claim.lease());
                (Ok(()), None)
            }
            _ => (Err(StoreError::lease_lost()), None),
        })
    }

    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.with_slot(claim.key(), |map, now| match map.get_mut(claim.key()) {
            Some(slot) if slot.is_claim(claim.token()) => {
                let done = Slot::Completed {
                    fingerprint: claim.fingerprint(),
                    value: Arc::from(value),
                    expires_at: Self::deadline(now, ttl),
                };
                (Ok(()), Some(std::mem::replace(slot, done)))
            }
            _ => (Err(StoreError::lease_lost()), None),
        })
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.remove_claim(claim);
        Ok(())
    }

    fn abandon(&self, claim: Claim) {
        self.remove_claim(&claim);
    }
}
