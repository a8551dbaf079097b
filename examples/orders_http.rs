//! The design note's service over HTTP: `POST /orders` is an `#[idempotent]` axum handler,
//! `POST /payments` a plain handler behind the tower layer, both keyed by the client's
//! `Idempotency-Key` header and scoped by its optional `X-Tenant` header.
//!
//! ```text
//! cargo run --example orders_http --features axum
//! cargo run --example orders_http --features axum,redis -- --redis redis://127.0.0.1:6379
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:3000`; port 0 picks a free port), `--redis URL`
//! (records in Redis instead of the embedded store), `--delay-ms N` (each handler body
//! sleeps N ms before creating anything), `--fail-fast` (duplicates of a request in flight
//! get 409 at once instead of waiting for its response). The first line on stdout is
//! `listening on http://ADDR`.

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
}

impl Settings {
    fn from_args() -> Result<Self, String> {
        let mut settings = Settings {
            listen: "127.0.0.1:3000".into(),
            redis: None,
            delay: Duration::ZERO,
            fail_fast: false,
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
        return Err(ApiError::Rejected(
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "qty-zero",
                "Quantity is zero",
            )
            .detail("an order needs at least one item"),
        ));
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

async fn install_store(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    match &settings.redis {
        None => Ok(()),
        #[cfg(feature = "redis")]
        Some(url) => {
            let store = idempotency::RedisStore::builder(url.as_str())
                .prefix("orders-http")
                .connect()
                .await?;
            idempotency::set_default_store(store)?;
            Ok(())
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err("--redis needs the redis feature: --features axum,redis".into()),
    }
}

fn router(app: App) -> Router {
    let payments = IdempotencyLayer::scoped(idempotency::default_store(), |request| {
        tenant_of(&request.headers)
    })
    .namespace("payments.create")
    .wait(app.settings.wait());
    Router::new()
        .route(
            "/orders",
            post(create_order).layer(RunToCompletionLayer::new()),
        )
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
    install_store(&settings).await?;
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = App {
        settings: Arc::new(settings),
        orders: Arc::default(),
        payments: Arc::default(),
    };
    axum::serve(listener, router(app)).await?;
    Ok(())
}
