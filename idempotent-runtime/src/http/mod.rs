//! Idempotent HTTP requests, with the IETF `Idempotency-Key` header
//! (draft-ietf-httpapi-idempotency-key-header), on the same [engine](crate::engine) and
//! stores as the attribute.
//!
//! - [`IdempotencyLayer`] (feature `tower`): a tower layer for any service, axum routers
//!   included. It stores the response (status, the allowed headers, the body) and replays
//!   it byte for byte with `Idempotent-Replayed: true`.
//! - With the `axum` feature, the attribute goes on the handler itself: the
//!   [`IdempotencyKey`] extractor, [`Created`] for `201`/`200` answers, and the idempotency
//!   [`Error`](crate::Error) and [`Problem`] as responses.
//! - [`RunToCompletion`]: a layer that lets a handler finish when its client disconnects.
//!
//! Every rejection is an RFC 9457 [`Problem`] (`application/problem+json`, with
//! `Cache-Control: no-store`), whose `type` is a stable URI under
//! [`problem_base`], which [`set_problem_base`] changes.

#[cfg(feature = "axum")]
mod axum;
mod body;
mod complete;
mod created;
mod key;
mod layer;
mod problem;
mod record;

#[cfg(feature = "axum")]
pub use axum::Json;
pub use complete::{RunToCompletion, RunToCompletionLayer};
pub use created::Created;
pub use key::{IdempotencyKey, KeyRejection, IDEMPOTENCY_KEY};
pub use layer::{Idempotency, IdempotencyLayer, LayerBody, StoreResponse, IDEMPOTENT_REPLAYED};
pub use problem::{Problem, DEFAULT_PROBLEM_BASE};

use std::sync::OnceLock;

static PROBLEM_BASE: OnceLock<String> = OnceLock::new();

/// The base of problem `type` URIs: what [`set_problem_base`] set, or
/// [`DEFAULT_PROBLEM_BASE`].
#[must_use]
pub fn problem_base() -> &'static str {
    PROBLEM_BASE
        .get()
        .map_or(DEFAULT_PROBLEM_BASE, String::as_str)
}

/// Sets the base of problem `type` URIs for the whole process (such as
/// `"https://api.example.com/problems/"`), once, at start-up; a layer can still set its own.
///
/// # Errors
///
/// The base that was already set, if any.
pub fn set_problem_base(base: impl Into<String>) -> Result<(), String> {
    PROBLEM_BASE.set(base.into())
}
