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

pub(crate) mod binary;

use crate::error::CodecDetail;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::Cell;
use std::io;
use std::time::Duration;

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

/// Writes into the buffer, and fails once the budget is spent, or at a write of a megabyte
/// or more: such a result is large, and the scan that came before that one write (a long
/// string, checked for escapes) may itself have taken the whole budget unseen. The clock
/// is read every 16 writes, first at the 16th: a small result takes fewer writes, so it
/// reads no clock at all.
struct Timed<'a> {
    out: &'a mut Vec<u8>,
    writes: u32,
    budget: Option<Duration>,
    /// On the coarse clock: 4 ns to read where `Instant` takes 25.
    deadline: Option<u64>,
}

/// A write at least this long marks a large result.
const LARGE_WRITE: usize = 1 << 20;

impl io::Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writes = self.writes.wrapping_add(1);
        if self.budget.is_some() && buf.len() >= LARGE_WRITE {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "a large result"));
        }
        if self.writes.is_multiple_of(16) {
            if let Some(budget) = self.budget {
                let now = crate::clock::now();
                match self.deadline {
                    None => {
                        let budget = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
                        self.deadline = Some(now.saturating_add(budget));
                    }
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

/// Property tests: a record's bytes come from a store, which may hold anything (a record
/// of another version, a truncated write, another program's value under the same key), so
/// decoding must fail with an error, never panic; and what was encoded decodes back.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::collection::{btree_map, hash_map, vec};
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Status {
        Pending,
        Paid(u64),
        Refunded { cents: u64, reason: Option<String> },
    }

    /// A result with a field of each kind JSON can carry.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Receipt {
        flag: bool,
        small: i8,
        signed: i64,
        unsigned: u64,
        wide: u128,
        wide_signed: i128,
        amount: f64,
        ratio: f32,
        letter: char,
        text: String,
        raw: Vec<u8>,
        note: Option<String>,
        lines: Vec<(u32, String)>,
        by_name: HashMap<String, i32>,
        by_number: BTreeMap<u32, bool>,
        status: Status,
        unit: (),
    }

    fn text() -> impl Strategy<Value = String> {
        vec(any::<char>(), 0..16).prop_map(String::from_iter)
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Pending),
            any::<u64>().prop_map(Status::Paid),
            (any::<u64>(), proptest::option::of(text()))
                .prop_map(|(cents, reason)| Status::Refunded { cents, reason }),
        ]
    }

    prop_compose! {
        fn receipt()(
            (flag, small, signed, unsigned, wide, wide_signed) in
                (any::<bool>(), any::<i8>(), any::<i64>(), any::<u64>(), any::<u128>(), any::<i128>()),
            // JSON has no NaN or infinity: a non-finite float is stored as `null`.
            (amount, ratio, letter) in (
                any::<f64>().prop_filter("finite", |f| f.is_finite()),
                any::<f32>().prop_filter("finite", |f| f.is_finite()),
                any::<char>(),
            ),
            (text, raw, note) in (text(), vec(any::<u8>(), 0..32), proptest::option::of(text())),
            lines in vec((any::<u32>(), text()), 0..4),
            by_name in hash_map(text(), any::<i32>(), 0..4),
            by_number in btree_map(any::<u32>(), any::<bool>(), 0..4),
            status in status(),
        ) -> Receipt {
            Receipt {
                flag, small, signed, unsigned, wide, wide_signed, amount, ratio, letter, text,
                raw, note, lines, by_name, by_number, status, unit: (),
            }
        }
    }

    /// Bytes that look like JSON, to reach deeper into the parser than noise does.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: Vec<u8> = br#"{}[]":,-+.0123456789eEtruefalsnl \u\"#.to_vec();
        vec(prop::sample::select(alphabet), 0..64)
    }

    /// Decodes `bytes` as several types; each may fail, none may panic.
    fn decode_all(bytes: &[u8]) {
        let _ = decode::<serde_json::Value>(bytes);
        let _ = decode::<Receipt>(bytes);
        let _ = decode::<Vec<String>>(bytes);
        let _ = decode::<HashMap<u32, f64>>(bytes);
        let _ = decode::<Option<(u8, char, Vec<u8>)>>(bytes);
        let _ = decode::<Status>(bytes);
        let _ = decode::<()>(bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..128)) {
            decode_all(&bytes);
        }

        #[test]
        fn decoding_a_corrupt_record_never_panics(
            kind in prop::sample::select(vec![JSON, UNREPLAYABLE, b'?']),
            body in prop_oneof![jsonish(), vec(any::<u8>(), 0..64)],
        ) {
            let mut bytes = vec![FORMAT_VERSION, kind];
            bytes.extend_from_slice(&body);
            decode_all(&bytes);
        }

        #[test]
        fn encoded_results_decode_to_themselves(value in receipt()) {
            let (bytes, err) = encode(&value);
            prop_assert!(err.is_none(), "{:?}", err);
            prop_assert_eq!(decode::<Receipt>(&bytes).unwrap(), value);
        }

        #[test]
        fn a_truncated_record_is_an_error(value in receipt(), cut in any::<prop::sample::Index>()) {
            let (bytes, _) = encode(&value);
            let cut = cut.index(bytes.len());
            prop_assert!(decode::<Receipt>(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let mut bytes = vec![FORMAT_VERSION, JSON];
        bytes.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(matches!(
            decode::<serde_json::Value>(&bytes),
            Err(CodecDetail::Decode(_))
        ));
    }
}
