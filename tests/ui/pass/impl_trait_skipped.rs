// An `impl Trait` argument that is not serializable stays out of the key with `skip(..)`;
// one that is serializable is keyed by its value and its concrete type, wherever the
// `impl` sits in the parameter's type.
use idempotency::idempotent;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(skip(log))]
async fn charge(customer: u64, mut log: impl Write, cents: u64) -> Result<u64, AppError> {
    let _ = writeln!(log, "charging {customer}");
    Ok(cents)
}

#[idempotent(skip(clock))]
async fn stamp(customer: u64, clock: &impl Fn() -> u64) -> Result<u64, AppError> {
    Ok(customer + clock())
}

#[idempotent]
async fn apply(
    item: impl Serialize + Send,
    by_ref: &(impl Serialize + Sync),
    nested: Vec<impl Serialize + Send>,
) -> Result<usize, AppError> {
    let _ = (item, by_ref);
    Ok(nested.len())
}

#[idempotent(key = key, scope(tenant))]
async fn submit(
    key: impl AsRef<str> + Send,
    tenant: impl Serialize + Send,
    body: Option<impl Serialize + Send>,
) -> Result<bool, AppError> {
    let _ = (key, tenant);
    Ok(body.is_some())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(charge(1, String::new(), 10).await.unwrap(), 10);
    assert_eq!(stamp(1, &|| 2).await.unwrap(), 3);
    assert_eq!(apply(1_u8, &"a", vec![(); 2]).await.unwrap(), 2);
    assert!(submit("k", 7_u64, Some([1_u8])).await.unwrap());
}
