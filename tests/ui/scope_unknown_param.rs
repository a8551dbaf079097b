use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(key = request_id, scope(tenant))]
async fn charge(request_id: String, tenant_id: u64, cents: u64) -> Result<u64, AppError> {
    let _ = request_id;
    Ok(tenant_id + cents)
}

fn main() {}
