//! The HTTP example over real HTTP on loopback: `POST /orders` (an `#[idempotent]` axum
//! handler) and `POST /payments` (a plain handler behind the tower layer), each server a
//! process of its own, driven by a real HTTP/1.1 client, and counted by its `GET /stats`.

mod support;

use std::time::Duration;
use support::http::{post, post_and_disconnect, HttpServer};
use support::RedisServer;

const ORDER: &str = r#"{"customer":7,"sku":"B-7","qty":2}"#;

#[tokio::test]
async fn a_retried_order_replays_its_201_as_200_with_the_same_body() {
    let server = HttpServer::start(&[]);
    let key = [(
        "idempotency-key",
        "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
    )];
    let first = post(server.addr, "/orders", &key, ORDER).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.headers["location"], "/orders/1");
    assert!(!first.replayed());
    assert_eq!(
        first.json(),
        serde_json::json!({"id": 1, "customer": 7, "sku": "B-7", "qty": 2})
    );
    for _ in 0..3 {
        let retry = post(server.addr, "/orders", &key, ORDER).await;
        assert_eq!(retry.status, 200);
        assert!(retry.replayed());
        assert_eq!(retry.body, first.body, "the same body bytes");
        assert_eq!(retry.headers["location"], "/orders/1");
    }
    assert_eq!(server.stats().await, (1, 0));
}

#[tokio::test]
async fn a_retried_payment_replays_without_its_cookie() {
    let server = HttpServer::start(&[]);
    let key = [("idempotency-key", "pay-1")];
    let body = r#"{"amount":1250,"currency":"EUR"}"#;
    let first = post(server.addr, "/payments", &key, body).await;
    assert_eq!(first.status, 201);
    assert!(first.headers.contains_key("set-cookie"));
    let retry = post(server.addr, "/payments", &key, body).await;
    assert_eq!(
        (retry.status, retry.replayed()),
        (http::StatusCode::CREATED, true)
    );
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["location"], first.headers["location"]);
    assert!(
        !retry.headers.contains_key("set-cookie"),
        "a cookie is never replayed"
    );
    assert_eq!(server.stats().await, (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_duplicates_run_each_handler_once() {
    const CALLS: usize = 120;
    let server = HttpServer::start(&["--delay-ms", "300"]);
    let addr = server.addr;
    let mut calls = Vec::new();
    for path in ["/orders", "/payments"] {
        for _ in 0..CALLS {
            calls.push(tokio::spawn(async move {
                (
                    path,
                    post(addr, path, &[("idempotency-key", "\"same\"")], ORDER).await,
                )
            }));
        }
    }
    let mut fresh = std::collections::BTreeMap::new();
    for call in calls {
        let (path, reply) = call.await.unwrap();
        assert!(reply.status.is_success(), "{path}: {reply:?}");
        *fresh.entry(path).or_insert(0) += usize::from(!reply.replayed());
    }
    assert_eq!(fresh.values().collect::<Vec<_>>(), [&1, &1], "{fresh:?}");
    assert_eq!(server.stats().await, (1, 1));
}

#[tokio::test]
async fn quoted_and_bare_forms_of_a_key_are_one_key() {
    let server = HttpServer::start(&[]);
    let bare = post(
        server.addr,
        "/orders",
        &[("idempotency-key", "abc-9")],
        ORDER,
    )
    .await;
    let quoted = post(
        server.addr,
        "/orders",
        &[("idempotency-key", "\"abc-9\"")],
        ORDER,
    )
    .await;
    assert_eq!(
        (bare.status, quoted.status),
        (http::StatusCode::CREATED, http::StatusCode::OK)
    );
    let escaped = r#""a \"quoted\" key""#;
    post(
        server.addr,
        "/payments",
        &[("idempotency-key", escaped)],
        "{}",
    )
    .await;
    let again = post(
        server.addr,
        "/payments",
        &[("idempotency-key", escaped)],
        "{}",
    )
    .await;
    assert!(again.replayed());
    assert_eq!(server.stats().await, (1, 1));
}

#[tokio::test]
async fn a_key_reused_with_another_payload_is_422_and_runs_nothing() {
    let server = HttpServer::start(&[]);
    for path in ["/orders", "/payments"] {
        let key = [("idempotency-key", "k-1")];
        assert!(post(server.addr, path, &key, ORDER)
            .await
            .status
            .is_success());
        let other = ORDER.replace("\"qty\":2", "\"qty\":3");
        let reused = post(server.addr, path, &key, &other).await;
        assert_eq!(reused.status, 422, "{path}");
        assert_eq!(reused.code(), "key-reused");
        assert!(
            !String::from_utf8_lossy(&reused.body).contains("k-1"),
            "the key is not echoed"
        );
    }
    assert_eq!(server.stats().await, (1, 1));
}

#[tokio::test]
async fn every_malformed_key_is_400_before_anything_runs() {
    let server = HttpServer::start(&[]);
    let long = "k".repeat(256);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("key-missing", vec![]),
        ("key-malformed", vec![("idempotency-key", "\"\"")]),
        ("key-malformed", vec![("idempotency-key", long.as_str())]),
        ("key-malformed", vec![("idempotency-key", "\"unterminated")]),
        (
            "key-malformed",
            vec![("idempotency-key", "\"bad \\n escape\"")],
        ),
        ("key-malformed", vec![("idempotency-key", "\"a\";param=1")]),
        ("key-malformed", vec![("idempotency-key", "two words")]),
        (
            "key-malformed",
            vec![("idempotency-key", "a"), ("idempotency-key", "a")],
        ),
    ];
    for path in ["/orders", "/payments"] {
        for (code, headers) in &cases {
            let reply = post(server.addr, path, headers, ORDER).await;
            assert_eq!(reply.status, 400, "{path} {headers:?}");
            assert_eq!(reply.code(), *code, "{path} {headers:?}");
            assert_eq!(reply.headers["cache-control"], "no-store");
        }
        // A byte that is not printable ASCII.
        let reply = support::http::post_with_key_bytes(server.addr, path, b"caf\xe9", ORDER).await;
        assert_eq!(
            (reply.status.as_u16(), reply.code()),
            (400, "key-malformed".to_owned())
        );
    }
    assert_eq!(server.stats().await, (0, 0));
}

/// Judged by its `Content-Length`, before a byte of it is read. (Over the limit while it is
/// read, without a length, is `tests/http_layer.rs`'s.)
#[tokio::test]
async fn a_body_over_the_limit_is_413_and_runs_nothing() {
    let server = HttpServer::start(&[]);
    for path in ["/payments", "/orders"] {
        let reply = support::http::post_announcing(
            server.addr,
            path,
            &[("idempotency-key", "big")],
            2 << 20,
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), reply.code()),
            (413, "body-too-large".to_owned()),
            "{path}"
        );
    }
    assert_eq!(server.stats().await, (0, 0));
}

#[tokio::test]
async fn two_tenants_with_the_same_key_make_two_requests() {
    let server = HttpServer::start(&[]);
    for path in ["/orders", "/payments"] {
        for tenant in ["acme", "globex", "acme"] {
            let headers = [("idempotency-key", "shared"), ("x-tenant", tenant)];
            assert!(post(server.addr, path, &headers, ORDER)
                .await
                .status
                .is_success());
        }
    }
    assert_eq!(server.stats().await, (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_body_gets_the_stored_result_on_retry() {
    let server = HttpServer::start(&["--delay-ms", "300"]);
    for path in ["/orders", "/payments"] {
        let key = [("idempotency-key", "gone-1")];
        post_and_disconnect(server.addr, path, &key, ORDER, Duration::from_millis(50)).await;
        // The retry arrives while the first handler still runs: it waits, then replays.
        let retry = post(server.addr, path, &key, ORDER).await;
        assert!(retry.replayed(), "{path}: {retry:?}");
    }
    assert_eq!(server.stats().await, (1, 1));
}

#[tokio::test]
async fn a_failed_order_is_not_stored() {
    let server = HttpServer::start(&[]);
    let key = [("idempotency-key", "zero")];
    let zero = ORDER.replace("\"qty\":2", "\"qty\":0");
    let refused = post(server.addr, "/orders", &key, &zero).await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (422, "qty-zero".to_owned())
    );
    // Nothing was stored under the key: the same key with another payload runs, fresh.
    let fixed = post(server.addr, "/orders", &key, ORDER).await;
    assert_eq!(fixed.status, 201);
    assert_eq!(server.stats().await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_answers_409_with_retry_after_while_the_first_runs() {
    const CALLS: usize = 20;
    let server = HttpServer::start(&["--delay-ms", "500", "--fail-fast"]);
    for path in ["/orders", "/payments"] {
        let addr = server.addr;
        let calls: Vec<_> = (0..CALLS)
            .map(|_| {
                tokio::spawn(
                    async move { post(addr, path, &[("idempotency-key", "ff")], ORDER).await },
                )
            })
            .collect();
        let mut created = 0;
        for call in calls {
            let reply = call.await.unwrap();
            if reply.status == 201 {
                created += 1;
            } else {
                // Every duplicate arrives while the first runs: none waits.
                assert_eq!(reply.status, 409, "{path}: {reply:?}");
                assert_eq!(reply.code(), "request-in-progress");
                assert_eq!(reply.headers["retry-after"], "1");
            }
        }
        assert_eq!(created, 1, "{path}");
    }
    assert_eq!(server.stats().await, (1, 1));
}

#[tokio::test]
async fn a_store_that_is_down_answers_503_and_runs_nothing() {
    let mut redis = RedisServer::start();
    let server = HttpServer::start(&["--redis", &redis.url()]);
    redis.kill();
    for path in ["/orders", "/payments"] {
        let reply = post(server.addr, path, &[("idempotency-key", "down")], ORDER).await;
        assert_eq!(reply.status, 503, "{path}: {reply:?}");
        assert_eq!(reply.code(), "store-unavailable");
        assert!(reply.headers.contains_key("retry-after"));
    }
    assert_eq!(
        server.stats().await,
        (0, 0),
        "fail closed: no handler ran without a claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_behind_one_redis_run_each_request_once() {
    const CALLS: usize = 150;
    let redis = RedisServer::start();
    let servers: Vec<HttpServer> = (0..3)
        .map(|_| HttpServer::start(&["--redis", &redis.url(), "--delay-ms", "200"]))
        .collect();
    let mut calls = Vec::new();
    for path in ["/orders", "/payments"] {
        for i in 0..CALLS {
            let addr = servers[i % servers.len()].addr;
            calls.push(tokio::spawn(async move {
                post(addr, path, &[("idempotency-key", "spread")], ORDER).await
            }));
        }
    }
    let mut bodies = std::collections::BTreeSet::new();
    for call in calls {
        let reply = call.await.unwrap();
        assert!(reply.status.is_success(), "{reply:?}");
        bodies.insert(reply.body);
    }
    assert_eq!(
        bodies.len(),
        2,
        "one order and one payment, replayed to every caller"
    );
    let mut total = (0, 0);
    for server in &servers {
        let (orders, payments) = server.stats().await;
        total = (total.0 + orders, total.1 + payments);
    }
    assert_eq!(total, (1, 1));
}

#[tokio::test]
async fn the_example_exports_its_metrics_for_prometheus() {
    let server = HttpServer::start(&[]);
    let key = [("idempotency-key", "scraped")];
    for _ in 0..3 {
        assert!(post(server.addr, "/orders", &key, ORDER)
            .await
            .status
            .is_success());
    }
    let scrape = support::http::send(server.addr, http::Method::GET, "/metrics", &[], b"").await;
    assert_eq!(scrape.status, 200);
    let text = String::from_utf8_lossy(&scrape.body);
    for line in [
        r#"idempotency_calls_total{namespace="orders.create",outcome="fresh"} 1"#,
        r#"idempotency_calls_total{namespace="orders.create",outcome="replayed"} 2"#,
        r#"idempotency_claims_in_flight{namespace="orders.create"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(text.contains("idempotency_store_seconds"), "{text}");
    assert!(
        !text.contains("scraped"),
        "a client key leaked into the metrics"
    );
}
