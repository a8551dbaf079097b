//! axum support: the [`IdempotencyKey`] extractor, and [`Created`], [`Problem`] and the
//! idempotency [`Error`] as responses.

use super::body::read_limited;
use super::created::Created;
use super::key::{IdempotencyKey, KeyRejection};
use super::layer::IDEMPOTENT_REPLAYED;
use super::problem::Problem;
use crate::error::Error;
use axum_core::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum_core::response::{IntoResponse, Response};
use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::StatusCode;
use serde::de::DeserializeOwned;
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

/// A JSON request body, as axum's `Json` extractor reads it, whose rejections are problems
/// like every other of this crate: `413` for a body over `LIMIT` bytes (1 MiB by default,
/// judged by its `Content-Length` before a byte is read, and enforced while reading), `415`
/// without a JSON `Content-Type`, `422` for JSON that does not match `T`, `400` for a body
/// that could not be read.
///
/// ```
/// use idempotent_runtime::http::Json;
///
/// #[derive(serde::Deserialize)]
/// struct NewOrder { sku: String }
///
/// async fn create(Json(order): Json<NewOrder>) -> String {
///     order.sku
/// }
///
/// // Up to 64 KiB.
/// async fn note(Json(text): Json<String, 65_536>) -> String {
///     text
/// }
/// # let _ = (create, note);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T, const LIMIT: usize = { 1 << 20 }>(pub T);

impl<T: DeserializeOwned, S: Send + Sync, const LIMIT: usize> FromRequest<S> for Json<T, LIMIT> {
    type Rejection = Problem;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|essence| {
                let essence = essence.trim().to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            });
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type-unsupported",
                "JSON body expected",
            )
            .detail("the request body must be JSON, with Content-Type: application/json"));
        }
        let (parts, body) = request.into_parts();
        let body = read_limited(&parts.headers, body, LIMIT).await?;
        serde_json::from_slice(&body).map(Json).map_err(|err| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "body-invalid",
                "Request body invalid",
            )
            .detail(format!("the JSON body does not fit: {err}"))
        })
    }
}
