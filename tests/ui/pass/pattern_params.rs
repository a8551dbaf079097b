// Destructuring parameters, as axum handlers write them, key by the variables they bind;
// `skip(..)`, `key = ..` and `scope(..)` name those variables, and `_` binds nothing.
use idempotency::idempotent;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug)]
struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

// Extractors of the shape of axum's, which need not be `Serialize` themselves.
struct State<T>(T);
struct Json<T>(T);
struct Path<T>(T);
struct Extension<T>(T);

#[derive(Clone)]
struct Db;
struct Tracing;

#[derive(Serialize)]
struct Tenant(u64);

#[derive(Serialize)]
struct NewOrder {
    sku: String,
    qty: u32,
}

#[derive(Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
    qty: u32,
}

struct Filter {
    sort: String,
    limit: u32,
    page: u32,
}

#[derive(Clone, Copy, Serialize)]
struct Pair(u8, u8);

mod settings {
    use std::time::Duration;

    pub fn wait() -> Duration {
        Duration::from_secs(5)
    }
}

#[idempotent(key = key, scope(tenant), skip(db), ttl = "24h", wait = settings::wait())]
async fn create_order(
    State(db): State<Db>,
    tenant: Tenant,
    key: String,
    Json(order): Json<NewOrder>,
    _: Extension<Tracing>,
) -> Result<Order, AppError> {
    let _ = (db, tenant, key, order.sku);
    Ok(Order {
        id: 1,
        qty: order.qty,
    })
}

#[idempotent(wait = Duration::ZERO)]
async fn nested(
    Path((shop, aisle)): Path<(u32, u32)>,
    Filter {
        sort, limit: max, ..
    }: Filter,
    (first, mut second, _): (u8, u8, u8),
    &(a, ref b): &(u8, String),
    [head, .., tail]: [u8; 4],
    whole @ Pair(left, _): Pair,
) -> Result<u64, AppError> {
    second += 1;
    let _ = (sort, b);
    Ok(u64::from(shop + aisle + max) + u64::from(first + second + a + head + tail + left + whole.1))
}

#[idempotent(skip(left))]
async fn skipped(Pair(left, right): Pair) -> Result<u8, AppError> {
    Ok(left + right)
}

struct Handlers {
    wait: Duration,
}

impl Handlers {
    #[idempotent(skip(self), wait = self.wait)]
    async fn place(&self, Json(order): Json<NewOrder>) -> Result<u32, AppError> {
        Ok(order.qty)
    }
}

fn new_order() -> NewOrder {
    NewOrder {
        sku: "B-7".to_owned(),
        qty: 2,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let created = create_order(
        State(Db),
        Tenant(7),
        "k-1".to_owned(),
        Json(new_order()),
        Extension(Tracing),
    )
    .await
    .unwrap();
    assert_eq!(created.qty, 2);
    let filter = Filter {
        sort: "asc".to_owned(),
        limit: 3,
        page: 1,
    };
    let _ = filter.page;
    let borrowed = (1, "b".to_owned());
    let total = nested(
        Path((1, 2)),
        filter,
        (1, 1, 1),
        &borrowed,
        [1, 0, 0, 1],
        Pair(3, 1),
    );
    assert_eq!(total.await.unwrap(), 16);
    assert_eq!(skipped(Pair(1, 2)).await.unwrap(), 3);
    let handlers = Handlers {
        wait: Duration::from_millis(10),
    };
    assert_eq!(handlers.place(Json(new_order())).await.unwrap(), 2);
}
