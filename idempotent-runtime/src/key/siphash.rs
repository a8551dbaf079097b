//! SipHash-1-3-128 (the `siphasher` crate) as an encoding [`Sink`]: the process-local keys
//! hash the canonical encoding as it is written, with no buffer in between.
//!
//! Tags and varints go in through `write_u8`, which gathers them into the next message
//! word in a register. (A buffer would be written a byte at a time by the encoder and then
//! read a word at a time by the hash, and each such read waits for the bytes' stores to
//! retire: that stall was most of the time of a typical key.)

use crate::key::encoding::Sink;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// A SipHash-1-3-128 state, streaming.
#[derive(Clone, Copy)]
pub(crate) struct Sip13(SipHasher13);

impl Sip13 {
    /// A state keyed with `key` (two little-endian words).
    #[inline]
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        // `new_with_keys` rather than `new_with_key`: the latter is not `#[inline]`, and
        // this runs once per call of an idempotent function.
        let (k0, k1) = split_key(key);
        Sip13(SipHasher13::new_with_keys(k0, k1))
    }

    /// The hash of everything written.
    #[inline]
    pub(crate) fn finish(&self) -> [u8; 16] {
        self.0.finish128().as_bytes()
    }
}

impl Sink for Sip13 {
    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.0.write_u8(byte);
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

fn split_key(key: &[u8; 16]) -> (u64, u64) {
    let mut k0 = [0; 8];
    let mut k1 = [0; 8];
    k0.copy_from_slice(&key[..8]);
    k1.copy_from_slice(&key[8..]);
    (u64::from_le_bytes(k0), u64::from_le_bytes(k1))
}

#[cfg(test)]
mod tests {
    use super::Sip13;
    use crate::key::encoding::Sink;
    use siphasher::sip128::SipHasher13;

    /// Bytes written one at a time (`write_u8`), in pieces split at every offset of a word,
    /// and at once all hash as the one-shot SipHash-1-3-128 of the input under the same key.
    #[test]
    fn however_the_bytes_arrive_the_hash_is_the_one_shot_hash() {
        let key: [u8; 16] = std::array::from_fn(|i| u8::try_from(i * 7 + 3).unwrap());
        let input: Vec<u8> = (0..200u32)
            .map(|i| u8::try_from(i * 31 % 251).unwrap())
            .collect();
        for len in 0..input.len() {
            let bytes = &input[..len];
            let expected = SipHasher13::new_with_key(&key).hash(bytes).as_bytes();

            let mut whole = Sip13::new(&key);
            whole.put(bytes);
            assert_eq!(whole.finish(), expected, "length {len}");

            let mut bytewise = Sip13::new(&key);
            for &byte in bytes {
                bytewise.put_byte(byte);
            }
            assert_eq!(bytewise.finish(), expected, "length {len}, byte by byte");

            for split in 0..=len.min(24) {
                let mut pieces = Sip13::new(&key);
                pieces.put(&bytes[..split]);
                pieces.put(&bytes[split..]);
                assert_eq!(pieces.finish(), expected, "length {len} split at {split}");

                let mut mixed = Sip13::new(&key);
                for &byte in &bytes[..split] {
                    mixed.put_byte(byte);
                }
                mixed.put(&bytes[split..]);
                assert_eq!(
                    mixed.finish(),
                    expected,
                    "length {len}, {split} bytes then a slice"
                );
            }
        }
    }
}
