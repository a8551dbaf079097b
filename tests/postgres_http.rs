//! Exactly once for database effects, across real processes: the HTTP example with
//! `--database-url` inserts each order and completes its idempotency record in one
//! transaction. Several server processes share one real PostgreSQL; some are killed with
//! SIGKILL at the worst moments. Every test counts the `orders` rows that are left.

mod support;

use std::time::{Duration, Instant};
use support::http::{post, HttpServer};
use support::postgres::PostgresServer;

const ORDER: &str = r#"{"customer":7,"sku":"book","qty":1}"#;
const EMPTY_ORDER: &str = r#"{"customer":7,"sku":"book","qty":0}"#;

/// An example server on `database`, with these extra flags.
fn server(database: &PostgresServer, flags: &[&str]) -> HttpServer {
    let url = database.url();
    let mut all = vec!["--database-url", url.as_str()];
    all.extend_from_slice(flags);
    HttpServer::start(&all)
}

fn orders(database: &PostgresServer) -> i64 {
    database
        .psql("select count(*) from orders")
        .parse()
        .unwrap()
}

/// Waits until a session of the example is in `state` with a last statement that starts
/// with `query` (the only signal PostgreSQL gives from another process), at most 20 s.
fn await_session(database: &PostgresServer, state: &str, query: &str) {
    let sql = format!(
        "select count(*) from pg_stat_activity where state = '{state}' and query like '{query}%'"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while database.psql(&sql) != "1" {
        assert!(Instant::now() < deadline, "no session {state} in {query:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until no session is in a transaction that inserted an order: the killed
/// process's transaction has been rolled back. How long that took.
fn await_rollback(database: &PostgresServer) -> Duration {
    let started = Instant::now();
    let sql = "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
               where c.relname = 'orders' and l.mode = 'RowExclusiveLock'";
    while database.psql(sql) != "0" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the killed holder's transaction was never rolled back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_of_one_hundred_duplicates_insert_one_order() {
    const PER_PROCESS: usize = 100;
    let database = PostgresServer::start();
    let servers: Vec<HttpServer> = (0..3)
        .map(|_| server(&database, &["--delay-ms", "300"]))
        .collect();
    // `/orders` completes in its own transaction; `/payments` is the tower layer on the
    // same store, through the `Store` trait.
    let mut calls = Vec::new();
    for path in ["/orders", "/payments"] {
        for i in 0..PER_PROCESS * servers.len() {
            let addr = servers[i % servers.len()].addr;
            calls.push(tokio::spawn(async move {
                let reply = post(addr, path, &[("idempotency-key", "spread")], ORDER).await;
                (path, reply)
            }));
        }
    }
    let mut bodies = std::collections::BTreeSet::new();
    let mut fresh = 0;
    for call in calls {
        let (path, reply) = call.await.unwrap();
        assert!(reply.status.is_success(), "{path}: {reply:?}");
        fresh += usize::from(!reply.replayed());
        bodies.insert((path, reply.body));
    }
    assert_eq!(
        bodies.len(),
        2,
        "every caller got the same order, and the same payment"
    );
    assert_eq!(
        fresh, 2,
        "one response per route ran the body, the others replayed it"
    );
    assert_eq!(orders(&database), 1);
    let mut created = (0, 0);
    for server in &servers {
        let (orders, payments) = server.stats().await;
        created = (created.0 + orders, created.1 + payments);
    }
    assert_eq!(created, (1, 1));
}

/// A holder killed after its `INSERT INTO orders`, before `COMMIT`: no order is left,
/// and the next duplicate, on another process, runs once and commits one.
async fn killed_before_commit(flags: &[&str], state: &str, query: &str) {
    let database = PostgresServer::start();
    let doomed = server(&database, flags);
    let survivor = server(&database, &[]);
    let addr = doomed.addr;
    let first = tokio::spawn(async move {
        post(addr, "/orders", &[("idempotency-key", "kill-1")], ORDER).await
    });
    await_session(&database, state, query);
    drop(doomed); // SIGKILL
    let _ = first.await; // the connection died with the server
    let rolled_back = await_rollback(&database);
    assert_eq!(orders(&database), 0, "the killed transaction left an order");
    let started = Instant::now();
    let retry = post(
        survivor.addr,
        "/orders",
        &[("idempotency-key", "kill-1")],
        ORDER,
    )
    .await;
    let took_over = started.elapsed();
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_eq!(orders(&database), 1);
    assert_eq!(survivor.stats().await.0, 1);
    let again = post(
        survivor.addr,
        "/orders",
        &[("idempotency-key", "kill-1")],
        ORDER,
    )
    .await;
    assert!(again.replayed());
    assert_eq!(orders(&database), 1);
    eprintln!(
        "killed {state}: rolled back {rolled_back:?} after the kill, retry took {took_over:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_idle_in_its_transaction_leaves_no_order() {
    killed_before_commit(
        &["--delay-ms", "30000"],
        "idle in transaction",
        "INSERT INTO orders",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_in_a_long_statement_leaves_no_order() {
    killed_before_commit(
        &["--delay-ms", "30000", "--delay-in-database"],
        "active",
        "SELECT pg_sleep",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_after_commit_is_replayed_not_run_again() {
    let database = PostgresServer::start();
    let doomed = server(&database, &[]);
    let survivor = server(&database, &[]);
    let first = post(
        doomed.addr,
        "/orders",
        &[("idempotency-key", "kill-2")],
        ORDER,
    )
    .await;
    assert_eq!(first.status, 201);
    drop(doomed);
    let retry = post(
        survivor.addr,
        "/orders",
        &[("idempotency-key", "kill-2")],
        ORDER,
    )
    .await;
    assert!(retry.replayed(), "{retry:?}");
    assert_eq!(retry.body, first.body);
    assert_eq!(orders(&database), 1);
    assert_eq!(survivor.stats().await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_session_is_terminated_cannot_commit_and_its_successor_runs_once() {
    let database = PostgresServer::start();
    let holder = server(&database, &["--delay-ms", "2000"]);
    let addr = holder.addr;
    let first = tokio::spawn(async move {
        post(addr, "/orders", &[("idempotency-key", "term-1")], ORDER).await
    });
    await_session(&database, "idle in transaction", "INSERT INTO orders");
    let terminated = database.psql(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
         where state = 'idle in transaction' and query like 'INSERT INTO orders%') t",
    );
    assert_eq!(terminated, "1");
    let first = first.await.unwrap();
    assert!(first.status.is_server_error(), "{first:?}");
    assert_eq!(orders(&database), 0);
    let retry = post(
        holder.addr,
        "/orders",
        &[("idempotency-key", "term-1")],
        ORDER,
    )
    .await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_eq!(orders(&database), 1);
    // The body ran twice in that process: once into the terminated transaction, once
    // for real; one order exists.
    assert_eq!(holder.stats().await.0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_holder_wakes_a_waiter_in_another_process_at_once() {
    let database = PostgresServer::start();
    let holder = server(&database, &["--delay-ms", "1000"]);
    let waiter = server(&database, &[]);
    let addr = holder.addr;
    let first = tokio::spawn(async move {
        post(
            addr,
            "/orders",
            &[("idempotency-key", "fail-1")],
            EMPTY_ORDER,
        )
        .await
    });
    await_session(&database, "idle in transaction", "INSERT INTO orders");
    // The waiter finds the claim held, and waits for its notice.
    let started = Instant::now();
    let waited = post(
        waiter.addr,
        "/orders",
        &[("idempotency-key", "fail-1")],
        EMPTY_ORDER,
    )
    .await;
    let took = started.elapsed();
    let first = first.await.unwrap();
    assert_eq!(first.status, 422, "{first:?}");
    assert_eq!(
        waited.status, 422,
        "the waiter ran the body itself: {waited:?}"
    );
    assert_eq!(orders(&database), 0, "two rolled-back orders");
    // The holder rolled back after at most 1 s; the waiter would look again only after
    // its lease (2 s) without the release's notification.
    assert!(took < Duration::from_millis(1500), "woken after {took:?}");
    eprintln!("waiter answered {took:?} after it asked");
}
