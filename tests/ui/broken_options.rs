// A broken option does not hide the ones after it: each mistake is reported in one build.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(ttl = , wait = "x", bogus)]
async fn charge(customer: u64) -> Result<u64, AppError> {
    Ok(customer)
}

fn main() {}
