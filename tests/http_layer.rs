//! The tower layer around a service, called the way a server calls it: what it stores and
//! replays, what it refuses, and how it counts executions, with the handler's runs counted.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use idempotency::http::{IdempotencyLayer, StoreResponse};
use idempotency::store::{Begin, Claim, Request as StoreRequest};
use idempotency::{MemoryStore, Store, StoreError};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

/// What a response is, read to its end.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn replayed(&self) -> bool {
        self.headers.get("idempotent-replayed") == Some(&HeaderValue::from_static("true"))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn request(key: Option<&str>, path: &str, body: &'static str) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn send<S, B>(service: &S, request: Request<B>) -> Answer
where
    S: Service<
            Request<B>,
            Response = Response<http_body_util::Either<Full<Bytes>, Full<Bytes>>>,
            Error = Infallible,
        > + Clone,
{
    let response = service.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// A handler that counts its runs and answers what `respond` makes of the run's number.
#[derive(Clone)]
struct Handler {
    runs: Arc<AtomicUsize>,
    /// Signalled each time a request reaches the handler.
    entered: Arc<tokio::sync::Notify>,
    respond: Arc<dyn Fn(usize) -> Response<Full<Bytes>> + Send + Sync>,
    delay: Duration,
}

impl Handler {
    fn new(respond: impl Fn(usize) -> Response<Full<Bytes>> + Send + Sync + 'static) -> Self {
        Handler {
            runs: Arc::default(),
            entered: Arc::default(),
            respond: Arc::new(respond),
            delay: Duration::ZERO,
        }
    }

    fn slow(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl<B: Send + 'static> Service<Request<B>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        let (runs, respond, delay) = (self.runs.clone(), self.respond.clone(), self.delay);
        self.entered.notify_one();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(respond(run))
        })
    }
}

/// `201` with a JSON body naming the run, `Location`, a fresh cookie, two `Link`s and a
/// `Date`.
fn created(run: usize) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::LOCATION, format!("/payments/{run}"))
        .header(header::SET_COOKIE, format!("session={run}"))
        .header(header::LINK, "</a>; rel=next")
        .header(header::LINK, "</b>; rel=prev")
        .header(header::DATE, "Wed, 02 Dec 2026 00:00:00 GMT")
        .header("x-request-run", run.to_string())
        .body(Full::new(Bytes::from(format!("{{\"payment\":{run}}}"))))
        .unwrap()
}

fn unscoped() -> IdempotencyLayer<MemoryStore> {
    IdempotencyLayer::unscoped(MemoryStore::new())
}

#[tokio::test]
async fn a_retry_replays_the_response_byte_for_byte_without_private_headers() {
    let handler = Handler::new(created);
    let service = unscoped()
        .store_header(header::HeaderName::from_static("x-request-run"))
        .layer(handler.clone());
    let first = send(&service, request(Some("\"k-1\""), "/payments", "{}")).await;
    assert_eq!(
        (first.status, first.replayed()),
        (StatusCode::CREATED, false)
    );
    assert_eq!(
        first.headers[header::SET_COOKIE],
        "session=1",
        "the caller gets its cookie"
    );
    for _ in 0..3 {
        let retry = send(&service, request(Some("k-1"), "/payments", "{}")).await;
        assert_eq!(
            (retry.status, retry.replayed()),
            (StatusCode::CREATED, true)
        );
        assert_eq!(retry.body, first.body);
        assert_eq!(retry.headers[header::LOCATION], "/payments/1");
        assert_eq!(
            retry.headers["x-request-run"], "1",
            "a header the user allowed"
        );
        let links: Vec<_> = retry.headers.get_all(header::LINK).iter().collect();
        assert_eq!(
            links,
            ["</a>; rel=next", "</b>; rel=prev"],
            "repeated values kept"
        );
        for private in [header::SET_COOKIE, header::DATE, header::CONTENT_LENGTH] {
            assert!(!retry.headers.contains_key(&private), "{private} replayed");
        }
    }
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn failures_store_nothing_unless_the_handler_says_so() {
    // Runs 1 and 2 fail with 503; run 3 is a 402 the handler wants kept; later runs 201.
    let handler = Handler::new(|run| {
        let mut response = Response::new(Full::new(Bytes::from(format!("run {run}"))));
        match run {
            1 | 2 => *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
            3 => {
                *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
                response.extensions_mut().insert(StoreResponse(true));
            }
            _ => *response.status_mut() = StatusCode::CREATED,
        }
        response
    });
    let service = unscoped().layer(handler.clone());
    for expected in [503, 503, 402, 402, 402] {
        let answer = send(&service, request(Some("k"), "/charge", "{}")).await;
        assert_eq!(answer.status, expected);
    }
    assert_eq!(
        handler.runs(),
        3,
        "two failures ran again; the kept 402 replays"
    );

    // A 2xx the handler does not want kept runs every time.
    let handler = Handler::new(|_| {
        let mut response = Response::new(Full::new(Bytes::new()));
        response.extensions_mut().insert(StoreResponse(false));
        response
    });
    let service = unscoped().layer(handler.clone());
    for _ in 0..3 {
        assert_eq!(
            send(&service, request(Some("k"), "/poll", "")).await.status,
            200
        );
    }
    assert_eq!(handler.runs(), 3);
}

#[tokio::test]
async fn a_response_over_the_capture_limit_reaches_its_caller_and_never_runs_again() {
    let handler = Handler::new(|_| Response::new(Full::new(Bytes::from(vec![b'x'; 64 * 1024]))));
    let service = unscoped().capture_limit(1024).layer(handler.clone());
    let first = send(&service, request(Some("k"), "/export", "")).await;
    assert_eq!(
        (first.status, first.body.len()),
        (StatusCode::OK, 64 * 1024)
    );
    let retry = send(&service, request(Some("k"), "/export", "")).await;
    assert_eq!(retry.status, 500);
    assert_eq!(retry.json()["code"], "response-not-replayable");
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn the_key_is_required_unless_optional_and_every_rejection_is_a_problem() {
    let handler = Handler::new(created);
    let service = unscoped()
        .problem_base("https://api.example.com/problems/")
        .layer(handler.clone());
    let missing = send(&service, request(None, "/payments", "{}")).await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(missing.headers[header::CACHE_CONTROL], "no-store");
    let problem = missing.json();
    assert_eq!(
        problem["type"],
        "https://api.example.com/problems/key-missing"
    );
    assert_eq!(
        (problem["status"].as_u64(), problem["code"].as_str()),
        (Some(400), Some("key-missing"))
    );
    for bad in ["", "\"open", "\"a\";p=1", "caf\u{e9}", &"k".repeat(256)] {
        let answer = send(&service, request(Some(bad), "/payments", "{}")).await;
        assert_eq!(answer.status, 400, "{bad:?}");
        assert!(!String::from_utf8_lossy(&answer.body).contains("payments"));
    }
    let mut repeated = request(Some("k"), "/payments", "{}");
    repeated
        .headers_mut()
        .append("idempotency-key", HeaderValue::from_static("k"));
    assert_eq!(
        send(&service, repeated).await.json()["code"],
        "key-malformed"
    );
    assert_eq!(handler.runs(), 0, "no rejected request reached the handler");

    let optional = unscoped().key_optional().layer(handler.clone());
    for _ in 0..2 {
        let passed = send(&optional, request(None, "/payments", "{}")).await;
        assert_eq!(
            (passed.status, passed.replayed()),
            (StatusCode::CREATED, false)
        );
    }
    assert_eq!(handler.runs(), 2, "without a key nothing is deduplicated");
}

#[tokio::test]
async fn a_key_reused_with_another_request_is_refused() {
    let handler = Handler::new(created);
    let service = unscoped().layer(handler.clone());
    assert_eq!(
        send(
            &service,
            request(Some("k"), "/payments?a=1&b=2", "{\"n\":1}")
        )
        .await
        .status,
        201
    );
    // The same request, its query pairs in another order: a replay.
    assert!(send(
        &service,
        request(Some("k"), "/payments?b=2&a=1", "{\"n\":1}")
    )
    .await
    .replayed());
    for (path, body) in [
        ("/payments?a=1&b=2", "{\"n\":2}"),
        ("/payments?a=1", "{\"n\":1}"),
        ("/refunds?a=1&b=2", "{\"n\":1}"),
    ] {
        let reused = send(&service, request(Some("k"), path, body)).await;
        assert_eq!(reused.status, 422, "{path} {body}");
        assert_eq!(reused.json()["code"], "key-reused");
    }
    let conflict = unscoped()
        .mismatch_status(StatusCode::CONFLICT)
        .layer(handler.clone());
    send(&conflict, request(Some("k"), "/payments", "1")).await;
    assert_eq!(
        send(&conflict, request(Some("k"), "/payments", "2"))
            .await
            .status,
        409
    );
    assert_eq!(handler.runs(), 2);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_the_handler() {
    let handler = Handler::new(created);
    let service = unscoped().body_limit(16).layer(handler.clone());
    let declared = send(
        &service,
        request(Some("k"), "/payments", "{\"padding\": \"........\"}"),
    )
    .await;
    assert_eq!(
        (declared.status, declared.json()["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body-too-large"))
    );
    // No Content-Length: the limit holds while the body is read.
    let chunks = futures_chunks(&[b"0123456789", b"0123456789"]);
    let streamed = Request::post("/payments")
        .header("idempotency-key", "k2")
        .body(chunks)
        .unwrap();
    let service = unscoped().body_limit(16).layer(handler.clone());
    let response = service.oneshot(streamed).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(handler.runs(), 0);
}

type Frames =
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>;

fn futures_chunks(chunks: &[&'static [u8]]) -> StreamBody<Frames> {
    let frames: Vec<_> = chunks
        .iter()
        .map(|chunk| Ok(http_body::Frame::data(Bytes::from_static(chunk))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn tenants_have_their_own_keys() {
    let handler = Handler::new(created);
    let service = IdempotencyLayer::scoped(MemoryStore::new(), |request| {
        Some(String::from_utf8_lossy(request.headers.get("x-tenant")?.as_bytes()).into_owned())
    })
    .layer(handler.clone());
    for tenant in ["acme", "globex", "acme"] {
        let mut req = request(Some("k"), "/payments", "{}");
        req.headers_mut()
            .insert("x-tenant", HeaderValue::from_static(tenant));
        send(&service, req).await;
    }
    assert_eq!(handler.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_duplicates_run_the_handler_once() {
    const CALLS: usize = 100;
    let handler = Handler::new(created).slow(Duration::from_millis(100));
    let service = unscoped().layer(handler.clone());
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { send(&service, request(Some("k"), "/payments", "{}")).await })
        })
        .collect();
    let mut replays = 0;
    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(
            (answer.status, &answer.body[..]),
            (StatusCode::CREATED, &b"{\"payment\":1}"[..])
        );
        replays += usize::from(answer.replayed());
    }
    assert_eq!((handler.runs(), replays), (1, CALLS - 1));
}

#[tokio::test(start_paused = true)]
async fn fail_fast_answers_409_with_retry_after_while_the_first_runs() {
    let store = MemoryStore::new();
    let handler = Handler::new(created).slow(Duration::from_secs(5));
    let service = IdempotencyLayer::unscoped(store.clone())
        .fail_fast()
        .layer(handler.clone());
    let first = tokio::spawn({
        let service = service.clone();
        async move { send(&service, request(Some("k"), "/payments", "{}")).await }
    });
    // The handler runs only under the claim: once it is entered, the key is held, and the
    // handler sleeps on the paused clock.
    handler.entered.notified().await;
    assert_eq!(store.in_flight(), 1);
    let busy = send(&service, request(Some("k"), "/payments", "{}")).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.headers[header::RETRY_AFTER], "1");
    assert_eq!(busy.json()["code"], "request-in-progress");
    assert_eq!(first.await.unwrap().status, 201);
    assert_eq!(handler.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_does_not_cut_the_handler_short() {
    let handler = Handler::new(created).slow(Duration::from_millis(200));
    let service = unscoped().layer(handler.clone());
    let dropped = tokio::time::timeout(
        Duration::from_millis(20),
        send(&service, request(Some("k"), "/payments", "{}")),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the first request was abandoned mid-handler"
    );
    // The retry waits for the handler that kept running, and replays its response.
    let retry = send(&service, request(Some("k"), "/payments", "{}")).await;
    assert_eq!(
        (retry.status, retry.replayed()),
        (StatusCode::CREATED, true)
    );
    assert_eq!(handler.runs(), 1);
}

/// A store whose server is down.
#[derive(Clone)]
struct Down;

impl Store for Down {
    async fn begin(&self, _: &StoreRequest) -> Result<Begin, StoreError> {
        Err(StoreError::backend("connection refused"))
    }
    async fn renew(&self, _: &Claim) -> Result<(), StoreError> {
        Err(StoreError::backend("connection refused"))
    }
    async fn complete(&self, _: &Claim, _: &[u8], _: Duration) -> Result<(), StoreError> {
        Err(StoreError::backend("connection refused"))
    }
    async fn release(&self, _: &Claim) -> Result<(), StoreError> {
        Err(StoreError::backend("connection refused"))
    }
    fn abandon(&self, _: Claim) {}
}

#[tokio::test]
async fn an_unreachable_store_fails_closed_with_503() {
    let handler = Handler::new(created);
    let service = IdempotencyLayer::unscoped(Down).layer(handler.clone());
    let answer = send(&service, request(Some("k"), "/payments", "{}")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    assert_eq!(answer.json()["code"], "store-unavailable");
    assert!(!String::from_utf8_lossy(&answer.body).contains("refused"));
    assert_eq!(handler.runs(), 0, "the handler never runs without a claim");
}

#[tokio::test]
async fn opted_in_headers_are_part_of_the_fingerprint() {
    let handler = Handler::new(created);
    let service = unscoped()
        .fingerprint_header(header::HeaderName::from_static("x-account"))
        .layer(handler.clone());
    let with = |account: &'static str| {
        let mut req = request(Some("k"), "/payments", "{}");
        req.headers_mut()
            .insert("x-account", HeaderValue::from_static(account));
        req
    };
    assert_eq!(send(&service, with("acct-1")).await.status, 201);
    assert!(send(&service, with("acct-1")).await.replayed());
    assert_eq!(send(&service, with("acct-2")).await.status, 422);
    // Not opted in: another value of another header is the same request.
    let mut other = with("acct-1");
    other
        .headers_mut()
        .insert("x-trace", HeaderValue::from_static("t-9"));
    assert!(send(&service, other).await.replayed());
    assert_eq!(handler.runs(), 1);
}
