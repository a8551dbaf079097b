//! Rejections as RFC 9457 problem details (`application/problem+json`).

use super::key::KeyRejection;
use crate::error::Error;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;

/// The default base of problem `type` URIs: the document that describes each one. A
/// problem's `type` is the base followed by its [`code`](Problem::code).
pub const DEFAULT_PROBLEM_BASE: &str =
    "https://github.com/idempotency-rs/idempotency/blob/main/PROBLEMS.md#";

/// A rejection, as an RFC 9457 problem: `application/problem+json` with a stable `type`
/// URI, a `title`, the `status`, a `detail` and a `code`, sent with
/// `Cache-Control: no-store`. The detail never holds the client's key nor internal names
/// (namespaces, function paths).
///
/// ```
/// use idempotent_runtime::http::{Problem, DEFAULT_PROBLEM_BASE};
/// use http::StatusCode;
///
/// let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "qty-zero", "Quantity is zero")
///     .detail("an order needs at least one item");
/// let response = problem.to_response(DEFAULT_PROBLEM_BASE);
/// assert_eq!(response.status(), 422);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    code: Arc<str>,
    title: Arc<str>,
    detail: Option<String>,
    retry_after: Option<u32>,
}

impl Problem {
    /// A problem with its status, stable code (the `type` URI's fragment) and title.
    #[must_use]
    pub fn new(status: StatusCode, code: impl Into<Arc<str>>, title: impl Into<Arc<str>>) -> Self {
        Problem {
            status,
            code: code.into(),
            title: title.into(),
            detail: None,
            retry_after: None,
        }
    }

    /// Adds a human-readable explanation of this occurrence.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds `Retry-After: seconds`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code, such as `key-reused`.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The same problem with another status (a mismatch answered 409 instead of 422).
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A request without the `Idempotency-Key` header its route requires, or whose header
    /// is not a key: `400`.
    #[must_use]
    pub fn key(rejection: KeyRejection) -> Self {
        match rejection {
            KeyRejection::Missing => Problem::new(
                StatusCode::BAD_REQUEST,
                "key-missing",
                "Idempotency-Key header required",
            )
            .detail("this request must carry an Idempotency-Key header"),
            other => Problem::new(
                StatusCode::BAD_REQUEST,
                "key-malformed",
                "Malformed Idempotency-Key header",
            )
            .detail(other.to_string()),
        }
    }

    /// A request body over the limit: `413`.
    #[must_use]
    pub fn body_too_large(limit: usize) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
        )
        .detail(format!(
            "the request body is over the limit of {limit} bytes"
        ))
    }

    /// The request body could not be read: `400`.
    #[must_use]
    pub fn body_unreadable() -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "body-unreadable",
            "Request body unreadable",
        )
        .detail("the request body could not be read to its end")
    }

    /// The response of a request whose body panicked or could not run: `500`.
    #[must_use]
    pub fn handler_failed() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handler-failed",
            "The request could not be completed",
        )
        .detail("the handler did not produce a response; the key is free again")
    }

    /// The problem for an idempotency error of a call.
    #[must_use]
    pub fn from_error(error: &Error) -> Self {
        match error {
            Error::InProgress { .. } => Problem::new(
                StatusCode::CONFLICT,
                "request-in-progress",
                "A request with this key is in progress",
            )
            .detail("a request with the same idempotency key is still being processed; retry later")
            .retry_after(1),
            Error::PayloadMismatch { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "key-reused",
                "Idempotency key reused with another request",
            )
            .detail("this idempotency key was already used with a different request"),
            Error::InvalidKey(reason) => Problem::new(
                StatusCode::BAD_REQUEST,
                "key-malformed",
                "Malformed Idempotency-Key header",
            )
            .detail(reason.to_string()),
            Error::LeaseLost { .. } => Problem::new(
                StatusCode::CONFLICT,
                "lease-lost",
                "Another attempt took over this request",
            )
            .detail("this attempt ran past its claim and another took over; a retry returns that attempt's result")
            .retry_after(1),
            Error::Store(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Idempotency store unavailable",
            )
            .detail("the request was not processed: its idempotency could not be guaranteed")
            .retry_after(1),
            Error::Codec(err) if err.is_unreplayable() => Self::not_replayable(),
            Error::Codec(_) => Self::record_unreadable(),
            Error::Key(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "key-underivable",
                "Idempotency key could not be derived",
            )
            .detail("the request's arguments could not be encoded into its idempotency key"),
        }
    }

    /// A retry whose stored result this build cannot read (the return type changed, or
    /// the record is corrupt): `500`, and the request is not processed again.
    #[must_use]
    pub fn record_unreadable() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "record-unreadable",
            "Stored response unreadable",
        )
        .detail(
            "the stored result of this request could not be read; it will not be processed again",
        )
    }

    /// A retry of a request that succeeded but whose response could not be kept (too
    /// large): `500`, and the request is not processed again.
    #[must_use]
    pub fn not_replayable() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "response-not-replayable",
            "Response not replayable",
        )
        .detail("the first request with this key succeeded, but its response could not be kept; it will not be processed again")
    }

    /// The response, with `type` URIs under `base`.
    #[must_use]
    pub fn to_response(&self, base: &str) -> Response<Full<Bytes>> {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), format!("{base}{}", self.code).into());
        body.insert("title".into(), self.title.as_ref().into());
        body.insert("status".into(), self.status.as_u16().into());
        if let Some(detail) = &self.detail {
            body.insert("detail".into(), detail.as_str().into());
        }
        body.insert("code".into(), self.code.as_ref().into());
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_problem_is_problem_json_that_names_no_key_nor_namespace() {
        let error = Error::PayloadMismatch {
            namespace: "my_app::orders::create".into(),
        };
        let response = Problem::from_error(&error).to_response("https://example.com/p/");
        assert_eq!(response.status(), 422);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "https://example.com/p/key-reused");
        assert_eq!(json["status"], 422);
        assert_eq!(json["code"], "key-reused");
        assert!(!String::from_utf8_lossy(&body).contains("my_app"));
    }

    #[test]
    fn waits_and_outages_say_when_to_retry() {
        let busy = Error::InProgress {
            namespace: "n".into(),
            waited: std::time::Duration::ZERO,
        };
        let response = Problem::from_error(&busy).to_response(DEFAULT_PROBLEM_BASE);
        assert_eq!(
            (response.status(), &response.headers()["retry-after"]),
            (StatusCode::CONFLICT, &HeaderValue::from(1))
        );
        let down = Error::Store(crate::StoreError::backend("refused"));
        let response = Problem::from_error(&down).to_response(DEFAULT_PROBLEM_BASE);
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
}
