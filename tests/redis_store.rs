//! The Redis store across processes and failures, against real `redis-server`s: one
//! execution for duplicates on many nodes, waiting by notification, dead and paused
//! holders, round trips, an unreachable server, corrupt records, key names and expiry.

mod support;

use idempotency::{idempotent, ConnectErrorKind, Error, KeyHasher, RedisStore};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use support::RedisServer;
use support::{AppError, Gate, Probe};

/// Creates an order: counts its executions in Redis itself, so that every process sees
/// the same count.
#[idempotent(name = "orders.create", store = store, skip(store, redis_url, work), lease = "1s", wait = "20s")]
async fn create_order(
    store: &RedisStore,
    redis_url: &str,
    work: Duration,
    customer: u64,
    sku: String,
) -> Result<String, AppError> {
    let executions = incr(redis_url, &format!("{}:executions", store.prefix())).await;
    tokio::time::sleep(work).await;
    Ok(format!(
        "order #{executions} for {customer}: {sku} (pid {})",
        std::process::id()
    ))
}

async fn incr(redis_url: &str, key: &str) -> u64 {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("INCR")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn get(redis_url: &str, key: &str) -> Option<u64> {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn unique_prefix(test: &str) -> String {
    format!("t-{test}-{}", std::process::id())
}

async fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    support::connect(&server.url(), prefix, Duration::from_millis(500)).await
}

/// A worker process: this test binary again, running only `redis_worker`.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(mode: &str, url: &str, prefix: &str) -> Worker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "redis_worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("IDEM_WORKER", mode)
            .env("IDEM_URL", url)
            .env("IDEM_PREFIX", prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // The test harness may print on the same line before the worker does.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("IDEM ") {
                    let _ = tx.send(line[at + 5..].to_owned());
                }
            }
        });
        Worker {
            child,
            stdin,
            lines,
        }
    }

    /// The next line the worker says, which must start with `what`.
    fn expect(&self, what: &str) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the worker did not say {what:?}"));
        line.strip_prefix(what)
            .unwrap_or_else(|| panic!("expected {what:?}, the worker said {line:?}"))
            .trim()
            .to_owned()
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one line from the parent on the worker's stdin.
fn heard() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim().to_owned()
}

#[test]
#[ignore = "a worker process of the multi-process tests, which start it themselves"]
fn redis_worker() {
    let Ok(mode) = std::env::var("IDEM_WORKER") else {
        return;
    };
    let url = std::env::var("IDEM_URL").unwrap();
    let prefix = std::env::var("IDEM_PREFIX").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = RedisStore::builder(url.as_str()).prefix(&prefix).connect().await.unwrap();
        println!("IDEM READY");
        match mode.as_str() {
            // 100 concurrent duplicates, started when the parent says so.
            "duplicates" => {
                assert_eq!(heard(), "GO");
                let calls: Vec<_> = (0..100)
                    .map(|_| {
                        let (store, url) = (store.clone(), url.clone());
                        tokio::spawn(async move {
                            create_order(&store, &url, Duration::from_millis(300), 7, "lamp".into()).await
                        })
                    })
                    .collect();
                for call in calls {
                    println!("IDEM RESULT {}", call.await.unwrap().unwrap());
                }
            }
            // Claims, says so, and never finishes: the parent kills it.
            "hold" => {
                let stalled = hold_order(&store, 1);
                tokio::select! {
                    result = stalled => panic!("the holder finished: {result:?}"),
                    () = async { HOLDING.wait().await; println!("IDEM CLAIMED"); std::future::pending::<()>().await } => {}
                }
            }
            // Claims, says so, and finishes when the parent says GO (after pausing it).
            "stall" => {
                let call = tokio::spawn({
                    let store = store.clone();
                    async move { stall_order(&store, 2).await }
                });
                HOLDING.wait().await;
                println!("IDEM CLAIMED");
                let go = tokio::task::spawn_blocking(heard).await.unwrap();
                assert_eq!(go, "GO");
                STALL_GATE.open();
                match call.await.unwrap() {
                    Ok(value) => println!("IDEM RESULT Ok {value}"),
                    Err(err) => println!("IDEM RESULT Err {:?}", err.idempotency()),
                }
            }
            other => panic!("unknown worker mode {other}"),
        }
    });
}

static HOLDING: LazyLock<Gate> = LazyLock::new(Gate::default);
static STALL_GATE: LazyLock<Gate> = LazyLock::new(Gate::default);

#[idempotent(name = "orders.hold", store = store, skip(store), lease = "1s", wait = "10s")]
async fn hold_order(store: &RedisStore, id: u64) -> Result<String, AppError> {
    HOLDING.open();
    if std::env::var("IDEM_WORKER").is_ok() {
        std::future::pending::<()>().await;
    }
    Ok(format!("held {id} by {}", std::process::id()))
}

#[idempotent(name = "orders.stall", store = store, skip(store), lease = "1s", wait = "10s")]
async fn stall_order(store: &RedisStore, id: u64) -> Result<String, AppError> {
    HOLDING.open();
    if std::env::var("IDEM_WORKER").is_ok() {
        STALL_GATE.wait().await;
    }
    Ok(format!("stalled {id} by {}", std::process::id()))
}

#[test]
fn parallel_duplicates_across_processes_run_the_body_once() {
    let server = RedisServer::start();
    let prefix = unique_prefix("processes");
    let mut workers: Vec<Worker> = (0..3)
        .map(|_| Worker::spawn("duplicates", &server.url(), &prefix))
        .collect();
    for worker in &workers {
        worker.expect("READY");
    }
    for worker in &mut workers {
        worker.say("GO");
    }
    let mut results = Vec::new();
    for worker in &workers {
        for _ in 0..100 {
            results.push(worker.expect("RESULT"));
        }
    }
    assert_eq!(results.len(), 300);
    assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let executions = runtime.block_on(get(&server.url(), &format!("{prefix}:executions")));
    assert_eq!(
        executions,
        Some(1),
        "one execution for 300 calls on 3 processes"
    );
    println!(
        "3 processes x 100 calls: 1 execution; every caller got {:?}",
        results[0]
    );
}

#[test]
fn a_holder_killed_mid_body_is_taken_over_after_its_lease() {
    let server = RedisServer::start();
    let prefix = unique_prefix("sigkill");
    let holder = Worker::spawn("hold", &server.url(), &prefix);
    holder.expect("READY");
    holder.expect("CLAIMED");
    holder.signal("-KILL");
    let killed = Instant::now();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let value = runtime.block_on(async {
        let store = store(&server, &prefix).await;
        hold_order(&store, 1).await.unwrap()
    });
    let took = killed.elapsed();
    assert!(
        value.starts_with(&format!("held 1 by {}", std::process::id())),
        "{value}"
    );
    // The lease is 1 s; waiters look again when the lease they saw ends, plus a 25 ms margin.
    assert!(
        took <= Duration::from_millis(1_500),
        "took {took:?} after the kill"
    );
    println!("SIGKILLed holder: a duplicate ran the body {took:?} after the kill (lease 1 s)");
}

#[test]
fn an_attempt_that_lost_its_lease_cannot_overwrite_its_successor() {
    let server = RedisServer::start();
    let prefix = unique_prefix("sigstop");
    let mut holder = Worker::spawn("stall", &server.url(), &prefix);
    holder.expect("READY");
    holder.expect("CLAIMED");
    holder.signal("-STOP");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(store(&server, &prefix));
    // The paused holder cannot renew: its lease lapses and this call takes over.
    let ours = runtime.block_on(stall_order(&store, 2)).unwrap();
    assert!(ours.ends_with(&std::process::id().to_string()), "{ours}");

    holder.signal("-CONT");
    holder.say("GO");
    let theirs = holder.expect("RESULT");
    assert!(
        theirs.starts_with("Err LeaseLost"),
        "the stale attempt must be fenced off: {theirs}"
    );
    assert_eq!(
        runtime.block_on(stall_order(&store, 2)).unwrap(),
        ours,
        "the record is the successor's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_another_node_wakes_within_milliseconds_of_the_completion() {
    use idempotency::store::{Begin, Fingerprint, Request};
    use idempotency::Store;
    let server = RedisServer::start();
    let prefix = unique_prefix("latency");
    let (holder, waiter) = (store(&server, &prefix).await, store(&server, &prefix).await);
    let mut latencies = Vec::new();
    for i in 0..200u32 {
        let mut hasher = KeyHasher::new("latency");
        hasher.arg("i", &i);
        let request = Request {
            namespace: "latency".into(),
            key: hasher.finish().unwrap(),
            fingerprint: Fingerprint::NONE,
            lease: Some(Duration::from_secs(30)),
        };
        let Begin::Claimed(claim) = holder.begin(&request).await.unwrap() else {
            panic!("vacant")
        };
        let Begin::InProgress(flight) = waiter.begin(&request).await.unwrap() else {
            panic!("held")
        };
        let woken = tokio::spawn(async move {
            flight.changed.await;
            Instant::now()
        });
        let completing = Instant::now();
        holder
            .complete(&claim, b"\x01J1", Duration::from_secs(60))
            .await
            .unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .expect("the waiter was not notified")
            .unwrap();
        latencies.push(woken.saturating_duration_since(completing));
        assert!(matches!(
            waiter.begin(&request).await.unwrap(),
            Begin::Completed(_)
        ));
    }
    latencies.sort();
    let (p50, p99, max) = (latencies[100], latencies[197], latencies[199]);
    println!("waiter wake-up after completion, 200 runs: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p99 <= Duration::from_millis(50), "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_frees_the_key_for_another_node_at_once() {
    let server = RedisServer::start();
    let prefix = unique_prefix("failure");
    let node_a = store(&server, &prefix).await;
    let node_b = Arc::new(Probe::new(store(&server, &prefix).await));
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    // A 30 s lease and a 10 s wait: node B can only succeed if A's failure freed the key.
    static CLAIMED: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "payments.flaky", store = node, skip(node, other), lease = "30s", wait = "10s")]
    async fn flaky(
        node: &RedisStore,
        other: &Probe<RedisStore>,
        amount: u64,
    ) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            CLAIMED.open();
            other.until_busy(1).await;
            return Err(AppError::Body("card declined"));
        }
        Ok(amount)
    }
    #[idempotent(name = "payments.flaky", store = node, skip(node), lease = "30s", wait = "10s")]
    async fn flaky_on_b(node: &Probe<RedisStore>, amount: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(amount * 10)
    }

    let first = tokio::spawn({
        let (node_a, node_b) = (node_a.clone(), Arc::clone(&node_b));
        async move { flaky(&node_a, &node_b, 5).await }
    });
    CLAIMED.wait().await;
    let started = Instant::now();
    let second = flaky_on_b(&node_b, 5).await.unwrap();
    assert!(matches!(
        first.await.unwrap(),
        Err(AppError::Body("card declined"))
    ));
    assert_eq!(second, 50, "node B ran the body itself");
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_attempt_frees_the_key_promptly() {
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "orders.cancel", store = node, skip(node), lease = "30s", wait = "10s")]
    async fn slow(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            STARTED.open();
            std::future::pending::<()>().await;
        }
        Ok(id)
    }
    let server = RedisServer::start();
    let prefix = unique_prefix("cancel");
    let (node_a, node_b) = (store(&server, &prefix).await, store(&server, &prefix).await);
    let first = tokio::spawn(async move { slow(&node_a, 3).await });
    STARTED.wait().await;
    first.abort();
    // With a 30 s lease and a 10 s wait, only a prompt release lets this succeed.
    assert_eq!(slow(&node_b, 3).await.unwrap(), 3);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_one_round_trip_and_a_fresh_call_two() {
    #[idempotent(name = "orders.count", store = node, skip(node))]
    async fn count(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        Ok(id)
    }
    let server = RedisServer::start();
    let node = store(&server, &unique_prefix("round-trips")).await;
    // Steady state: the scripts are loaded.
    count(&node, 0).await.unwrap();
    count(&node, 0).await.unwrap();

    // MONITOR shows every command a client sent, apart from what scripts run inside the
    // server (their lines say `lua`).
    let monitor = server.monitor();
    count(&node, 1).await.unwrap();
    let fresh = monitor.client_commands();
    assert_eq!(fresh.len(), 2, "claim, then complete and notify: {fresh:?}");
    assert!(
        fresh[0].starts_with("\"SET\"") && fresh[0].contains("\"NX\""),
        "{fresh:?}"
    );
    assert!(fresh[1].starts_with("\"EVALSHA\""), "{fresh:?}");

    let monitor = server.monitor();
    count(&node, 1).await.unwrap();
    let replay = monitor.client_commands();
    assert_eq!(replay.len(), 1, "one look: {replay:?}");
    assert!(
        replay[0].starts_with("\"SET\""),
        "a plain command, no script: {replay:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_calls_before_the_body_and_recovers() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "orders.outage", store = node, skip(node))]
    async fn work(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }

    // Nothing listens: connecting fails within the connect timeout.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let refused = RedisStore::builder(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ConnectErrorKind::Unreachable, "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut server = RedisServer::start();
    let node = store(&server, &unique_prefix("outage")).await;
    assert_eq!(work(&node, 1).await.unwrap(), 1);

    server.kill();
    let started = Instant::now();
    let failed = work(&node, 2).await.unwrap_err().idempotency();
    assert!(matches!(failed, Error::Store(_)), "{failed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "failed after {:?}",
        started.elapsed()
    );
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        1,
        "no body runs without a claim"
    );

    server.restart();
    // The store reconnects by itself; nothing signals when, so look a few times.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match work(&node, 3).await {
            Ok(value) => break assert_eq!(value, 3),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => panic!(
                "no recovery after the server came back: {:?}",
                err.idempotency()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_recorded_still_reaches_its_caller() {
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "orders.unrecorded", store = node, skip(node), lease = "1s")]
    async fn work(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        STARTED.open();
        GATE.wait().await;
        Ok(id * 2)
    }
    let mut server = RedisServer::start();
    let node = store(&server, &unique_prefix("unrecorded")).await;
    let call = tokio::spawn({
        let node = node.clone();
        async move { work(&node, 21).await }
    });
    STARTED.wait().await;
    server.kill();
    GATE.open();
    // The body ran and succeeded: its caller gets the value, though Redis did not get it.
    assert_eq!(call.await.unwrap().unwrap(), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_be_decoded_is_a_codec_error_naming_the_function() {
    #[idempotent(name = "orders.v1", store = node, skip(node))]
    async fn v1(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        Ok(id)
    }
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        sku: String,
    }
    // The same namespace after a deploy that changed the return type.
    #[idempotent(name = "orders.v1", store = node, skip(node))]
    async fn v2(node: &RedisStore, id: u64) -> Result<Order, AppError> {
        Ok(Order {
            id,
            sku: "x".into(),
        })
    }
    let server = RedisServer::start();
    let node = store(&server, &unique_prefix("codec")).await;
    assert_eq!(v1(&node, 1).await.unwrap(), 1);
    match v2(&node, 1).await.unwrap_err().idempotency() {
        Error::Codec(err) => assert_eq!(err.namespace(), "orders.v1"),
        other => panic!("expected Codec, got {other:?}"),
    }

    // Corrupt bytes.
    let mut hasher = KeyHasher::new("orders.v1");
    hasher.arg("id", &2u64);
    let record = node.record_key("orders.v1", &hasher.finish().unwrap());
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // A completed record (`C`, layout 1, no fingerprint) whose result is not JSON.
    let mut corrupt = b"C1".to_vec();
    corrupt.extend_from_slice(&[0; 16]);
    corrupt.extend_from_slice(b"\x01J{not json");
    let () = redis::cmd("SET")
        .arg(&record)
        .arg(corrupt)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    match v1(&node, 2).await.unwrap_err().idempotency() {
        Error::Codec(err) => assert!(err.to_string().contains("orders.v1"), "{err}"),
        other => panic!("expected Codec, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_no_argument_values_and_all_expire() {
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "customers.update", store = node, skip(node), key = request, ttl = "1h")]
    async fn update(
        node: &RedisStore,
        request: String,
        email: String,
        hold: bool,
    ) -> Result<String, AppError> {
        if hold {
            STARTED.open();
            GATE.wait().await;
        }
        if email.is_empty() {
            return Err(AppError::Body("no email"));
        }
        Ok(email)
    }
    let server = RedisServer::start();
    let prefix = unique_prefix("names");
    let node = store(&server, &prefix).await;
    // Stored, then replayed.
    for _ in 0..2 {
        let email = update(
            &node,
            "req-secret-1".into(),
            "ada@secret.example".into(),
            false,
        )
        .await;
        assert_eq!(email.unwrap(), "ada@secret.example");
    }
    let _ = update(&node, "req-secret-2".into(), String::new(), false).await;
    let held = tokio::spawn({
        let node = node.clone();
        async move {
            update(
                &node,
                "req-secret-3".into(),
                "bob@secret.example".into(),
                true,
            )
            .await
        }
    });
    STARTED.wait().await;

    let keys: Vec<String> = server
        .cli(&["--scan"])
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "one completed record, one in progress: {keys:?}"
    );
    for key in &keys {
        assert!(key.starts_with(&format!("{prefix}:{{")), "{key}");
        assert!(key.ends_with(":customers.update"), "{key}");
        assert!(
            !key.contains("secret"),
            "an argument value leaked into {key}"
        );
        let ttl: i64 = server.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
    GATE.open();
    held.await.unwrap().unwrap();
}
