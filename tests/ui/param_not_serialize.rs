// A parameter that takes part in the key must implement `Serialize`.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

struct Connection;

#[idempotent]
async fn charge(customer: u64, db: Connection, cents: u64) -> Result<u64, AppError> {
    let _ = db;
    Ok(customer + cents)
}

fn main() {}
