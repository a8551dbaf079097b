//! What the attribute's options become at run time.

use std::time::Duration;

/// A function's settings, written by `#[idempotent(..)]` into a `static`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `name = ".."`, or `None` for the namespace derived from the function's path.
    pub name: Option<&'static str>,
    /// How long a completed result is kept.
    pub ttl: Duration,
    /// How long a duplicate waits for an attempt in flight.
    pub wait: Duration,
    /// The claim's lease; `None` is the store's default.
    pub lease: Option<Duration>,
    /// Whether the key is client-supplied (`key = ..`), so a fingerprint is kept.
    pub client_key: bool,
    /// The labels of what a key is made of, in the order it is added: const generic
    /// parameters, then key parameters (see [`NamespaceKey::with_params`](crate::NamespaceKey::with_params)).
    pub key_params: &'static [&'static str],
    /// The names of the fingerprint's parameters, in order.
    pub payload_params: &'static [&'static str],
}

impl Options {
    /// The default `ttl` (the engine's).
    pub const DEFAULT_TTL: Duration = crate::engine::Call::DEFAULT_TTL;
    /// The default `wait` (the engine's).
    pub const DEFAULT_WAIT: Duration = crate::engine::Call::DEFAULT_WAIT;
}
