//! The seed's centralized idempotency store: several worker processes share one Redis, and
//! 150 copies of one request, sent at once from all of them, create ONE order.
//!
//! ```text
//! redis-server --daemonize yes --save ''
//! cargo run --example redis_orders --features redis [-- redis://host:port]
//! ```
//!
//! The parent checks that Redis is reachable (the URL comes from the argument, `REDIS_URL`,
//! or `redis://127.0.0.1:6379`), then starts three workers: this same binary, run as
//! `--worker <id> <url> <prefix> <request-key>`. Each installs a `RedisStore` as the
//! default store and calls `create_order` 50 times at once with the same `Idempotency-Key`.
//! The parent then counts the orders in Redis and deletes every key of the run: all of them
//! start with a prefix of its own, so runs never collide.

use idempotency::{idempotent, Outcome, RedisStore};
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::error::Error;
use std::fmt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime};

const WORKERS: usize = 3;
const CALLS_PER_WORKER: usize = 50;
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
const REQUEST_KEY: &str = "ABC123";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: u64,
    sku: String,
    qty: u32,
}

#[derive(Debug)]
enum AppError {
    Idempotency(idempotency::Error),
    Redis(redis::RedisError),
}

impl From<idempotency::Error> for AppError {
    fn from(err: idempotency::Error) -> Self {
        AppError::Idempotency(err)
    }
}

impl From<redis::RedisError> for AppError {
    fn from(err: redis::RedisError) -> Self {
        AppError::Redis(err)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Idempotency(err) => err.fmt(f),
            AppError::Redis(err) => write!(f, "Redis: {err}"),
        }
    }
}

impl Error for AppError {}

/// The orders database: a counter in Redis, shared by every worker.
#[derive(Clone)]
struct Db {
    conn: MultiplexedConnection,
    orders_created: String,
}

impl Db {
    async fn insert_order(&mut self) -> Result<u64, AppError> {
        Ok(self.conn.incr(&self.orders_created, 1).await?)
    }
}

/// `POST /create_order` with the client's `Idempotency-Key` header as `request_id`.
#[idempotent(key = request_id, name = "orders.create", ttl = "10m", skip(db))]
async fn create_order(
    request_id: String,
    customer: u64,
    sku: String,
    qty: u32,
    mut db: Db,
) -> Result<Outcome<Order>, AppError> {
    // The slow part: payment, inventory, the insert.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = db.insert_order().await?;
    Ok(Outcome::fresh(Order {
        id,
        customer,
        sku,
        qty,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = match args.first().map(String::as_str) {
        Some("--worker") => worker(&args[1..]).await,
        url => parent(&redis_url(url)).await,
    };
    run.unwrap_or_else(|err| {
        eprintln!("error: {err}");
        ExitCode::FAILURE
    })
}

fn redis_url(arg: Option<&str>) -> String {
    arg.map(str::to_owned)
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Starts the workers, counts the orders they created and cleans up.
async fn parent(url: &str) -> Result<ExitCode, Box<dyn Error>> {
    let mut redis = connect(url).await.map_err(|err| unreachable(url, err))?;
    let prefix = unique_prefix();
    delete_keys(&mut redis, &prefix).await?;

    println!(
        "{WORKERS} worker processes x {CALLS_PER_WORKER} concurrent calls, \
         Idempotency-Key {REQUEST_KEY}, Redis {url}, prefix {prefix}"
    );
    let run = run_workers(url, &prefix).await;
    let counted = count_orders(&mut redis, &prefix).await;
    delete_keys(&mut redis, &prefix).await?;
    let (workers_ok, (created, ids)) = (run?, counted?);

    let requests = WORKERS * CALLS_PER_WORKER;
    println!("Requests sent: {requests}, orders created: {created}, order ids returned: {ids:?}");
    if !workers_ok {
        println!("A worker failed: see its error above.");
        Ok(ExitCode::FAILURE)
    } else if created == 1 && ids.len() == 1 {
        println!("Every worker saw the same order: one order for {requests} requests.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Duplicates were not suppressed: more than one order for one request.");
        Ok(ExitCode::FAILURE)
    }
}

async fn connect(url: &str) -> Result<MultiplexedConnection, Box<dyn Error>> {
    let client = redis::Client::open(url)?;
    let connecting = client.get_multiplexed_async_connection();
    let mut conn = tokio::time::timeout(Duration::from_secs(2), connecting).await??;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(conn)
}

fn unreachable(url: &str, err: impl fmt::Display) -> String {
    format!(
        "cannot reach Redis at {url}: {err}\n\
         Start one with `redis-server --daemonize yes --save ''`, or pass its URL:\n  \
         cargo run --example redis_orders --features redis -- redis://host:port"
    )
}

/// A key prefix no other run uses.
fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("orders-demo-{}-{nanos}", std::process::id())
}

/// Runs the workers side by side and prints their summaries in order; `false` if any
/// of them failed.
async fn run_workers(url: &str, prefix: &str) -> Result<bool, Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for id in 1..=WORKERS {
        let worker = Command::new(&exe)
            .args(["--worker", &id.to_string(), url, prefix, REQUEST_KEY])
            .stdout(Stdio::piped())
            .spawn()?;
        workers.push(worker);
    }
    // Waiting for a process blocks: do it off the runtime's threads.
    let outputs = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(std::process::Child::wait_with_output)
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    for output in &outputs {
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    Ok(outputs.iter().all(|output| output.status.success()))
}

/// The orders created, and the distinct order ids the workers were handed.
async fn count_orders(
    redis: &mut MultiplexedConnection,
    prefix: &str,
) -> Result<(u64, BTreeSet<u64>), redis::RedisError> {
    let created: Option<u64> = redis.get(orders_created_key(prefix)).await?;
    let ids: BTreeSet<u64> = redis.smembers(ids_returned_key(prefix)).await?;
    Ok((created.unwrap_or(0), ids))
}

/// Deletes every key of this run: the idempotency records, the counter, the id set.
async fn delete_keys(
    redis: &mut MultiplexedConnection,
    prefix: &str,
) -> Result<(), redis::RedisError> {
    let mut keys = Vec::new();
    let mut scan = redis.scan_match::<_, String>(format!("{prefix}:*")).await?;
    while let Some(key) = scan.next_item().await {
        keys.push(key?);
    }
    drop(scan); // it borrows the connection
    if !keys.is_empty() {
        redis.del::<_, ()>(keys).await?;
    }
    Ok(())
}

fn orders_created_key(prefix: &str) -> String {
    format!("{prefix}:orders-created")
}

fn ids_returned_key(prefix: &str) -> String {
    format!("{prefix}:ids-returned")
}

/// One worker process: sends the same request `CALLS_PER_WORKER` times at once.
async fn worker(args: &[String]) -> Result<ExitCode, Box<dyn Error>> {
    let [id, url, prefix, request_key] = args else {
        return Err("usage: redis_orders --worker <id> <url> <prefix> <request-key>".into());
    };
    let store = RedisStore::builder(url.as_str())
        .prefix(prefix.as_str())
        .connect()
        .await?;
    idempotency::set_default_store(store)?;
    let db = Db {
        conn: connect(url).await?,
        orders_created: orders_created_key(prefix),
    };

    let calls: Vec<_> = (0..CALLS_PER_WORKER)
        .map(|_| {
            let call = create_order(request_key.clone(), 42, "book".into(), 1, db.clone());
            tokio::spawn(call)
        })
        .collect();
    let (mut fresh, mut replayed, mut ids) = (0, 0, BTreeSet::new());
    for call in calls {
        let order = call.await??;
        if order.is_replayed() {
            replayed += 1;
        } else {
            fresh += 1;
        }
        ids.insert(order.id);
    }
    println!("worker {id}: {fresh} x 201 Created, {replayed} x 200 OK, order ids {ids:?}");

    let mut redis = db.conn;
    redis
        .sadd::<_, _, ()>(ids_returned_key(prefix), &ids)
        .await?;
    Ok(ExitCode::SUCCESS)
}
