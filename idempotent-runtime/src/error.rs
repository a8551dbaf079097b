//! What can go wrong around an idempotent call, as typed values.

use crate::key::KeyError;
use std::fmt;
use std::time::Duration;

/// The error an `#[idempotent]` function returns, through its own error type, when the
/// idempotency layer — not the function's body — decides the outcome of a call.
///
/// The attribute requires the function's error type `E` to implement `From<Error>`, so
/// every variant reaches the caller as that `E`. Nothing here is ever a panic.
///
/// ```
/// use idempotent_runtime::Error;
///
/// #[derive(Debug)]
/// enum AppError {
///     Conflict(String),
///     Internal(String),
/// }
///
/// impl From<Error> for AppError {
///     fn from(err: Error) -> Self {
///         match err {
///             // A duplicate still in flight (wait expired), or a key reused with another payload.
///             Error::InProgress { .. } | Error::PayloadMismatch { .. } => {
///                 AppError::Conflict(err.to_string())
///             }
///             other => AppError::Internal(other.to_string()),
///         }
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another call with the same key was still running when this duplicate stopped
    /// waiting for it (after the function's `wait`, at once with `wait = "0s"`).
    /// HTTP services usually answer `409 Conflict`; retrying later is safe.
    #[error("a duplicate call of `{namespace}` is still in progress (waited {waited:?})")]
    InProgress {
        /// The function's key namespace.
        namespace: String,
        /// How long this call waited before giving up.
        waited: Duration,
    },
    /// The client-supplied key (`key = ..`) was used before with different arguments.
    /// HTTP services usually answer `422 Unprocessable Content`.
    #[error(
        "the idempotency key of this `{namespace}` call was already used with different arguments"
    )]
    PayloadMismatch {
        /// The function's key namespace.
        namespace: String,
    },
    /// The client-supplied key (`key = ..`) is empty, longer than
    /// [`MAX_CLIENT_KEY_LEN`](crate::MAX_CLIENT_KEY_LEN) bytes, or holds a control
    /// character ([`validate_client_key`](crate::validate_client_key)); the body did not
    /// run. HTTP services answer `400 Bad Request`.
    #[error("invalid idempotency key")]
    InvalidKey(#[source] InvalidKey),
    /// An argument's `Serialize` implementation failed, so no key could be derived; the
    /// body did not run.
    #[error("an argument could not be encoded into the idempotency key")]
    Key(#[source] KeyError),
    /// This attempt's claim was taken over by another attempt after its lease lapsed (for
    /// example the process was paused for longer than the lease). The body ran, but its
    /// result was not stored: the record belongs to the attempt that took over, and a
    /// retry replays that one.
    #[error("the claim on this `{namespace}` call lapsed and another attempt took over; its result was not stored")]
    LeaseLost {
        /// The function's key namespace.
        namespace: String,
    },
    /// The store failed: it could not be reached, timed out, or answered with an error.
    #[error("the idempotency store failed")]
    Store(#[source] StoreError),
    /// A result could not be encoded for storage, or a stored record could not be decoded
    /// (the return type changed between deploys, or the bytes are corrupt).
    #[error(transparent)]
    Codec(CodecError),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        Error::Store(err)
    }
}

/// Why a client-supplied idempotency key was refused.
///
/// Every key that is not refused is valid and compared byte for byte, with no trimming
/// or Unicode normalization ([`validate_client_key`](crate::validate_client_key) says
/// why).
///
/// ```
/// use idempotent_runtime::{InvalidKey, validate_client_key};
///
/// assert_eq!(validate_client_key(""), Err(InvalidKey::Empty));
/// assert_eq!(validate_client_key(&"x".repeat(256)), Err(InvalidKey::TooLong { len: 256 }));
/// assert_eq!(
///     validate_client_key("order\t7f3a"),
///     Err(InvalidKey::ControlCharacter { at: 5, character: '\t' })
/// );
/// assert_eq!(validate_client_key("order-7f3a"), Ok(()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The key is the empty string.
    Empty,
    /// The key is longer than [`MAX_CLIENT_KEY_LEN`](crate::MAX_CLIENT_KEY_LEN) bytes.
    TooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// The key holds a control character (Unicode category `Cc`, tab and newline
    /// included): no client sends one in a well-formed header, and a log line would break
    /// on it.
    ControlCharacter {
        /// The character's offset in the key, in bytes.
        at: usize,
        /// The character.
        character: char,
    },
}

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidKey::Empty => f.write_str("the key is empty"),
            InvalidKey::TooLong { len } => write!(
                f,
                "the key is {len} bytes long; at most {} are allowed",
                crate::MAX_CLIENT_KEY_LEN
            ),
            // Escaped, so that the message itself stays on one line.
            InvalidKey::ControlCharacter { at, character } => write!(
                f,
                "the key holds the control character {character:?} at byte {at}; keys are printable text"
            ),
        }
    }
}

impl std::error::Error for InvalidKey {}

/// A store's failure, as returned by [`Store`](crate::Store) methods.
///
/// ```
/// use idempotent_runtime::StoreError;
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 2s");
/// let err = StoreError::backend(io);
/// assert!(!err.is_lease_lost());
/// assert_eq!(err.to_string(), "no answer in 2s");
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
}

#[derive(Debug)]
enum StoreErrorKind {
    LeaseLost,
    TooLarge { len: usize, limit: usize },
    Backend(Box<dyn std::error::Error + Send + Sync>),
    Retryable(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// The claim's token no longer owns the record: its lease lapsed and another attempt
    /// claimed the key. Returned by [`Store::renew`](crate::Store::renew) and
    /// [`Store::complete`](crate::Store::complete) to fence off the stale attempt.
    #[must_use]
    pub fn lease_lost() -> Self {
        StoreError {
            kind: StoreErrorKind::LeaseLost,
        }
    }

    /// The completed record of `len` bytes is over the `limit` the store accepts (Redis
    /// refuses values over its `proto-max-bulk-len`). Returned by
    /// [`Store::complete`](crate::Store::complete), which then stored nothing; the call
    /// completes the claim with a record that says so, which duplicates receive as
    /// [`Error::Codec`], so that the body does not run again for every retry.
    ///
    /// ```
    /// use idempotent_runtime::StoreError;
    ///
    /// let err = StoreError::too_large(600 << 20, 512 << 20);
    /// assert!(err.is_too_large());
    /// assert_eq!(err.to_string(), "the result is 629145600 bytes, over the store's limit of 536870912");
    /// ```
    #[must_use]
    pub fn too_large(len: usize, limit: usize) -> Self {
        StoreError {
            kind: StoreErrorKind::TooLarge { len, limit },
        }
    }

    /// Whether this is the answer of [`StoreError::too_large`].
    #[must_use]
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, StoreErrorKind::TooLarge { .. })
    }

    /// The backend failed (I/O, protocol, timeout, server error).
    pub fn backend(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError {
            kind: StoreErrorKind::Backend(err.into()),
        }
    }

    /// A transient conflict in the store that making the same call again resolves: a
    /// database's serialization failure, deadlock or lock timeout. Nothing was stored.
    ///
    /// ```
    /// use idempotent_runtime::StoreError;
    ///
    /// let conflict = StoreError::retryable("could not serialize access");
    /// assert!(conflict.is_retryable());
    /// assert!(!StoreError::backend("connection refused").is_retryable());
    /// ```
    pub fn retryable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError {
            kind: StoreErrorKind::Retryable(err.into()),
        }
    }

    /// Whether this is a [`retryable`](Self::retryable) conflict.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Retryable(_))
    }

    /// Whether this is the fencing answer of [`StoreError::lease_lost`].
    #[must_use]
    pub fn is_lease_lost(&self) -> bool {
        matches!(self.kind, StoreErrorKind::LeaseLost)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StoreErrorKind::LeaseLost => {
                f.write_str("the claim's lease was lost to another attempt")
            }
            StoreErrorKind::TooLarge { len, limit } => write!(
                f,
                "the result is {len} bytes, over the store's limit of {limit}"
            ),
            StoreErrorKind::Backend(err) | StoreErrorKind::Retryable(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            StoreErrorKind::LeaseLost | StoreErrorKind::TooLarge { .. } => None,
            StoreErrorKind::Backend(err) | StoreErrorKind::Retryable(err) => err.source(),
        }
    }
}

/// A result that could not be encoded, or a stored record that could not be decoded.
#[derive(Debug)]
pub struct CodecError {
    namespace: String,
    detail: CodecDetail,
}

#[derive(Debug)]
pub(crate) enum CodecDetail {
    /// `serde_json` refused the body's result (e.g. a map with non-string keys).
    Encode(String),
    /// The stored record holds the marker of a result that could not be encoded.
    Unreplayable(String),
    /// The stored bytes do not decode as the function's return type.
    Decode(serde_json::Error),
    /// The stored bytes carry a format version this build does not read.
    Version(u8),
}

impl CodecError {
    pub(crate) fn new(namespace: &str, detail: CodecDetail) -> Self {
        CodecError {
            namespace: namespace.to_owned(),
            detail,
        }
    }

    /// Whether the record is the marker of a call that succeeded but whose result could
    /// not be stored (unencodable, or too large for the store): its duplicates are never
    /// run again.
    #[must_use]
    pub fn is_unreplayable(&self) -> bool {
        matches!(self.detail, CodecDetail::Unreplayable(_))
    }

    /// The namespace of the function whose record failed.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = &self.namespace;
        match &self.detail {
            CodecDetail::Encode(err) => {
                write!(f, "the result of `{ns}` could not be encoded for storage: {err}")
            }
            CodecDetail::Unreplayable(err) => write!(
                f,
                "the first call of `{ns}` succeeded, but its result could not be stored, so it cannot be replayed: {err}"
            ),
            CodecDetail::Decode(_) => write!(
                f,
                "the stored result of `{ns}` does not decode as its return type (changed since it was stored?)"
            ),
            CodecDetail::Version(v) => write!(
                f,
                "the stored result of `{ns}` has record format version {v}, which this build cannot read"
            ),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.detail {
            CodecDetail::Decode(err) => Some(err),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Every layer of an error chain says its own part: `anyhow`'s `{:#}` and `tracing`
    /// print each cause once.
    #[test]
    fn no_message_repeats_its_source() {
        struct Unkeyable;
        impl serde::Serialize for Unkeyable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("a socket has no key"))
            }
        }
        let decode = serde_json::from_slice::<u64>(b"\"x\"").unwrap_err();
        let mut hasher = crate::KeyHasher::new("orders");
        let key = hasher.arg("conn", &Unkeyable).finish().unwrap_err();
        let errors = [
            Error::Store(StoreError::backend(std::io::Error::other(
                "connection refused",
            ))),
            Error::InvalidKey(InvalidKey::Empty),
            Error::Key(key),
            Error::Codec(CodecError::new("orders", CodecDetail::Decode(decode))),
            Error::LeaseLost {
                namespace: "orders".into(),
            },
        ];
        for err in &errors {
            let mut layer: &dyn std::error::Error = err;
            while let Some(source) = layer.source() {
                let (outer, inner) = (layer.to_string(), source.to_string());
                assert!(!outer.contains(&inner), "{outer:?} repeats {inner:?}");
                layer = source;
            }
        }
        assert!(errors[0].source().is_some() && errors[3].source().is_some());
    }
}
