//! [`MemoryStore`]: the embedded store, for applications that run in one process.

use crate::clock;
use crate::error::StoreError;
use crate::key::{Fingerprint, Key};
use crate::store::record::{Begin, Claim, Completed, InFlight, Notification, Request, Token};
use crate::store::Store;
use parking_lot::Mutex;
use std::any::Any;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The embedded store: records in this process's memory, for the TTL of each.
///
/// - **Sharded**: keys are spread over independently locked shards, so calls on unrelated
///   keys do not contend; a lock is held only for a map operation, never across an
///   `.await` or the body.
/// - **Leases**: a claim that is neither completed nor released (its holder hangs and
///   stopped renewing) lapses after its lease, and the next caller takes over.
/// - **Waiting**: callers that find a record in progress are woken, not polling. A
///   completion wakes every waiter, to replay it; a release (the body failed, panicked or
///   was cancelled) hands the key to one waiter, who claims it and runs the body, and on
///   its failure to the next. So `n` duplicates of a failing body cost O(n) store calls,
///   not the O(n²) of a stampede after every release.
/// - **Reclamation**: a shard is swept of its expired records by the first call on it
///   once [`sweep_interval`](MemoryStoreBuilder::sweep_interval) has passed since its last
///   sweep (hits included), and whenever it has doubled since then; a sweep that leaves
///   the map far larger than its records gives the memory back. So memory tracks the live
///   records, in proportion to traffic. No background task is needed, so the store works
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
    sweep_interval: Duration,
    clock: Clock,
}

/// Where the store reads the time.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The coarse monotonic clock, from this point on (see [`clock`]).
    Coarse { epoch: Nanos },
    /// Tokio's clock, which tests can pause and advance.
    Tokio { epoch: tokio::time::Instant },
}

/// Keeps each shard's lock on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

type Map = HashMap<Key, Slot, BuildHasherDefault<KeyBits>>;

struct Shard {
    map: Map,
    /// Sweep expired records when the map reaches this many entries,
    sweep_at: usize,
    /// or at the first call after this time, so that a shard without new keys (only
    /// hits, or no new keys of its own) still gives back what expired.
    next_sweep: Nanos,
    /// The store's sweep interval, here to be read with the deadline.
    sweep_interval: Nanos,
}

/// Nanoseconds since the store's epoch: 8 bytes per deadline instead of an `Instant`'s 16.
/// Read from a coarse clock (see [`clock`]).
type Nanos = u64;

/// A record. Completed records, the many, take 32 bytes and one allocation (their bytes);
/// the rest lives in boxes that only claims and some records need.
enum Slot {
    Pending(Box<PendingSlot>),
    Completed(CompletedSlot),
}

/// A key that is not completed: claimed, or released while callers wait to claim it.
struct PendingSlot {
    /// The current claim; `None` once released with callers waiting, which makes the key
    /// vacant but keeps `waiters` for whoever claims it next.
    holder: Option<Holder>,
    /// Made when the first waiter arrives, and handed from claim to claim of the key while
    /// anyone waits on it: a waiter passed over by one release hears of the next. Dropping
    /// the slot wakes every waiter (see the `Drop` impl).
    waiters: Option<Arc<Notify>>,
}

struct Holder {
    token: Token,
    fingerprint: Fingerprint,
    lease_until: Nanos,
}

impl PendingSlot {
    /// The holder, if its lease still runs.
    fn live_holder(&self, now: Nanos) -> Option<&Holder> {
        self.holder
            .as_ref()
            .filter(|holder| holder.lease_until > now)
    }

    /// A waiter's view of the live claim: its fingerprint, the rest of its lease, and the
    /// notification, made under the lock so that any later completion or release reaches it.
    fn wait(&mut self, now: Nanos) -> Found {
        let (fingerprint, lease_until) = self
            .holder
            .as_ref()
            .map_or((Fingerprint::NONE, now), |h| (h.fingerprint, h.lease_until));
        let waiters = self.waiters.get_or_insert_with(|| Arc::new(Notify::new()));
        let lease_remaining = Duration::from_nanos(lease_until.saturating_sub(now));
        Found::InProgress(
            fingerprint,
            lease_remaining,
            Arc::clone(waiters).notified_owned(),
        )
    }

    /// Whether anyone still waits: each waiter's notification holds a reference.
    fn has_waiters(&self) -> bool {
        self.waiters
            .as_ref()
            .is_some_and(|waiters| Arc::strong_count(waiters) > 1)
    }

    /// The waiters, for the claim that replaces this slot; none if nobody is left, since a
    /// stale permit would only wake the next waiter for nothing.
    fn take_waiters(&mut self) -> Option<Arc<Notify>> {
        if self.has_waiters() {
            self.waiters.take()
        } else {
            None
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        // Completed, forgotten by `clear`, or swept: every waiter looks again.
        if let Some(waiters) = &self.waiters {
            waiters.notify_waiters();
        }
    }
}

struct CompletedSlot {
    value: Arc<[u8]>,
    expires_at: Nanos,
    /// The fingerprint of a client-supplied key, and the decoded value once a replay in
    /// this process offered it.
    extra: Option<Box<Extra>>,
}

struct Extra {
    fingerprint: Fingerprint,
    decoded: Option<Decoded>,
}

/// The decoded form of a completed record, kept so that replays in this process clone it
/// instead of decoding the bytes again (the fast path of [`InProcess`](crate::store::InProcess)).
pub(crate) type Decoded = Arc<dyn Any + Send + Sync>;

impl CompletedSlot {
    fn fingerprint(&self) -> Fingerprint {
        self.extra
            .as_ref()
            .map_or(Fingerprint::NONE, |extra| extra.fingerprint)
    }

    fn record(&self) -> Completed {
        Completed {
            fingerprint: self.fingerprint(),
            value: Arc::clone(&self.value),
        }
    }
}

impl Slot {
    fn is_claim(&self, of: Token) -> bool {
        matches!(self, Slot::Pending(pending) if pending.holder.as_ref().is_some_and(|h| h.token == of))
    }

    /// The holder of the claim `of`, if that claim is the current one.
    fn holder_mut(&mut self, of: Token) -> Option<&mut Holder> {
        match self {
            Slot::Pending(pending) => pending.holder.as_mut().filter(|h| h.token == of),
            Slot::Completed(_) => None,
        }
    }

    /// Whether the slot holds the key: a completed record within its TTL, or a claim
    /// within its lease. Anything else is vacant, whether or not a sweep removed it yet.
    fn is_live(&self, now: Nanos) -> bool {
        match self {
            Slot::Pending(pending) => pending.live_holder(now).is_some(),
            Slot::Completed(completed) => completed.expires_at > now,
        }
    }

    /// Whether a sweep keeps the slot: it is live, or callers wait on it (a released key
    /// keeps its waiters for the next claim).
    fn is_kept(&self, now: Nanos) -> bool {
        match self {
            Slot::Pending(pending) => pending.live_holder(now).is_some() || pending.has_waiters(),
            Slot::Completed(completed) => completed.expires_at > now,
        }
    }

    /// A new claim by `holder`, keeping the waiters of the vacant slot it replaces.
    fn claimed(holder: Holder, replaced: Option<&mut Slot>) -> Slot {
        let waiters = match replaced {
            Some(Slot::Pending(pending)) => pending.take_waiters(),
            _ => None,
        };
        Slot::Pending(Box::new(PendingSlot {
            holder: Some(holder),
            waiters,
        }))
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
    sweep_interval: Duration,
    tokio_clock: bool,
}

impl MemoryStoreBuilder {
    /// The lease of a claim made without an explicit one (default 30 seconds). Running
    /// bodies renew their claim, so this only bounds how long a hung holder blocks a key.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a shard goes at most between sweeps of its expired records while it has
    /// traffic (default 1 second, [`MemoryStore::DEFAULT_SWEEP_INTERVAL`]).
    ///
    /// The first call on a shard (a hit, a new key, a completion) after the interval
    /// sweeps it: one pass over the shard's slots, a 64th of the store, under its lock.
    /// That costs a few nanoseconds a record: about 50 µs once a second for a shard of a
    /// store holding 10^6 records, so the default spends well under a thousandth of a
    /// core, while an expired record outlives its TTL by about a second. A shorter interval
    /// returns memory sooner for more passes; zero sweeps on every call, for tests only.
    /// A shard also sweeps whenever it has doubled since its last sweep, and
    /// [`MemoryStore::purge_expired`] sweeps every shard at once.
    ///
    /// ```
    /// use idempotent_runtime::MemoryStore;
    /// use std::time::Duration;
    ///
    /// let store = MemoryStore::builder()
    ///     .sweep_interval(Duration::from_millis(250))
    ///     .build();
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Reads the time from Tokio's clock instead of the system's, so that a test which
    /// pauses Tokio's time (`#[tokio::test(start_paused = true)]`) expires records and
    /// lapses leases with `tokio::time::advance` instead of sleeping. Tokio's clock takes
    /// about 20 ns longer to read than the coarse clock the store reads by default, on
    /// every call: it is meant for tests.
    ///
    /// ```
    /// use idempotent_runtime::MemoryStore;
    /// use std::time::Duration;
    ///
    /// #[idempotency::idempotent(ttl = "1h", store = store, skip(store))]
    /// async fn stamp(store: &MemoryStore, n: u64) -> Result<u64, idempotency::Error> {
    /// #   let _ = store;
    ///     Ok(n)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// tokio::time::pause();
    /// let store = MemoryStore::builder().tokio_clock().build();
    /// stamp(&store, 7).await.unwrap();
    /// assert_eq!(store.len(), 1);
    /// tokio::time::advance(Duration::from_secs(3601)).await;
    /// store.purge_expired();
    /// assert_eq!(store.len(), 0);
    /// # }
    /// ```
    #[must_use]
    pub fn tokio_clock(mut self) -> Self {
        self.tokio_clock = true;
        self
    }

    /// Builds the store.
    #[must_use]
    pub fn build(self) -> MemoryStore {
        let sweep_interval = MemoryStore::deadline(0, self.sweep_interval);
        MemoryStore {
            inner: Arc::new(Shared {
                shards: (0..SHARDS)
                    .map(|_| Padded(Mutex::new(Shard::new(sweep_interval))))
                    .collect(),
                tokens: AtomicU64::new(1),
                lease: self.lease,
                sweep_interval: self.sweep_interval,
                clock: if self.tokio_clock {
                    Clock::Tokio {
                        epoch: tokio::time::Instant::now(),
                    }
                } else {
                    Clock::Coarse {
                        epoch: clock::now(),
                    }
                },
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
            .field("sweep_interval", &self.inner.sweep_interval)
            .finish()
    }
}

impl MemoryStore {
    /// The default lease of a claim.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

    /// The default interval between sweeps of a shard with traffic (see
    /// [`MemoryStoreBuilder::sweep_interval`]).
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

    /// A store with the default settings.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to change the default lease or sweep interval.
    #[must_use]
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            lease: Self::DEFAULT_LEASE,
            sweep_interval: Self::DEFAULT_SWEEP_INTERVAL,
            tokio_clock: false,
        }
    }

    /// How many records the store holds: in progress, completed, and expired ones not yet
    /// reclaimed (and keys released while callers wait to claim them).
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
                    .filter(
                        |slot| matches!(slot, Slot::Pending(pending) if pending.holder.is_some()),
                    )
                    .count()
            })
            .sum()
    }

    /// Removes every expired record and lapsed claim now, instead of as calls arrive, and
    /// gives back the memory of maps left far larger than their records.
    pub fn purge_expired(&self) {
        let now = self.now();
        for shard in self.inner.shards.iter() {
            shard.0.lock().sweep(now);
        }
    }

    /// Forgets every record, completed or in progress. Callers waiting on a claim that
    /// is forgotten wake up and look again. Its holder is not fenced off: the key is
    /// vacant, so its completion stores its result, unless a new caller claimed the key
    /// meanwhile (then that caller's attempt stands, and the old holder's completion is
    /// refused as a lost lease). For tests and benchmarks that need an empty store.
    pub fn clear(&self) {
        for shard in self.inner.shards.iter() {
            let map = {
                let mut shard = shard.0.lock();
                let sweep_interval = shard.sweep_interval;
                std::mem::replace(&mut *shard, Shard::new(sweep_interval)).map
            };
            // After the lock: dropping a claim wakes its waiters.
            drop(map);
        }
    }

    #[inline]
    fn now(&self) -> Nanos {
        match self.inner.clock {
            Clock::Coarse { epoch } => clock::now().saturating_sub(epoch),
            Clock::Tokio { epoch } => u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
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

    /// Locks the key's shard, sweeping it first if its interval has passed.
    fn lock(&self, key: &Key, now: Nanos) -> parking_lot::MutexGuard<'_, Shard> {
        let mut shard = self.shard(key).lock();
        if now >= shard.next_sweep {
            shard.sweep(now);
        }
        shard
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
            let mut shard = self.lock(key, now);
            step(&mut shard.map, now)
        };
        drop(dropped);
        out
    }

    /// Releases `claim` if it is still the current one, and hands the key to one waiter:
    /// the woken waiter claims it, and the others keep waiting on the same [`Notify`],
    /// which the new claim adopts. Waking them all would have every one race to claim,
    /// and all but one go back to wait, after every failed attempt.
    fn remove_claim(&self, claim: &Claim) {
        self.with_slot(claim.key(), |map, _| {
            let Entry::Occupied(mut entry) = map.entry(*claim.key()) else {
                return ((), None);
            };
            if !entry.get().is_claim(claim.token()) {
                return ((), None);
            }
            match entry.get_mut() {
                Slot::Pending(pending) if pending.has_waiters() => {
                    pending.holder = None;
                    // Under the lock: a clone of the `Arc`, to notify after it, would count
                    // as a waiter for the next release, which would then keep the key for
                    // nobody. If the woken waiter is cancelled before it claims, dropping its
                    // notification passes the wake-up on (`notify_one`'s guarantee).
                    if let Some(waiters) = &pending.waiters {
                        waiters.notify_one();
                    }
                    ((), None)
                }
                _ => ((), Some(entry.remove())),
            }
        });
    }
}

impl Shard {
    fn new(sweep_interval: Nanos) -> Self {
        Shard {
            map: Map::default(),
            sweep_at: MIN_SWEEP,
            next_sweep: sweep_interval,
            sweep_interval,
        }
    }

    fn sweep(&mut self, now: Nanos) {
        self.map.retain(|_, slot| slot.is_kept(now));
        let len = self.map.len();
        self.sweep_at = MIN_SWEEP.max(len * 2);
        self.next_sweep = now.saturating_add(self.sweep_interval);
        // A map never shrinks by itself: after a burst of keys has expired, it would hold
        // its peak capacity for ever. Shrinking to twice the records left (a rehash of
        // those, no more than the sweep's own pass) leaves room to double before the next
        // sweep, so a steady load never shrinks and regrows.
        let room = self.sweep_at;
        if self.map.capacity() > 2 * room {
            self.map.shrink_to(room);
        }
    }
}

enum Found {
    Claimed(Claim),
    InProgress(Fingerprint, Duration, tokio::sync::futures::OwnedNotified),
    Completed(Completed),
}

impl Store for MemoryStore {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        let now = self.now();
        let (found, lapsed) = {
            let mut shard = self.lock(&request.key, now);
            match shard.map.get_mut(&request.key) {
                Some(Slot::Completed(completed)) if completed.expires_at > now => {
                    (Found::Completed(completed.record()), None)
                }
                Some(Slot::Pending(pending)) if pending.live_holder(now).is_some() => {
                    (pending.wait(now), None)
                }
                vacant_or_expired => {
                    let vacant = vacant_or_expired.is_none();
                    let lease = request.lease.unwrap_or(self.inner.lease);
                    let token = Token(self.inner.tokens.fetch_add(1, Ordering::Relaxed));
                    let holder = Holder {
                        token,
                        fingerprint: request.fingerprint,
                        lease_until: Self::deadline(now, lease),
                    };
                    // A released or lapsed claim's waiters wait on for this one.
                    let claimed = Slot::claimed(holder, vacant_or_expired);
                    if vacant && shard.map.len() >= shard.sweep_at {
                        shard.sweep(now);
                    }
                    // What is replaced is dropped after the lock.
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
            Found::InProgress(fingerprint, lease_remaining, changed) => {
                Begin::InProgress(InFlight {
                    fingerprint,
                    lease_remaining,
                    changed: Notification::new(changed),
                })
            }
        })
    }

    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        self.with_slot(claim.key(), |map, now| {
            let renewed = Holder {
                token: claim.token(),
                fingerprint: claim.fingerprint(),
                lease_until: Self::deadline(now, claim.lease()),
            };
            match map.get_mut(claim.key()) {
                Some(slot) => {
                    if let Some(holder) = slot.holder_mut(claim.token()) {
                        holder.lease_until = renewed.lease_until;
                        return (Ok(()), None);
                    }
                    if slot.is_live(now) {
                        return (Err(StoreError::lease_lost()), None);
                    }
                    // Vacant (released, lapsed, expired): no other attempt holds the key, so
                    // the claim is made again, for whoever waits on the key to wait on.
                    let claimed = Slot::claimed(renewed, Some(slot));
                    (Ok(()), Some(std::mem::replace(slot, claimed)))
                }
                // Forgotten by `clear`, or swept after its lease lapsed: made again.
                None => {
                    map.insert(*claim.key(), Slot::claimed(renewed, None));
                    (Ok(()), None)
                }
            }
        })
    }

    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        // Allocated before the lock is taken.
        let value = Arc::from(value);
        let fingerprint = claim.fingerprint();
        let extra = (fingerprint != Fingerprint::NONE).then(|| {
            Box::new(Extra {
                fingerprint,
                decoded: None,
            })
        });
        self.with_slot(claim.key(), |map, now| {
            let done = Slot::Completed(CompletedSlot {
                value,
                expires_at: Self::deadline(now, ttl),
                extra,
            });
            match map.entry(*claim.key()) {
                // Another attempt's live claim, or its completed record: this one is fenced off.
                Entry::Occupied(entry)
                    if !entry.get().is_claim(claim.token()) && entry.get().is_live(now) =>
                {
                    (Err(StoreError::lease_lost()), None)
                }
                // This claim, or a vacant key (forgotten by `clear`, swept, released, lapsed):
                // no other attempt holds it, so the result is stored. Dropping what it
                // replaces, after the lock, wakes every waiter.
                Entry::Occupied(mut entry) => (Ok(()), Some(entry.insert(done))),
                Entry::Vacant(entry) => {
                    entry.insert(done);
                    (Ok(()), None)
                }
            }
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

/// The replay fast path, for [`InProcess`](crate::store::InProcess) callers.
impl MemoryStore {
    /// The decoded value kept for `request.key`, if its record is completed, with
    /// `request.fingerprint`, and a replay offered one ([`MemoryStore::keep`]). Only a
    /// reference is taken under the shard lock: the caller clones the value after it.
    #[inline]
    pub(crate) fn kept(&self, request: &Request) -> Option<Decoded> {
        let now = self.now();
        let shard = self.lock(&request.key, now);
        match shard.map.get(&request.key) {
            Some(Slot::Completed(completed))
                if completed.expires_at > now && completed.fingerprint() == request.fingerprint =>
            {
                completed.extra.as_ref()?.decoded.clone()
            }
            _ => None,
        }
    }

    /// Keeps `decoded`, the decoded form of `value`, which this process just replayed from
    /// `key`, for the later replays of the same record ([`MemoryStore::kept`]); not for a
    /// record that has replaced it since.
    pub(crate) fn keep(&self, key: &Key, value: &Arc<[u8]>, decoded: Decoded) {
        let replaced = {
            let mut shard = self.lock(key, self.now());
            match shard.map.get_mut(key) {
                Some(Slot::Completed(completed)) if Arc::ptr_eq(&completed.value, value) => {
                    let extra = completed.extra.get_or_insert_with(|| {
                        Box::new(Extra {
                            fingerprint: Fingerprint::NONE,
                            decoded: None,
                        })
                    });
                    extra.decoded.replace(decoded)
                }
                _ => Some(decoded),
            }
        };
        // The user's `Drop` runs after the lock.
        drop(replaced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_record_takes_48_bytes_in_the_map() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::size_of::<(Key, Slot)>(), 48);
    }
}
