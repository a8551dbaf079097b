//! Once the embedded default store has served a call, it cannot be replaced: its records
//! would silently vanish. (A test binary of its own: the default store is process-wide.)

mod support;

use idempotency::{idempotent, set_default_store, DefaultStoreAlreadySet, MemoryStore};
use support::AppError;

#[idempotent]
async fn ping(n: u32) -> Result<u32, AppError> {
    Ok(n)
}

#[tokio::test]
async fn a_default_store_in_use_is_not_replaced() {
    assert_eq!(ping(1).await.unwrap(), 1);
    let refused = set_default_store(MemoryStore::new()).unwrap_err();
    assert_eq!(refused, DefaultStoreAlreadySet);
    assert!(
        refused.to_string().contains("already installed or used"),
        "{refused}"
    );
}
