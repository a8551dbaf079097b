use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(wait "30s")]
async fn charge(customer: u64) -> Result<u64, AppError> {
    Ok(customer)
}

fn main() {}
