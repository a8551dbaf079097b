//! The design note's service over HTTP: `POST /orders` is an `#[idempotent]` axum handler,
//! `POST /payments` a plain handler behind the tower layer, both keyed by the client's
//! `Idempotency-Key` header and scoped by its optional `X-Tenant` header.
//!
//! ```text
//! cargo run --example orders_http --features axum
//! cargo run --example orders_http --features axum,redis -- --redis redis://127.0.0.1:6379
//! cargo run --example orders_http --features axum,postgres -- --database-url postgres://127.0.0.1/shop
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:3000`; port 0 picks a free port), `--redis URL`
//! (records in Redis instead of the embedded store), `--delay-ms N` (each handler body
//! sleeps N ms before creating anything), `--fail-fast` (duplicates of a request in flight
//! get 409 at once instead of waiting for its response). The first line on stdout is
//! `listening on http://ADDR`.
//!
//! With the `metrics` feature, `GET /metrics` exports the library's metrics in the
//! Prometheus text format.
//!
//! With `--database-url URL` (feature `postgres`) the records live in PostgreSQL, and
//! `POST /orders` inserts its order into an `orders` table and completes its idempotency
//! record **in the same transaction**: the order and the record commit together or not at
//! all. There, `--delay-ms N` waits *after* the insert and before the commit, idle in the
//! transaction, or, with `--delay-in-database`, inside a `pg_sleep` statement of it.

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use idempotency::http::{Created, IdempotencyKey, IdempotencyLayer, Problem, RunToCompletionLayer};
// The body extractor whose rejections are problems, like the layer's.
use idempotency::http::Json as JsonBody;
use idempotency::idempotent;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the service was started with.
#[derive(Debug, Clone)]
struct Settings {
    listen: String,
    redis: Option<String>,
    delay: Duration,
    fail_fast: bool,
    database_url: Option<String>,
    delay_in_database: bool,
}

impl Settings {
    fn from_args() -> Result<Self, String> {
        let mut settings = Settings {
            listen: "127.0.0.1:3000".into(),
            redis: None,
            delay: Duration::ZERO,
            fail_fast: false,
            database_url: None,
            delay_in_database: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => settings.listen = value()?,
                "--redis" => settings.redis = Some(value()?),
                "--delay-ms" => {
                    let ms = value()?;
                    let ms = ms
                        .parse()
                        .map_err(|_| format!("--delay-ms {ms}: not a number"))?;
                    settings.delay = Duration::from_millis(ms);
                }
                "--fail-fast" => settings.fail_fast = true,
                "--database-url" => settings.database_url = Some(value()?),
                "--delay-in-database" => settings.delay_in_database = true,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(settings)
    }

    /// How long a duplicate waits for a request in flight.
    fn wait(&self) -> Duration {
        if self.fail_fast {
            Duration::ZERO
        } else {
            Duration::from_secs(30)
        }
    }
}

/// The service's state: its settings and what its handlers created.
#[derive(Clone)]
struct App {
    settings: Arc<Settings>,
    orders: Arc<AtomicU64>,
    payments: Arc<AtomicU64>,
    /// The orders' database and its idempotency records, with `--database-url`.
    #[cfg(feature = "postgres")]
    database: Option<idempotency::PostgresStore>,
}

/// The caller's tenant, from the optional `X-Tenant` header: the scope of its keys.
#[derive(Debug, Serialize)]
struct Tenant(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Tenant(tenant_of(&parts.headers)))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct NewOrder {
    customer: u64,
    sku: String,
    qty: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: u64,
    sku: String,
    qty: u32,
}

/// The handlers' errors: the idempotency layer's, or the handler's own rejection.
#[derive(Debug)]
enum ApiError {
    Idempotency(idempotency::Error),
    Rejected(Problem),
}

impl From<idempotency::Error> for ApiError {
    fn from(err: idempotency::Error) -> Self {
        ApiError::Idempotency(err)
    }
}

/// A failed statement of the handler's own: 500, without the database's words.
#[cfg(feature = "postgres")]
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        eprintln!("orders: {err}");
        ApiError::Rejected(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "database",
            "The order could not be written",
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Idempotency(err) => err.into_response(),
            ApiError::Rejected(problem) => problem.into_response(),
        }
    }
}

/// `POST /orders`: 201 with the order the first time, 200 with the same order and
/// `Idempotent-Replayed: true` on every retry with the same key.
#[idempotent(
    name = "orders.create",
    key = key,
    scope(tenant),
    skip(app),
    ttl = "24h",
    wait = app.settings.wait()
)]
async fn create_order(
    State(app): State<App>,
    tenant: Tenant,
    key: IdempotencyKey,
    JsonBody(order): JsonBody<NewOrder>,
) -> Result<Created<Order>, ApiError> {
    tokio::time::sleep(app.settings.delay).await;
    if order.qty == 0 {
        // A failure: returned to this caller only, and not stored.
        return Err(qty_zero());
    }
    let id = app.orders.fetch_add(1, Ordering::SeqCst) + 1;
    let order = Order {
        id,
        customer: order.customer,
        sku: order.sku,
        qty: order.qty,
    };
    Ok(Created::new(order).at(format!("/orders/{id}")))
}

/// `POST /orders` with `--database-url`: the same contract as [`create_order`], but the
/// order is a row of the `orders` table, inserted in the transaction that also completes
/// the idempotency record. A crash before the commit leaves neither; after it, both.
#[cfg(feature = "postgres")]
async fn create_order_in_database(
    State(app): State<App>,
    tenant: Tenant,
    key: IdempotencyKey,
    JsonBody(order): JsonBody<NewOrder>,
) -> Result<Created<Order>, ApiError> {
    let Some(database) = &app.database else {
        unreachable!("the route is only installed with --database-url")
    };
    let settings = &app.settings;
    database
        .once("orders.create")
        .client_key(key.as_str())
        .arg("tenant", &tenant)
        .payload("order", &order)
        .ttl(Duration::from_secs(24 * 60 * 60))
        .wait(settings.wait())
        .transaction(async |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO orders (customer, sku, qty) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(i64::try_from(order.customer).unwrap_or(i64::MAX))
            .bind(&order.sku)
            .bind(i64::from(order.qty))
            .fetch_one(&mut *tx)
            .await?;
            if settings.delay_in_database {
                sqlx::query("SELECT pg_sleep($1)")
                    .bind(settings.delay.as_secs_f64())
                    .execute(&mut *tx)
                    .await?;
            } else {
                tokio::time::sleep(settings.delay).await;
            }
            if order.qty == 0 {
                // Refused after the insert: the rollback takes the row away again.
                return Err(qty_zero());
            }
            app.orders.fetch_add(1, Ordering::SeqCst);
            let id = id.unsigned_abs();
            let order = Order {
                id,
                customer: order.customer,
                sku: order.sku.clone(),
                qty: order.qty,
            };
            Ok(Created::new(order).at(format!("/orders/{id}")))
        })
        .await
}

/// The example's own migration: the table its orders go into.
#[cfg(feature = "postgres")]
const ORDERS_TABLE: &str = "
    SELECT pg_advisory_xact_lock(hashtext('orders_http migration'));
    CREATE TABLE IF NOT EXISTS orders (
        id       bigserial PRIMARY KEY,
        customer bigint NOT NULL,
        sku      text   NOT NULL,
        qty      bigint NOT NULL
    );";

/// The handlers' own refusal of an empty order.
fn qty_zero() -> ApiError {
    ApiError::Rejected(
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "qty-zero",
            "Quantity is zero",
        )
        .detail("an order needs at least one item"),
    )
}

/// `POST /payments`: a plain handler, made idempotent by the layer around it. A fresh
/// `Set-Cookie` each time it runs, which replays never carry.
async fn create_payment(State(app): State<App>, body: axum::body::Bytes) -> Response {
    tokio::time::sleep(app.settings.delay).await;
    let _ = body;
    let n = app.payments.fetch_add(1, Ordering::SeqCst) + 1;
    let mut response = (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/payments/{n}")),
            (
                header::SET_COOKIE,
                format!("session={n}-{}; HttpOnly", std::process::id()),
            ),
        ],
        Json(serde_json::json!({ "payment": n })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /stats`: how many times each handler body ran to success in this process.
async fn stats(State(app): State<App>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "orders_created": app.orders.load(Ordering::SeqCst),
        "payments_created": app.payments.load(Ordering::SeqCst),
    }))
}

/// Installs the default store the flags ask for (the payments layer's, and the
/// attribute's); with `--database-url`, also returns the orders' database.
async fn install_store(settings: &Settings) -> Result<Database, Box<dyn std::error::Error>> {
    if settings.redis.is_some() && settings.database_url.is_some() {
        return Err("--redis and --database-url are two places for the records: pick one".into());
    }
    if let Some(url) = &settings.redis {
        #[cfg(feature = "redis")]
        {
            let store = idempotency::RedisStore::builder(url.as_str())
                .prefix("orders-http")
                .connect()
                .await?;
            idempotency::set_default_store(store)?;
        }
        #[cfg(not(feature = "redis"))]
        return Err(format!("--redis {url} needs the redis feature: --features axum,redis").into());
    }
    let Some(url) = &settings.database_url else {
        return Ok(Database::default());
    };
    #[cfg(feature = "postgres")]
    {
        let store = idempotency::PostgresStore::builder(url.as_str())
            .max_connections(20)
            .migrate()
            .connect()
            .await?;
        sqlx::raw_sql(ORDERS_TABLE).execute(store.pool()).await?;
        idempotency::set_default_store(store.clone())?;
        Ok(Some(store))
    }
    #[cfg(not(feature = "postgres"))]
    Err(format!("--database-url {url} needs the postgres feature: --features axum,postgres").into())
}

/// The orders' database, with `--database-url`.
#[cfg(feature = "postgres")]
type Database = Option<idempotency::PostgresStore>;
#[cfg(not(feature = "postgres"))]
type Database = ();

/// `GET /metrics`: the library's metrics, for Prometheus to scrape.
#[cfg(feature = "metrics")]
fn metrics_route() -> Router<App> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only metrics recorder of the process");
    Router::new().route(
        "/metrics",
        get(move || std::future::ready(prometheus.render())),
    )
}

fn router(app: App) -> Router {
    let payments = IdempotencyLayer::scoped(idempotency::default_store(), |request| {
        tenant_of(&request.headers)
    })
    .namespace("payments.create")
    .wait(app.settings.wait());
    #[cfg(feature = "postgres")]
    let orders = if app.database.is_some() {
        post(create_order_in_database)
    } else {
        post(create_order)
    };
    #[cfg(not(feature = "postgres"))]
    let orders = post(create_order);
    let router = Router::new();
    #[cfg(feature = "metrics")]
    let router = router.merge(metrics_route());
    router
        .route("/orders", orders.layer(RunToCompletionLayer::new()))
        .route("/payments", post(create_payment).layer(payments))
        .route("/stats", get(stats))
        .layer(DefaultBodyLimit::max(1 << 20))
        .with_state(app)
}

fn tenant_of(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get("x-tenant")?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_args()?;
    let database = install_store(&settings).await?;
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = App {
        settings: Arc::new(settings),
        orders: Arc::default(),
        payments: Arc::default(),
        #[cfg(feature = "postgres")]
        database,
    };
    #[cfg(not(feature = "postgres"))]
    let () = database;
    axum::serve(listener, router(app)).await?;
    Ok(())
}
