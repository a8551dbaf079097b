// `wait = <expr>` is evaluated on each call and must be a `std::time::Duration`.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

fn wait_secs() -> u64 {
    30
}

#[idempotent(wait = wait_secs())]
async fn charge(customer: u64) -> Result<u64, AppError> {
    Ok(customer)
}

#[idempotent(wait = 30)]
async fn refund(customer: u64) -> Result<u64, AppError> {
    Ok(customer)
}

fn main() {}
