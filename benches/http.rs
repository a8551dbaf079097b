//! The latency of a replay over real HTTP, on loopback: one `POST /payments` at a time on a
//! kept-alive connection, to four axum servers in this process, each on a runtime thread of
//! its own:
//!
//! - `plain`: the handler, no idempotency at all (201, a JSON body, `Location`);
//! - `layer`: the same handler behind `IdempotencyLayer::unscoped(MemoryStore::new())`;
//! - `attribute`: an `#[idempotent(key = key)]` handler returning `Created<Payment>`;
//! - `axum_idempotent`: the same handler behind `axum-idempotent` 0.6 (keyed on the same
//!   header, a `ruts` session in a moka store).
//!
//! After one warm-up request every request carries the same `Idempotency-Key` and body, so
//! every measured request to the three idempotent servers is a replay. Ends with a table of
//! medians and the ratios to `plain`.
//!
//! ```text
//! cargo bench --bench http --features axum
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use bytes::Bytes;
use criterion::Criterion;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use idempotency::http::Json as JsonBody;
use idempotency::http::{Created, IdempotencyKey, IdempotencyLayer, IDEMPOTENT_REPLAYED};
use idempotency::{idempotent, MemoryStore};
use ruts::store::moka::MokaStore;
use ruts::store::Ttl;
use ruts::{CookieOptions, Session, SessionLayer};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::contenders::median;
use tokio::runtime::{Builder, Runtime};

const CONTENDERS: [&str; 4] = ["plain", "layer", "attribute", "axum_idempotent"];
const GROUP: &str = "http_replay";
const KEY: &str = "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"";
const BODY: &[u8] = br#"{"amount":4200,"currency":"EUR"}"#;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NewPayment {
    amount: u64,
    currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    id: u64,
    amount: u64,
    currency: String,
}

/// Every server creates the same payment, so every answer has the same body.
fn payment(new: NewPayment) -> Payment {
    Payment {
        id: 7,
        amount: new.amount,
        currency: new.currency,
    }
}

/// Handler runs, by contender (in `CONTENDERS` order).
static RUNS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

fn runs(name: &str) -> u64 {
    let at = CONTENDERS.iter().position(|n| *n == name).unwrap();
    RUNS[at].load(Ordering::SeqCst)
}

/// The plain handler: `201`, the payment as JSON, its `Location`.
async fn create_payment(
    State(runs): State<&'static AtomicU64>,
    Json(new): Json<NewPayment>,
) -> Response {
    runs.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::CREATED,
        [(LOCATION, "/payments/7")],
        Json(payment(new)),
    )
        .into_response()
}

#[derive(Debug)]
struct ApiError(idempotency::Error);

impl From<idempotency::Error> for ApiError {
    fn from(err: idempotency::Error) -> Self {
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// The attribute's handler: `201` when it runs, `200` with `Idempotent-Replayed: true` on
/// a replay, the same JSON body and `Location` either way.
#[idempotent(name = "bench.payments", key = key, ttl = "24h")]
async fn create_payment_idempotent(
    key: IdempotencyKey,
    JsonBody(new): JsonBody<NewPayment>,
) -> Result<Created<Payment>, ApiError> {
    RUNS[2].fetch_add(1, Ordering::SeqCst);
    Ok(Created::new(payment(new)).at("/payments/7"))
}

/// Opens the `ruts` session that `axum-idempotent` stores its responses in: it never
/// creates one itself, and a request without one is not deduplicated.
async fn open_session(session: Session<MokaStore>) -> StatusCode {
    let ttl = Ttl::new(3600).unwrap();
    session.set("user", &"bench", ttl, None).await.unwrap();
    StatusCode::NO_CONTENT
}

fn router(name: &str) -> Router {
    let runs: &'static AtomicU64 = &RUNS[CONTENDERS.iter().position(|n| *n == name).unwrap()];
    let handler = post(create_payment);
    let routes = match name {
        "plain" => Router::new().route("/payments", handler),
        "layer" => Router::new().route(
            "/payments",
            handler.layer(IdempotencyLayer::unscoped(MemoryStore::new())),
        ),
        "attribute" => Router::new().route("/payments", post(create_payment_idempotent)),
        _ => {
            let options = axum_idempotent::IdempotentOptions::default()
                .use_idempotency_key_header(Some("idempotency-key"), true)
                .replay_header_name(IDEMPOTENT_REPLAYED.as_str())
                .expire_after(3600);
            let store = Arc::new(MokaStore::builder().build());
            Router::new()
                .route(
                    "/payments",
                    handler.layer(axum_idempotent::IdempotentLayer::<MokaStore>::new(options)),
                )
                .route("/session", post(open_session))
                .layer(
                    SessionLayer::new(store)
                        .with_cookie_options(CookieOptions::build().name("session").path("/")),
                )
                .layer(tower_cookies::CookieManagerLayer::new())
        }
    };
    routes.with_state(runs)
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

/// Serves `router` on `127.0.0.1:0` from a thread of its own, for the rest of the process.
fn serve(name: &'static str, router: Router) -> SocketAddr {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("server-{name}"))
        .spawn(move || {
            current_thread().block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, router).await.unwrap();
            });
        })
        .unwrap();
    receiver.recv().unwrap()
}

/// A response, read to its end.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn replayed(&self) -> bool {
        self.headers
            .get(IDEMPOTENT_REPLAYED)
            .is_some_and(|v| v == "true")
    }
}

/// One kept-alive HTTP/1.1 connection, one request at a time.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    cookie: Option<String>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Client {
            sender,
            host: addr.to_string(),
            cookie: None,
        }
    }

    async fn post(&mut self, path: &str) -> Answer {
        self.sender.ready().await.unwrap();
        let mut request = http::Request::post(path)
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .header("idempotency-key", KEY);
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let request = request.body(Full::new(Bytes::from_static(BODY))).unwrap();
        let (parts, body) = self
            .sender
            .send_request(request)
            .await
            .unwrap()
            .into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// Opens an `axum-idempotent` session and sends its cookie from now on.
    async fn open_session(&mut self) {
        let answer = self.post("/session").await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{answer:?}");
        let cookie = answer.headers[SET_COOKIE].to_str().unwrap();
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
    }
}

/// A connected client whose next request to `name` is a replay (a plain one for `plain`),
/// after checking that it answers as it should: the status, body and `Location` of the
/// plain handler (`200` for the attribute's replays, as `Created` answers), the replay
/// header, and one handler run in all.
fn ready_client(runtime: &Runtime, name: &'static str) -> Client {
    let addr = serve(name, router(name));
    runtime.block_on(async {
        let mut client = Client::connect(addr).await;
        if name == "axum_idempotent" {
            client.open_session().await;
        }
        let expected = serde_json::to_vec(&payment(serde_json::from_slice(BODY).unwrap())).unwrap();
        let first = client.post("/payments").await;
        assert_eq!(first.status, StatusCode::CREATED, "{name}: {first:?}");
        assert_eq!(first.body, expected, "{name}: {first:?}");
        assert!(!first.replayed(), "{name}: {first:?}");
        for _ in 0..2 {
            let again = client.post("/payments").await;
            let status = match name {
                "attribute" => StatusCode::OK,
                _ => StatusCode::CREATED,
            };
            assert_eq!(again.status, status, "{name}: {again:?}");
            assert_eq!(again.body, expected, "{name}: {again:?}");
            assert_eq!(again.headers[LOCATION], "/payments/7", "{name}: {again:?}");
            assert_eq!(again.replayed(), name != "plain", "{name}: {again:?}");
        }
        let expected_runs = if name == "plain" { 3 } else { 1 };
        assert_eq!(runs(name), expected_runs, "{name}: handler runs");
        client
    })
}

fn replays(c: &mut Criterion) {
    // The client on a current-thread runtime on this thread: the hyper connection task and
    // the request loop share it, so a request costs one hop to the server thread and one
    // back, with no worker of a multi-thread runtime to wake in between. (A multi-thread
    // client, 1 or 2 workers, measured about twice the latency, and far noisier on 2 cores.)
    let runtime = current_thread();
    let mut group = c.benchmark_group(GROUP);
    for name in CONTENDERS {
        let mut client = ready_client(&runtime, name);
        let status = if name == "attribute" {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let answer = client.post("/payments").await;
                        // Cheap next to a round trip; an error path would fail here.
                        assert_eq!(answer.status, status);
                        black_box(answer);
                    }
                    start.elapsed()
                })
            });
        });
        if name != "plain" {
            assert_eq!(runs(name), 1, "{name}: the replays ran the handler");
        }
    }
    group.finish();
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |ns| format!("{:.1}", ns / 1e3))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn summary() {
    let plain = median(GROUP, "plain");
    println!("\n## Replay over HTTP on loopback: medians, this run\n");
    println!("| contender | µs per request | / plain | handler runs |");
    println!("|---|---:|---:|---:|");
    for name in CONTENDERS {
        let this = median(GROUP, name);
        println!(
            "| {name} | {} | {} | {} |",
            cell(this),
            ratio(this, plain),
            runs(name)
        );
    }
    println!("\n| ratio | value | target |\n|---|---:|---:|");
    for name in ["layer", "attribute"] {
        println!(
            "| {name} / plain | {} | ≤ 1.3× |",
            ratio(median(GROUP, name), plain)
        );
    }
    println!(
        "| axum_idempotent / plain | {} | — |",
        ratio(median(GROUP, "axum_idempotent"), plain)
    );
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    replays(&mut criterion);
    criterion.final_summary();
    summary();
}
