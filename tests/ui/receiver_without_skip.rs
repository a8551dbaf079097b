use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

struct Payments;

impl Payments {
    #[idempotent]
    async fn charge(&self, customer: u64) -> Result<u64, AppError> {
        Ok(customer)
    }
}

fn main() {}
