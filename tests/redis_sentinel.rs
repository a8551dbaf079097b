//! The Redis store on Redis Sentinel, against real servers started here: one master, one
//! replica and three sentinels. Calls run once and replay; after the master is killed and
//! the sentinels fail over, the same store serves the promoted replica, with the records it
//! had acknowledged and waiters woken by its channel; a wrong master name is a typed error.

mod support;

use idempotency::store::{Begin, Fingerprint, Request};
use idempotency::{idempotent, ConnectErrorKind, KeyHasher, RedisStore, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{AppError, RedisSentinel, RedisServer};

const MASTER: &str = "orders";

/// A master, its replica (in sync), and three sentinels that all see both and each other.
struct Deployment {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<RedisSentinel>,
}

impl Deployment {
    fn start() -> Self {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
        until("the replica syncs", Duration::from_secs(20), || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels: Vec<RedisSentinel> = (0..3)
            .map(|_| RedisSentinel::start(MASTER, master.port()))
            .collect();
        // A failover needs a quorum that knows the replica: the sentinels find it in the
        // master's INFO and each other through the master's hello channel, every 2 s.
        until(
            "the sentinels see the replica and each other",
            Duration::from_secs(30),
            || {
                sentinels.iter().all(|s| {
                    s.master_field(MASTER, "num-slaves").as_deref() == Some("1")
                        && s.master_field(MASTER, "num-other-sentinels").as_deref() == Some("2")
                })
            },
        );
        Deployment {
            master,
            replica,
            sentinels,
        }
    }

    fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisSentinel::url).collect()
    }

    /// Blocks until every sentinel names the replica as the master.
    fn until_replica_promoted(&self, within: Duration) {
        let promoted = self.replica.port();
        until("the sentinels fail over to the replica", within, || {
            self.sentinels
                .iter()
                .all(|s| s.master_port(MASTER) == Some(promoted))
                && self
                    .replica
                    .cli(&["INFO", "replication"])
                    .contains("role:master")
        });
    }
}

/// Polls `done` every 50 ms until it holds, for at most `within`: for states that nothing
/// signals but the servers' own answers.
fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unique_prefix(test: &str) -> String {
    format!("t-{test}-{}", std::process::id())
}

static CREATED: AtomicUsize = AtomicUsize::new(0);

#[idempotent(name = "orders.create", store = store, skip(store), lease = "30s", wait = "20s")]
async fn create_order(store: &RedisStore, customer: u64) -> Result<String, AppError> {
    let n = CREATED.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(format!("order #{n} for {customer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_sentinels_run_once_and_replay_from_the_master() {
    let deployment = Deployment::start();
    let store = RedisStore::sentinel_builder(deployment.sentinel_urls(), MASTER)
        .prefix(unique_prefix("once"))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let servers = store.servers();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(
        servers[0].address,
        deployment.master.url(),
        "the checks ran on the master"
    );
    assert_eq!(servers[0].replicas, 1, "{servers:?}");

    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "orders.once", store = store, skip(store), lease = "30s")]
    async fn once(store: &RedisStore, customer: u64) -> Result<String, AppError> {
        let n = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("run #{n} for {customer}"))
    }
    let first = once(&store, 7).await.unwrap();
    for _ in 0..9 {
        assert_eq!(once(&store, 7).await.unwrap(), first);
    }
    assert_eq!(once(&store, 8).await.unwrap(), "run #2 for 8");
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "one execution per key");
    let mut hasher = KeyHasher::new("orders.once");
    hasher.arg("customer", &7u64);
    let record = store.record_key("orders.once", &hasher.finish().unwrap());
    assert_eq!(
        deployment.master.cli(&["EXISTS", &record]).trim(),
        "1",
        "the record is on the master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_master_dies_the_same_store_follows_the_promoted_replica() {
    let mut deployment = Deployment::start();
    let prefix = unique_prefix("failover");
    let store = RedisStore::sentinel_builder(deployment.sentinel_urls(), MASTER)
        .prefix(&prefix)
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .wait_for_replicas(1, Duration::from_millis(300))
        .connect()
        .await
        .unwrap();

    // Completed, and acknowledged by the replica, before the failover.
    let before = create_order(&store, 1).await.unwrap();
    assert_eq!(before, "order #1 for 1");
    assert_eq!(create_order(&store, 1).await.unwrap(), before);
    assert_eq!(CREATED.load(Ordering::SeqCst), 1);

    deployment.master.kill();
    let killed = Instant::now();
    deployment.until_replica_promoted(Duration::from_secs(30));
    let promoted = killed.elapsed();

    // The same store, not restarted: it fails calls until it has reconnected to the
    // promoted replica (each failure is the signal to try again), then replays.
    let deadline = killed + Duration::from_secs(30);
    let mut failed_calls = 0;
    let replayed = loop {
        match create_order(&store, 1).await {
            Ok(replayed) => break replayed,
            Err(err) => {
                failed_calls += 1;
                assert!(
                    Instant::now() < deadline,
                    "the store did not serve calls within 30 s of the kill: {err:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let served = killed.elapsed();
    println!(
        "failover: the sentinels promoted the replica {promoted:?} after the kill; the store served a call {served:?} after the kill, {:?} after the promotion was seen ({failed_calls} calls failed meanwhile)",
        served.saturating_sub(promoted)
    );
    assert!(
        served <= promoted + Duration::from_secs(5),
        "the store took {:?} to follow the promotion",
        served.saturating_sub(promoted)
    );
    assert_eq!(replayed, before, "the record survived the failover");
    assert_eq!(
        CREATED.load(Ordering::SeqCst),
        1,
        "the body did not run again"
    );

    // A waiter hears the completion on the new master's channel, once the store's listener
    // has subscribed there again.
    let channel = format!("{prefix}:completions");
    until(
        "the listener subscribes on the new master",
        Duration::from_secs(10),
        || {
            deployment
                .replica
                .cli(&["PUBSUB", "NUMSUB", &channel])
                .lines()
                .nth(1)
                .is_some_and(|n| n.trim() == "1")
        },
    );
    let mut hasher = KeyHasher::new("orders.wait");
    hasher.arg("customer", &2u64);
    let request = Request {
        namespace: "orders.wait".into(),
        key: hasher.finish().unwrap(),
        fingerprint: Fingerprint::NONE,
        lease: Some(Duration::from_secs(30)),
    };
    let Begin::Claimed(claim) = store.begin(&request).await.unwrap() else {
        panic!("the record is vacant")
    };
    let Begin::InProgress(flight) = store.begin(&request).await.unwrap() else {
        panic!("the record is held")
    };
    let woken = tokio::spawn(async move {
        flight.changed.await;
        Instant::now()
    });
    let completing = Instant::now();
    let completed = store
        .complete(&claim, b"\x01J1", Duration::from_secs(60))
        .await;
    // The old master was the only replica: no replica can acknowledge now, and the store
    // says so rather than pretend.
    let err = completed.expect_err("no replica is left to acknowledge");
    assert!(err.to_string().contains("0 of 1 replicas"), "{err}");
    let woken = tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("the waiter was not woken")
        .unwrap();
    let latency = woken.saturating_duration_since(completing);
    println!("a waiter woke {latency:?} after the completion, through the new master's channel");
    assert!(
        latency < Duration::from_secs(2),
        "woken by the notice, not the 30 s lease: {latency:?}"
    );
    assert!(matches!(
        store.begin(&request).await.unwrap(),
        Begin::Completed(_)
    ));
    let servers_now = deployment.replica.cli(&["INFO", "replication"]);
    assert!(servers_now.contains("role:master"), "{servers_now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_name_no_sentinel_monitors_is_a_configuration_error() {
    let deployment = Deployment::start();
    let err = RedisStore::sentinel_builder(deployment.sentinel_urls(), "no-such-master")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("no-such-master"), "{err}");
}

#[tokio::test]
async fn no_sentinel_answering_is_unreachable_and_none_given_is_invalid() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisStore::sentinel_builder([format!("redis://127.0.0.1:{port}")], MASTER)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::Unreachable, "{err}");

    let err = RedisStore::sentinel_builder(Vec::<String>::new(), MASTER)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConnectErrorKind::InvalidConfig, "{err}");
}
