//! SipHash-1-3 with a 128-bit output (Aumasson and Bernstein's reference, `cROUNDS = 1`,
//! `dROUNDS = 3`, `outlen = 16`), as an encoding [`Sink`]: the process-local keys hash the
//! canonical encoding as it is written, with no buffer in between.
//!
//! Bytes are gathered into the next message word in a register. A buffer would be written
//! a byte at a time by the encoder and then read a word at a time by the hash, and each
//! such read waits for the bytes' stores to retire: that stall was most of the time of a
//! typical key.

use crate::key::encoding::Sink;

/// A SipHash-1-3-128 state, streaming.
#[derive(Clone, Copy)]
pub(crate) struct Sip13 {
    v: [u64; 4],
    /// The bytes of the next message word written so far, little-endian.
    pending: u64,
    /// How many bytes `pending` holds: always fewer than eight.
    pending_len: u32,
    /// Bytes absorbed as whole words: the final block carries the total length.
    absorbed: u64,
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

impl Sip13 {
    /// A state keyed with `key` (two little-endian words).
    #[inline]
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        let (k0, k1) = split_key(key);
        Sip13 {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                // The 128-bit variant marks its first state word.
                k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            pending: 0,
            pending_len: 0,
            absorbed: 0,
        }
    }

    #[inline(always)]
    fn absorb(&mut self, word: u64) {
        self.v[3] ^= word;
        round(&mut self.v);
        self.v[0] ^= word;
        self.absorbed += 8;
    }

    /// The hash of everything written.
    #[inline]
    pub(crate) fn finish(&self) -> [u8; 16] {
        let mut v = self.v;
        let total = self.absorbed + u64::from(self.pending_len);
        // The length's low byte tops the last block.
        let last = self.pending | (total & 0xff) << 56;
        v[3] ^= last;
        round(&mut v);
        v[0] ^= last;
        v[2] ^= 0xee;
        for _ in 0..3 {
            round(&mut v);
        }
        let first = v[0] ^ v[1] ^ v[2] ^ v[3];
        v[1] ^= 0xdd;
        for _ in 0..3 {
            round(&mut v);
        }
        let second = v[0] ^ v[1] ^ v[2] ^ v[3];
        let mut out = [0; 16];
        out[..8].copy_from_slice(&first.to_le_bytes());
        out[8..].copy_from_slice(&second.to_le_bytes());
        out
    }
}

impl Sink for Sip13 {
    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.pending |= u64::from(byte) << (8 * self.pending_len);
        self.pending_len += 1;
        if self.pending_len == 8 {
            let word = self.pending;
            self.absorb(word);
            self.pending = 0;
            self.pending_len = 0;
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        // Short pieces (most strings of a key) byte by byte; long ones a word at a time,
        // read from where they lie.
        if bytes.len() < 16 {
            for &byte in bytes {
                self.put_byte(byte);
            }
            return;
        }
        let head = (8 - self.pending_len as usize) % 8;
        let (head, rest) = bytes.split_at(head);
        for &byte in head {
            self.put_byte(byte);
        }
        let mut words = rest.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.absorb(u64::from_le_bytes(word));
        }
        for &byte in words.remainder() {
            self.put_byte(byte);
        }
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
    use siphasher::sip128::{Hasher128, SipHasher13};
    use std::hash::Hasher;

    /// Against the `siphasher` crate, for every length across several blocks, written at
    /// once, a byte at a time, and in two pieces split at every offset of a word.
    #[test]
    fn matches_the_reference_implementation() {
        let key: [u8; 16] = std::array::from_fn(|i| u8::try_from(i * 7 + 3).unwrap());
        let input: Vec<u8> = (0..200u32)
            .map(|i| u8::try_from(i * 31 % 251).unwrap())
            .collect();
        for len in 0..input.len() {
            let bytes = &input[..len];
            let mut reference = SipHasher13::new_with_key(&key);
            reference.write(bytes);
            let expected = reference.finish128().as_bytes();

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
            }
        }
    }
}
