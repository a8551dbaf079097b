// Every option at once.
use idempotency::{idempotent, MemoryStore};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    cents: u64,
}

struct Connection;

fn store() -> &'static MemoryStore {
    static STORE: OnceLock<MemoryStore> = OnceLock::new();
    STORE.get_or_init(MemoryStore::new)
}

#[idempotent(
    ttl = "24h",
    wait = "0s",
    lease = "30s",
    key = request_id,
    scope(tenant),
    skip(db),
    name = "payments.charge",
    store = store(),
)]
async fn charge(
    request_id: String,
    tenant: u64,
    db: Connection,
    cents: u64,
) -> Result<Receipt, AppError> {
    let _ = (request_id, tenant, db);
    Ok(Receipt { cents })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let receipt = charge("k-1".to_owned(), 7, Connection, 250).await.unwrap();
    assert_eq!(receipt.cents, 250);
}
