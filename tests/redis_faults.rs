//! What production does to Redis, and the guarantee that survives it, against real
//! `redis-server`s: restarts mid-body, full memory and eviction policies, calls cancelled at
//! each step of the protocol, connections that freeze without a FIN, and a herd of waiters
//! behind a failing body. Each test counts body executions and what is left in Redis.

mod support;

use idempotency::{idempotent, ConnectErrorKind, Error, RedisStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use support::proxy::Proxy;
use support::RedisServer;
use support::{AppError, Gate, Probe};

/// A store with this file's timeouts.
async fn connect(url: &str, prefix: &str) -> RedisStore {
    support::connect(url, prefix, Duration::from_millis(500)).await
}

/// The record names under `prefix`, flags and counters aside.
fn records(server: &RedisServer, prefix: &str) -> Vec<String> {
    server
        .cli(&["--scan", "--pattern", &format!("{prefix}:{{*")])
        .lines()
        .filter(|name| !name.ends_with(":waiting"))
        .map(str::to_owned)
        .collect()
}

/// Loads the store's scripts into the server, so that they run at once instead of
/// answering `NOSCRIPT` first (an answer a test may be holding back).
fn load_scripts(server: &RedisServer) {
    for script in [
        include_str!("../idempotent-runtime/src/redis/renew.lua"),
        include_str!("../idempotent-runtime/src/redis/complete.lua"),
        include_str!("../idempotent-runtime/src/redis/release.lua"),
    ] {
        server.cli(&["SCRIPT", "LOAD", script]);
    }
}

/// Waits until `done` holds, looking every 10 ms: for states only the server can show.
async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_body_stores_the_holders_result() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "faults.restart", store = node, skip(node), lease = "600ms")]
    async fn charge(node: &Probe<RedisStore>, order: u64) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        STARTED.open();
        GATE.wait().await;
        Ok(format!("charged order {order}"))
    }
    let mut server = RedisServer::start();
    let holder_node = Probe::new(connect(&server.url(), "restart").await);
    let holder = tokio::spawn(async move { charge(&holder_node, 7).await });
    STARTED.wait().await;
    // An empty server: the claim is gone, and nothing else holds the key.
    server.restart();
    // The holder's renewals reconnect and claim the record again.
    until("the claim's restoration", Duration::from_secs(5), || {
        records(&server, "restart").len() == 1
    })
    .await;
    // A duplicate on another node now waits for the holder instead of running beside it.
    let other = Box::leak(Box::new(Probe::new(
        connect(&server.url(), "restart").await,
    )));
    let duplicate = tokio::spawn(charge(other, 7));
    other.until_busy(1).await;
    GATE.open();

    assert_eq!(holder.await.unwrap().unwrap(), "charged order 7");
    assert_eq!(duplicate.await.unwrap().unwrap(), "charged order 7");
    assert_eq!(charge(other, 7).await.unwrap(), "charged order 7");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the body ran once");
    assert_eq!(other.claims(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_server_that_can_evict_records() {
    let server = RedisServer::start();
    // `volatile-*` too: every record carries an expiry, so all of them can be evicted.
    for policy in [
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        server.cli(&["CONFIG", "SET", "maxmemory-policy", policy]);
        let refused = RedisStore::connect(&server.url()).await.unwrap_err();
        assert_eq!(refused.kind(), ConnectErrorKind::Eviction, "{refused}");
        let message = support::chain(&refused);
        assert!(
            message.contains(&format!("maxmemory-policy {policy}"))
                && message.contains("noeviction"),
            "{message}"
        );
        // The documented opt-out, for a Redis that is a cache by design.
        let store = RedisStore::builder(server.url())
            .accept_eviction()
            .connect()
            .await
            .unwrap();
        let info = &store.servers()[0];
        assert_eq!(info.maxmemory_policy, policy);
        assert!(info.warnings().iter().any(|w| w.contains("evicted")));
    }
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let store = RedisStore::connect(&server.url()).await.unwrap();
    assert_eq!(store.servers()[0].maxmemory_policy, "noeviction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_under_noeviction_still_replays_its_records() {
    const RECORDS: u64 = 200;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "faults.full", store = node, skip(node))]
    async fn order(node: &RedisStore, id: u64) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("order {id}"))
    }
    let server =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"]);
    let node = connect(&server.url(), "full").await;
    for id in 0..RECORDS {
        assert_eq!(order(&node, id).await.unwrap(), format!("order {id}"));
    }
    // Other traffic fills the memory until the server refuses writes.
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let filler = vec![b'f'; 1 << 20];
    let mut full = false;
    for i in 0..1_000 {
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&filler)
            .query_async(&mut raw)
            .await;
        if let Err(err) = set {
            assert_eq!(err.code(), Some("OOM"), "{err}");
            full = true;
            break;
        }
    }
    assert!(full, "the server never filled up");
    // And stays full: what the server frees of its buffers does not make room again.
    server.cli(&["CONFIG", "SET", "maxmemory", "1mb"]);

    // Every record is still there, and a replay is a read.
    for id in 0..RECORDS {
        assert_eq!(order(&node, id).await.unwrap(), format!("order {id}"));
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), RECORDS as usize);
    // A new key cannot be claimed: it fails before its body.
    let refused = order(&node, RECORDS).await.unwrap_err().idempotency();
    assert!(
        matches!(&refused, Error::Store(err) if err.to_string().contains("OOM")),
        "{refused}"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), RECORDS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_its_claim_is_in_flight_leaves_no_claim() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "faults.cancel_claim", store = node, skip(node), lease = "30s", wait = "0s")]
    async fn order(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let node = connect(&proxy.url(), "cancel-claim").await;
    // The claim reaches the server, which executes it; its answer does not come back.
    proxy.hold_replies();
    let sent = proxy.to_server();
    let call = tokio::spawn({
        let node = node.clone();
        async move { order(&node, 1).await }
    });
    until("the claim", Duration::from_secs(5), || {
        proxy.to_server() > sent && records(&server, "cancel-claim").len() == 1
    })
    .await;
    // The client gives up (a timeout, a disconnect): the call's future is dropped.
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    proxy.release_replies();
    // The claim is released at once, not after its 30 s lease.
    let started = Instant::now();
    until("the release", Duration::from_secs(2), || {
        records(&server, "cancel-claim").is_empty()
    })
    .await;
    let direct = connect(&server.url(), "cancel-claim").await;
    assert_eq!(order(&direct, 1).await.unwrap(), 1);
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        1,
        "only the retry ran the body"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_completing_is_stored_and_replayed() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "faults.cancel_complete", store = node, skip(node), lease = "30s", wait = "0s")]
    async fn order(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        STARTED.open();
        GATE.wait().await;
        Ok(id * 10)
    }
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let node = connect(&proxy.url(), "cancel-complete").await;
    load_scripts(&server);
    let call = tokio::spawn({
        let node = node.clone();
        async move { order(&node, 4).await }
    });
    STARTED.wait().await;
    proxy.hold_replies();
    let sent = proxy.to_server();
    GATE.open();
    // The completion reaches the server; its answer does not come back, and the caller
    // gives up.
    until("the completion", Duration::from_secs(5), || {
        let records = records(&server, "cancel-complete");
        proxy.to_server() > sent
            && records.len() == 1
            && server.cli(&["GET", &records[0]]).starts_with("C1")
    })
    .await;
    call.abort();
    let _ = call.await;
    proxy.release_replies();
    let direct = connect(&server.url(), "cancel-complete").await;
    assert_eq!(order(&direct, 4).await.unwrap(), 40, "replayed");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_renewing_frees_the_key() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "faults.cancel_renew", store = node, skip(node), lease = "3s", wait = "0s")]
    async fn order(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            STARTED.open();
            std::future::pending::<()>().await;
        }
        Ok(id)
    }
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let node = connect(&proxy.url(), "cancel-renew").await;
    load_scripts(&server);
    let call = tokio::spawn({
        let node = node.clone();
        async move { order(&node, 2).await }
    });
    STARTED.wait().await;
    proxy.hold_replies();
    let sent = proxy.to_server();
    // The first renewal, a third into the lease, goes out and gets no answer.
    until("a renewal", Duration::from_secs(3), || {
        proxy.to_server() > sent
    })
    .await;
    call.abort();
    let _ = call.await;
    proxy.release_replies();
    let cancelled = Instant::now();
    until("the release", Duration::from_secs(1), || {
        records(&server, "cancel-renew").is_empty()
    })
    .await;
    assert!(
        cancelled.elapsed() < Duration::from_secs(1),
        "released, not lapsed"
    );
    let direct = connect(&server.url(), "cancel-renew").await;
    assert_eq!(order(&direct, 2).await.unwrap(), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_subscriber_is_replaced_and_waiters_wake_at_once() {
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "faults.frozen", store = node, skip(node), lease = "10s", wait = "20s")]
    async fn order(node: &Probe<RedisStore>, id: u64) -> Result<u64, AppError> {
        if id == 1 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            STARTED.open();
            GATE.wait().await;
        }
        Ok(id)
    }
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let behind_nat = Box::leak(Box::new(Probe::new(
        RedisStore::builder(proxy.url())
            .prefix("frozen")
            .heartbeat(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .await
            .unwrap(),
    )));
    let direct = Box::leak(Box::new(Probe::new(connect(&server.url(), "frozen").await)));
    let before = proxy.accepted();
    // A NAT forgets the flows: no FIN, no RST, silence.
    proxy.freeze();
    // A call that times out replaces the command connection.
    let mut fresh = false;
    for id in 100..120 {
        if order(behind_nat, id).await.is_ok() {
            fresh = true;
            break;
        }
    }
    assert!(fresh, "the command connection was never replaced");
    // The subscriber misses a PING and subscribes again on a fresh connection.
    tokio::task::block_in_place(|| proxy.until_accepted(before + 2, Duration::from_secs(5)));

    let holder = tokio::spawn(order(direct, 1));
    STARTED.wait().await;
    let duplicate = tokio::spawn(order(behind_nat, 1));
    behind_nat.until_busy(1).await;
    let completed = Instant::now();
    GATE.open();
    assert_eq!(holder.await.unwrap().unwrap(), 1);
    assert_eq!(duplicate.await.unwrap().unwrap(), 1);
    let woke = completed.elapsed();
    assert!(
        woke < Duration::from_millis(500),
        "the waiter woke {woke:?} after the completion (lease 10 s)"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_without_channels_is_refused_at_connect() {
    let server = RedisServer::start();
    // Redis 7's default for a new user: no channel at all.
    server.cli(&[
        "ACL",
        "SETUSER",
        "orders",
        "on",
        ">secret",
        "~*",
        "+@all",
        "resetchannels",
    ]);
    let url = format!("redis://orders:secret@127.0.0.1:{}", server.port());
    let refused = RedisStore::connect(&url).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ConnectErrorKind::CommandRefused,
        "{refused}"
    );
    let refused = support::chain(&refused);
    assert!(refused.contains("may not subscribe"), "{refused}");
    server.cli(&["ACL", "SETUSER", "orders", "allchannels"]);
    RedisStore::connect(&url).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_hands_the_key_to_one_waiter_not_all() {
    const CALLERS: usize = 100;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "faults.herd", store = node, skip(node), lease = "30s", wait = "30s")]
    async fn declined(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Err(AppError::Body("card declined"))
    }
    let server = RedisServer::start();
    let node = connect(&server.url(), "herd").await;
    server.cli(&["CONFIG", "RESETSTAT"]);
    let started = Instant::now();
    let calls: Vec<_> = (0..CALLERS)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { declined(&node, 1).await })
        })
        .collect();
    for call in calls {
        assert!(matches!(
            call.await.unwrap(),
            Err(AppError::Body("card declined"))
        ));
    }
    let elapsed = started.elapsed();
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        CALLERS,
        "every caller ran its own attempt"
    );
    let commands: u64 = server
        .command_calls()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("config") && !name.starts_with("info"))
        .map(|(_, calls)| calls)
        .sum();
    // Per attempt a claim and a release (whose script runs four commands of its own), per
    // waiter one flag and look: about 10n, where a herd racing for the key after every
    // release took n² (20,402 for 100 callers before the hand-over).
    assert!(
        commands <= 12 * CALLERS as u64,
        "{commands} commands for {CALLERS} callers"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "a waiter waited for a lease: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_body_fails_over_and_keeps_the_holders_result() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "faults.failover", store = node, skip(node), lease = "10s", wait = "30s")]
    async fn charge(node: &RedisStore, order: u64) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        STARTED.open();
        GATE.wait().await;
        Ok(format!("charged order {order}"))
    }
    let mut cluster = support::RedisCluster::start_replicated();
    let urls = cluster.urls();
    let cluster_store = || async {
        RedisStore::cluster_builder(urls.clone())
            .prefix("failover")
            .response_timeout(Duration::from_secs(1))
            .connect()
            .await
            .unwrap()
    };
    let holder_node = cluster_store().await;
    let holder = tokio::spawn(async move { charge(&holder_node, 9).await });
    STARTED.wait().await;
    // The master that holds the claim dies; its replica takes over.
    let master = cluster
        .nodes
        .iter()
        .position(|node| {
            node.cli(&["INFO", "replication"]).contains("role:master")
                && !records(node, "failover").is_empty()
        })
        .expect("a master holds the claim");
    let port = cluster.nodes[master].port();
    let replica = cluster
        .nodes
        .iter()
        .position(|node| {
            node.cli(&["INFO", "replication"])
                .contains(&format!("master_port:{port}"))
        })
        .expect("the master has a replica");
    cluster.nodes[master].kill();
    until("the failover", Duration::from_secs(15), || {
        cluster.nodes[replica]
            .cli(&["INFO", "replication"])
            .contains("role:master")
    })
    .await;
    tokio::task::block_in_place(|| cluster.until_ok(Duration::from_secs(15)));
    GATE.open();
    assert_eq!(holder.await.unwrap().unwrap(), "charged order 9");
    // Every node, old and new, replays it now.
    let other = cluster_store().await;
    assert_eq!(charge(&other, 9).await.unwrap(), "charged order 9");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the body ran once");
    assert_eq!(records(&cluster.nodes[replica], "failover").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_meets_a_cut_connection_is_sent_again_on_a_fresh_one() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static GATE: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "faults.cut", store = node, skip(node), lease = "1500ms", wait = "5s")]
    async fn charge(node: &RedisStore, order: u64) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        STARTED.open();
        GATE.wait().await;
        Ok(format!("charged order {order}"))
    }
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let node = connect(&proxy.url(), "cut").await;
    let holder = tokio::spawn({
        let node = node.clone();
        async move { charge(&node, 3).await }
    });
    STARTED.wait().await;
    // A middlebox resets every connection, before the first renewal notices.
    proxy.cut();
    GATE.open();
    assert_eq!(holder.await.unwrap().unwrap(), "charged order 3");
    // The result was stored: the retry replays it, rather than wait out the lease and run.
    assert_eq!(charge(&node, 3).await.unwrap(), "charged order 3");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the body ran once");
}

/// Guards the store's I/O thread: a connection replaced after a restart must not live on
/// the runtime whose call saw the break (`redis::aio::ConnectionManager` reconnects there,
/// and its connection then died with that runtime: "broken pipe").
#[test]
fn a_reconnection_on_a_runtime_that_shut_down_outlives_it() {
    #[idempotent(name = "faults.runtimes", store = node, skip(node))]
    async fn order(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        Ok(id)
    }
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let mut server = RedisServer::start();
    let node = runtime().block_on(connect(&server.url(), "runtimes"));
    server.restart();
    // Calls on a short-lived runtime meet the broken connection, until it is replaced.
    runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while order(&node, 1).await.is_err() {
            assert!(Instant::now() < deadline, "no recovery after the restart");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // That runtime is gone; the fresh connection still serves another one.
    assert_eq!(runtime().block_on(order(&node, 2)).unwrap(), 2);
}
