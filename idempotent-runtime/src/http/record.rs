//! How the layer stores a response: status, the allowed headers in order (repeated values
//! kept), then the body, byte for byte.
//!
//! | bytes | what |
//! |---|---|
//! | `1`, `H` | format version, kind: an HTTP response |
//! | 2 | status, big-endian |
//! | 2 | header count, big-endian; then for each: name length (1), name, value length (2, big-endian), value |
//! | rest | the body |

use crate::codec;
use crate::engine::Encode;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{response, StatusCode};
use std::borrow::Cow;
use std::sync::Arc;

const FORMAT_VERSION: u8 = 1;
const RESPONSE: u8 = b'H';

/// A fresh response, to store and to deliver.
pub(super) struct Fresh {
    pub(super) parts: response::Parts,
    pub(super) body: Bytes,
    /// The headers a replay may carry.
    pub(super) stored_headers: Arc<[HeaderName]>,
    /// The body is over the capture limit: the record says the response cannot be
    /// replayed, and the caller still gets all of it.
    pub(super) over_capture_limit: bool,
}

impl Encode for Fresh {
    fn encode(&self) -> Cow<'_, [u8]> {
        if self.over_capture_limit {
            return Cow::Owned(codec::unreplayable(
                "the response body was over the layer's capture limit",
            ));
        }
        let headers: Vec<(&HeaderName, &HeaderValue)> = self
            .parts
            .headers
            .iter()
            // Lengths that do not fit the format are left out, as no real header has them.
            .filter(|(name, value)| {
                self.stored_headers.contains(name)
                    && name.as_str().len() <= usize::from(u8::MAX)
                    && u16::try_from(value.len()).is_ok()
            })
            .collect();
        let mut out = Vec::with_capacity(8 + self.body.len() + headers.len() * 32);
        out.extend_from_slice(&[FORMAT_VERSION, RESPONSE]);
        out.extend_from_slice(&self.parts.status.as_u16().to_be_bytes());
        let count = u16::try_from(headers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (name, value) in headers.into_iter().take(usize::from(count)) {
            let name = name.as_str().as_bytes();
            out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(name);
            let value = value.as_bytes();
            out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&self.body);
        Cow::Owned(out)
    }
}

/// A stored response, read back.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// What a stored record holds.
#[derive(Debug)]
pub(super) enum Read {
    Response(Stored),
    /// A call that succeeded but whose response was not kept.
    Unreplayable,
    /// Not a response this build can read.
    Unreadable,
}

pub(super) fn read(record: &Arc<[u8]>) -> Read {
    match &record[..] {
        [FORMAT_VERSION, RESPONSE, rest @ ..] => {
            parse(rest).map_or(Read::Unreadable, Read::Response)
        }
        [FORMAT_VERSION, b'X', ..] => Read::Unreplayable,
        _ => Read::Unreadable,
    }
}

fn parse(bytes: &[u8]) -> Option<Stored> {
    let mut at: usize = 0;
    let mut take = |n: usize| {
        let slice = bytes.get(at..at.checked_add(n)?)?;
        at += n;
        Some(slice)
    };
    let status = StatusCode::from_u16(u16::from_be_bytes(take(2)?.try_into().ok()?)).ok()?;
    let count = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let mut headers = HeaderMap::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(*take(1)?.first()?);
        let name = HeaderName::from_bytes(take(len)?).ok()?;
        let len = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
        let value = HeaderValue::from_bytes(take(len)?).ok()?;
        headers.append(name, value);
    }
    let body = Bytes::copy_from_slice(bytes.get(at..)?);
    Some(Stored {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, LINK, LOCATION, SET_COOKIE};

    fn fresh(headers: &[(HeaderName, &'static str)], body: &'static [u8]) -> Fresh {
        let mut response = http::Response::new(());
        *response.status_mut() = StatusCode::CREATED;
        for (name, value) in headers {
            response
                .headers_mut()
                .append(name.clone(), HeaderValue::from_static(value));
        }
        Fresh {
            parts: response.into_parts().0,
            body: Bytes::from_static(body),
            stored_headers: [CONTENT_TYPE, LOCATION, LINK].into(),
            over_capture_limit: false,
        }
    }

    #[test]
    fn a_response_round_trips_with_only_its_allowed_headers_and_their_repeats() {
        let record: Arc<[u8]> = fresh(
            &[
                (CONTENT_TYPE, "application/json"),
                (SET_COOKIE, "session=1"),
                (LINK, "</a>; rel=next"),
                (LOCATION, "/payments/7"),
                (LINK, "</b>; rel=prev"),
            ],
            b"{\"n\":7}",
        )
        .encode()
        .into();
        let Read::Response(stored) = read(&record) else {
            panic!("a response record");
        };
        assert_eq!(stored.status, StatusCode::CREATED);
        assert_eq!(&stored.body[..], b"{\"n\":7}");
        assert!(!stored.headers.contains_key(SET_COOKIE));
        let links: Vec<_> = stored.headers.get_all(LINK).iter().collect();
        assert_eq!(links, ["</a>; rel=next", "</b>; rel=prev"]);
        assert_eq!(stored.headers[LOCATION], "/payments/7");
    }

    #[test]
    fn truncated_or_foreign_records_are_unreadable_not_a_panic() {
        let record = fresh(&[(LOCATION, "/payments/7")], b"body")
            .encode()
            .into_owned();
        for len in 0..record.len().min(24) {
            let cut: Arc<[u8]> = record[..len].into();
            let _ = read(&cut);
        }
        assert!(matches!(read(&Arc::from(&b"1J{}"[..])), Read::Unreadable));
        assert!(matches!(
            read(&Arc::from(&[1, b'X', b'!'][..])),
            Read::Unreplayable
        ));
    }
}
