// The return type may be an alias of `Result`.
use idempotency::idempotent;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

type AppResult<T> = Result<T, AppError>;

#[idempotent]
async fn charge(customer: u64) -> AppResult<u64> {
    Ok(customer)
}

mod api {
    pub type Result<T, E = super::AppError> = core::result::Result<T, E>;
}

#[idempotent]
async fn describe(customer: u64) -> api::Result<String> {
    Ok(customer.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(charge(1).await.unwrap(), 1);
    assert_eq!(describe(2).await.unwrap(), "2");
}
