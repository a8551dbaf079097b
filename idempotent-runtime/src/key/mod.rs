//! Keys: what identifies a record, derived from a function's namespace and arguments.
//!
//! A [`Key`] is the first 16 bytes of a keyed BLAKE3 hash:
//!
//! ```text
//! namespace key = BLAKE3( str("idempotency/key/v1") ++ str(namespace) )        (32 bytes)
//! key           = BLAKE3-keyed( namespace key, parts )[..16]
//! ```
//!
//! where `namespace` is the function's `name = ".."` or its path, `str` is the string
//! encoding below, and `parts` is, in order:
//!
//! 1. for a generic function, tag `g` and `str` of each generic argument's type name;
//! 2. then either, for a key derived from the arguments, tag `a`, `str` of the parameter's
//!    name and its value for every parameter not in `skip(..)`, in ascending order of the
//!    names; or, for a client-supplied key (`key = ..`), tag `a`, name and value for each
//!    `scope(..)` parameter in ascending order of the names, then tag `k` and `str` of the
//!    key.
//!
//! A destructuring parameter is, here, the variables its pattern binds, each a parameter of
//! its own name: `Json(order): Json<T>` is the parameter `order: T`, as if `Json` were
//! transparent, and `_` is none.
//!
//! A parameter whose declared type holds an `impl Trait` (`impl Serialize`,
//! `&impl Serialize`, `Vec<impl Serialize>`) is preceded by tag `t`, `str` of its name and
//! `str` of the concrete type name of the argument ([`KeyHasher::arg_type`]): the caller
//! picks that type, and two types (a `Charge` and a `Refund` with the same fields) may
//! serialize alike. A pattern over such a type does the same for each variable it binds,
//! with the type name of that variable. Parameters with a declared type carry no type name; their type is
//! fixed by the function, or by a generic argument (part 1).
//!
//! The namespace key is computed once per function, so a call hashes only its arguments:
//! one BLAKE3 block for a typical handler.
//!
//! A [`Fingerprint`] is the same construction with `idempotency/fingerprint/v1` over the
//! remaining parameters (the generic arguments' type names first, and the `t` element of
//! an `impl Trait` parameter before its `a` element); it is only used with client-supplied
//! keys, so that a client key reused with an argument of another type is refused as a
//! payload mismatch.
//!
//! Type names are those of [`core::any::type_name`], which the Rust project may change
//! between compiler releases: the keys of generic functions and of `impl Trait` arguments
//! are stable across processes and machines built by the same compiler, but a compiler
//! upgrade may orphan their records (they then run once more, after which the new keys
//! replay). Give such a parameter a declared type where that matters.
//!
//! ## Values
//!
//! Every value of the serde data model is written as a tag byte followed by its payload, so
//! the encoding is prefix-free (no two different values share an encoding) and needs no
//! allocation except for maps. The rules, which are part of the key format and must never
//! change within a format version (`tests/keys.rs` pins them with golden values computed independently):
//!
//! | value | encoding |
//! |---|---|
//! | `false`, `true` | `0`, `1` |
//! | integer `0 ..= u64::MAX`, whatever its Rust type | `u`, the value as a varint |
//! | integer `v` in `i64::MIN ..= -1` | `i`, `-(v + 1)` as a varint |
//! | larger `u128` / smaller `i128` | `U` / `I`, 16 bytes little-endian |
//! | `f32`, `f64` | `f`, the `f64` bits little-endian (an `f32` is widened first; `-0.0` is written as `0.0`; every NaN is `0x7ff8_0000_0000_0000`) |
//! | `char`, string | `s`, byte length as a varint, UTF-8 bytes |
//! | byte string | `b`, byte length as a varint, bytes |
//! | `None` / `Some(v)` | `N` / `S` then `v` |
//! | `()`, unit struct | `Z` |
//! | newtype struct `W(v)` | `v` (transparent) |
//! | sequence, tuple, tuple struct | `[`, each element, `]` |
//! | struct | `(`, each field as its name (a string) then its value, in declaration order, `)` |
//! | map | `{`, entry count as a varint, each entry's 16-byte digest in ascending byte order, `}` |
//! | unit variant | `e`, the variant name as a string |
//! | newtype, tuple or struct variant | `v`, the variant name as a string, then the payload as above |
//!
//! Floats follow `==`, so that arguments that compare equal share a key: `0.0` and `-0.0`
//! are one value. NaN, which equals nothing, is the one exception: every NaN is one value,
//! so that a call with a NaN argument replays like any other.
//!
//! A varint is unsigned LEB128: seven bits a byte, low bits first, the top bit set on every
//! byte but the last (so 300 is `ac 02`).
//!
//! An entry digest is the first 16 bytes of (unkeyed) BLAKE3 over the encoding of the key followed by
//! the encoding of the value. Sorting the digests makes a map's encoding independent of its
//! iteration order, so two `HashMap`s with the same contents always agree.
//!
//! Nothing in it depends on the process, the platform, the Rust release or the order in
//! which a map iterates, so a key computed on one machine finds the record written by
//! another. `std::hash::Hash` is deliberately not involved: its output may change between
//! Rust releases.
//!
//! ## Process-local keys
//!
//! A store whose records never leave the process ([`InProcess`](crate::store::InProcess),
//! as the embedded [`MemoryStore`](crate::MemoryStore)) is given process-local keys
//! ([`KeyHasher::local`]): the same encoding of the values, without the parameter names,
//! hashed with SipHash-1-3-128 (the `siphasher` crate's) under a key derived (with keyed
//! BLAKE3) from a random secret of the process (32 bytes from the operating system's
//! CSPRNG), the namespace key and the parameter names. They take a fifth of the time of
//! stable keys, and are no less safe: SipHash is a pseudo-random function, so a client who
//! does not know the secret cannot aim a collision at another client's record.

pub(crate) mod encoding;
mod siphash;

use crate::error::InvalidKey;
use arrayvec::ArrayVec;
use encoding::{put_str, EncodeError, Sink};
use serde::Serialize;
use siphash::Sip13;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;

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

/// Checks a client-supplied key: non-empty, at most [`MAX_CLIENT_KEY_LEN`] bytes, and
/// free of control characters.
///
/// A valid key is an opaque string, as the IETF `Idempotency-Key` draft treats it: two
/// keys are the same key only if their bytes are equal. Nothing is trimmed, folded or
/// normalized, so `"k-1"`, `" k-1"`, `"K-1"`, and `"é"` written precomposed (NFC) or
/// decomposed (NFD) are five different keys. A client resends the key it generated,
/// byte for byte; a server that wants looser matching normalizes before the call, once,
/// in the way it chooses.
///
/// Control characters (Unicode category `Cc`: `U+0000..=U+001F`, `U+007F..=U+009F`,
/// tab included) are refused rather than compared: no HTTP header can carry most of them,
/// so such a key is a client or parsing error, and one kept would end up in logs and error
/// messages, where a newline forges a line.
///
/// ```
/// use idempotent_runtime::{validate_client_key, InvalidKey};
///
/// assert_eq!(validate_client_key(" order-7f3a "), Ok(())); // spaces are part of the key
/// assert_eq!(validate_client_key("ordre-\u{e9}"), Ok(()));
/// assert_eq!(
///     validate_client_key("order\n7f3a"),
///     Err(InvalidKey::ControlCharacter { at: 5, character: '\n' })
/// );
/// ```
///
/// # Errors
///
/// [`InvalidKey::Empty`], [`InvalidKey::TooLong`] or [`InvalidKey::ControlCharacter`].
pub fn validate_client_key(key: &str) -> Result<(), InvalidKey> {
    match key.len() {
        0 => return Err(InvalidKey::Empty),
        len if len > MAX_CLIENT_KEY_LEN => return Err(InvalidKey::TooLong { len }),
        _ => {}
    }
    match key.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, character)) => Err(InvalidKey::ControlCharacter { at, character }),
        None => Ok(()),
    }
}

/// The keys of the keyed hashes of one namespace, for keys and for fingerprints: derived
/// once per function by the generated code, since every call of it shares them.
///
/// ```
/// use idempotent_runtime::{KeyHasher, NamespaceKey};
///
/// let namespace = NamespaceKey::new("orders.create");
/// let mut cached = KeyHasher::with_namespace(&namespace);
/// cached.arg("customer", &42u64);
/// let mut direct = KeyHasher::new("orders.create");
/// direct.arg("customer", &42u64);
/// assert_eq!(cached.finish().unwrap(), direct.finish().unwrap());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NamespaceKey {
    key: [u8; 32],
    fingerprint: [u8; 32],
    local_key: [u8; 16],
    local_fingerprint: [u8; 16],
}

impl fmt::Debug for NamespaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespaceKey").finish_non_exhaustive()
    }
}

impl NamespaceKey {
    const KEY_DOMAIN: &'static str = "idempotency/key/v1";
    const FINGERPRINT_DOMAIN: &'static str = "idempotency/fingerprint/v1";

    /// Derives the keys of `namespace`.
    #[must_use]
    pub fn new(namespace: &str) -> Self {
        let derive = |domain: &str| {
            let mut hasher = blake3::Hasher::new();
            put_str(&mut hasher, domain);
            put_str(&mut hasher, namespace);
            *hasher.finalize().as_bytes()
        };
        let (key, fingerprint) = (derive(Self::KEY_DOMAIN), derive(Self::FINGERPRINT_DOMAIN));
        NamespaceKey {
            key,
            fingerprint,
            local_key: [0; 16],
            local_fingerprint: [0; 16],
        }
        .with_params(&[], &[])
    }

    /// Binds the process-local keys to the names of the parameters that a key and a
    /// fingerprint are made of, in the order they are added. Process-local keys then
    /// leave the names out of every call's input ([`KeyHasher::local`]), since these
    /// keys already stand for them: two functions that share a `name` but not their
    /// parameters still never share records.
    #[must_use]
    pub fn with_params(mut self, key_params: &[&str], payload_params: &[&str]) -> Self {
        let bind = |stable: &[u8; 32], params: &[&str]| {
            let mut hasher = blake3::Hasher::new_keyed(process_secret());
            hasher.update(stable);
            for name in params {
                put_str(&mut hasher, name);
            }
            let mut out = [0; 16];
            out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
            out
        };
        self.local_key = bind(&self.key, key_params);
        self.local_fingerprint = bind(&self.fingerprint, payload_params);
        self
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
    hashing: Hashing,
    error: Option<EncodeError>,
}

/// The hash a [`KeyHasher`] computes, with its state.
#[derive(Clone)]
enum Hashing {
    /// Keyed BLAKE3 under a namespace key: the stable key.
    Stable(Buffered),
    /// SipHash-1-3-128 under a per-namespace key derived from this process's secret.
    Local(Sip13),
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

impl KeyHasher {
    /// Starts a key in `namespace`.
    #[must_use]
    pub fn new(namespace: &str) -> Self {
        Self::with_namespace(&NamespaceKey::new(namespace))
    }

    /// Starts a payload fingerprint in `namespace`.
    #[must_use]
    pub fn fingerprint(namespace: &str) -> Self {
        Self::fingerprint_with_namespace(&NamespaceKey::new(namespace))
    }

    /// Starts a key in a namespace whose keys were derived before.
    #[must_use]
    #[inline]
    pub fn with_namespace(namespace: &NamespaceKey) -> Self {
        Self::using(Hashing::Stable(Buffered::new(namespace.key)))
    }

    /// Starts a payload fingerprint in a namespace whose keys were derived before.
    #[must_use]
    #[inline]
    pub fn fingerprint_with_namespace(namespace: &NamespaceKey) -> Self {
        Self::using(Hashing::Stable(Buffered::new(namespace.fingerprint)))
    }

    /// Starts a **process-local** key: the same encoding less the parameter names, hashed
    /// with SipHash-1-3-128 under a key derived from the namespace, its parameters' names
    /// and a random secret of this process. Only for stores whose records never leave the
    /// process ([`InProcess`](crate::store::InProcess)): it takes a fifth of the
    /// time of the stable key, and clients can no more aim a collision at it, since they
    /// cannot know the secret.
    #[must_use]
    #[inline]
    pub fn local(namespace: &NamespaceKey) -> Self {
        Self::using(Hashing::Local(Sip13::new(&namespace.local_key)))
    }

    /// Starts a process-local payload fingerprint (see [`KeyHasher::local`]).
    #[must_use]
    #[inline]
    pub fn local_fingerprint(namespace: &NamespaceKey) -> Self {
        Self::using(Hashing::Local(Sip13::new(&namespace.local_fingerprint)))
    }

    #[inline]
    fn using(hashing: Hashing) -> Self {
        KeyHasher {
            hashing,
            error: None,
        }
    }

    /// Adds the name of a generic argument of the function, so that each instantiation
    /// has its own records.
    pub fn generic(&mut self, type_name: &str) -> &mut Self {
        match &mut self.hashing {
            Hashing::Stable(sink) => put_generic(sink, type_name),
            Hashing::Local(sink) => put_generic(sink, type_name),
        }
        self
    }

    /// Adds the concrete type of the argument of parameter `name`, before that argument
    /// ([`arg`](Self::arg)): the attribute does it for every parameter whose declared
    /// type holds an `impl Trait`, since two types may serialize alike.
    ///
    /// ```
    /// use idempotent_runtime::KeyHasher;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Charge { cents: u64 }
    /// #[derive(serde::Serialize)]
    /// struct Refund { cents: u64 }
    ///
    /// let key = |type_name: &str| {
    ///     let mut hasher = KeyHasher::new("payments.apply");
    ///     hasher.arg_type("item", type_name).arg("item", &Charge { cents: 500 });
    ///     hasher.finish().unwrap()
    /// };
    /// let charge = key(std::any::type_name_of_val(&Charge { cents: 500 }));
    /// let refund = key(std::any::type_name_of_val(&Refund { cents: 500 }));
    /// assert_ne!(charge, refund);
    /// ```
    ///
    /// A process-local hasher ([`KeyHasher::local`]) leaves `name` out, as in `arg`.
    pub fn arg_type(&mut self, name: &str, type_name: &str) -> &mut Self {
        match &mut self.hashing {
            Hashing::Stable(sink) => {
                sink.put_byte(b't');
                put_str(sink, name);
                put_str(sink, type_name);
            }
            Hashing::Local(sink) => {
                sink.put_byte(b't');
                put_str(sink, type_name);
            }
        }
        self
    }

    /// Adds the parameter `name` with `value`.
    ///
    /// A process-local hasher ([`KeyHasher::local`]) leaves `name` out: its namespace key
    /// stands for the names ([`NamespaceKey::with_params`]).
    #[inline]
    pub fn arg<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> &mut Self {
        if self.error.is_none() {
            let encoded = match &mut self.hashing {
                Hashing::Stable(sink) => {
                    sink.put_byte(b'a');
                    put_str(sink, name);
                    encoding::encode(sink, value)
                }
                Hashing::Local(sink) => encoding::encode(sink, value),
            };
            if let Err(err) = encoded {
                self.error = Some(EncodeError(format!("argument `{name}`: {err}")));
            }
        }
        self
    }

    /// Adds a client-supplied idempotency key, compared byte for byte
    /// ([`validate_client_key`]).
    ///
    /// # Errors
    ///
    /// The key is empty, longer than [`MAX_CLIENT_KEY_LEN`] bytes, or holds a control
    /// character.
    pub fn client_key(&mut self, key: &str) -> Result<&mut Self, InvalidKey> {
        validate_client_key(key)?;
        match &mut self.hashing {
            Hashing::Stable(sink) => put_client_key(sink, key),
            Hashing::Local(sink) => put_client_key(sink, key),
        }
        Ok(self)
    }

    #[inline]
    fn digest(&self) -> Result<[u8; 16], KeyError> {
        if let Some(err) = &self.error {
            return Err(KeyError(err.0.clone()));
        }
        Ok(match &self.hashing {
            Hashing::Local(sip) => sip.finish(),
            Hashing::Stable(buffered) => buffered.finalize(),
        })
    }

    /// The key.
    ///
    /// # Errors
    ///
    /// An argument's `Serialize` implementation failed.
    #[inline]
    pub fn finish(&self) -> Result<Key, KeyError> {
        self.digest().map(Key)
    }

    /// The fingerprint (for a hasher made with [`KeyHasher::fingerprint`]).
    ///
    /// # Errors
    ///
    /// An argument's `Serialize` implementation failed.
    #[inline]
    pub fn finish_fingerprint(&self) -> Result<Fingerprint, KeyError> {
        self.digest().map(Fingerprint)
    }
}

fn put_generic<S: Sink>(sink: &mut S, type_name: &str) {
    sink.put_byte(b'g');
    put_str(sink, type_name);
}

fn put_client_key<S: Sink>(sink: &mut S, key: &str) {
    sink.put_byte(b'k');
    put_str(sink, key);
}

/// Keyed BLAKE3 through a stack buffer: the whole input of a typical key fits in it, so
/// one one-shot hash call does the work and nothing is allocated. Longer inputs spill into
/// a streaming hasher, which gives the same digest.
#[derive(Clone)]
struct Buffered {
    key: [u8; 32],
    /// The bytes written since the last spill.
    buf: ArrayVec<u8, { Buffered::CAPACITY }>,
    spill: Option<Box<blake3::Hasher>>,
}

impl Buffered {
    /// Three BLAKE3 blocks: room for the arguments of almost every handler.
    const CAPACITY: usize = 192;

    #[inline]
    fn new(key: [u8; 32]) -> Self {
        Buffered {
            key,
            buf: ArrayVec::new(),
            spill: None,
        }
    }

    fn finalize(&self) -> [u8; 16] {
        let mut out = [0; 16];
        match &self.spill {
            None => out.copy_from_slice(&blake3::keyed_hash(&self.key, &self.buf).as_bytes()[..16]),
            Some(spill) => {
                let mut hasher = (**spill).clone();
                hasher.update(&self.buf);
                out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
            }
        }
        out
    }

    /// Hashes the full buffer into the streaming state and empties it.
    #[cold]
    fn flush(&mut self) {
        let key = self.key;
        self.spill
            .get_or_insert_with(|| Box::new(blake3::Hasher::new_keyed(&key)))
            .update(&self.buf);
        self.buf.clear();
    }
}

impl Sink for Buffered {
    #[inline]
    fn put_byte(&mut self, byte: u8) {
        if self.buf.is_full() {
            self.flush();
        }
        self.buf.push(byte);
    }

    #[inline]
    fn put(&mut self, mut bytes: &[u8]) {
        while self.buf.try_extend_from_slice(bytes).is_err() {
            // Longer than the room left: fill it, spill, and go on with the rest.
            let (now, later) = bytes.split_at(self.buf.remaining_capacity());
            self.buf.extend(now.iter().copied());
            self.flush();
            bytes = later;
        }
    }
}

/// 32 bytes no other process has: the root of the process-local keys, from the operating
/// system's CSPRNG.
fn process_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        if getrandom::fill(&mut secret).is_err() {
            // The OS refused (a sandbox that blocks both `getrandom(2)` and `/dev/urandom`,
            // say): fall back to `RandomState`, which the standard library seeds by its own
            // means, rather than panic in every idempotent call of the process.
            let state = RandomState::new();
            for (i, chunk) in secret.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&state.hash_one((i, std::process::id())).to_le_bytes());
            }
        }
        secret
    })
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
