// An `impl Trait` argument that is not serializable stays out of the key with `skip(..)`.
use idempotency::idempotent;
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

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(charge(1, String::new(), 10).await.unwrap(), 10);
    assert_eq!(stamp(1, &|| 2).await.unwrap(), 3);
}
