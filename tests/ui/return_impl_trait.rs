// The stored result is decoded on replay, so its type must have a name.
use idempotency::idempotent;
use serde::Serialize;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent]
async fn charge(customer: u64) -> Result<impl Serialize, AppError> {
    Ok(customer)
}

fn main() {}
