//! Stored types evolving across deploys: a record written by one version of a function is
//! replayed by the next, which may return a changed type. Each test is one claim of the
//! "Evolving a stored type" guide: `v1` is the function before the deploy, `v2` after it,
//! sharing a `name` and a store, as two builds of one handler share them in production.

mod support;

use idempotency::{idempotent, Error, MemoryStore};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use support::AppError;

static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);

/// The receipt as the first deploy returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ReceiptV1 {
    order: u64,
    cents: u64,
}

fn codec_error(err: AppError) -> String {
    match err.idempotency() {
        Error::Codec(err) => support::chain(&err),
        other => panic!("expected a Codec error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_added_field_with_serde_default_replays_old_records() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ReceiptV2 {
        order: u64,
        cents: u64,
        #[serde(default)]
        currency: String,
    }
    #[idempotent(name = "evolve.default", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(ReceiptV1 { order, cents: 500 })
    }
    #[idempotent(name = "evolve.default", store = &*STORE)]
    async fn v2(order: u64) -> Result<ReceiptV2, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(ReceiptV2 {
            order,
            cents: 500,
            currency: "EUR".into(),
        })
    }
    v1(1).await.unwrap();
    let replayed = v2(1).await.unwrap();
    assert_eq!(
        replayed,
        ReceiptV2 {
            order: 1,
            cents: 500,
            currency: String::new()
        }
    );
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        1,
        "v2 replayed, it did not run"
    );
    // During a rolling deploy the old code replays the new records: it ignores the field.
    v2(2).await.unwrap();
    assert_eq!(
        v1(2).await.unwrap(),
        ReceiptV1 {
            order: 2,
            cents: 500
        }
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_added_option_field_replays_old_records_as_none() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ReceiptV2 {
        order: u64,
        cents: u64,
        coupon: Option<String>,
    }
    #[idempotent(name = "evolve.option", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        Ok(ReceiptV1 { order, cents: 500 })
    }
    #[idempotent(name = "evolve.option", store = &*STORE)]
    async fn v2(order: u64) -> Result<ReceiptV2, AppError> {
        Ok(ReceiptV2 {
            order,
            cents: 0,
            coupon: Some("new".into()),
        })
    }
    v1(1).await.unwrap();
    assert_eq!(v2(1).await.unwrap().coupon, None);
}

#[tokio::test]
async fn an_added_field_without_a_default_fails_every_replay_of_old_records() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, Serialize, Deserialize)]
    struct ReceiptV2 {
        order: u64,
        cents: u64,
        currency: String,
    }
    #[idempotent(name = "evolve.required", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        Ok(ReceiptV1 { order, cents: 500 })
    }
    #[idempotent(name = "evolve.required", store = &*STORE)]
    async fn v2(order: u64) -> Result<ReceiptV2, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(ReceiptV2 {
            order,
            cents: 500,
            currency: "EUR".into(),
        })
    }
    v1(1).await.unwrap();
    // Not once: the record stays until its TTL, and each retry fails the same way.
    for _ in 0..2 {
        let message = codec_error(v2(1).await.unwrap_err());
        assert!(message.contains("missing field `currency`"), "{message}");
    }
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        0,
        "the body must not run again"
    );
}

#[tokio::test]
async fn a_removed_field_still_decodes_but_old_code_cannot_read_new_records() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ReceiptV2 {
        order: u64,
    }
    #[idempotent(name = "evolve.removed", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        Ok(ReceiptV1 { order, cents: 500 })
    }
    #[idempotent(name = "evolve.removed", store = &*STORE)]
    async fn v2(order: u64) -> Result<ReceiptV2, AppError> {
        Ok(ReceiptV2 { order })
    }
    // Unknown fields are ignored: the new code reads the old record...
    v1(1).await.unwrap();
    assert_eq!(v2(1).await.unwrap(), ReceiptV2 { order: 1 });
    // ...but during a rolling deploy the old code meets the new records, and requires the
    // field they lack: make it `#[serde(default)]` one deploy before removing it.
    v2(2).await.unwrap();
    let message = codec_error(v1(2).await.unwrap_err());
    assert!(message.contains("missing field `cents`"), "{message}");
}

#[tokio::test]
async fn deny_unknown_fields_turns_a_removed_field_into_a_codec_error() {
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ReceiptV2 {
        order: u64,
    }
    #[idempotent(name = "evolve.strict", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        Ok(ReceiptV1 { order, cents: 500 })
    }
    #[idempotent(name = "evolve.strict", store = &*STORE)]
    async fn v2(order: u64) -> Result<ReceiptV2, AppError> {
        Ok(ReceiptV2 { order })
    }
    v1(1).await.unwrap();
    let message = codec_error(v2(1).await.unwrap_err());
    assert!(message.contains("unknown field `cents`"), "{message}");
}

#[tokio::test]
async fn a_renamed_field_is_a_codec_error_unless_the_old_name_is_an_alias() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Renamed {
        order: u64,
        amount: u64,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Aliased {
        order: u64,
        #[serde(alias = "cents")]
        amount: u64,
    }
    #[idempotent(name = "evolve.renamed", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        Ok(ReceiptV1 { order, cents: 500 })
    }
    #[idempotent(name = "evolve.renamed", store = &*STORE)]
    async fn renamed(order: u64) -> Result<Renamed, AppError> {
        Ok(Renamed { order, amount: 0 })
    }
    #[idempotent(name = "evolve.renamed", store = &*STORE)]
    async fn aliased(order: u64) -> Result<Aliased, AppError> {
        Ok(Aliased { order, amount: 0 })
    }
    v1(1).await.unwrap();
    let message = codec_error(renamed(1).await.unwrap_err());
    assert!(message.contains("missing field `amount`"), "{message}");
    assert_eq!(
        aliased(1).await.unwrap(),
        Aliased {
            order: 1,
            amount: 500
        }
    );
}

#[tokio::test]
async fn a_changed_field_type_is_a_codec_error() {
    #[derive(Debug, Serialize, Deserialize)]
    struct ReceiptV2 {
        order: u64,
        cents: String,
    }
    #[idempotent(name = "evolve.retyped", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        Ok(ReceiptV1 { order, cents: 500 })
    }
    #[idempotent(name = "evolve.retyped", store = &*STORE)]
    async fn v2(order: u64) -> Result<ReceiptV2, AppError> {
        Ok(ReceiptV2 {
            order,
            cents: "5.00".into(),
        })
    }
    v1(1).await.unwrap();
    let message = codec_error(v2(1).await.unwrap_err());
    assert!(message.contains("invalid type"), "{message}");
}

#[tokio::test]
async fn a_new_enum_variant_replays_old_records() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum StatusV1 {
        Paid,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum StatusV2 {
        Paid,
        Refunded { cents: u64 },
    }
    #[idempotent(name = "evolve.variant", store = &*STORE)]
    async fn v1(order: u64) -> Result<StatusV1, AppError> {
        let _ = order;
        Ok(StatusV1::Paid)
    }
    #[idempotent(name = "evolve.variant", store = &*STORE)]
    async fn v2(order: u64) -> Result<StatusV2, AppError> {
        Ok(StatusV2::Refunded { cents: order })
    }
    v1(1).await.unwrap();
    assert_eq!(v2(1).await.unwrap(), StatusV2::Paid);
}

#[tokio::test]
async fn a_new_name_starts_a_new_namespace_so_the_body_runs_again() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ReceiptV2 {
        order: u64,
        total: String,
    }
    #[idempotent(name = "evolve.namespace", store = &*STORE)]
    async fn v1(order: u64) -> Result<ReceiptV1, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(ReceiptV1 { order, cents: 500 })
    }
    // An incompatible type under a new name: old records are not read, not even found.
    #[idempotent(name = "evolve.namespace.v2", store = &*STORE)]
    async fn v2(order: u64) -> Result<ReceiptV2, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(ReceiptV2 {
            order,
            total: "5.00 EUR".into(),
        })
    }
    v1(1).await.unwrap();
    assert_eq!(v2(1).await.unwrap().total, "5.00 EUR");
    assert_eq!(v2(1).await.unwrap().total, "5.00 EUR");
    // The call ran twice, once per namespace: the price of a new name.
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    // The old records are still there for the old code, until their TTL.
    assert_eq!(v1(1).await.unwrap().cents, 500);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}
