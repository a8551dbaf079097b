//! The Postgres store against a real server started by each test: the conformance suite,
//! and completion inside the caller's transaction (the order row and the record commit
//! together, or neither does).

mod support;

use idempotency::store::conformance::{self, Settings};
use idempotency::{Error, Isolation, PostgresError, PostgresStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::postgres::PostgresServer;

/// A store on `server` with the `orders` table of the tests, and a short lease.
async fn store_on(server: &PostgresServer) -> PostgresStore {
    server.psql(ORDERS);
    PostgresStore::builder(server.url())
        .lease(Duration::from_secs(2))
        .migrate()
        .connect()
        .await
        .unwrap()
}

const ORDERS: &str = "CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY, customer bigint NOT NULL, sku text NOT NULL, qty int NOT NULL)";

#[derive(Debug)]
enum AppError {
    Idempotency(Error),
    Db(sqlx::Error),
    Refused(#[allow(dead_code, reason = "read in failure messages")] &'static str),
}

impl From<Error> for AppError {
    fn from(err: Error) -> Self {
        AppError::Idempotency(err)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        AppError::Db(err)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: i64,
    sku: String,
}

/// Inserts an order inside the store's transaction: the unit of work of these tests.
async fn create_order(
    store: &PostgresStore,
    key: &str,
    sku: &str,
    runs: &AtomicUsize,
) -> Result<Order, AppError> {
    store
        .once("orders.create")
        .client_key(key)
        .payload("sku", sku)
        .transaction(async |tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO orders (customer, sku, qty) VALUES (7, $1, 1) RETURNING id",
            )
            .bind(sku)
            .fetch_one(&mut *tx)
            .await?;
            Ok(Order {
                id,
                sku: sku.to_owned(),
            })
        })
        .await
}

fn count(server: &PostgresServer, sql: &str) -> i64 {
    server.psql(sql).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    conformance::check_all(&store, &Settings::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_and_its_record_commit_together_once() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    let runs = AtomicUsize::new(0);
    let first = create_order(&store, "order-1", "book", &runs)
        .await
        .unwrap();
    let again = create_order(&store, "order-1", "book", &runs)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(count(&server, "select count(*) from orders"), 1);
    assert_eq!(
        count(
            &server,
            "select count(*) from idempotency_records where value is not null"
        ),
        1
    );
    // The same key with another payload is refused, and runs nothing.
    let other = create_order(&store, "order-1", "pen", &runs).await;
    assert!(matches!(
        other,
        Err(AppError::Idempotency(Error::PayloadMismatch { .. }))
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_insert_one_order() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let calls = (0..100).map(|_| {
        let (store, runs) = (store.clone(), Arc::clone(&runs));
        tokio::spawn(async move { create_order(&store, "order-many", "book", &runs).await })
    });
    let results: Vec<Order> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert!(results.iter().all(|order| *order == results[0]));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(count(&server, "select count(*) from orders"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_leaves_no_row_and_frees_the_key() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    let failed: Result<Order, AppError> = store
        .once("orders.create")
        .client_key("order-2")
        .transaction(async |tx| {
            sqlx::query("INSERT INTO orders (customer, sku, qty) VALUES (7, 'book', 1)")
                .execute(&mut *tx)
                .await?;
            Err(AppError::Refused("out of stock"))
        })
        .await;
    assert!(matches!(failed, Err(AppError::Refused(_))));
    assert_eq!(count(&server, "select count(*) from orders"), 0);
    assert_eq!(
        count(&server, "select count(*) from idempotency_records"),
        0
    );
    let runs = AtomicUsize::new(0);
    create_order(&store, "order-2", "", &runs).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(count(&server, "select count(*) from orders"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_or_cancelled_body_leaves_no_row_and_frees_the_key() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    // A panic inside the transaction.
    let panicked = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .once("orders.create")
                .client_key("order-3")
                .transaction(async |tx| {
                    sqlx::query("INSERT INTO orders (customer, sku, qty) VALUES (7, 'x', 1)")
                        .execute(&mut *tx)
                        .await?;
                    let stock: i64 = sqlx::query_scalar("SELECT 0::bigint")
                        .fetch_one(&mut *tx)
                        .await?;
                    assert!(stock > 0, "the body panics after its insert");
                    Ok::<u64, AppError>(1)
                })
                .await
        })
        .await
    };
    assert!(panicked.unwrap_err().is_panic());
    // A cancelled call: dropped while its body waits, after its insert.
    let (inserted_tx, inserted) = tokio::sync::oneshot::channel();
    let cancelled = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .once("orders.create")
                .client_key("order-4")
                .transaction(async |tx| {
                    sqlx::query("INSERT INTO orders (customer, sku, qty) VALUES (7, 'y', 1)")
                        .execute(&mut *tx)
                        .await?;
                    let _ = inserted_tx.send(());
                    std::future::pending::<()>().await;
                    Ok::<u64, AppError>(1)
                })
                .await
        })
    };
    inserted.await.unwrap();
    cancelled.abort();
    let _ = cancelled.await;
    // Both keys are free at once (well before the 2 s lease), and neither insert stayed.
    let runs = AtomicUsize::new(0);
    let started = Instant::now();
    for key in ["order-3", "order-4"] {
        create_order(&store, key, "", &runs).await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&server, "select count(*) from orders"), 2);
    assert_eq!(
        count(
            &server,
            "select count(*) from orders where sku in ('x', 'y')"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_ends_the_transaction_itself_is_refused() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    let ended: Result<u64, AppError> = store
        .once("orders.create")
        .client_key("order-5")
        .transaction(async |tx| {
            sqlx::query("ROLLBACK").execute(&mut *tx).await?;
            Ok(1)
        })
        .await;
    match ended {
        Err(AppError::Idempotency(Error::Store(err))) => {
            assert!(
                err.to_string().contains("ended the store's transaction"),
                "{err}"
            );
        }
        other => panic!("expected a store error, got {other:?}"),
    }
    assert_eq!(
        count(&server, "select count(*) from idempotency_records"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeatable_read_conflict_in_the_body_rolls_back_and_frees_the_key() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    server.psql("INSERT INTO orders (customer, sku, qty) VALUES (1, 'stock', 10)");
    let (read_tx, read) = tokio::sync::oneshot::channel();
    let (go_tx, go) = tokio::sync::oneshot::channel::<()>();
    let attempt = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .once("orders.reserve")
                .client_key("reserve-1")
                .isolation(Isolation::RepeatableRead)
                .transaction(async |tx| {
                    let _: i32 = sqlx::query_scalar("SELECT qty FROM orders WHERE sku = 'stock'")
                        .fetch_one(&mut *tx)
                        .await?;
                    let _ = read_tx.send(());
                    let _ = go.await;
                    // Updated meanwhile by another transaction: REPEATABLE READ refuses.
                    sqlx::query("UPDATE orders SET qty = qty - 1 WHERE sku = 'stock'")
                        .execute(&mut *tx)
                        .await?;
                    Ok::<u64, AppError>(1)
                })
                .await
        })
    };
    read.await.unwrap();
    server.psql("UPDATE orders SET qty = 0 WHERE sku = 'stock'");
    go_tx.send(()).unwrap();
    match attempt.await.unwrap() {
        Err(AppError::Db(sqlx::Error::Database(db))) => {
            assert_eq!(db.code().as_deref(), Some("40001"));
        }
        other => panic!("expected the body's serialization failure, got {other:?}"),
    }
    assert_eq!(
        count(&server, "select count(*) from idempotency_records"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_write_skew_fails_one_call_retryably_and_frees_its_key() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    // Two calls that each read what the other writes, at SERIALIZABLE, both reading
    // before either commits: PostgreSQL lets one of them commit.
    let both_read = Arc::new(tokio::sync::Barrier::new(2));
    let call = |mine: &'static str, theirs: &'static str| {
        let (store, both_read) = (store.clone(), Arc::clone(&both_read));
        tokio::spawn(async move {
            store
                .once("orders.skew")
                .client_key(mine)
                .isolation(Isolation::Serializable)
                .transaction(async |tx| {
                    let seen: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM orders WHERE sku = $1")
                            .bind(theirs)
                            .fetch_one(&mut *tx)
                            .await?;
                    both_read.wait().await;
                    sqlx::query("INSERT INTO orders (customer, sku, qty) VALUES (1, $1, 1)")
                        .bind(mine)
                        .execute(&mut *tx)
                        .await?;
                    Ok::<_, AppError>(seen)
                })
                .await
        })
    };
    let (a, b) = (call("a", "b"), call("b", "a"));
    let results = [a.await.unwrap(), b.await.unwrap()];
    let failures: Vec<&AppError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failures.len(), 1, "{results:?}");
    match failures[0] {
        // Refused at commit: the store's own statement, a typed retryable error.
        AppError::Idempotency(Error::Store(err)) => assert!(err.is_retryable(), "{err}"),
        // Refused at the body's insert: the body's own error, as it returned it.
        AppError::Db(sqlx::Error::Database(db)) => {
            assert_eq!(db.code().as_deref(), Some("40001"));
        }
        other => panic!("expected a serialization failure, got {other:?}"),
    }
    assert_eq!(count(&server, "select count(*) from orders"), 1);
    assert_eq!(
        count(&server, "select count(*) from idempotency_records"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_is_found_out_and_frees_the_key() {
    let server = PostgresServer::start();
    let store = store_on(&server).await;
    // A deferred check: the body's insert passes, and COMMIT itself is refused.
    server.psql(
        "CREATE TABLE customers (id bigint PRIMARY KEY);
         ALTER TABLE orders ADD CONSTRAINT orders_customer FOREIGN KEY (customer)
             REFERENCES customers (id) DEFERRABLE INITIALLY DEFERRED",
    );
    let runs = AtomicUsize::new(0);
    let refused = create_order(&store, "commit-1", "book", &runs).await;
    match refused {
        Err(AppError::Idempotency(Error::Store(err))) => {
            assert!(err.to_string().contains("foreign key"), "{err}");
            assert!(!err.is_retryable());
        }
        other => panic!("expected the commit's failure, got {other:?}"),
    }
    assert_eq!(count(&server, "select count(*) from orders"), 0);
    assert_eq!(
        count(&server, "select count(*) from idempotency_records"),
        0
    );
    // The key is free: once the customer exists, the retry runs and commits.
    server.psql("INSERT INTO customers VALUES (7)");
    create_order(&store, "commit-1", "book", &runs)
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(count(&server, "select count(*) from orders"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_or_a_bad_name_is_a_typed_error() {
    let server = PostgresServer::start();
    let missing = PostgresStore::builder(server.url()).connect().await;
    assert!(
        matches!(missing, Err(PostgresError::Table { .. })),
        "{missing:?}"
    );
    let bad = PostgresStore::builder(server.url())
        .table("orders; drop table orders")
        .connect()
        .await;
    assert!(
        matches!(bad, Err(PostgresError::InvalidTable(_))),
        "{bad:?}"
    );
    let unreachable = PostgresStore::builder("postgres://postgres@127.0.0.1:1/postgres")
        .acquire_timeout(Duration::from_secs(1))
        .connect()
        .await;
    assert!(
        matches!(unreachable, Err(PostgresError::Connect(_))),
        "{unreachable:?}"
    );
}

/// Rows a store wrote long ago: `n` completed records whose TTL ran out an hour ago.
fn expired_records(server: &PostgresServer, n: u32) {
    server.psql(&format!(
        "INSERT INTO idempotency_records (key, namespace, fingerprint, token, value, until)
         SELECT decode(md5('expired' || i), 'hex'), 'old', decode(md5(''), 'hex'),
                nextval('idempotency_records_token'), '\\x0142', now() - interval '1 hour'
         FROM generate_series(1, {n}) i"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_deletes_expired_records_under_traffic_without_blocking_a_holder() {
    let server = PostgresServer::start();
    server.psql(ORDERS);
    let store = PostgresStore::builder(server.url())
        .reap_every(Duration::ZERO)
        .reap_batch(500)
        .migrate()
        .connect()
        .await
        .unwrap();
    expired_records(&server, 3000);
    // A holder whose claim window has lapsed: only its transaction's row lock holds it,
    // and the reaper must pass it by rather than wait for it or delete it.
    let (locked_tx, locked) = tokio::sync::oneshot::channel();
    let (finish_tx, finish) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .once("orders.create")
                .client_key("held")
                .lease(Duration::from_millis(1))
                .transaction(async |tx| {
                    sqlx::query("INSERT INTO orders (customer, sku, qty) VALUES (1, 'held', 1)")
                        .execute(&mut *tx)
                        .await?;
                    let _ = locked_tx.send(());
                    let _ = finish.await;
                    Ok::<_, AppError>(1u64)
                })
                .await
        })
    };
    locked.await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await; // past the holder's 1 ms window
                                                        // Traffic meanwhile: fresh orders on other keys.
    let traffic = {
        let store = store.clone();
        tokio::spawn(async move {
            let runs = AtomicUsize::new(0);
            for i in 0..50 {
                create_order(&store, &format!("traffic-{i}"), "book", &runs)
                    .await
                    .unwrap();
            }
            runs.into_inner()
        })
    };
    let mut deleted = 0;
    let mut batches = 0;
    let reaping = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let batch = store.reap().await.unwrap();
            deleted += batch;
            batches += 1;
            if batch < 500 {
                break;
            }
        }
    });
    reaping
        .await
        .expect("the reaper waited on the holder's lock");
    assert_eq!(deleted, 3000);
    assert!(batches >= 6, "{batches} batches");
    assert_eq!(traffic.await.unwrap(), 50);
    finish_tx.send(()).unwrap();
    assert_eq!(holder.await.unwrap().unwrap(), 1);
    let left = count(
        &server,
        "select count(*) from idempotency_records where value is not null",
    );
    assert_eq!(left, 51, "the holder's record and the traffic's");
    assert_eq!(count(&server, "select count(*) from orders"), 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reaps_by_itself_on_its_schedule() {
    let server = PostgresServer::start();
    let _store = PostgresStore::builder(server.url())
        .reap_every(Duration::from_millis(50))
        .reap_batch(100)
        .migrate()
        .connect()
        .await
        .unwrap();
    expired_records(&server, 1000);
    let started = Instant::now();
    while count(&server, "select count(*) from idempotency_records") > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the reaper did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
