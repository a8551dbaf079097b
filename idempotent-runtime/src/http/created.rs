//! [`Created`]: an annotated handler's result that answers `201 Created` when it ran and
//! `200 OK` with `Idempotent-Replayed: true` when it replayed.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::Deref;

/// The `Ok` value of an `#[idempotent]` HTTP handler: the created resource, and where it
/// lives. As a response (with the `axum` feature) it is the design note's answer: `201
/// Created` from the call that ran the body, `200 OK` with `Idempotent-Replayed: true`
/// from every replay, each with the same JSON body and `Location`.
///
/// It is stored as the value and its location, so a replay has both.
///
/// ```
/// use idempotent_runtime::http::Created;
///
/// let created = Created::new(7u64).at("/orders/7");
/// assert!(!created.is_replayed());
/// assert_eq!(created.location(), Some("/orders/7"));
/// assert_eq!(*created, 7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created<T> {
    value: T,
    location: Option<String>,
    replayed: bool,
}

impl<T> Created<T> {
    /// The resource this call created.
    pub fn new(value: T) -> Self {
        Created {
            value,
            location: None,
            replayed: false,
        }
    }

    /// Sets the `Location` of the created resource.
    #[must_use]
    pub fn at(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// The `Location`, if set.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// Whether this is an earlier call's stored result.
    pub fn is_replayed(&self) -> bool {
        self.replayed
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Created<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Stored as the pair `[value, location]`.
impl<T: Serialize> Serialize for Created<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.value, &self.location).serialize(serializer)
    }
}

/// Only stored results are decoded, so a decoded `Created` is a replayed one.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Created<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (value, location) = <(T, Option<String>)>::deserialize(deserializer)?;
        Ok(Created {
            value,
            location,
            replayed: true,
        })
    }
}
