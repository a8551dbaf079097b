//! The `Idempotency-Key` request header, as draft-ietf-httpapi-idempotency-key-header
//! defines it: an RFC 8941 String (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`).

use crate::key::MAX_CLIENT_KEY_LEN;
use http::header::{HeaderMap, HeaderName};
use std::fmt;

/// The request header that carries the client's key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A client's idempotency key, read from its `Idempotency-Key` header.
///
/// The header is an RFC 8941 String (`Idempotency-Key: "8e03978e-40d5"`, with `\"` and
/// `\\` escapes); a bare value without quotes (`Idempotency-Key: 8e03978e-40d5`), which
/// many clients send, is accepted as the same key. The key is the unquoted, unescaped
/// text: 1 to 255 bytes of printable ASCII, compared byte for byte.
///
/// ```
/// use idempotent_runtime::http::IdempotencyKey;
///
/// let quoted = IdempotencyKey::parse(r#""order \"7\"""#).unwrap();
/// assert_eq!(quoted.as_str(), r#"order "7""#);
/// let bare = IdempotencyKey::parse("8e03978e-40d5").unwrap();
/// assert_eq!(bare, IdempotencyKey::parse(r#""8e03978e-40d5""#).unwrap());
/// assert!(IdempotencyKey::parse(r#""unterminated"#).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a request's `Idempotency-Key` header was refused: each is a `400 Bad Request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRejection {
    /// The request has no `Idempotency-Key` header, and the route requires one.
    #[error("the request has no Idempotency-Key header")]
    Missing,
    /// The header appears more than once.
    #[error("the Idempotency-Key header appears more than once")]
    Repeated,
    /// The key is empty.
    #[error("the idempotency key is empty")]
    Empty,
    /// The key is longer than 255 bytes.
    #[error("the idempotency key is longer than 255 bytes")]
    TooLong,
    /// The key holds a byte that is not printable ASCII.
    #[error("the idempotency key holds a character that is not printable ASCII")]
    NotPrintable,
    /// The header is neither an RFC 8941 String nor a bare token: a quote left open, a
    /// stray quote or backslash, an escape other than `\"` and `\\`, text after the
    /// closing quote, or parameters.
    #[error("the Idempotency-Key header is not a valid structured-field string")]
    Malformed,
}

impl IdempotencyKey {
    /// Reads a header value.
    ///
    /// # Errors
    ///
    /// Any [`KeyRejection`] but `Missing` and `Repeated`.
    pub fn parse(value: &str) -> Result<Self, KeyRejection> {
        Self::parse_bytes(value.as_bytes())
    }

    /// Reads a header value's bytes.
    ///
    /// # Errors
    ///
    /// Any [`KeyRejection`] but `Missing` and `Repeated`.
    pub fn parse_bytes(value: &[u8]) -> Result<Self, KeyRejection> {
        // RFC 8941 parsing discards leading and trailing spaces.
        let value = value.trim_ascii();
        let key = match value.split_first() {
            None => return Err(KeyRejection::Empty),
            Some((b'"', rest)) => unquote(rest)?,
            Some(_) => bare(value)?,
        };
        if key.is_empty() {
            return Err(KeyRejection::Empty);
        }
        if key.len() > MAX_CLIENT_KEY_LEN {
            return Err(KeyRejection::TooLong);
        }
        Ok(IdempotencyKey(key))
    }

    /// The key of a request: its one `Idempotency-Key` header, or `None` if it has none.
    ///
    /// # Errors
    ///
    /// [`KeyRejection::Repeated`] for more than one header line, or why its value is not
    /// a key.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, KeyRejection> {
        let mut values = headers.get_all(IDEMPOTENCY_KEY).into_iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(KeyRejection::Repeated);
        }
        Self::parse_bytes(value.as_bytes()).map(Some)
    }

    /// The key's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an RFC 8941 String, as a client sends it.
    ///
    /// ```
    /// use idempotent_runtime::http::IdempotencyKey;
    ///
    /// let key = IdempotencyKey::parse(r#""a \"b\"""#).unwrap();
    /// assert_eq!(key.to_header(), r#""a \"b\"""#);
    /// ```
    #[must_use]
    pub fn to_header(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 2);
        out.push('"');
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }
}

/// The text of an RFC 8941 String after its opening quote.
fn unquote(rest: &[u8]) -> Result<String, KeyRejection> {
    let mut key = Vec::with_capacity(rest.len());
    let mut bytes = rest.iter();
    loop {
        match bytes.next() {
            // Unterminated.
            None => return Err(KeyRejection::Malformed),
            Some(b'\\') => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => key.push(escaped),
                _ => return Err(KeyRejection::Malformed),
            },
            Some(b'"') => break,
            Some(&byte) if printable(byte) => key.push(byte),
            Some(_) => return Err(KeyRejection::NotPrintable),
        }
        if key.len() > MAX_CLIENT_KEY_LEN {
            return Err(KeyRejection::TooLong);
        }
    }
    // Nothing may follow the closing quote: no second item, no parameters.
    if bytes.next().is_some() {
        return Err(KeyRejection::Malformed);
    }
    Ok(ascii(key))
}

/// A bare key: the characters of an HTTP token, plus `:` and `/` as in an RFC 8941 Token,
/// starting with any of them (UUIDs start with a digit).
fn bare(value: &[u8]) -> Result<String, KeyRejection> {
    if value.len() > MAX_CLIENT_KEY_LEN {
        return Err(KeyRejection::TooLong);
    }
    for &byte in value {
        if !printable(byte) {
            return Err(KeyRejection::NotPrintable);
        }
        if !(byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&byte)) {
            return Err(KeyRejection::Malformed);
        }
    }
    Ok(ascii(value.to_vec()))
}

fn printable(byte: u8) -> bool {
    (0x20..=0x7e).contains(&byte)
}

fn ascii(bytes: Vec<u8>) -> String {
    // Only printable ASCII reaches here.
    String::from_utf8(bytes).unwrap_or_default()
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Never the key itself: a key is a bearer secret of the client's request, kept out of
/// logs.
impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn quoted_and_bare_forms_are_one_key() {
        let uuid = "8e03978e-40d5-43e8-bc93-6894a57f9324";
        let quoted = IdempotencyKey::parse(&format!("\"{uuid}\"")).unwrap();
        assert_eq!(quoted.as_str(), uuid);
        assert_eq!(IdempotencyKey::parse(uuid).unwrap(), quoted);
        assert_eq!(
            IdempotencyKey::parse(&format!("  \"{uuid}\" ")).unwrap(),
            quoted
        );
        assert_eq!(
            IdempotencyKey::parse(r#""a \\ \"b\"""#).unwrap().as_str(),
            r#"a \ "b""#
        );
        assert_eq!(
            IdempotencyKey::parse(r#"" spaced key ""#).unwrap().as_str(),
            " spaced key "
        );
    }

    #[test]
    fn every_malformed_form_is_refused() {
        use KeyRejection::*;
        let cases: &[(&[u8], KeyRejection)] = &[
            (b"", Empty),
            (b"   ", Empty),
            (b"\"\"", Empty),
            (b"\"open", Malformed),
            (b"\"bad \\n escape\"", Malformed),
            (b"\"trailing\\", Malformed),
            (b"\"a\" \"b\"", Malformed),
            (b"\"a\";p=1", Malformed),
            (b"\"a\",\"b\"", Malformed),
            (b"a b", Malformed),
            (b"a\"b", Malformed),
            (b"a,b", Malformed),
            (b"\"tab\there\"", NotPrintable),
            (b"caf\xc3\xa9", NotPrintable),
            (b"\"caf\xc3\xa9\"", NotPrintable),
            (b"\"nul\x00\"", NotPrintable),
        ];
        for (value, expected) in cases {
            assert_eq!(
                IdempotencyKey::parse_bytes(value),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        let long = "k".repeat(256);
        assert_eq!(IdempotencyKey::parse(&long), Err(TooLong));
        assert_eq!(IdempotencyKey::parse(&format!("\"{long}\"")), Err(TooLong));
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    }

    #[test]
    fn a_repeated_header_is_refused_and_a_missing_one_is_none() {
        let mut headers = HeaderMap::new();
        assert_eq!(IdempotencyKey::from_headers(&headers), Ok(None));
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("\"a\""));
        assert!(IdempotencyKey::from_headers(&headers).unwrap().is_some());
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("\"a\""));
        assert_eq!(
            IdempotencyKey::from_headers(&headers),
            Err(KeyRejection::Repeated)
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = IdempotencyKey::parse("secret-key").unwrap();
        assert_eq!(format!("{key:?}"), "IdempotencyKey(10 bytes)");
    }
}

/// The header parser reads untrusted input: it never panics, and what it accepts it
/// reads back the way a client wrote it.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_bytes_parse_or_are_refused_without_panicking(value in vec(any::<u8>(), 0..300)) {
            if let Ok(key) = IdempotencyKey::parse_bytes(&value) {
                prop_assert!(!key.as_str().is_empty() && key.as_str().len() <= 255);
                prop_assert!(key.as_str().bytes().all(printable));
            }
        }

        #[test]
        fn quote_like_input_never_panics(value in "[\"\\\\a-z ;=,\t]{0,40}") {
            let _ = IdempotencyKey::parse(&value);
        }

        #[test]
        fn every_printable_key_round_trips_through_its_header(key in "[ -~]{1,255}") {
            let parsed = IdempotencyKey::parse(&IdempotencyKey(key.clone()).to_header()).unwrap();
            prop_assert_eq!(parsed.as_str(), key.as_str());
        }
    }
}
