use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(key = idempotency_key)]
async fn charge(request_id: String, cents: u64) -> Result<u64, AppError> {
    let _ = request_id;
    Ok(cents)
}

fn main() {}
