// The error type receives the idempotency layer's own failures, so it needs
// `From<idempotency::Error>`.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

#[idempotent]
async fn charge(customer: u64) -> Result<u64, AppError> {
    Ok(customer)
}

fn main() {}
