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
use std::io;
use std::time::{Duration, Instant};

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
    // Without a deadline the writer never fails, so this always encodes to the end.
    encode_until(value, None).unwrap_or_else(|| {
        let reason = "the encoding was interrupted";
        (
            unreplayable(reason),
            Some(CodecDetail::Encode(reason.to_owned())),
        )
    })
}

/// Like [`encode`], but gives up (`None`) once it has taken about `budget`, so that a slow
/// or huge encoding can be done again while something else keeps the claim alive.
pub(crate) fn encode_within<T: Serialize>(
    value: &T,
    budget: Duration,
) -> Option<(Vec<u8>, Option<CodecDetail>)> {
    encode_until(value, Some(budget))
}

fn encode_until<T: Serialize>(
    value: &T,
    budget: Option<Duration>,
) -> Option<(Vec<u8>, Option<CodecDetail>)> {
    let mut out = SPARE.take();
    out.clear();
    out.extend_from_slice(&[FORMAT_VERSION, JSON]);
    let mut writer = Timed {
        out: &mut out,
        writes: 0,
        budget,
        deadline: None,
    };
    match serde_json::to_writer(&mut writer, value) {
        Ok(()) => Some((out, None)),
        Err(err) if err.is_io() => {
            recycle(out);
            None
        }
        Err(err) => {
            recycle(out);
            let reason = err.to_string();
            Some((unreplayable(&reason), Some(CodecDetail::Encode(reason))))
        }
    }
}

/// The record of a successful call whose result cannot be stored, and why: duplicates
/// decode it as [`CodecDetail::Unreplayable`].
pub(crate) fn unreplayable(reason: &str) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION, UNREPLAYABLE];
    out.extend_from_slice(reason.as_bytes());
    out
}

/// Writes into the buffer, and fails once the budget is spent. The clock is read every 16
/// writes, first at the 16th: a small result takes fewer, so it reads no clock at all.
struct Timed<'a> {
    out: &'a mut Vec<u8>,
    writes: u32,
    budget: Option<Duration>,
    deadline: Option<Instant>,
}

impl io::Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writes = self.writes.wrapping_add(1);
        if self.writes % 16 == 0 {
            if let Some(budget) = self.budget {
                let now = Instant::now();
                match self.deadline {
                    None => self.deadline = Some(now + budget),
                    Some(deadline) if now >= deadline => {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "over the budget"));
                    }
                    Some(_) => {}
                }
            }
        }
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
