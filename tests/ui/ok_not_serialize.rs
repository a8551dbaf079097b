// The `Ok` value is stored and replayed, so it must be `Serialize + Deserialize`.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

struct Receipt {
    cents: u64,
}

#[idempotent]
async fn charge(customer: u64) -> Result<Receipt, AppError> {
    Ok(Receipt { cents: customer })
}

fn main() {}
