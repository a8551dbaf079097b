//! `set_default_store` installs the store every function without `store = ..` uses, once.
//! (A test binary of its own: the default store is process-wide.)

mod support;

use idempotency::{idempotent, set_default_store, DefaultStoreAlreadySet, MemoryStore};
use std::sync::Arc;
use support::{AppError, Probe};

#[idempotent]
async fn ping(n: u32) -> Result<u32, AppError> {
    Ok(n)
}

#[tokio::test]
async fn an_installed_default_store_serves_every_function_and_cannot_be_replaced() {
    let probe: Arc<Probe> = Arc::new(Probe::default());
    set_default_store(Arc::clone(&probe)).unwrap();
    assert!(matches!(
        set_default_store(MemoryStore::new()),
        Err(DefaultStoreAlreadySet)
    ));

    assert_eq!(ping(1).await.unwrap(), 1);
    assert_eq!(ping(1).await.unwrap(), 1);
    assert_eq!(probe.begins(), 2);
    assert_eq!(probe.claims(), 1);
    assert_eq!(probe.inner.len(), 1);
}
