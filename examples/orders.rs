//! The seed's two diagrams, run against the embedded store: a client that retries after a
//! network issue (sequential duplicates) and a client that sends the same request many
//! times at once (parallel duplicates). Each creates one order.
//!
//! ```text
//! cargo run --example orders
//! ```

use idempotency::{idempotent, Outcome};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: u64,
    sku: String,
    qty: u32,
}

#[derive(Debug)]
enum AppError {
    Idempotency(idempotency::Error),
}

impl From<idempotency::Error> for AppError {
    fn from(err: idempotency::Error) -> Self {
        AppError::Idempotency(err)
    }
}

/// Orders created, as the database would count them.
static ORDERS_CREATED: AtomicU64 = AtomicU64::new(0);

/// `POST /create_order` with the client's `Idempotency-Key` header as `request_id`.
#[idempotent(key = request_id, ttl = "24h")]
async fn create_order(
    request_id: &str,
    customer: u64,
    sku: String,
    qty: u32,
) -> Result<Outcome<Order>, AppError> {
    // The slow part: payment, inventory, the insert.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = ORDERS_CREATED.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Outcome::fresh(Order {
        id,
        customer,
        sku,
        qty,
    }))
}

/// What the HTTP layer would answer.
fn status(outcome: &Outcome<Order>) -> &'static str {
    if outcome.is_replayed() {
        "200 OK (no new order, return existing)"
    } else {
        "201 Created"
    }
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    println!("1. Sequential duplicates: the client retries after a network issue");
    for attempt in 1..=3 {
        let order = create_order("ABC123", 42, "book".into(), 1).await?;
        println!(
            "   attempt {attempt}: {} -> order #{}",
            status(&order),
            order.id
        );
    }

    println!("2. Parallel duplicates: the same request 100 times at once");
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(create_order("XYZ789", 7, "lamp".into(), 2)))
        .collect();
    let (mut fresh, mut replayed, mut ids) = (0, 0, Vec::new());
    for call in calls {
        let order = call.await.expect("the handler does not panic")?;
        if order.is_replayed() {
            replayed += 1;
        } else {
            fresh += 1;
        }
        ids.push(order.id);
    }
    ids.dedup();
    println!("   {fresh} x 201 Created, {replayed} x 200 OK, order ids {ids:?}");

    println!("3. The same key with another payload is refused");
    match create_order("ABC123", 42, "book".into(), 5).await {
        Err(AppError::Idempotency(err)) => println!("   422: {err}"),
        Ok(_) => println!("   unexpected: accepted"),
    }

    let created = ORDERS_CREATED.load(Ordering::SeqCst);
    println!("Orders created: {created} (for 104 requests)");
    Ok(())
}
