//! [`Binary`]: bytes that are stored compactly.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Bytes to return from an `#[idempotent]` function: stored as one base64 string (4 bytes
/// for every 3), where a `Vec<u8>` is stored as a JSON array of numbers (about 3.5 bytes for
/// every byte). A large binary result (a PDF, an image, a file) then takes a third of the
/// store's memory and replays in a third of the time.
///
/// It reads records of a `Vec<u8>` too, so a function can move from `Vec<u8>` to `Binary`
/// without a `Codec` error on the records already stored.
///
/// ```
/// use idempotent_runtime::Binary;
///
/// let pdf = Binary::from(vec![0x25, 0x50, 0x44, 0x46]);
/// assert_eq!(serde_json::to_string(&pdf).unwrap(), "\"JVBERg==\"");
/// assert_eq!(serde_json::from_str::<Binary>("[37,80,68,70]").unwrap(), pdf);
/// assert_eq!(&pdf[..], b"%PDF");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binary(pub Vec<u8>);

impl Binary {
    /// The bytes.
    #[must_use]
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Binary {
    fn from(bytes: Vec<u8>) -> Self {
        Binary(bytes)
    }
}

impl From<Binary> for Vec<u8> {
    fn from(binary: Binary) -> Self {
        binary.0
    }
}

impl Deref for Binary {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Binary {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Binary {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&STANDARD.encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BinaryVisitor)
    }
}

/// Reads base64 text, raw bytes, or a sequence of numbers (a `Vec<u8>`'s record).
struct BinaryVisitor;

impl<'de> Visitor<'de> for BinaryVisitor {
    type Value = Binary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 text, bytes, or a sequence of bytes")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Binary, E> {
        STANDARD
            .decode(text)
            .map(Binary)
            .map_err(|err| E::custom(format_args!("invalid base64: {err}")))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Binary, E> {
        Ok(Binary(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Binary, E> {
        Ok(Binary(bytes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Binary, A::Error> {
        // A hostile length hint must not reserve gigabytes.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Binary(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_take_a_third_of_the_room_of_a_vec_and_read_either_form() {
        let bytes: Vec<u8> = (0..=255).cycle().take(30_000).collect();
        let as_vec = serde_json::to_vec(&bytes).unwrap();
        let as_binary = serde_json::to_vec(&Binary(bytes.clone())).unwrap();
        assert_eq!(as_binary.len(), 40_002);
        assert!(as_vec.len() > 3 * as_binary.len() / 2, "{}", as_vec.len());
        assert_eq!(
            serde_json::from_slice::<Binary>(&as_binary).unwrap().0,
            bytes
        );
        assert_eq!(serde_json::from_slice::<Binary>(&as_vec).unwrap().0, bytes);
        assert_eq!(
            serde_json::from_str::<Binary>("\"\"").unwrap(),
            Binary::default()
        );
    }

    #[test]
    fn what_is_not_bytes_is_an_error() {
        assert!(serde_json::from_str::<Binary>("\"not base64!\"").is_err());
        assert!(serde_json::from_str::<Binary>("[256]").is_err());
        assert!(serde_json::from_str::<Binary>("{}").is_err());
    }
}
