// Generated code must not trip lints in the user's crate, even the pedantic ones.
#![deny(warnings)]
#![deny(clippy::pedantic)]
#![deny(unused_qualifications, unused_results, unreachable_pub, missing_docs)]
//! A crate that denies warnings.

use idempotency::idempotent;
use serde::{Deserialize, Serialize};

/// The application's error.
#[derive(Debug)]
pub struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

/// A stored result.
#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    cents: u64,
}

struct Payments {
    fee: u64,
}

impl Payments {
    #[idempotent(skip(self), ttl = "1h")]
    async fn charge(&self, customer: u64, cents: u64) -> Result<Receipt, AppError> {
        let _ = customer;
        Ok(Receipt {
            cents: cents + self.fee,
        })
    }
}

/// Charges a customer.
///
/// # Errors
///
/// When the idempotency layer fails.
#[idempotent(key = request_id, scope(tenant))]
pub async fn charge(request_id: String, tenant: u64, cents: u64) -> Result<Receipt, AppError> {
    let _ = (request_id, tenant);
    Ok(Receipt { cents })
}

#[idempotent]
async fn unit_ok(customer: u64) -> Result<(), AppError> {
    if customer == 0 {
        return Ok(());
    }
    Ok(())
}

#[idempotent]
async fn generic<T: Serialize + Send + Sync>(value: T, n: usize) -> Result<usize, AppError> {
    let _ = value;
    Ok(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let payments = Payments { fee: 1 };
    let receipt = payments.charge(1, 10).await.unwrap();
    assert_eq!(receipt.cents, 11);
    let receipt = charge("k".to_owned(), 1, 5).await.unwrap();
    assert_eq!(receipt.cents, 5);
    unit_ok(0).await.unwrap();
    assert_eq!(generic("a", 2).await.unwrap(), 2);
}
