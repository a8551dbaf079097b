//! Keys: stable across processes and releases, blind to map order, separate per function,
//! and client-supplied keys with payload fingerprints and scopes.

mod support;

use idempotency::{idempotent, Error, InvalidKey, KeyHasher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use support::{AppError, Gate, Plain, Probe};

/// The key of `create_order(customer: 42, sku: "B-7", qty: 3)` in namespace
/// `orders.create`. This value is the key format: if it changes, every deployed record is
/// orphaned. Change it only with a new format version.
///
/// It was computed independently of this crate, from the documented encoding, with
/// Python's `blake3` package:
///
/// ```python
/// def varint(n):
///     out = b""
///     while n >= 0x80: out += bytes([(n & 0x7f) | 0x80]); n >>= 7
///     return out + bytes([n])
/// def s(x): b = x.encode(); return b"s" + varint(len(b)) + b
/// def u(n): return b"u" + varint(n)
/// namespace_key = blake3.blake3(s("idempotency/key/v1") + s("orders.create")).digest()
/// parts = b"a" + s("customer") + u(42) + b"a" + s("qty") + u(3) + b"a" + s("sku") + s("B-7")
/// blake3.blake3(parts, key=namespace_key).digest()[:16].hex()
/// ```
const GOLDEN_ORDER_KEY: &str = "b6f5302a0c10efcca0ff4e2ba1a3d48c";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shipping {
    Standard,
    Express { days: u8 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cart {
    lines: Vec<(String, u32)>,
    coupons: HashMap<String, HashMap<String, i64>>,
    shipping: Shipping,
    note: Option<String>,
    weight_kg: f64,
}

fn cart(reverse: bool) -> Cart {
    let mut coupons = HashMap::new();
    let mut names: Vec<u32> = (0..40).collect();
    if reverse {
        names.reverse();
    }
    for i in names {
        let mut inner = HashMap::with_capacity(if reverse { 64 } else { 1 });
        inner.insert(format!("rule{i}"), -i64::from(i));
        inner.insert(format!("cap{i}"), i64::from(i) * 7);
        coupons.insert(format!("coupon{i}"), inner);
    }
    Cart {
        lines: vec![("B-7".into(), 2), ("C-9".into(), 1)],
        coupons,
        shipping: Shipping::Express { days: 2 },
        note: None,
        weight_kg: 1.25,
    }
}

#[test]
fn the_key_format_is_pinned_by_a_golden_value() {
    let mut hasher = KeyHasher::new("orders.create");
    hasher
        .arg("customer", &42u64)
        .arg("qty", &3u32)
        .arg("sku", "B-7");
    assert_eq!(hasher.finish().unwrap().to_string(), GOLDEN_ORDER_KEY);

    // Integer types do not matter, values do.
    let mut widened = KeyHasher::new("orders.create");
    widened
        .arg("customer", &42i128)
        .arg("qty", &3u8)
        .arg("sku", &String::from("B-7"));
    assert_eq!(widened.finish().unwrap().to_string(), GOLDEN_ORDER_KEY);

    // Structs, sequences, tuples, maps within maps, enums, options and floats, computed the
    // same way (a map entry's digest is `blake3(key + value)[:16]`, sorted).
    let golden_cart = Cart {
        lines: vec![("B-7".into(), 2)],
        coupons: HashMap::from([("c1".into(), HashMap::from([("r".into(), -1)]))]),
        shipping: Shipping::Express { days: 2 },
        note: None,
        weight_kg: 1.25,
    };
    let mut nested = KeyHasher::new("carts.checkout");
    nested.arg("cart", &golden_cart);
    assert_eq!(
        nested.finish().unwrap().to_string(),
        "f4f5945ed5fe500f6fd0e7b77ebef92c"
    );
}

/// Floats follow `==`: `-0.0 == 0.0`, so both are encoded as `0.0` and share a key (they
/// used to have two). Computed as `GOLDEN_ORDER_KEY` is, with
/// `f = lambda x: b"f" + struct.pack("<d", x)`:
///
/// ```python
/// namespace_key = blake3.blake3(s("idempotency/key/v1") + s("parcels.weigh")).digest()
/// parts = b"a" + s("grams") + u(12) + b"a" + s("kg") + f(0.0)
/// ```
const GOLDEN_ZERO_KEY: &str = "fcc281f40ed8a3ce9015e942785eba10";

#[test]
fn zeros_of_either_sign_share_the_golden_key_and_nans_share_one() {
    let key = |kg: f64| {
        let mut hasher = KeyHasher::new("parcels.weigh");
        hasher.arg("grams", &12u8).arg("kg", &kg);
        hasher.finish().unwrap().to_string()
    };
    assert_eq!(key(0.0), GOLDEN_ZERO_KEY);
    assert_eq!(key(-0.0), GOLDEN_ZERO_KEY);
    assert_eq!(key(f64::NAN), key(-f64::NAN));
    assert_eq!(key(f64::NAN), key(f64::from_bits(0x7ff0_0000_0000_0001)));
    assert_ne!(key(f64::NAN), GOLDEN_ZERO_KEY);
}

/// An `impl Trait` argument's concrete type comes before it: tag `t`, its parameter's name
/// and its type's name, then the argument's `a` element. Computed as `GOLDEN_ORDER_KEY`:
///
/// ```python
/// namespace_key = blake3.blake3(s("idempotency/key/v1") + s("ledger.apply")).digest()
/// charge = b"(" + s("order") + u(1) + s("cents") + u(500) + b")"
/// parts = b"t" + s("item") + s("shop::Charge") + b"a" + s("item") + charge
/// ```
const GOLDEN_TYPED_KEY: &str = "41b0266a775147a3cb4a013b70bd46b3";

#[test]
fn the_type_of_an_impl_trait_argument_is_pinned_by_a_golden_value() {
    #[derive(Serialize)]
    struct Charge {
        order: u64,
        cents: u64,
    }
    let mut hasher = KeyHasher::new("ledger.apply");
    hasher.arg_type("item", "shop::Charge").arg(
        "item",
        &Charge {
            order: 1,
            cents: 500,
        },
    );
    assert_eq!(hasher.finish().unwrap().to_string(), GOLDEN_TYPED_KEY);
}

#[tokio::test]
async fn the_attribute_derives_the_documented_key() {
    static STORE: LazyLock<Probe<Plain>> = LazyLock::new(Probe::default);
    // Parameters in any order: the key sorts them by name.
    #[idempotent(name = "orders.create", store = &*STORE)]
    async fn create_order(sku: &str, qty: u32, customer: u64) -> Result<u64, AppError> {
        Ok(customer + u64::from(qty) + sku.len() as u64)
    }
    create_order("B-7", 3, 42).await.unwrap();
    assert_eq!(STORE.requests()[0].key.to_string(), GOLDEN_ORDER_KEY);
}

#[tokio::test]
async fn maps_give_the_same_key_whatever_their_iteration_order() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent]
    async fn checkout(
        customer: u64,
        cart: Cart,
        index: BTreeMap<u32, Vec<HashMap<u8, bool>>>,
    ) -> Result<usize, AppError> {
        let _ = (customer, cart, index);
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    let (a, b) = (cart(false), cart(true));
    let order_a: Vec<_> = a.coupons.keys().collect();
    let order_b: Vec<_> = b.coupons.keys().collect();
    assert_ne!(
        order_a, order_b,
        "the test needs two different iteration orders"
    );

    let index = |reverse: bool| {
        let mut maps: Vec<HashMap<u8, bool>> = Vec::new();
        let mut map = HashMap::with_capacity(if reverse { 256 } else { 0 });
        let mut keys: Vec<u8> = (0..50).collect();
        if reverse {
            keys.reverse();
        }
        for k in keys {
            map.insert(k, k % 3 == 0);
        }
        maps.push(map);
        BTreeMap::from([(1, maps)])
    };
    assert_eq!(checkout(1, a, index(false)).await.unwrap(), 0);
    assert_eq!(checkout(1, b, index(true)).await.unwrap(), 0);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);

    let mut changed = cart(true);
    changed
        .coupons
        .get_mut("coupon3")
        .unwrap()
        .insert("rule3".into(), 0);
    assert_eq!(checkout(1, changed, index(true)).await.unwrap(), 1);
}

#[tokio::test]
async fn arguments_mutated_in_the_body_do_not_change_the_key() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent]
    async fn reserve(mut qty: u32, mut skus: Vec<String>) -> Result<u32, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        qty *= 10;
        skus.push("extra".into());
        Ok(qty + skus.len() as u32)
    }
    assert_eq!(reserve(2, vec!["a".into()]).await.unwrap(), 22);
    assert_eq!(reserve(2, vec!["a".into()]).await.unwrap(), 22);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

static CREATES: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
async fn different_functions_never_share_records() {
    #[idempotent]
    async fn create(id: u64) -> Result<u64, AppError> {
        CREATES.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }
    mod other {
        use super::*;
        #[idempotent]
        pub async fn create(id: u64) -> Result<u64, AppError> {
            CREATES.fetch_add(1, Ordering::SeqCst);
            Ok(id)
        }
    }
    #[idempotent]
    async fn delete(id: u64) -> Result<u64, AppError> {
        CREATES.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }
    create(1).await.unwrap();
    other::create(1).await.unwrap();
    delete(1).await.unwrap();
    create(1).await.unwrap();
    assert_eq!(CREATES.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn same_named_methods_of_two_types_never_share_records() {
    static STORE: LazyLock<Probe> = LazyLock::new(Probe::default);
    struct Orders;
    struct Refunds;
    impl Orders {
        #[idempotent(skip(self), store = &*STORE)]
        async fn handle(&self, id: u64) -> Result<String, AppError> {
            Ok(format!("order {id}"))
        }
        #[idempotent(store = &*STORE)]
        async fn lookup(id: u64) -> Result<String, AppError> {
            Ok(format!("order lookup {id}"))
        }
    }
    impl Refunds {
        #[idempotent(skip(self), store = &*STORE)]
        async fn handle(&self, id: u64) -> Result<String, AppError> {
            Ok(format!("refund {id}"))
        }
        #[idempotent(store = &*STORE)]
        async fn lookup(id: u64) -> Result<String, AppError> {
            Ok(format!("refund lookup {id}"))
        }
    }
    for _ in 0..2 {
        assert_eq!(Orders.handle(1).await.unwrap(), "order 1");
        assert_eq!(Refunds.handle(1).await.unwrap(), "refund 1");
        assert_eq!(Orders::lookup(1).await.unwrap(), "order lookup 1");
        assert_eq!(Refunds::lookup(1).await.unwrap(), "refund lookup 1");
    }
    assert_eq!(STORE.claims(), 4);
}

#[tokio::test]
async fn each_instantiation_of_a_generic_function_has_its_own_records() {
    static CREATES: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "defaults")]
    async fn default_of<T: Default + Serialize + serde::de::DeserializeOwned>(
        id: u64,
    ) -> Result<T, AppError> {
        let _ = id;
        CREATES.fetch_add(1, Ordering::SeqCst);
        Ok(T::default())
    }
    assert_eq!(default_of::<u32>(1).await.unwrap(), 0);
    assert_eq!(default_of::<String>(1).await.unwrap(), "");
    assert_eq!(default_of::<Vec<u8>>(1).await.unwrap(), Vec::<u8>::new());
    assert_eq!(default_of::<u32>(1).await.unwrap(), 0);
    assert_eq!(CREATES.load(Ordering::SeqCst), 3);
}

static PLACES: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
async fn name_sets_the_namespace_so_two_functions_can_share_records() {
    #[idempotent(name = "orders.create.v1")]
    async fn create_order(id: u64) -> Result<u64, AppError> {
        PLACES.fetch_add(1, Ordering::SeqCst);
        Ok(id * 3)
    }
    // The same handler after a rename and a move, keeping its records.
    mod moved {
        use super::*;
        #[idempotent(name = "orders.create.v1")]
        pub async fn place_order(id: u64) -> Result<u64, AppError> {
            PLACES.fetch_add(1, Ordering::SeqCst);
            Ok(id * 3)
        }
    }
    assert_eq!(create_order(5).await.unwrap(), 15);
    assert_eq!(moved::place_order(5).await.unwrap(), 15);
    assert_eq!(PLACES.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn reference_and_impl_trait_arguments_work() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Serialize)]
    struct Customer {
        id: u64,
    }
    #[idempotent(skip(audit))]
    async fn rename(
        customer: &Customer,
        name: &str,
        audit: impl Fn(&str) + Send,
    ) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        audit(name);
        Ok(format!("{}={name}", customer.id))
    }
    let customer = Customer { id: 4 };
    assert_eq!(rename(&customer, "ada", |_| {}).await.unwrap(), "4=ada");
    assert_eq!(rename(&customer, "ada", |_| {}).await.unwrap(), "4=ada");
    // A skipped `impl Trait` argument plays no part in the key, whatever its type.
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    let audit = |_: &str| {};
    rename(&customer, "bob", audit).await.unwrap();
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

/// Runs of `charge`, by tenant: each test charges tenants of its own, so that the tests,
/// which run at once, do not count each other's runs.
static CHARGES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

fn charges(tenant: u64) -> usize {
    CHARGES[usize::try_from(tenant).unwrap()].load(Ordering::SeqCst)
}

/// A client-supplied key (the `Idempotency-Key` header) scoped by tenant.
#[idempotent(key = idempotency_key, scope(tenant), skip(trace_id))]
async fn charge(
    idempotency_key: String,
    tenant: u64,
    amount: u64,
    trace_id: u128,
) -> Result<String, AppError> {
    let _ = trace_id;
    let n = CHARGES[usize::try_from(tenant).unwrap_or(0) % 8].fetch_add(1, Ordering::SeqCst) + 1;
    Ok(format!("charge #{n}: tenant {tenant} paid {amount}"))
}

#[tokio::test]
async fn client_keys_replay_and_refuse_a_different_payload() {
    let first = charge("k-1".into(), 1, 500, 11).await.unwrap();
    // Another trace id is skipped, so this is the same request.
    assert_eq!(charge("k-1".into(), 1, 500, 99).await.unwrap(), first);
    match charge("k-1".into(), 1, 501, 11)
        .await
        .unwrap_err()
        .idempotency()
    {
        Error::PayloadMismatch { namespace } => {
            assert!(namespace.ends_with("charge"), "{namespace}")
        }
        other => panic!("expected PayloadMismatch, got {other:?}"),
    }
    // Scopes partition the key space: tenant 2's "k-1" is its own record.
    let tenant2 = charge("k-1".into(), 2, 500, 11).await.unwrap();
    assert_ne!(tenant2, first);
    assert_eq!(charge("k-1".into(), 2, 500, 11).await.unwrap(), tenant2);
}

#[tokio::test]
async fn invalid_client_keys_are_refused_before_the_body_runs() {
    let before = charges(3);
    let empty = charge(String::new(), 3, 1, 0)
        .await
        .unwrap_err()
        .idempotency();
    assert!(
        matches!(empty, Error::InvalidKey(InvalidKey::Empty)),
        "{empty:?}"
    );
    let long = charge("x".repeat(256), 3, 1, 0)
        .await
        .unwrap_err()
        .idempotency();
    assert!(
        matches!(long, Error::InvalidKey(InvalidKey::TooLong { len: 256 })),
        "{long:?}"
    );
    assert_eq!(charges(3), before);
    charge("y".repeat(255), 3, 1, 0).await.unwrap();
    assert_eq!(charges(3), before + 1);
}

#[tokio::test]
async fn client_keys_with_control_characters_are_refused_before_the_body_runs() {
    let before = charges(3);
    for (key, at, character) in [
        ("k-1\n", 3, '\n'),
        ("k\r\n-1", 1, '\r'),
        ("\tk-1", 0, '\t'),
        ("k\0", 1, '\0'),
        ("k\u{7f}", 1, '\u{7f}'),
        ("é\u{85}", 2, '\u{85}'),
    ] {
        let refused = charge(key.into(), 4, 1, 0).await.unwrap_err().idempotency();
        assert!(
            matches!(
                refused,
                Error::InvalidKey(InvalidKey::ControlCharacter { at: a, character: c })
                    if a == at && c == character
            ),
            "{key:?}: {refused:?}"
        );
        assert!(!refused.to_string().contains('\n'), "{refused}");
    }
    assert_eq!(charges(4), before);
}

#[tokio::test]
async fn client_keys_are_compared_byte_for_byte() {
    static STORE: LazyLock<Probe> = LazyLock::new(Probe::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(key = key, store = &*STORE)]
    async fn submit(key: &str, amount: u64) -> Result<usize, AppError> {
        let _ = (key, amount);
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    // Spaces, case and Unicode normal forms are part of the key: an opaque string.
    let keys = [
        "k-1",
        " k-1",
        "k-1 ",
        "K-1",
        "caf\u{e9}",   // NFC
        "cafe\u{301}", // NFD of the same text
    ];
    for (n, key) in keys.into_iter().enumerate() {
        assert_eq!(submit(key, 5).await.unwrap(), n, "{key:?}");
    }
    for (n, key) in keys.into_iter().enumerate() {
        assert_eq!(submit(key, 5).await.unwrap(), n, "{key:?}");
    }
    assert_eq!(STORE.claims(), keys.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_payload_is_refused_at_once_while_the_first_runs() {
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(key = key, wait = "1h")]
    async fn transfer(key: &str, amount: u64) -> Result<u64, AppError> {
        let _ = key;
        STARTED.open();
        GATE.wait().await;
        Ok(amount)
    }
    let first = tokio::spawn(transfer("t-1", 10));
    STARTED.wait().await;
    // With an hour to wait, only an immediate refusal lets this return.
    let refused = transfer("t-1", 20).await.unwrap_err().idempotency();
    assert!(
        matches!(refused, Error::PayloadMismatch { .. }),
        "{refused:?}"
    );
    GATE.open();
    assert_eq!(first.await.unwrap().unwrap(), 10);
    assert_eq!(transfer("t-1", 10).await.unwrap(), 10);
}

#[tokio::test]
async fn client_keys_may_be_any_as_ref_str() {
    struct RequestId(String);
    impl AsRef<str> for RequestId {
        fn as_ref(&self) -> &str {
            &self.0
        }
    }
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(key = id)]
    async fn submit(id: RequestId, body: Vec<u8>) -> Result<usize, AppError> {
        let _ = id;
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(body.len())
    }
    assert_eq!(submit(RequestId("r1".into()), vec![1, 2]).await.unwrap(), 2);
    assert_eq!(submit(RequestId("r1".into()), vec![1, 2]).await.unwrap(), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn raw_identifiers_are_keyed_by_their_plain_names() {
    static STORE: LazyLock<Probe<Plain>> = LazyLock::new(Probe::default);
    #[idempotent(name = "orders.create", store = &*STORE, skip(r#ref))]
    async fn create_order(
        r#type: &str,
        qty: u32,
        customer: u64,
        r#ref: u8,
    ) -> Result<u64, AppError> {
        let _ = (r#type, r#ref);
        Ok(customer + u64::from(qty))
    }
    create_order("B-7", 3, 42, 0).await.unwrap();
    // `r#type` enters the key as `type`; the skipped `r#ref` not at all.
    let mut hasher = KeyHasher::new("orders.create");
    hasher
        .arg("customer", &42u64)
        .arg("qty", &3u32)
        .arg("type", "B-7");
    assert_eq!(STORE.requests()[0].key, hasher.finish().unwrap());
}

#[tokio::test]
async fn functions_sharing_a_name_but_not_their_parameters_never_share_records() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    // The embedded store's process-local keys leave the names out of each call's input:
    // they are bound into the namespace's key instead.
    #[idempotent(name = "shared.namespace")]
    async fn by_customer(customer: u64) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("customer {customer}"))
    }
    #[idempotent(name = "shared.namespace")]
    async fn by_order(order: u64) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("order {order}"))
    }
    assert_eq!(by_customer(7).await.unwrap(), "customer 7");
    assert_eq!(by_order(7).await.unwrap(), "order 7");
    assert_eq!(by_customer(7).await.unwrap(), "customer 7");
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_destructured_parameter_keys_by_the_variables_it_binds() {
    static STORE: LazyLock<Probe<Plain>> = LazyLock::new(Probe::default);
    /// An extractor of the shape of axum's `Json` or `State`: not `Serialize` itself.
    struct Wrapper<T>(T);
    #[idempotent(name = "orders.wrapped", store = &*STORE)]
    async fn f(Wrapper(a): Wrapper<u64>, b: u32) -> Result<u64, AppError> {
        Ok(a + u64::from(b))
    }
    assert_eq!(f(Wrapper(40), 2).await.unwrap(), 42);
    // `a` enters the key as a parameter `a: u64` would: by its name, sorted with `b`.
    let mut hasher = KeyHasher::new("orders.wrapped");
    hasher.arg("a", &40u64).arg("b", &2u32);
    assert_eq!(STORE.requests()[0].key, hasher.finish().unwrap());
}

#[tokio::test]
async fn skip_key_and_scope_name_the_variables_of_patterns() {
    static STORE: LazyLock<Probe<Plain>> = LazyLock::new(Probe::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    struct State<T>(T);
    struct Json<T>(T);
    struct Db;
    #[derive(Serialize)]
    struct Tenant(u64);
    #[idempotent(name = "orders.extracted", key = key, scope(tenant), skip(db), store = &*STORE)]
    async fn create(
        State(db): State<Db>,
        Tenant(tenant): Tenant,
        Json((key, qty)): Json<(String, u32)>,
        _: Json<()>,
    ) -> Result<u32, AppError> {
        let _ = (db, tenant, key);
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(qty)
    }
    let call = |tenant, qty| {
        create(
            State(Db),
            Tenant(tenant),
            Json(("k-1".into(), qty)),
            Json(()),
        )
    };
    assert_eq!(call(7, 2).await.unwrap(), 2);
    assert_eq!(call(7, 2).await.unwrap(), 2);
    // Another tenant is another key; the same key with another `qty` is another payload.
    assert_eq!(call(8, 2).await.unwrap(), 2);
    assert!(matches!(
        call(7, 3).await.unwrap_err().idempotency(),
        Error::PayloadMismatch { .. }
    ));
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    let mut hasher = KeyHasher::new("orders.extracted");
    hasher.arg("tenant", &7u64).client_key("k-1").unwrap();
    assert_eq!(STORE.requests()[0].key, hasher.finish().unwrap());
}

#[tokio::test]
async fn a_pattern_over_an_impl_trait_keys_each_variable_with_its_type() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    struct Wrapper<T>(T);
    #[derive(Serialize)]
    struct Charge {
        cents: u64,
    }
    #[derive(Serialize)]
    struct Refund {
        cents: u64,
    }
    #[idempotent]
    async fn apply(Wrapper(item): Wrapper<impl Serialize + Send>) -> Result<usize, AppError> {
        let _ = item;
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    // A `Charge` and a `Refund` serialize alike: only their type names keep them apart.
    assert_eq!(apply(Wrapper(Charge { cents: 5 })).await.unwrap(), 0);
    assert_eq!(apply(Wrapper(Refund { cents: 5 })).await.unwrap(), 1);
    assert_eq!(apply(Wrapper(Charge { cents: 5 })).await.unwrap(), 0);
}
