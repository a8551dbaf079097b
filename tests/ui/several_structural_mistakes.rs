// Broken syntax, repeated options and unknown parameters, all reported by one build.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(wait "30s", skip(db,,log), ttl = "1h" lease = "1s", crate = ::idempotency, crate = ::idem, key = request)]
async fn charge(request_id: String, db: u64, log: u64) -> Result<u64, AppError> {
    let _ = request_id;
    Ok(db + log)
}

fn main() {}
