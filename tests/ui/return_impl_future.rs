// An `async fn` written out as `impl Future` hides the result's type.
use idempotency::idempotent;
use std::future::Future;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent]
fn charge(customer: u64) -> impl Future<Output = Result<u64, AppError>> {
    async move { Ok(customer) }
}

fn main() {}
