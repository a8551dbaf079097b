//! axum support: the [`IdempotencyKey`] extractor, and [`Created`], [`Problem`] and the
//! idempotency [`Error`] as responses.

use super::created::Created;
use super::key::{IdempotencyKey, KeyRejection};
use super::layer::IDEMPOTENT_REPLAYED;
use super::problem::Problem;
use crate::error::Error;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::StatusCode;
use serde::Serialize;

/// The `Idempotency-Key` header of the request. A request without it, or with a malformed
/// one, or with the header twice, is refused with a `400` problem before the handler (or
/// the store) is reached. As `Option<IdempotencyKey>`, a missing header is `None` and a
/// malformed one still `400`.
impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = KeyRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        IdempotencyKey::from_headers(&parts.headers)?.ok_or(KeyRejection::Missing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = KeyRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        IdempotencyKey::from_headers(&parts.headers)
    }
}

/// A `400` problem.
impl IntoResponse for KeyRejection {
    fn into_response(self) -> Response {
        Problem::key(self).into_response()
    }
}

/// `application/problem+json` under the process's [`problem_base`](super::problem_base).
impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.to_response(super::problem_base())
            .map(axum_core::body::Body::new)
    }
}

/// The problem of each idempotency error: `409` with `Retry-After` for a request still in
/// flight, `422` for a key reused with another request, `400` for an invalid key, `503`
/// with `Retry-After` when the store is unreachable, `500` otherwise (see
/// [`Problem::from_error`]).
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Problem::from_error(&self).into_response()
    }
}

/// `201 Created` when this call ran, `200 OK` with `Idempotent-Replayed: true` when it
/// replayed; the value as JSON, and its `Location`.
impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let body = match serde_json::to_vec(&*self) {
            Ok(body) => body,
            Err(_) => {
                return Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "response-unencodable",
                    "Response could not be encoded",
                )
                .into_response()
            }
        };
        let mut response = Response::new(axum_core::body::Body::from(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(location) = self.location().and_then(|l| HeaderValue::from_str(l).ok()) {
            headers.insert(LOCATION, location);
        }
        if self.is_replayed() {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        } else {
            *response.status_mut() = StatusCode::CREATED;
        }
        response
    }
}
