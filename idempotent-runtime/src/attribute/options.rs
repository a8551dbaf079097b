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
    /// How long a duplicate waits for an attempt in flight, unless the call gives its own
    /// (`wait = <expr>`, see [`execute`](super::execute)).
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

/// The value of `wait = <expr>`: a [`Duration`], evaluated on each call.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`wait = ..` must be a `std::time::Duration`, not `{Self}`",
    label = "this is evaluated on each call as the time a duplicate waits, so it must be a `Duration`",
    note = r#"write a literal such as `wait = "30s"`, or an expression such as `wait = Duration::from_secs(settings.wait_secs)`"#
)]
pub trait WaitDuration {
    /// The duration.
    fn into_wait(self) -> Duration;
}

impl WaitDuration for Duration {
    #[inline]
    fn into_wait(self) -> Duration {
        self
    }
}

/// The per-call wait of `wait = <expr>`; generated code spans the call on the expression,
/// so that a value of another type is reported there.
#[doc(hidden)]
#[inline]
pub fn wait<W: WaitDuration>(value: W) -> Duration {
    value.into_wait()
}
