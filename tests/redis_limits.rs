//! The Redis store at its limits, against real `redis-server`s: results slower to encode
//! than their lease, results of tens of megabytes, results over the server's value limit,
//! scripts the server forgot, what `connect` checks (credentials, persistence), waiting for
//! replicas, and records written by someone else (fuzzed).

mod support;

use idempotency::{
    idempotent, Binary, ConnectErrorKind, Error, KeyHasher, Persistence, RedisStore,
};
use serde::{Deserialize, Serialize, Serializer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use support::RedisServer;
use support::{AppError, Gate, Probe};

/// A store with this file's timeouts.
async fn connect(url: &str, prefix: &str) -> RedisStore {
    support::connect(url, prefix, Duration::from_secs(2)).await
}

/// Network input the server counted so far.
fn bytes_received(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|line| line.strip_prefix("total_net_input_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has total_net_input_bytes")
}

/// A result whose `Serialize` takes 5 ms per element while `SLOW` is set, and opens
/// `ENCODING` when it starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Report(Vec<u32>);

static SLOW: AtomicBool = AtomicBool::new(false);
static ENCODING: LazyLock<Gate> = LazyLock::new(Gate::default);

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Slowly<'a>(&'a [u32]);
        impl Serialize for Slowly<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for n in self.0 {
                    if SLOW.load(Ordering::SeqCst) {
                        ENCODING.open();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    seq.serialize_element(n)?;
                }
                seq.end()
            }
        }
        // As the derived impl would: a newtype is its content.
        serializer.serialize_newtype_struct("Report", &Slowly(&self.0))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_slower_to_encode_than_its_lease_keeps_its_claim() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "limits.report", store = node, skip(node), lease = "300ms", wait = "30s")]
    async fn report(node: &Probe<RedisStore>, day: u32) -> Result<Report, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        // 200 elements at 5 ms: a second of encoding, over three leases.
        Ok(Report((0..200).map(|n| n * day).collect()))
    }
    let server = RedisServer::start();
    let holder_node = Box::leak(Box::new(Probe::new(connect(&server.url(), "slow").await)));
    let other = Box::leak(Box::new(Probe::new(connect(&server.url(), "slow").await)));
    SLOW.store(true, Ordering::SeqCst);
    let holder = tokio::spawn(report(holder_node, 3));
    ENCODING.wait().await;

    // Another node's duplicate arrives while the result is being encoded, and again a
    // lease later: it must find the claim held each time.
    let early = tokio::spawn(report(other, 3));
    other.until_busy(1).await;

    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = tokio::spawn(report(other, 3));
    other.until_busy(2).await;

    let expected = Report((0..200).map(|n| n * 3).collect());
    assert_eq!(holder.await.unwrap().unwrap(), expected, "not LeaseLost");
    SLOW.store(false, Ordering::SeqCst);
    assert_eq!(early.await.unwrap().unwrap(), expected);
    assert_eq!(late.await.unwrap().unwrap(), expected);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(other.claims(), 0, "the duplicates never claimed the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_keeps_its_claim_while_it_is_encoded_and_written() {
    // Bytes are a JSON array of numbers: 8 MiB take many leases to encode, and are about
    // 28 MB to write.
    const LEN: usize = 8 << 20;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static DONE: AtomicBool = AtomicBool::new(false);
    #[idempotent(name = "limits.export", store = node, skip(node), lease = "300ms")]
    async fn export(node: &RedisStore, id: u64) -> Result<Vec<u8>, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        STARTED.open();
        Ok(vec![7; LEN])
    }
    #[idempotent(name = "limits.export", store = node, skip(node), wait = "0s")]
    async fn export_or_busy(node: &Probe<RedisStore>, id: u64) -> Result<Vec<u8>, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    }
    let server = RedisServer::start();
    let holder_node = connect(&server.url(), "large").await;
    let other = Box::leak(Box::new(Probe::new(connect(&server.url(), "large").await)));
    let holder = tokio::spawn(async move {
        let exported = export(&holder_node, 1).await;
        DONE.store(true, Ordering::SeqCst);
        exported
    });
    STARTED.wait().await;
    // Another node keeps asking while the result is encoded and written, many leases
    // long: it is told the call is in progress, never given the key.
    let mut asked = 0;
    while !DONE.load(Ordering::SeqCst) {
        match export_or_busy(other, 1).await {
            Err(AppError::Idempotency(Error::InProgress { .. } | Error::Store(_))) => {}
            Ok(replayed) => assert_eq!(replayed.len(), LEN, "the other node ran the body"),
            Err(other) => panic!("unexpected: {other:?}"),
        }
        asked += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holder.await.unwrap().unwrap().len(), LEN, "not LeaseLost");
    assert!(asked > 1, "asked {asked} times");
    assert_eq!(export_or_busy(other, 1).await.unwrap().len(), LEN);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the body ran once");
    assert_eq!(other.claims(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_size_limit_reaches_its_caller_and_never_runs_again() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "limits.big", store = node, skip(node), lease = "1s", wait = "5s")]
    async fn big(node: &RedisStore, id: u64) -> Result<String, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok("y".repeat(2 << 20))
    }
    // The server's own limit, read at connect; then a lower one of the store's.
    let limited = RedisServer::start_with(&["--proto-max-bulk-len", "1mb"]);
    let server = RedisServer::start();
    let by_server = connect(&limited.url(), "big").await;
    assert_eq!(by_server.servers()[0].max_bulk_len, 1 << 20);
    let by_store = RedisStore::builder(server.url())
        .prefix("big")
        .max_value_len(1 << 20)
        .connect()
        .await
        .unwrap();
    for (id, node) in [(1, &by_server), (2, &by_store)] {
        let runs = RUNS.load(Ordering::SeqCst);
        assert_eq!(
            big(node, id).await.unwrap().len(),
            2 << 20,
            "its caller gets it"
        );
        for _ in 0..3 {
            let retry = big(node, id).await.unwrap_err().idempotency();
            assert!(
                matches!(&retry, Error::Codec(_))
                    && retry.to_string().contains("over the store's limit"),
                "{retry}"
            );
        }
        assert_eq!(RUNS.load(Ordering::SeqCst), runs + 1, "the body ran once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_completion_after_the_server_forgot_its_scripts_crosses_the_network_once() {
    const LEN: usize = 4 << 20;
    #[idempotent(name = "limits.noscript", store = node, skip(node))]
    async fn export(node: &RedisStore, id: u64) -> Result<String, AppError> {
        Ok("z".repeat(LEN))
    }
    let server = RedisServer::start();
    let node = connect(&server.url(), "noscript").await;
    // What a restart does to the script cache.
    server.cli(&["SCRIPT", "FLUSH"]);
    let before = bytes_received(&server);
    assert_eq!(export(&node, 1).await.unwrap().len(), LEN);
    let sent = bytes_received(&server) - before;
    assert!(
        sent < LEN as u64 * 3 / 2,
        "{sent} bytes reached the server for a {LEN}-byte result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_server_that_wants_credentials_it_was_not_given() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let refused = RedisStore::connect(&server.url()).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ConnectErrorKind::CommandRefused,
        "{refused}"
    );
    let refused = support::chain(&refused);
    assert!(refused.contains("credentials"), "{refused}");
    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
    RedisStore::connect(&url).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reports_how_the_server_keeps_records() {
    let memory_only = RedisServer::start();
    let store = RedisStore::connect(&memory_only.url()).await.unwrap();
    let info = &store.servers()[0];
    assert_eq!(info.persistence, Persistence::None);
    assert!(info.memory_only());
    assert!(
        info.version.starts_with('7') || info.version.starts_with('8'),
        "{}",
        info.version
    );
    assert!(info.warnings().iter().any(|w| w.contains("only in memory")));
    let refused = RedisStore::builder(memory_only.url())
        .require_persistence()
        .connect()
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ConnectErrorKind::MemoryOnly, "{refused}");
    let refused = support::chain(&refused);
    assert!(refused.contains("only in memory"), "{refused}");

    let durable = RedisServer::start_with(&["--appendonly", "yes"]);
    let store = RedisStore::builder(durable.url())
        .require_persistence()
        .connect()
        .await
        .unwrap();
    let info = &store.servers()[0];
    assert_eq!(
        info.persistence,
        Persistence::AppendOnly("everysec".to_owned())
    );
    assert!(info.warnings().is_empty(), "{:?}", info.warnings());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_waits_for_its_replica_before_its_caller_sees_it() {
    #[idempotent(name = "limits.replicated", store = node, skip(node))]
    async fn order(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        Ok(id)
    }
    let primary = RedisServer::start();
    let replica =
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let node = RedisStore::builder(primary.url())
        .prefix("replicated")
        .wait_for_replicas(1, Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    assert_eq!(node.servers()[0].replicas, 1);
    for id in 0..20 {
        assert_eq!(order(&node, id).await.unwrap(), id);
        // The caller has its result: the replica has the record already.
        let on_replica = replica.cli(&["--scan", "--pattern", "replicated:{*"]);
        assert_eq!(
            on_replica.lines().count(),
            id as usize + 1,
            "record {id} not on the replica"
        );
    }
    // A replica that stops answering delays the caller by the timeout, no more; the caller
    // still gets its result.
    let impatient = RedisStore::builder(primary.url())
        .prefix("replicated")
        .wait_for_replicas(1, Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    replica.pause();
    let started = Instant::now();
    let result = order(&impatient, 100).await;
    let waited = started.elapsed();
    replica.resume();
    assert_eq!(result.unwrap(), 100);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_by_anyone_else_are_errors_never_panics() {
    #[idempotent(name = "limits.fuzzed", store = node, skip(node), wait = "0s")]
    async fn read(node: &RedisStore, id: u64) -> Result<String, AppError> {
        Ok(format!("fresh {id}"))
    }
    let server = RedisServer::start();
    let node = connect(&server.url(), "fuzzed").await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    // A deterministic xorshift: the same 400 records on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let heads: [&[u8]; 6] = [b"", b"C1", b"P1", b"C", b"P", b"C9"];
    let mut outcomes = [0usize; 3];
    for id in 0..400u64 {
        let mut hasher = KeyHasher::new("limits.fuzzed");
        hasher.arg("id", &id);
        let name = node.record_key("limits.fuzzed", &hasher.finish().unwrap());
        let mut bytes = heads[usize::try_from(next() % 6).unwrap()].to_vec();
        let len = next() % 64;
        bytes.extend((0..len).map(|_| next().to_le_bytes()[0]));
        if next() % 3 == 0 {
            // A valid header and fingerprint, then noise or JSON of another type.
            bytes = b"C1".to_vec();
            bytes.extend([0u8; 16]);
            bytes.extend(if next() % 2 == 0 {
                &b"\x01J42"[..]
            } else {
                &b"\x01J{"[..]
            });
        }
        let () = redis::cmd("SET")
            .arg(&name)
            .arg(&bytes)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut raw)
            .await
            .unwrap();
        match read(&node, id).await {
            Ok(fresh) => {
                assert_eq!(fresh, format!("fresh {id}"));
                outcomes[0] += 1;
            }
            Err(AppError::Idempotency(Error::Codec(_) | Error::Store(_))) => outcomes[1] += 1,
            Err(AppError::Idempotency(
                Error::InProgress { .. } | Error::PayloadMismatch { .. },
            )) => {
                outcomes[2] += 1;
            }
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    // Every shape was met: unreadable layouts and bodies, and in-progress look-alikes.
    assert!(outcomes[1] > 0 && outcomes[2] > 0, "{outcomes:?}");
    assert_eq!(outcomes.iter().sum::<usize>(), 400);
    assert!(outcomes[1] > 0, "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_result_takes_a_third_of_the_room_of_a_vec_and_reads_its_records() {
    const LEN: usize = 1 << 20;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    fn bytes() -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..LEN)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }
    #[idempotent(name = "limits.pdf.vec", store = node, skip(node))]
    async fn as_vec(node: &RedisStore, id: u64) -> Result<Vec<u8>, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(bytes())
    }
    #[idempotent(name = "limits.pdf.binary", store = node, skip(node))]
    async fn as_binary(node: &RedisStore, id: u64) -> Result<Binary, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(Binary(bytes()))
    }
    // The same function after a deploy that moved it from `Vec<u8>` to `Binary`.
    #[idempotent(name = "limits.pdf.vec", store = node, skip(node))]
    async fn moved_to_binary(node: &RedisStore, id: u64) -> Result<Binary, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(Binary::default())
    }
    let server = RedisServer::start();
    let node = connect(&server.url(), "binary").await;
    assert_eq!(as_vec(&node, 1).await.unwrap(), bytes());
    assert_eq!(as_binary(&node, 1).await.unwrap().0, bytes());
    let stored = |namespace: &str| -> usize {
        let mut hasher = KeyHasher::new(namespace);
        hasher.arg("id", &1u64);
        let name = node.record_key(namespace, &hasher.finish().unwrap());
        server.cli(&["STRLEN", &name]).trim().parse().unwrap()
    };
    let (vec_len, binary_len) = (stored("limits.pdf.vec"), stored("limits.pdf.binary"));
    assert!(
        binary_len <= LEN * 4 / 3 + 64,
        "{binary_len} bytes stored for {LEN}"
    );
    assert!(vec_len > LEN * 3, "{vec_len} bytes stored for {LEN}");
    // Replays, and the old record read by the new return type.
    assert_eq!(as_binary(&node, 1).await.unwrap().0, bytes());
    assert_eq!(moved_to_binary(&node, 1).await.unwrap().0, bytes());
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}
