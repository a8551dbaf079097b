// Borrowed arguments key by the value they point to.
use idempotency::idempotent;
use serde::Serialize;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

#[derive(Serialize)]
struct Order {
    sku: String,
    qty: u32,
}

#[idempotent]
async fn place(customer: &str, order: &Order, lines: &[u32]) -> Result<String, AppError> {
    Ok(format!(
        "{customer}:{}:{}:{}",
        order.sku,
        order.qty,
        lines.len()
    ))
}

#[idempotent]
async fn place_mut(customer: &mut String, order: &'_ Order) -> Result<u32, AppError> {
    customer.push('!');
    Ok(order.qty)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let order = Order {
        sku: "B-7".to_owned(),
        qty: 2,
    };
    let placed = place("ann", &order, &[1, 2]).await.unwrap();
    assert_eq!(placed, "ann:B-7:2:2");
    let mut customer = String::from("bob");
    assert_eq!(place_mut(&mut customer, &order).await.unwrap(), 2);
}
