// A function without a return type has nothing to store.
use idempotency::idempotent;

#[idempotent]
async fn notify(customer: u64) {
    let _ = customer;
}

fn main() {}
