//! Code that uses the attribute correctly compiles without a warning under
//! `#![deny(warnings)]` and clippy's pedantic lints: CI runs clippy on this file, so a
//! lint the generated code trips in users' crates fails the build here first.

#![deny(warnings, clippy::all, clippy::pedantic)]

use idempotency::{idempotent, MemoryStore, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

/// An application error.
#[derive(Debug)]
pub struct AppError(idempotency::Error);

impl AppError {
    /// The idempotency layer's error.
    #[must_use]
    pub fn cause(&self) -> &idempotency::Error {
        &self.0
    }
}

impl From<idempotency::Error> for AppError {
    fn from(err: idempotency::Error) -> Self {
        AppError(err)
    }
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    id: u64,
    sku: String,
}

static STORE: LazyLock<MemoryStore> = LazyLock::new(MemoryStore::new);

/// Creates an order.
///
/// # Errors
///
/// When a duplicate is still in flight.
#[idempotent(ttl = "1h30m", wait = "0s", lease = "10s", name = "lint.create")]
pub async fn create_order(customer: u64, sku: String) -> Result<Outcome<Order>, AppError> {
    Ok(Outcome::fresh(Order { id: customer, sku }))
}

/// Charges with a client key, scoped by tenant.
///
/// # Errors
///
/// When the key is invalid or reused with another amount.
#[idempotent(key = key, scope(tenant), skip(log), store = &*STORE)]
pub async fn charge(
    key: &str,
    tenant: u32,
    amount: u64,
    log: impl Fn(&str) + Send,
) -> Result<u64, AppError> {
    log(key);
    if amount == 0 {
        return Err(AppError(idempotency::Error::InvalidKey(
            idempotency::InvalidKey::Empty,
        )));
    }
    Ok(u64::from(tenant) + amount)
}

/// Records an entry of any serializable type: its type name is part of the key.
///
/// # Errors
///
/// When a duplicate is still in flight.
#[idempotent(store = &*STORE)]
pub async fn record(
    entry: &(impl Serialize + Sync),
    tags: Vec<impl Serialize + Send>,
) -> Result<usize, AppError> {
    let _ = entry;
    Ok(tags.len())
}

/// An extractor of the shape of axum's `Json`.
pub struct Json<T>(pub T);

/// The configured wait of a duplicate.
#[must_use]
pub fn configured_wait() -> std::time::Duration {
    std::time::Duration::ZERO
}

/// A handler that destructures its parameters, waiting as configured.
///
/// # Errors
///
/// When a duplicate is still in flight.
#[idempotent(skip(ignored), wait = configured_wait(), store = &*STORE)]
pub async fn handler(
    Json(order): Json<Order>,
    (ignored, mut qty, _): (u8, u32, u8),
    &(ref sku, n): &(String, u8),
) -> Result<u64, AppError> {
    let _ = ignored;
    qty += 1;
    Ok(order.id + u64::from(qty) + u64::from(n) + sku.len() as u64)
}

/// A service with an idempotent method.
pub struct Service {
    prefix: String,
}

impl Service {
    /// Handles a request.
    ///
    /// # Errors
    ///
    /// Never, but the signature says it may.
    #[idempotent(skip(self))]
    pub async fn handle(
        &self,
        labels: HashMap<String, String>,
        mut count: u32,
    ) -> Result<String, AppError> {
        count += 1;
        Ok(format!("{}{}{count}", self.prefix, labels.len()))
    }

    /// A generic associated function.
    ///
    /// # Errors
    ///
    /// Never.
    #[idempotent]
    pub async fn make<T: Default + Serialize + serde::de::DeserializeOwned>(
        id: u64,
    ) -> Result<T, AppError> {
        let _ = id;
        Ok(T::default())
    }
}

#[tokio::test]
async fn linted_functions_work() {
    let order = create_order(1, "a".into()).await.unwrap();
    assert_eq!(order.id, 1);
    assert_eq!(charge("k", 1, 2, |_| {}).await.unwrap(), 3);
    let reused = charge("k", 1, 3, |_| {}).await.unwrap_err();
    assert!(matches!(
        reused.cause(),
        idempotency::Error::PayloadMismatch { .. }
    ));
    let service = Service { prefix: "p".into() };
    assert_eq!(service.handle(HashMap::new(), 1).await.unwrap(), "p02");
    assert_eq!(Service::make::<u8>(1).await.unwrap(), 0);
    assert_eq!(record(&order, vec!["a"]).await.unwrap(), 1);
    let sku = ("ab".to_owned(), 0);
    let order = Order {
        id: 1,
        sku: "a".into(),
    };
    assert_eq!(handler(Json(order), (0, 1, 0), &sku).await.unwrap(), 5);
}
