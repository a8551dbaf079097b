// Every mistake in one attribute is reported by one build.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(ttl = "forever", retries = 3, skip(conn), key = request, wait = "1s", wait = "2s")]
async fn charge(request_id: String, db: u64, cents: u64) -> Result<u64, AppError> {
    let _ = request_id;
    Ok(db + cents)
}

fn main() {}
