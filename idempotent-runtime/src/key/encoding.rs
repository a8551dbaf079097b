//! The canonical encoding of argument values that keys and fingerprints hash.
//!
//! The rules are specified in the documentation of [`crate::key`].

use serde::ser::{self, Serialize};
use std::fmt;

/// Where encoded bytes go: a hasher, in practice.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// One byte: tags and varints are written a byte at a time.
    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.put(&[byte]);
    }
}

impl Sink for blake3::Hasher {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Appends the canonical encoding of `value` to `sink`.
pub(crate) fn encode<S: Sink, T: Serialize + ?Sized>(
    sink: &mut S,
    value: &T,
) -> Result<(), EncodeError> {
    value.serialize(Encoder { sink })
}

/// Writes `v` as an unsigned LEB128 varint: seven bits a byte, low bits first, the top bit
/// set on every byte but the last. Small numbers and lengths take one byte.
#[inline]
pub(crate) fn put_varint<S: Sink>(sink: &mut S, mut v: u64) {
    while v >= 0x80 {
        // The low seven bits, with the continuation bit: the mask makes the cast exact.
        #[allow(clippy::cast_possible_truncation, reason = "masked to seven bits")]
        sink.put_byte((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    #[allow(clippy::cast_possible_truncation, reason = "below 0x80")]
    sink.put_byte(v as u8);
}

#[inline]
fn put_len<S: Sink>(sink: &mut S, len: usize) {
    put_varint(sink, len as u64);
}

#[inline]
pub(crate) fn put_str<S: Sink>(sink: &mut S, s: &str) {
    sink.put_byte(b's');
    put_len(sink, s.len());
    sink.put(s.as_bytes());
}

#[inline]
fn put_u64<S: Sink>(sink: &mut S, v: u64) {
    sink.put_byte(b'u');
    put_varint(sink, v);
}

#[inline]
fn put_i64<S: Sink>(sink: &mut S, v: i64) {
    match u64::try_from(v) {
        Ok(non_negative) => put_u64(sink, non_negative),
        Err(_) => {
            // -1 is 0, -2 is 1, ...: `!v` of a negative number is its magnitude less one.
            sink.put_byte(b'i');
            put_varint(sink, !v as u64);
        }
    }
}

#[inline]
fn put_u128<S: Sink>(sink: &mut S, v: u128) {
    match u64::try_from(v) {
        Ok(small) => put_u64(sink, small),
        Err(_) => {
            sink.put_byte(b'U');
            sink.put(&v.to_le_bytes());
        }
    }
}

#[inline]
fn put_i128<S: Sink>(sink: &mut S, v: i128) {
    match (u128::try_from(v), i64::try_from(v)) {
        (Ok(non_negative), _) => put_u128(sink, non_negative),
        (Err(_), Ok(small)) => put_i64(sink, small),
        (Err(_), Err(_)) => {
            sink.put_byte(b'I');
            sink.put(&v.to_le_bytes());
        }
    }
}

/// A `Serialize` implementation reported an error of its own (for example a `RefCell`
/// that was already mutably borrowed).
#[derive(Debug, Clone)]
pub(crate) struct EncodeError(pub(crate) String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

struct Encoder<'a, S> {
    sink: &'a mut S,
}

/// A map under construction: one digest per entry, sorted when the map ends.
struct MapEncoder<'a, S> {
    sink: &'a mut S,
    entries: Vec<[u8; 16]>,
    entry: Option<blake3::Hasher>,
}

fn digest16(hasher: &blake3::Hasher) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

impl<'a, S: Sink> ser::Serializer for Encoder<'a, S> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = MapEncoder<'a, S>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.sink.put_byte(if v { b'1' } else { b'0' });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        put_i64(self.sink, v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        put_i128(self.sink, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        put_u64(self.sink, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        put_u128(self.sink, v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        // Values that compare equal hash alike: `-0.0 == 0.0`, so both are `0.0`. NaN is
        // the exception made the other way: it equals nothing, not even itself, yet every
        // NaN is one key, or a NaN argument could never replay.
        let bits = if v.is_nan() {
            0x7ff8_0000_0000_0000
        } else if v == 0.0 {
            0
        } else {
            v.to_bits()
        };
        self.sink.put_byte(b'f');
        self.sink.put(&bits.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        put_str(self.sink, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        put_str(self.sink, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        self.sink.put_byte(b'b');
        put_len(self.sink, v.len());
        self.sink.put(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.sink.put_byte(b'N');
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.sink.put_byte(b'S');
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.sink.put_byte(b'Z');
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.sink.put_byte(b'e');
        put_str(self.sink, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.sink.put_byte(b'v');
        put_str(self.sink, variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, EncodeError> {
        self.sink.put_byte(b'[');
        Ok(self)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self, EncodeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Self, EncodeError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, EncodeError> {
        self.sink.put_byte(b'v');
        put_str(self.sink, variant);
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapEncoder<'a, S>, EncodeError> {
        Ok(MapEncoder {
            sink: self.sink,
            entries: Vec::with_capacity(len.unwrap_or(0)),
            entry: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, EncodeError> {
        self.sink.put_byte(b'(');
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeError> {
        self.sink.put_byte(b'v');
        put_str(self.sink, variant);
        self.sink.put_byte(b'(');
        Ok(self)
    }
}

impl<S: Sink> Encoder<'_, S> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(Encoder {
            sink: &mut *self.sink,
        })
    }
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), EncodeError> {
        put_str(self.sink, name);
        self.element(value)
    }
    fn close(self, tag: u8) -> Result<(), EncodeError> {
        self.sink.put_byte(tag);
        Ok(())
    }
}

impl<S: Sink> ser::SerializeSeq for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.close(b']')
    }
}

impl<S: Sink> ser::SerializeTuple for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.close(b']')
    }
}

impl<S: Sink> ser::SerializeTupleStruct for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.close(b']')
    }
}

impl<S: Sink> ser::SerializeTupleVariant for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.close(b']')
    }
}

impl<S: Sink> ser::SerializeStruct for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.close(b')')
    }
}

impl<S: Sink> ser::SerializeStructVariant for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.close(b')')
    }
}

impl<S: Sink> ser::SerializeMap for MapEncoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        let mut entry = blake3::Hasher::new();
        encode(&mut entry, key)?;
        self.entry = Some(entry);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let mut entry = self
            .entry
            .take()
            .ok_or_else(|| EncodeError("serialize_value called before serialize_key".into()))?;
        encode(&mut entry, value)?;
        self.entries.push(digest16(&entry));
        Ok(())
    }
    fn end(mut self) -> Result<(), EncodeError> {
        self.entries.sort_unstable();
        self.sink.put_byte(b'{');
        put_len(self.sink, self.entries.len());
        for digest in &self.entries {
            self.sink.put(digest);
        }
        self.sink.put_byte(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    pub(super) fn bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        struct Bytes(Vec<u8>);
        impl Sink for Bytes {
            fn put(&mut self, bytes: &[u8]) {
                self.0.extend_from_slice(bytes);
            }
        }
        let mut out = Bytes(Vec::new());
        encode(&mut out, value).unwrap();
        out.0
    }

    #[test]
    fn varints_are_leb128() {
        assert_eq!(bytes(&0u8), b"u\x00");
        assert_eq!(bytes(&127u8), b"u\x7f");
        assert_eq!(bytes(&128u16), b"u\x80\x01");
        assert_eq!(bytes(&300u32), b"u\xac\x02");
        assert_eq!(bytes(&u64::MAX).len(), 11);
        assert_eq!(bytes(&-1i8), b"i\x00");
        assert_eq!(bytes(&-129i16), b"i\x80\x01");
        assert_eq!(bytes(&i64::MIN).len(), 10);
        assert_eq!(bytes("ab"), b"s\x02ab");
    }

    #[test]
    fn integers_encode_by_value_not_by_type() {
        assert_eq!(bytes(&7u8), bytes(&7u64));
        assert_eq!(bytes(&7i32), bytes(&7u64));
        assert_eq!(bytes(&7i128), bytes(&7u16));
        assert_eq!(bytes(&-7i8), bytes(&-7i64));
        assert_ne!(bytes(&-1i64), bytes(&u64::MAX));
        assert_eq!(bytes(&(u128::from(u64::MAX) + 1))[0], b'U');
        assert_eq!(bytes(&(i128::from(i64::MIN) - 1))[0], b'I');
    }

    #[test]
    fn options_nest_without_collapsing() {
        let none: Option<Option<u8>> = None;
        let some_none: Option<Option<u8>> = Some(None);
        assert_ne!(bytes(&none), bytes(&some_none));
        assert_ne!(bytes(&None::<()>), bytes(&()));
    }

    #[test]
    fn sequences_are_prefix_free() {
        let a: (Vec<u8>, Vec<u8>) = (vec![1], vec![]);
        let b: (Vec<u8>, Vec<u8>) = (vec![], vec![1]);
        assert_ne!(bytes(&a), bytes(&b));
        assert_ne!(bytes(&("ab", "c")), bytes(&("a", "bc")));
    }

    #[test]
    fn maps_ignore_iteration_order() {
        let mut small: HashMap<String, u32> = HashMap::new();
        let mut large: HashMap<String, u32> = HashMap::with_capacity(1024);
        for i in 0..100 {
            small.insert(format!("k{i}"), i);
        }
        for i in (0..100).rev() {
            large.insert(format!("k{i}"), i);
        }
        assert!(
            small.keys().ne(large.keys()),
            "the test needs two iteration orders"
        );
        assert_eq!(bytes(&small), bytes(&large));
        let sorted: BTreeMap<_, _> = small.clone().into_iter().collect();
        assert_eq!(bytes(&small), bytes(&sorted));
        large.insert("k0".into(), 1);
        assert_ne!(bytes(&small), bytes(&large));
    }

    #[test]
    fn nan_is_canonical_and_f32_widens() {
        assert_eq!(bytes(&f64::NAN), bytes(&-f64::NAN));
        assert_eq!(
            bytes(&f64::from_bits(0x7ff0_0000_0000_0001)),
            bytes(&f64::NAN)
        );
        assert_eq!(bytes(&f32::NAN), bytes(&f64::NAN));
        assert_eq!(bytes(&1.5f32), bytes(&1.5f64));
        assert_ne!(bytes(&f64::INFINITY), bytes(&f64::NEG_INFINITY));
    }

    #[test]
    fn zeros_of_either_sign_are_one_value() {
        // `-0.0 == 0.0`: equal arguments must give equal keys.
        assert_eq!(bytes(&-0.0f64), b"f\0\0\0\0\0\0\0\0");
        assert_eq!(bytes(&0.0f64), bytes(&-0.0f64));
        assert_eq!(bytes(&-0.0f32), bytes(&0.0f64));
        assert_ne!(bytes(&0.0f64), bytes(&f64::from_bits(1)));
    }
}

/// Property tests: the encoding never panics on any value of the serde data model, equal
/// values encode alike whatever the order their maps were filled in, distinct values
/// encode apart, and a key is the documented hash of the encoding however long it is.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::key::{KeyHasher, NamespaceKey};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::collections::{BTreeMap, HashMap};

    /// Every shape of the serde data model, with the names serde's derives would use.
    #[derive(Debug, Clone)]
    enum Model {
        Bool(bool),
        U64(u64),
        I64(i64),
        U128(u128),
        I128(i128),
        F32(f32),
        F64(f64),
        Char(char),
        Str(String),
        Bytes(Vec<u8>),
        Option(Option<Box<Model>>),
        Unit,
        UnitStruct,
        Newtype(Box<Model>),
        Seq(Vec<Model>),
        Tuple(Vec<Model>),
        TupleStruct(Vec<Model>),
        /// Entries as given: keys may repeat, as a hand-written `Serialize` may do.
        Map(Vec<(Model, Model)>),
        /// Fields named from `FIELDS`, as many as there are values (up to four).
        Struct(Vec<Model>),
        UnitVariant(usize),
        NewtypeVariant(usize, Box<Model>),
        TupleVariant(usize, Vec<Model>),
        StructVariant(usize, Vec<Model>),
    }

    const FIELDS: [&str; 4] = ["id", "name", "", "a field with a long name"];
    const VARIANTS: [&str; 3] = ["A", "Bee", ""];

    impl Serialize for Model {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::{
                SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
                SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
            };
            let idx = |i: usize| u32::try_from(i).unwrap();
            match self {
                Model::Bool(v) => s.serialize_bool(*v),
                Model::U64(v) => s.serialize_u64(*v),
                Model::I64(v) => s.serialize_i64(*v),
                Model::U128(v) => s.serialize_u128(*v),
                Model::I128(v) => s.serialize_i128(*v),
                Model::F32(v) => s.serialize_f32(*v),
                Model::F64(v) => s.serialize_f64(*v),
                Model::Char(v) => s.serialize_char(*v),
                Model::Str(v) => s.serialize_str(v),
                Model::Bytes(v) => s.serialize_bytes(v),
                Model::Option(None) => s.serialize_none(),
                Model::Option(Some(v)) => s.serialize_some(v),
                Model::Unit => s.serialize_unit(),
                Model::UnitStruct => s.serialize_unit_struct("Marker"),
                Model::Newtype(v) => s.serialize_newtype_struct("Wrapper", v),
                Model::Seq(items) => {
                    let mut seq = s.serialize_seq(None)?;
                    items.iter().try_for_each(|v| seq.serialize_element(v))?;
                    seq.end()
                }
                Model::Tuple(items) => {
                    let mut tuple = s.serialize_tuple(items.len())?;
                    items.iter().try_for_each(|v| tuple.serialize_element(v))?;
                    tuple.end()
                }
                Model::TupleStruct(items) => {
                    let mut tuple = s.serialize_tuple_struct("Pair", items.len())?;
                    items.iter().try_for_each(|v| tuple.serialize_field(v))?;
                    tuple.end()
                }
                Model::Map(entries) => {
                    let mut map = s.serialize_map(Some(entries.len()))?;
                    for (k, v) in entries {
                        map.serialize_entry(k, v)?;
                    }
                    map.end()
                }
                Model::Struct(fields) => {
                    let mut st = s.serialize_struct("Record", fields.len())?;
                    for (name, v) in FIELDS.iter().zip(fields) {
                        st.serialize_field(name, v)?;
                    }
                    st.end()
                }
                Model::UnitVariant(i) => s.serialize_unit_variant("E", idx(*i), VARIANTS[*i]),
                Model::NewtypeVariant(i, v) => {
                    s.serialize_newtype_variant("E", idx(*i), VARIANTS[*i], v)
                }
                Model::TupleVariant(i, items) => {
                    let mut tv =
                        s.serialize_tuple_variant("E", idx(*i), VARIANTS[*i], items.len())?;
                    items.iter().try_for_each(|v| tv.serialize_field(v))?;
                    tv.end()
                }
                Model::StructVariant(i, fields) => {
                    let mut sv =
                        s.serialize_struct_variant("E", idx(*i), VARIANTS[*i], fields.len())?;
                    for (name, v) in FIELDS.iter().zip(fields) {
                        sv.serialize_field(name, v)?;
                    }
                    sv.end()
                }
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => vec(any::<char>(), 0..12).prop_map(String::from_iter),
            1 => Just(String::new()),
            // Past the key hasher's 192-byte buffer, so its spill path is taken too.
            1 => (any::<char>(), 0..20_000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
        ]
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => any::<f64>(),
            1 => prop::sample::select(vec![
                0.0,
                -0.0,
                f64::NAN,
                -f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE,
                f64::from_bits(1),
            ]),
        ]
    }

    fn model() -> impl Strategy<Value = Model> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Model::Bool),
            any::<u64>().prop_map(Model::U64),
            any::<i64>().prop_map(Model::I64),
            any::<u128>().prop_map(Model::U128),
            any::<i128>().prop_map(Model::I128),
            any::<f32>().prop_map(Model::F32),
            float().prop_map(Model::F64),
            any::<char>().prop_map(Model::Char),
            text().prop_map(Model::Str),
            vec(any::<u8>(), 0..64).prop_map(Model::Bytes),
            Just(Model::Option(None)),
            Just(Model::Unit),
            Just(Model::UnitStruct),
            (0..VARIANTS.len()).prop_map(Model::UnitVariant),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let items = vec(inner.clone(), 0..6);
            let fields = vec(inner.clone(), 0..=FIELDS.len());
            let variant = 0..VARIANTS.len();
            prop_oneof![
                inner.clone().prop_map(|v| Model::Option(Some(Box::new(v)))),
                inner.clone().prop_map(|v| Model::Newtype(Box::new(v))),
                items.clone().prop_map(Model::Seq),
                items.clone().prop_map(Model::Tuple),
                items.clone().prop_map(Model::TupleStruct),
                vec((inner.clone(), inner.clone()), 0..6).prop_map(Model::Map),
                fields.clone().prop_map(Model::Struct),
                (variant.clone(), inner).prop_map(|(i, v)| Model::NewtypeVariant(i, Box::new(v))),
                (variant.clone(), items).prop_map(|(i, v)| Model::TupleVariant(i, v)),
                (variant, fields).prop_map(|(i, v)| Model::StructVariant(i, v)),
            ]
        })
    }

    /// JSON values from small domains, so that two drawn independently are often equal.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-2i64..3).prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            prop::sample::select(vec![0.0, -0.0, 1.5, -1e300, 5e-324]).prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec!["", "a", "b", "ab"]).prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 5, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(Value::Array),
                vec(
                    (prop::sample::select(vec!["", "a", "b", "ab"]), inner),
                    0..5
                )
                .prop_map(|entries| {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        super::tests::bytes(value)
    }

    /// The stable and the process-local key of `value` as the argument `v`.
    fn keys<T: Serialize + ?Sized>(value: &T) -> (crate::Key, crate::Key) {
        let namespace = NamespaceKey::new("properties").with_params(&["v"], &[]);
        let mut stable = KeyHasher::with_namespace(&namespace);
        let mut local = KeyHasher::local(&namespace);
        stable.arg("v", value);
        local.arg("v", value);
        (stable.finish().unwrap(), local.finish().unwrap())
    }

    /// An equal value built another way: every zero of the other sign.
    fn flip_zeros(value: &Value) -> Value {
        match value {
            Value::Number(n) if n.as_f64() == Some(0.0) && n.is_f64() => {
                Value::from(-n.as_f64().unwrap())
            }
            Value::Array(items) => Value::Array(items.iter().map(flip_zeros).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), flip_zeros(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn equal_values_built_apart_share_a_key(a in json()) {
            let b = flip_zeros(&a);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(keys(&a), keys(&b), "{:?} vs {:?}", a, b);
        }

        #[test]
        fn any_value_encodes_without_panicking_and_always_alike(value in model()) {
            let first = keys(&value);
            prop_assert_eq!(first, keys(&value.clone()));
            prop_assert_eq!(bytes(&value), bytes(&value.clone()));
        }

        #[test]
        fn a_stable_key_is_the_documented_hash_however_long_the_value(value in model()) {
            // Keyed BLAKE3 of `a`, the name and the encoding, in one piece: the key hasher
            // buffers and spills, and must agree.
            let mut namespace = blake3::Hasher::new();
            put_str(&mut namespace, "idempotency/key/v1");
            put_str(&mut namespace, "properties");
            let mut input = vec![b'a'];
            input.extend_from_slice(b"s\x01v");
            input.extend_from_slice(&bytes(&value));
            let expected = blake3::keyed_hash(namespace.finalize().as_bytes(), &input);
            let (stable, _) = keys(&value);
            prop_assert_eq!(&stable.as_bytes()[..], &expected.as_bytes()[..16]);
        }

        #[test]
        fn maps_encode_alike_whatever_their_insertion_order(
            entries in vec((text(), json()), 0..24),
        ) {
            // Unique keys first, or the two orders would keep different values.
            let unique: BTreeMap<String, Value> = entries.into_iter().collect();
            let mut forward = HashMap::new();
            for (k, v) in &unique {
                forward.insert(k.clone(), v.clone());
            }
            let mut backward = HashMap::with_capacity(256);
            for (k, v) in unique.iter().rev() {
                backward.insert(k.clone(), v.clone());
            }
            let object: serde_json::Map<String, Value> = unique.clone().into_iter().collect();
            prop_assert_eq!(bytes(&forward), bytes(&backward));
            prop_assert_eq!(bytes(&forward), bytes(&unique));
            prop_assert_eq!(bytes(&forward), bytes(&object));
            prop_assert_eq!(keys(&forward), keys(&backward));
        }

        #[test]
        fn json_values_share_a_key_exactly_when_they_are_equal(a in json(), b in json()) {
            // `Value`'s `==` is the one keys follow: numbers compare by kind and value,
            // and `-0.0 == 0.0`. (A `Value` holds no NaN.)
            prop_assert_eq!(a == b, bytes(&a) == bytes(&b), "{:?} vs {:?}", a, b);
            prop_assert_eq!(a == b, keys(&a) == keys(&b));
        }
    }
}
