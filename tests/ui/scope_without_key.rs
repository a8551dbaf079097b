use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

// Every parameter is already in the derived key: a scope has nothing to partition.
#[idempotent(scope(tenant))]
async fn charge(tenant: u64, cents: u64) -> Result<u64, AppError> {
    Ok(tenant + cents)
}

fn main() {}
