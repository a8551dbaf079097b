use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(skip(db,,log))]
async fn charge(customer: u64, db: u64, log: u64) -> Result<u64, AppError> {
    Ok(customer + db + log)
}

fn main() {}
