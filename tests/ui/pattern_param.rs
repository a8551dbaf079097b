use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent]
async fn charge((customer, cents): (u64, u64)) -> Result<u64, AppError> {
    Ok(customer + cents)
}

fn main() {}
