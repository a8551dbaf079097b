// A method keys by its arguments once the receiver is skipped; the store may come from it.
use idempotency::{idempotent, MemoryStore};

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

struct Payments {
    store: MemoryStore,
    fee: u64,
}

impl Payments {
    #[idempotent(skip(self))]
    async fn charge(&self, customer: u64, cents: u64) -> Result<u64, AppError> {
        Ok(customer + cents + self.fee)
    }

    #[idempotent(skip(self), store = self.store)]
    async fn refund(&self, customer: u64, cents: u64) -> Result<u64, AppError> {
        Ok(customer + cents - self.fee)
    }

    #[idempotent(skip(self))]
    async fn close(self, customer: u64) -> Result<u64, AppError> {
        Ok(customer + self.fee)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let payments = Payments {
        store: MemoryStore::new(),
        fee: 1,
    };
    assert_eq!(payments.charge(1, 10).await.unwrap(), 12);
    assert_eq!(payments.refund(1, 10).await.unwrap(), 10);
    assert_eq!(payments.close(1).await.unwrap(), 2);
}
