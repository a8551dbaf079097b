// `crate = ..` names the `idempotency` crate where it is re-exported or renamed; every path
// of the generated code goes through it (the macro crate's expansion tests check that no
// `::idempotency` is left).
use idempotency::idempotent;
use serde::Serialize;

mod reexport {
    pub use ::idempotency as idem;
}

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[idempotent(crate = crate::reexport::idem)]
async fn charge(customer: u64, item: impl Serialize + Send) -> Result<u64, AppError> {
    let _ = item;
    Ok(customer)
}

#[idempotent(crate = reexport::idem, key = request_id, scope(tenant), ttl = "1h", wait = "0s")]
async fn submit(request_id: String, tenant: u64, cents: u64) -> Result<u64, AppError> {
    let _ = (request_id, tenant);
    Ok(cents)
}

// A macro of a crate that re-exports `idempotency` points at it with `$crate`.
macro_rules! handler {
    ($name:ident) => {
        #[idempotent(crate = $crate::reexport::idem, name = "handler")]
        async fn $name(customer: u64) -> Result<idempotency::Outcome<u64>, AppError> {
            Ok(idempotency::Outcome::fresh(customer))
        }
    };
}

handler!(refund);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(charge(1, "a").await.unwrap(), 1);
    assert_eq!(submit("k-1".to_owned(), 7, 250).await.unwrap(), 250);
    assert_eq!(submit("k-1".to_owned(), 7, 250).await.unwrap(), 250);
    assert!(!refund(3).await.unwrap().is_replayed());
    assert!(refund(3).await.unwrap().is_replayed());
}
