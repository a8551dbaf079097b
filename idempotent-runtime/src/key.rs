//! Keys: what identifies a record, derived from a function's namespace and arguments.
//!
//! A [`Key`] is the first 16 bytes of a BLAKE3 hash over a canonical encoding (see the
//! table in the crate documentation) of:
//!
//! 1. the string `idempotency/key/v1` (the key format version),
//! 2. the function's namespace (its `name = ".."`, or the path of the function),
//! 3. for a generic function, tag `g` and the type name of each generic argument,
//! 4. then either, for a key derived from the arguments, tag `a`, the parameter's name and
//!    its value for every parameter not in `skip(..)`, in ascending order of the names;
//!    or, for a client-supplied key (`key = ..`), tag `a`, name and value for each
//!    `scope(..)` parameter in ascending order of the names, then tag `k` and the key.
//!
//! ## Values
//!
//! Every value of the serde data model is written as a tag byte followed by its payload, so
//! the encoding is prefix-free (no two different values share an encoding) and needs no
//! allocation except for maps. The rules, which are part of the key format and must never
//! change within a format version (`tests/key_stability.rs` pins them with golden values):
//!
//! | value | encoding |
//! |---|---|
//! | `false`, `true` | `0`, `1` |
//! | integer `0 ..= u64::MAX`, whatever its Rust type | `u`, 8 bytes little-endian |
//! | integer `i64::MIN ..= -1` | `i`, 8 bytes little-endian two's complement |
//! | larger `u128` / smaller `i128` | `U` / `I`, 16 bytes little-endian |
//! | `f32`, `f64` | `f`, the `f64` bits little-endian (an `f32` is widened first; every NaN is `0x7ff8_0000_0000_0000`) |
//! | `char`, string | `s`, byte length as 8 bytes little-endian, UTF-8 bytes |
//! | byte string | `b`, byte length as 8 bytes little-endian, bytes |
//! | `None` / `Some(v)` | `N` / `S` then `v` |
//! | `()`, unit struct | `Z` |
//! | newtype struct `W(v)` | `v` (transparent) |
//! | sequence, tuple, tuple struct | `[`, each element, `]` |
//! | struct | `(`, each field as its name (a string) then its value, in declaration order, `)` |
//! | map | `{`, entry count as 8 bytes little-endian, each entry's 16-byte digest in ascending byte order, `}` |
//! | unit variant | `e`, the variant name as a string |
//! | newtype, tuple or struct variant | `v`, the variant name as a string, then the payload as above |
//!
//! An entry digest is the first 16 bytes of BLAKE3 over the encoding of the key followed by
//! the encoding of the value. Sorting the digests makes a map's encoding independent of its
//! iteration order, so two `HashMap`s with the same contents always agree.
//!
//! A [`Fingerprint`] is the same construction over `idempotency/fingerprint/v1` and the
//! remaining parameters; it is only used with client-supplied keys.
//!
//! Nothing in it depends on the process, the platform, the Rust release or the order in
//! which a map iterates, so a key computed on one machine finds the record written by
//! another. `std::hash::Hash` is deliberately not involved: its output may change between
//! Rust releases.

use crate::encoding::{self, put_str, EncodeError, Sink};
use crate::error::InvalidKey;
use serde::Serialize;
use std::fmt;

/// The longest client-supplied idempotency key accepted, in bytes (as Stripe's API).
pub const MAX_CLIENT_KEY_LEN: usize = 255;

/// The identity of one record: 16 bytes, stable across processes, machines and releases.
///
/// ```
/// use idempotent_runtime::KeyHasher;
///
/// let mut hasher = KeyHasher::new("orders.create");
/// hasher.arg("customer", &42u64);
/// hasher.arg("qty", &3u32);
/// hasher.arg("sku", "B-7");
/// let key = hasher.finish().unwrap();
/// assert_eq!(key.to_string().len(), 32); // lowercase hex
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 16]);

/// A digest of the arguments that travel with a client-supplied key, stored with its
/// record so that a reuse of the key with other arguments is detected.
///
/// Keys derived from all arguments use [`Fingerprint::NONE`]: their arguments are the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 16]);

macro_rules! digest_type {
    ($ty:ident) => {
        impl $ty {
            /// Wraps 16 bytes read back from a store.
            #[must_use]
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                $ty(bytes)
            }

            /// The 16 bytes, for a store to write.
            #[must_use]
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self)
            }
        }
    };
}

digest_type!(Key);
digest_type!(Fingerprint);

impl Fingerprint {
    /// The fingerprint of a record whose key already covers every argument.
    pub const NONE: Fingerprint = Fingerprint([0; 16]);
}

/// Checks a client-supplied key: non-empty and at most [`MAX_CLIENT_KEY_LEN`] bytes.
///
/// # Errors
///
/// [`InvalidKey::Empty`] or [`InvalidKey::TooLong`].
pub fn validate_client_key(key: &str) -> Result<(), InvalidKey> {
    match key.len() {
        0 => Err(InvalidKey::Empty),
        len if len > MAX_CLIENT_KEY_LEN => Err(InvalidKey::TooLong { len }),
        _ => Ok(()),
    }
}

/// Builds a [`Key`] or a [`Fingerprint`] from a namespace and named values, with the
/// encoding described in the [module documentation](self). The `#[idempotent]` attribute
/// generates these calls; an application can make the same ones to find a function's
/// record from outside it (to purge it, for instance).
///
/// Arguments must be given in ascending order of their names, as the attribute does.
#[derive(Clone)]
pub struct KeyHasher {
    hasher: Buffered,
    error: Option<EncodeError>,
}

/// Hashes through a stack buffer: the whole input of a typical key fits in it, so one
/// one-shot BLAKE3 call does the work and nothing is allocated. Longer inputs spill into
/// a streaming hasher, which gives the same digest.
#[derive(Clone)]
struct Buffered {
    len: usize,
    buf: [u8; Buffered::CAPACITY],
    spill: Option<Box<blake3::Hasher>>,
}

impl Buffered {
    const CAPACITY: usize = 192;

    fn new() -> Self {
        Buffered {
            len: 0,
            buf: [0; Self::CAPACITY],
            spill: None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.put(bytes);
    }

    fn finalize(&self) -> blake3::Hash {
        match &self.spill {
            None => blake3::hash(&self.buf[..self.len]),
            Some(spill) => {
                let mut hasher = (**spill).clone();
                hasher.update(&self.buf[..self.len]);
                hasher.finalize()
            }
        }
    }
}

impl Sink for Buffered {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= Self::CAPACITY {
            self.buf[self.len..end].copy_from_slice(bytes);
            self.len = end;
            return;
        }
        let spill = self
            .spill
            .get_or_insert_with(|| Box::new(blake3::Hasher::new()));
        spill.update(&self.buf[..self.len]);
        spill.update(bytes);
        self.len = 0;
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

impl KeyHasher {
    const KEY_DOMAIN: &'static str = "idempotency/key/v1";
    const FINGERPRINT_DOMAIN: &'static str = "idempotency/fingerprint/v1";

    /// Starts a key in `namespace`.
    #[must_use]
    pub fn new(namespace: &str) -> Self {
        Self::with_domain(Self::KEY_DOMAIN, namespace)
    }

    /// Starts a payload fingerprint in `namespace`.
    #[must_use]
    pub fn fingerprint(namespace: &str) -> Self {
        Self::with_domain(Self::FINGERPRINT_DOMAIN, namespace)
    }

    fn with_domain(domain: &str, namespace: &str) -> Self {
        let mut hasher = Buffered::new();
        put_str(&mut hasher, domain);
        put_str(&mut hasher, namespace);
        KeyHasher {
            hasher,
            error: None,
        }
    }

    /// Adds the name of a generic argument of the function, so that each instantiation
    /// has its own records.
    pub fn generic(&mut self, type_name: &str) -> &mut Self {
        self.hasher.update(b"g");
        put_str(&mut self.hasher, type_name);
        self
    }

    /// Adds the parameter `name` with `value`.
    pub fn arg<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> &mut Self {
        if self.error.is_none() {
            self.hasher.update(b"a");
            put_str(&mut self.hasher, name);
            if let Err(err) = encoding::encode(&mut self.hasher, value) {
                self.error = Some(EncodeError(format!("argument `{name}`: {err}")));
            }
        }
        self
    }

    /// Adds a client-supplied idempotency key.
    ///
    /// # Errors
    ///
    /// The key is empty or longer than [`MAX_CLIENT_KEY_LEN`] bytes.
    pub fn client_key(&mut self, key: &str) -> Result<&mut Self, InvalidKey> {
        validate_client_key(key)?;
        self.hasher.update(b"k");
        put_str(&mut self.hasher, key);
        Ok(self)
    }

    fn digest(&self) -> Result<[u8; 16], KeyError> {
        if let Some(err) = &self.error {
            return Err(KeyError(err.0.clone()));
        }
        let mut out = [0; 16];
        out.copy_from_slice(&self.hasher.finalize().as_bytes()[..16]);
        Ok(out)
    }

    /// The key.
    ///
    /// # Errors
    ///
    /// An argument's `Serialize` implementation failed.
    pub fn finish(&self) -> Result<Key, KeyError> {
        self.digest().map(Key)
    }

    /// The fingerprint (for a hasher made with [`KeyHasher::fingerprint`]).
    ///
    /// # Errors
    ///
    /// An argument's `Serialize` implementation failed.
    pub fn finish_fingerprint(&self) -> Result<Fingerprint, KeyError> {
        self.digest().map(Fingerprint)
    }
}

/// An argument's `Serialize` implementation reported an error, so no key could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not encode {}", self.0)
    }
}

impl std::error::Error for KeyError {}
