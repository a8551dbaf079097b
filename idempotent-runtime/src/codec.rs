//! How a result is stored: a format version, a kind, then the value's JSON.
//!
//! | byte 0 | byte 1 | rest |
//! |---|---|---|
//! | `1` (format version) | `J` | the result as JSON (`serde_json`) |
//! | `1` | `X` | UTF-8 text: why the result of a successful call could not be encoded |
//!
//! The `X` record keeps the promise that the body runs once even when its result cannot be
//! stored (a map with non-string keys, a `Serialize` impl that fails): duplicates receive
//! [`Error::Codec`](crate::Error::Codec) instead of running the body again.

use crate::error::CodecDetail;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::Cell;

const FORMAT_VERSION: u8 = 1;
const JSON: u8 = b'J';
const UNREPLAYABLE: u8 = b'X';

thread_local! {
    /// A buffer to encode into, returned by [`recycle`]: a miss allocates only the copy
    /// the store keeps.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Encodes `value` for storage; when it cannot be encoded, the record says why instead,
/// and the error is returned alongside it.
pub(crate) fn encode<T: Serialize>(value: &T) -> (Vec<u8>, Option<CodecDetail>) {
    let mut out = SPARE.take();
    out.clear();
    out.extend_from_slice(&[FORMAT_VERSION, JSON]);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => (out, None),
        Err(err) => {
            let reason = err.to_string();
            let mut out = vec![FORMAT_VERSION, UNREPLAYABLE];
            out.extend_from_slice(reason.as_bytes());
            (out, Some(CodecDetail::Encode(reason)))
        }
    }
}

/// Gives a buffer from [`encode`] back for the next encoding on this thread.
pub(crate) fn recycle(buffer: Vec<u8>) {
    // A rare huge result does not pin its memory to the thread.
    if buffer.capacity() <= 64 * 1024 {
        SPARE.set(buffer);
    }
}

/// Decodes a stored record.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecDetail> {
    match bytes {
        [FORMAT_VERSION, JSON, json @ ..] => {
            serde_json::from_slice(json).map_err(CodecDetail::Decode)
        }
        [FORMAT_VERSION, UNREPLAYABLE, reason @ ..] => Err(CodecDetail::Unreplayable(
            String::from_utf8_lossy(reason).into_owned(),
        )),
        [version, ..] => Err(CodecDetail::Version(*version)),
        [] => Err(CodecDetail::Version(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn values_round_trip_including_empty_ones() {
        let (bytes, err) = encode(&Some(Vec::<u8>::new()));
        assert!(err.is_none());
        assert_eq!(decode::<Option<Vec<u8>>>(&bytes).unwrap(), Some(vec![]));
        let (bytes, _) = encode(&());
        decode::<()>(&bytes).unwrap();
    }

    #[test]
    fn unencodable_results_leave_a_marker_that_decodes_to_an_error() {
        let map: HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let (bytes, err) = encode(&map);
        assert!(matches!(err, Some(CodecDetail::Encode(_))));
        assert!(matches!(
            decode::<HashMap<(u8, u8), u8>>(&bytes),
            Err(CodecDetail::Unreplayable(_))
        ));
    }

    /// Found by `encoded_results_decode_to_themselves`: serde_json's default float parser
    /// read this back one ULP off, so a replay returned another number than the first call.
    #[test]
    fn floats_replay_exactly() {
        for value in [2.882_498_826_102_535e62_f64, 0.1, f64::MAX, 5e-324] {
            let (bytes, _) = encode(&value);
            assert_eq!(decode::<f64>(&bytes).unwrap().to_bits(), value.to_bits());
        }
    }

    #[test]
    fn unknown_versions_and_corrupt_bytes_are_errors() {
        assert!(matches!(
            decode::<u8>(&[9, b'J', b'1']),
            Err(CodecDetail::Version(9))
        ));
        assert!(matches!(decode::<u8>(&[]), Err(CodecDetail::Version(0))));
        assert!(matches!(
            decode::<u8>(&[1, b'J', b'x']),
            Err(CodecDetail::Decode(_))
        ));
    }
}
