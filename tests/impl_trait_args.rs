//! `impl Trait` arguments: the caller picks their type, and two types may serialize alike,
//! so the key (or, beside a client-supplied key, the payload fingerprint) carries the
//! argument's concrete type name.
//!
//! Regression tests: a `Charge` and then a `Refund` with the same fields used to share a
//! key, so the refund replayed the charge and never ran.

mod support;

use idempotency::{idempotent, Error, KeyHasher, MemoryStore};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use support::{AppError, Plain, Probe};

#[derive(Serialize)]
struct Charge {
    order: u64,
    cents: u64,
}

#[derive(Serialize)]
struct Refund {
    order: u64,
    cents: u64,
}

#[tokio::test]
async fn arguments_of_two_types_that_serialize_alike_have_their_own_records() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "ledger.apply")]
    async fn apply(item: impl Serialize + Send) -> Result<usize, AppError> {
        let _ = item;
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    assert_eq!(
        apply(Charge {
            order: 1,
            cents: 500
        })
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        apply(Refund {
            order: 1,
            cents: 500
        })
        .await
        .unwrap(),
        1
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "the refund must run");
    // The same type and value twice is still one execution.
    assert_eq!(
        apply(Refund {
            order: 1,
            cents: 500
        })
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        apply(Charge {
            order: 1,
            cents: 500
        })
        .await
        .unwrap(),
        0
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stable_keys_carry_the_type_of_a_nested_impl_trait() {
    // A store without the in-process fast path gets stable keys: the documented format.
    static STORE: LazyLock<Probe<Plain>> = LazyLock::new(Probe::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "ledger.batch", store = &*STORE)]
    async fn batch(items: &[impl Serialize + Sync], day: u32) -> Result<usize, AppError> {
        let _ = (items, day);
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    let charges = [Charge { order: 2, cents: 1 }];
    let refunds = [Refund { order: 2, cents: 1 }];
    assert_eq!(batch(&charges, 1).await.unwrap(), 0);
    assert_eq!(batch(&refunds, 1).await.unwrap(), 1);
    assert_eq!(batch(&charges, 1).await.unwrap(), 0);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);

    // The key is the documented one: the type element, then the argument, by name order.
    let mut hasher = KeyHasher::new("ledger.batch");
    hasher
        .arg("day", &1u32)
        .arg_type("items", std::any::type_name::<&[Refund]>())
        .arg("items", &refunds);
    assert_eq!(STORE.requests()[1].key, hasher.finish().unwrap());
}

#[tokio::test]
async fn a_client_key_reused_with_an_argument_of_another_type_is_a_payload_mismatch() {
    static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(key = key, store = &*STORE)]
    async fn apply(key: &str, item: impl Serialize + Send) -> Result<usize, AppError> {
        let _ = (key, item);
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    assert_eq!(
        apply("k-1", Charge { order: 3, cents: 9 }).await.unwrap(),
        0
    );
    assert_eq!(
        apply("k-1", Charge { order: 3, cents: 9 }).await.unwrap(),
        0
    );
    let refused = apply("k-1", Refund { order: 3, cents: 9 })
        .await
        .unwrap_err()
        .idempotency();
    assert!(
        matches!(refused, Error::PayloadMismatch { .. }),
        "{refused:?}"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_impl_trait_scope_is_keyed_by_its_type() {
    static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Serialize)]
    struct Tenant(u64);
    #[derive(Serialize)]
    struct Partner(u64);
    #[idempotent(key = key, scope(owner), store = &*STORE)]
    async fn apply(key: &str, owner: impl Serialize + Send) -> Result<usize, AppError> {
        let _ = (key, owner);
        Ok(RUNS.fetch_add(1, Ordering::SeqCst))
    }
    // A scope partitions the key space: tenant 1's "k-1" is not partner 1's.
    assert_eq!(apply("k-1", Tenant(1)).await.unwrap(), 0);
    assert_eq!(apply("k-1", Partner(1)).await.unwrap(), 1);
    assert_eq!(apply("k-1", Tenant(1)).await.unwrap(), 0);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}
