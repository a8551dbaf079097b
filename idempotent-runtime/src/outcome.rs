//! [`Outcome`]: a result that knows whether it was computed now or replayed.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut};

/// A result that says whether this call ran the body (**fresh**) or received the stored
/// result of an earlier call (**replayed**): the seed's `201 Created` versus `200 OK`, or
/// Stripe's `Idempotent-Replayed: true`.
///
/// Return `Result<Outcome<T>, E>` instead of `Result<T, E>` to opt in. It is stored exactly
/// as `T` (the wrapper is transparent to serde), so the flag costs no store lookup: a
/// value the body returns is fresh, a value decoded from the store is replayed.
///
/// ```
/// use idempotency::{idempotent, Outcome};
///
/// # #[derive(Debug)] struct AppError;
/// # impl From<idempotency::Error> for AppError { fn from(_: idempotency::Error) -> Self { AppError } }
/// #[idempotent(ttl = "24h")]
/// async fn create_order(customer: u64, qty: u32) -> Result<Outcome<u64>, AppError> {
///     Ok(Outcome::fresh(customer * 1000 + u64::from(qty)))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let first = create_order(7, 2).await.unwrap();
/// let again = create_order(7, 2).await.unwrap();
/// assert!(!first.is_replayed());
/// assert!(again.is_replayed());
/// // The same result: an `Outcome` compares and hashes by its value alone.
/// assert_eq!(first, again);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome<T> {
    value: T,
    replayed: bool,
}

impl<T> Outcome<T> {
    /// A result computed by this call's body.
    pub const fn fresh(value: T) -> Self {
        Outcome {
            value,
            replayed: false,
        }
    }

    /// Whether the value is an earlier call's stored result.
    pub const fn is_replayed(&self) -> bool {
        self.replayed
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

/// By value only: a replay is the same result as the fresh one it replays.
impl<T: PartialEq> PartialEq for Outcome<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Outcome<T> {}

/// By value only, consistent with `PartialEq`.
impl<T: std::hash::Hash> std::hash::Hash for Outcome<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<T> From<T> for Outcome<T> {
    fn from(value: T) -> Self {
        Outcome::fresh(value)
    }
}

impl<T> Deref for Outcome<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Outcome<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Serialize> Serialize for Outcome<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

/// Only stored results are ever decoded, so a decoded `Outcome` is a replayed one.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Outcome<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(|value| Outcome {
            value,
            replayed: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_replay_equals_its_fresh_result_and_hashes_alike() {
        let fresh = Outcome::fresh(42u64);
        let replayed: Outcome<u64> = serde_json::from_str("42").unwrap();
        assert!(replayed.is_replayed() && !fresh.is_replayed());
        assert_eq!(fresh, replayed);
        assert_ne!(fresh, Outcome::fresh(43));
        assert_eq!(HashSet::from([fresh, replayed]).len(), 1);
    }
}
