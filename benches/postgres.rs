//! `PostgresStore` against the SQL a user would write by hand for the same job, on one
//! PostgreSQL server this benchmark starts (`tests/support/postgres.rs`), through the same
//! sqlx pool (the store's), one call at a time on a current-thread runtime:
//!
//! - `postgres_replay`: a completed record replayed by `engine::run` (what every user's
//!   path costs) and by `Store::begin` alone, against the bare
//!   `SELECT value FROM idempotency_records WHERE key = $1`;
//! - `postgres_fresh`: `engine::run` on a fresh key with a trivial body, against the two
//!   statements a hand-written version needs (the claim `INSERT … ON CONFLICT DO NOTHING`,
//!   the completing `UPDATE … WHERE key = $1 AND token = $2`) on the same table;
//! - `postgres_transaction`: `store.once(..).client_key(..).transaction(..)` inserting one
//!   order, against `pool.begin()`, the same `INSERT`, `commit()`.
//!
//! Round trips are counted on the wire, not guessed: a second store, configured the same,
//! connects through a proxy that reads what clients send and counts the messages that
//! each wait for the server's `ReadyForQuery`: a `Query`, or a `Sync` that ends an extended
//! query or, alone, is a ping (sqlx's pool pings a connection when it hands it out and
//! again when it takes it back, so every checkout adds two). The counts per call are
//! printed to stderr before the measurements, and in the final table as statements' round
//! trips + pings; a fraction means the pool opened a connection meanwhile, on which sqlx
//! prepared its statements again.
//!
//! ```text
//! cargo bench --bench postgres --features postgres
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion};
use idempotency::engine::{self, Call, Finished, Produced};
use idempotency::store::{Begin, Fingerprint, Namespace, Request};
use idempotency::{KeyHasher, PostgresStore, Store};
use sqlx::PgPool;
use std::future::Future;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::contenders::median;
use support::postgres::PostgresServer;
use tokio::runtime::Runtime;

/// The replayed record's bytes: what `#[idempotent]` would store for a small order.
const RECORD: &[u8] = br#"1J{"id":4242,"customer":42,"sku":"B-7","qty":3}"#;

const SELECT_VALUE: &str = "SELECT value FROM idempotency_records WHERE key = $1";

/// The hand-written claim: a row for a vacant key with a token, or nothing.
const CLAIM: &str =
    "INSERT INTO idempotency_records (key, namespace, fingerprint, token, value, until)
    VALUES ($1, $2, $3, nextval('idempotency_records_token'), NULL, now() + interval '10 seconds')
    ON CONFLICT (key) DO NOTHING
    RETURNING token";

/// The hand-written completion, fenced by the claim's token.
const COMPLETE: &str =
    "UPDATE idempotency_records SET value = $3, until = now() + interval '24 hours'
    WHERE key = $1 AND token = $2";

const ORDERS: &str = "CREATE TABLE orders (
    id bigserial PRIMARY KEY, customer bigint NOT NULL, sku text NOT NULL, qty int NOT NULL)";

const INSERT_ORDER: &str =
    "INSERT INTO orders (customer, sku, qty) VALUES ($1, 'B-7', 3) RETURNING id";

/// (group, bare SQL, contenders after it), in the order they are measured.
const GROUPS: [(&str, &str, &[&str]); 3] = [
    (
        "postgres_replay",
        "select_value",
        &["store_begin", "engine_run"],
    ),
    ("postgres_fresh", "insert_update", &["engine_run"]),
    (
        "postgres_transaction",
        "plain_transaction",
        &["once_transaction"],
    ),
];

/// Calls counted on the wire per contender, after as many warm-up calls (which prepare
/// the statements on the pool's connection).
const COUNTED_CALLS: u64 = 100;

/// Fresh keys and order customers, unique across every contender and both stores.
static FRESH: AtomicU64 = AtomicU64::new(0);

fn fresh() -> u64 {
    FRESH.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug)]
enum BenchError {
    Idempotency(#[allow(dead_code, reason = "read in failure messages")] idempotency::Error),
    Db(#[allow(dead_code, reason = "read in failure messages")] sqlx::Error),
}

impl From<idempotency::Error> for BenchError {
    fn from(err: idempotency::Error) -> Self {
        BenchError::Idempotency(err)
    }
}

impl From<sqlx::Error> for BenchError {
    fn from(err: sqlx::Error) -> Self {
        BenchError::Db(err)
    }
}

fn call_for(namespace: &'static str, client_key: &str) -> Call {
    let mut key = KeyHasher::new(namespace);
    key.client_key(client_key).expect("a valid client key");
    Call::new(Request {
        namespace: Namespace::from(namespace),
        key: key.finish().expect("a key"),
        fingerprint: Fingerprint::NONE,
        lease: None,
    })
}

async fn select_value(pool: &PgPool, key: &[u8]) -> Vec<u8> {
    sqlx::query_scalar(SELECT_VALUE)
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn store_begin(store: &PostgresStore, call: &Call) -> Vec<u8> {
    match store.begin(&call.request).await.unwrap() {
        Begin::Completed(record) => record.value.to_vec(),
        _ => panic!("the replayed key is completed"),
    }
}

async fn engine_replay(store: &PostgresStore, call: &Call) -> Vec<u8> {
    match engine::run(store, call, no_body()).await.unwrap() {
        Finished::Replayed(bytes) => bytes.to_vec(),
        _ => panic!("the replayed key is completed"),
    }
}

async fn no_body() -> Produced<Vec<u8>, ()> {
    unreachable!("a replay runs no body")
}

/// A fresh call through the engine; its record's key.
async fn engine_fresh(store: &PostgresStore) -> [u8; 16] {
    let call = call_for("bench.fresh", &format!("fresh-{}", fresh()));
    let body = async { Produced::<_, ()>::Store(RECORD.to_vec()) };
    match engine::run(store, &call, body).await.unwrap() {
        Finished::Fresh(bytes) => assert_eq!(bytes, RECORD),
        _ => panic!("a fresh key runs its body"),
    }
    *call.request.key.as_bytes()
}

/// The same call by hand: claim, run the body, complete; its record's key.
async fn insert_update(pool: &PgPool) -> [u8; 16] {
    let mut key = *b"insert-update\0\0\0";
    key[8..].copy_from_slice(&fresh().to_be_bytes());
    let token: Option<i64> = sqlx::query_scalar(CLAIM)
        .bind(&key[..])
        .bind("bench.fresh")
        .bind(&[0u8; 16][..])
        .fetch_optional(pool)
        .await
        .unwrap();
    let token = token.expect("a fresh key is vacant");
    let body = RECORD.to_vec();
    let done = sqlx::query(COMPLETE)
        .bind(&key[..])
        .bind(token)
        .bind(&body)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    key
}

/// One order inserted in a transaction that also completes its record; the order's id.
async fn once_transaction(store: &PostgresStore, client_key: &str, customer: i64) -> i64 {
    store
        .once("bench.transaction")
        .client_key(client_key)
        .transaction(async |tx| {
            let id: i64 = sqlx::query_scalar(INSERT_ORDER)
                .bind(customer)
                .fetch_one(&mut *tx)
                .await?;
            Ok::<_, BenchError>(id)
        })
        .await
        .unwrap()
}

/// The same order in a transaction of its own; the order's id.
async fn plain_transaction(pool: &PgPool, customer: i64) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    let id: i64 = sqlx::query_scalar(INSERT_ORDER)
        .bind(customer)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

fn customer() -> i64 {
    i64::try_from(fresh()).unwrap()
}

/// Every contender, by group and id: one call on `store` (and its pool).
async fn contender(group: &str, id: &str, store: &PostgresStore, replayed: &Call) {
    let pool = store.pool();
    match (group, id) {
        ("postgres_replay", "select_value") => {
            black_box(select_value(pool, replayed.request.key.as_bytes()).await);
        }
        ("postgres_replay", "store_begin") => {
            black_box(store_begin(store, replayed).await);
        }
        ("postgres_replay", "engine_run") => {
            black_box(engine_replay(store, replayed).await);
        }
        ("postgres_fresh", "insert_update") => {
            black_box(insert_update(pool).await);
        }
        ("postgres_fresh", "engine_run") => {
            black_box(engine_fresh(store).await);
        }
        ("postgres_transaction", "plain_transaction") => {
            black_box(plain_transaction(pool, customer()).await);
        }
        ("postgres_transaction", "once_transaction") => {
            let customer = customer();
            let key = format!("order-{customer}");
            black_box(once_transaction(store, &key, customer).await);
        }
        _ => unreachable!("{group}/{id} is not a contender"),
    }
}

/// Every contender gives the same answer: the replay's three readers the same bytes, the
/// two fresh calls the same completed row, the two transactions the same committed order
/// (and the idempotent one replays it without inserting another).
async fn check_answers(store: &PostgresStore, replayed: &Call) {
    let pool = store.pool();
    let key = replayed.request.key.as_bytes();
    assert_eq!(select_value(pool, key).await, RECORD);
    assert_eq!(store_begin(store, replayed).await, RECORD);
    assert_eq!(engine_replay(store, replayed).await, RECORD);

    let completed = |key: [u8; 16]| async move {
        let row: (Option<Vec<u8>>, bool) = sqlx::query_as(
            "SELECT value, until > now() + interval '23 hours' FROM idempotency_records WHERE key = $1",
        )
        .bind(&key[..])
        .fetch_one(pool)
        .await
        .unwrap();
        row
    };
    let by_engine = completed(engine_fresh(store).await).await;
    let by_hand = completed(insert_update(pool).await).await;
    assert_eq!(by_engine, (Some(RECORD.to_vec()), true));
    assert_eq!(by_engine, by_hand);

    let order = |id: i64| async move {
        let row: (i64, String, i32) =
            sqlx::query_as("SELECT customer, sku, qty FROM orders WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        row
    };
    let plain = plain_transaction(pool, 7).await;
    let once = once_transaction(store, "order-check", 7).await;
    assert_ne!(plain, once);
    assert_eq!(order(plain).await, order(once).await);
    let orders = || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(pool)
            .await
            .unwrap();
        count
    };
    let before = orders().await;
    assert_eq!(once_transaction(store, "order-check", 7).await, once);
    assert_eq!(orders().await, before, "a replay inserts no order");
}

/// What one call sends that waits for an answer, counted on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Exchanges {
    /// `Query` messages (simple protocol: `BEGIN`, `COMMIT`, several statements at once).
    queries: u64,
    /// `Sync` messages that end an extended query (`Parse`/`Bind`/`Execute`).
    extended: u64,
    /// `Sync` messages alone: sqlx's pool pings a connection when it hands it out, and
    /// again when it takes it back (in a task of its own, off the caller's path).
    pings: u64,
}

impl Exchanges {
    fn round_trips(self) -> u64 {
        self.queries + self.extended + self.pings
    }

    /// `[round trips, queries, extended, pings]` per call from `before` to `after`.
    fn per_call(before: Self, after: Self, calls: u64) -> [f64; 4] {
        let per = |a: u64, b: u64| (b - a) as f64 / calls as f64;
        [
            per(before.round_trips(), after.round_trips()),
            per(before.queries, after.queries),
            per(before.extended, after.extended),
            per(before.pings, after.pings),
        ]
    }
}

/// A TCP proxy in front of the server that reads PostgreSQL's wire protocol (version 3)
/// from clients and counts their [`Exchanges`]. Every `Query` and every `Sync` is answered
/// by one `ReadyForQuery`, and sqlx waits for it before it sends more: each is one round
/// trip.
struct Wire {
    port: u16,
    counts: Arc<[AtomicU64; 3]>,
}

impl Wire {
    fn start(server_port: u16) -> Wire {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new([const { AtomicU64::new(0) }; 3]);
        let counting = Arc::clone(&counts);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let client = client.expect("accept a client");
                let server =
                    TcpStream::connect(("127.0.0.1", server_port)).expect("reach the server");
                for stream in [&client, &server] {
                    stream.set_nodelay(true).unwrap();
                }
                let (replies, to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut &replies, &mut &to_client);
                    let _ = to_client.shutdown(Shutdown::Write);
                });
                let counting = Arc::clone(&counting);
                std::thread::spawn(move || count_requests(client, server, &counting));
            }
        });
        Wire { port, counts }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn exchanges(&self) -> Exchanges {
        let [queries, extended, pings] = &*self.counts;
        Exchanges {
            queries: queries.load(Ordering::SeqCst),
            extended: extended.load(Ordering::SeqCst),
            pings: pings.load(Ordering::SeqCst),
        }
    }
}

/// Forwards a client's messages to the server, counting them before they leave, so that a
/// call's counts are complete by the time its answer arrives.
fn count_requests(mut client: TcpStream, mut server: TcpStream, counts: &[AtomicU64; 3]) {
    /// The codes of the requests that may come before the startup message.
    const SSL_REQUEST: u32 = 80_877_103;
    const GSSENC_REQUEST: u32 = 80_877_104;
    let [queries, extended, pings] = counts;
    let mut startup = true;
    // Messages since the last `Query` or `Sync`: none before a `Sync` makes it a ping.
    let mut since_sync = 0;
    let mut unread = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let read = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        unread.extend_from_slice(&chunk[..read]);
        let mut at = 0;
        loop {
            let rest = &unread[at..];
            // Startup messages have no type byte; every later one has one.
            let tag_len = usize::from(!startup);
            let Some(len) = rest.get(tag_len..tag_len + 4) else {
                break;
            };
            let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
            if rest.len() < tag_len + len {
                break;
            }
            if startup {
                let code = u32::from_be_bytes(rest[4..8].try_into().unwrap());
                startup = matches!(code, SSL_REQUEST | GSSENC_REQUEST);
            } else {
                match rest[0] {
                    b'Q' => {
                        queries.fetch_add(1, Ordering::SeqCst);
                        since_sync = 0;
                    }
                    b'S' if since_sync == 0 => {
                        pings.fetch_add(1, Ordering::SeqCst);
                    }
                    b'S' => {
                        extended.fetch_add(1, Ordering::SeqCst);
                        since_sync = 0;
                    }
                    _ => since_sync += 1,
                }
            }
            at += tag_len + len;
        }
        unread.drain(..at);
        if server.write_all(&chunk[..read]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

/// Round trips per call of every contender, on a store configured as the measured one
/// whose connections go through `wire`.
fn count_round_trips(
    runtime: &Runtime,
    wire: &Wire,
    replayed: &Call,
) -> Vec<(&'static str, &'static str, [f64; 4])> {
    runtime.block_on(async {
        let store = PostgresStore::builder(wire.url())
            // Nothing of its own on the wire meanwhile: no reaper, no heartbeat.
            .reap_every(Duration::ZERO)
            .heartbeat(Duration::from_secs(3600))
            .connect()
            .await
            .unwrap();
        let mut counted = Vec::new();
        for (group, bare, others) in GROUPS {
            for &id in std::iter::once(&bare).chain(others) {
                for _ in 0..COUNTED_CALLS {
                    contender(group, id, &store, replayed).await;
                }
                let before = wire.exchanges();
                for _ in 0..COUNTED_CALLS {
                    contender(group, id, &store, replayed).await;
                }
                let per_call = Exchanges::per_call(before, wire.exchanges(), COUNTED_CALLS);
                counted.push((group, id, per_call));
            }
        }
        counted
    })
}

/// A count per call, to two decimals at most: `3`, `6.01`.
fn trips(count: f64) -> String {
    let rounded = format!("{count:.2}");
    rounded
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

fn timed<F: Future<Output = ()>>(
    runtime: &Runtime,
    iters: u64,
    mut call: impl FnMut() -> F,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            call().await;
        }
        start.elapsed()
    })
}

fn main() {
    let server = PostgresServer::start();
    server.psql(ORDERS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, replayed) = runtime.block_on(async {
        let store = PostgresStore::builder(server.url())
            .migrate()
            .connect()
            .await
            .unwrap();
        let replayed = call_for("bench.replay", "replayed");
        let body = async { Produced::<_, ()>::Store(RECORD.to_vec()) };
        let first = engine::run(&store, &replayed, body).await.unwrap();
        assert!(matches!(first, Finished::Fresh(_)));
        check_answers(&store, &replayed).await;
        (store, replayed)
    });

    let wire = Wire::start(server.port());
    let round_trips = count_round_trips(&runtime, &wire, &replayed);
    eprintln!("\nround trips per call, counted on the wire over {COUNTED_CALLS} calls each:");
    for (group, id, [total, queries, extended, pings]) in &round_trips {
        eprintln!(
            "  {group}/{id}: {} ({} extended queries, {} simple queries, {} pool pings)",
            trips(*total),
            trips(*extended),
            trips(*queries),
            trips(*pings),
        );
    }
    eprintln!();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for (group_name, bare, others) in GROUPS {
        let mut group = criterion.benchmark_group(group_name);
        for &id in std::iter::once(&bare).chain(others) {
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter_custom(|iters| {
                    timed(&runtime, iters, || {
                        contender(group_name, id, &store, &replayed)
                    })
                });
            });
        }
        group.finish();
    }
    criterion.final_summary();

    println!(
        "\n| PostgreSQL | median µs | / bare SQL | round trips per call |\n|---|---:|---:|---:|"
    );
    for (group, bare, others) in GROUPS {
        let base = median(group, bare);
        for &id in std::iter::once(&bare).chain(others) {
            let value = median(group, id);
            let ratio = match (value, base) {
                (Some(a), Some(b)) => format!("{:.2}×", a / b),
                _ => "—".into(),
            };
            let counted = round_trips
                .iter()
                .find(|(g, i, _)| (*g, *i) == (group, id))
                .map_or_else(
                    || "—".into(),
                    |(_, _, [total, .., pings])| {
                        format!(
                            "{} ({} + {} pings)",
                            trips(*total),
                            trips(total - pings),
                            trips(*pings)
                        )
                    },
                );
            println!(
                "| {group}/{id} | {} | {ratio} | {counted} |",
                value.map_or_else(|| "—".into(), |v| format!("{:.1}", v / 1e3))
            );
        }
    }
    drop(store);
    drop(runtime);
    drop(server);
}
