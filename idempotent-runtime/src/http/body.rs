//! Reading a request body under a limit, for the layer and the `Json` extractor alike.

use super::problem::Problem;
use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_LENGTH};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// The whole body, if it is at most `limit` bytes: judged by its `Content-Length` before a
/// byte is read (so a client that sent `Expect: 100-continue` is answered at once), then
/// while it is read (for a body without a length, or one longer than it said).
///
/// # Errors
///
/// A `413` problem over the limit, a `400` one if the body could not be read.
pub(super) async fn read_limited<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, Problem>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|len| len.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Problem::body_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(Problem::body_too_large(limit)),
        Err(_) => Err(Problem::body_unreadable()),
    }
}
