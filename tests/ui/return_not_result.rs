// Only `Ok` values are stored, so the function must return a `Result`.
use idempotency::idempotent;

#[idempotent]
async fn count(customer: u64) -> u32 {
    let _ = customer;
    1
}

fn main() {}
