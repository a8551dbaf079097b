//! The Redis store over TLS (`rediss://`, the `redis-tls` feature), against real
//! `redis-server`s that speak only TLS, with a CA, server and client certificates each
//! test makes: calls, replays and waiters woken across store instances; a CA the system
//! does not trust; servers that require client certificates; certificates that do not read.

mod support;

use idempotency::{idempotent, ConnectError, ConnectErrorKind, RedisStore, RedisStoreBuilder};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use support::{chain, AppError, Gate, Probe, RedisServer};

/// A certificate and its private key, as PEM.
struct Identity {
    cert: String,
    key: String,
}

/// A certificate authority of a test's own, which no system trusts.
struct Ca {
    cert: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().pem();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate this CA signs, for the names given (`127.0.0.1` is an IP address).
    fn issue(&self, names: &[&str], purposes: &[ExtendedKeyUsagePurpose]) -> Identity {
        let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "idempotency test");
        params.extended_key_usages = purposes.to_vec();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
        Identity {
            cert,
            key: key.serialize_pem(),
        }
    }

    fn server(&self, names: &[&str]) -> Identity {
        self.issue(names, &[ExtendedKeyUsagePurpose::ServerAuth])
    }

    fn client(&self) -> Identity {
        self.issue(&["orders-service"], &[ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A cluster node's: it serves clients, and is the client of the other nodes' buses.
    fn node(&self) -> Identity {
        self.issue(
            &["127.0.0.1"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }
}

/// The files a TLS `redis-server` reads, removed on drop.
struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    fn write(ca: &Ca, server: &Identity) -> TlsFiles {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "idempotency-tls-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), &ca.cert).unwrap();
        std::fs::write(dir.join("server.crt"), &server.cert).unwrap();
        std::fs::write(dir.join("server.key"), &server.key).unwrap();
        TlsFiles { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` that speaks only TLS, with `server`'s certificate, and that asks
/// clients for a certificate signed by `ca` if `auth_clients`.
fn tls_server(ca: &Ca, server: &Identity, auth_clients: bool) -> (RedisServer, TlsFiles) {
    let files = TlsFiles::write(ca, server);
    let config = tls_config(&files, auth_clients, &[]);
    let server = RedisServer::start_tls(&config.iter().map(String::as_str).collect::<Vec<_>>());
    (server, files)
}

/// `redis-cli` over TLS against `server`, presenting the server's own certificate.
fn tls_cli(server: &RedisServer, files: &TlsFiles, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", &files.path("ca.crt")])
        .args(["--cert", &files.path("server.crt")])
        .args(["--key", &files.path("server.key")])
        .args(["-p", &server.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli --tls");
    assert!(output.status.success(), "redis-cli --tls {args:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn tls_config(files: &TlsFiles, auth_clients: bool, more: &[&str]) -> Vec<String> {
    let mut config: Vec<String> = [
        "--tls-cert-file",
        &files.path("server.crt"),
        "--tls-key-file",
        &files.path("server.key"),
        "--tls-ca-cert-file",
        &files.path("ca.crt"),
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
    ]
    .map(str::to_owned)
    .to_vec();
    config.extend(more.iter().map(|&arg| arg.to_owned()));
    config
}

/// Three masters that speak only TLS, to clients and on their cluster bus (where each
/// node presents its certificate to the others), created with `redis-cli --tls`.
struct TlsCluster {
    nodes: Vec<RedisServer>,
    files: TlsFiles,
}

impl TlsCluster {
    fn start(ca: &Ca) -> TlsCluster {
        let files = TlsFiles::write(ca, &ca.node());
        let config = tls_config(
            &files,
            true,
            &[
                "--tls-cluster",
                "yes",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ],
        );
        let config: Vec<&str> = config.iter().map(String::as_str).collect();
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_tls(&config)).collect();
        let cluster = TlsCluster { nodes, files };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut create = cluster.cli();
        create.args(["--cluster", "create"]).args(&addresses).args([
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]);
        let output = create.output().expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --tls --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        // The nodes agree on the slots over their buses; nothing signals the end of that
        // but the state itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &cluster.nodes {
            loop {
                let info = cluster
                    .cli()
                    .args(["-p", &node.port().to_string(), "CLUSTER", "INFO"])
                    .output()
                    .expect("run redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the TLS cluster did not reach cluster_state:ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// `redis-cli` over TLS, presenting a node's certificate.
    fn cli(&self) -> std::process::Command {
        let mut command = std::process::Command::new("redis-cli");
        command
            .args(["--tls", "--cacert", &self.files.path("ca.crt")])
            .args(["--cert", &self.files.path("server.crt")])
            .args(["--key", &self.files.path("server.key")]);
        command
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

fn builder(server: &RedisServer, prefix: &str) -> RedisStoreBuilder {
    RedisStore::builder(server.url())
        .prefix(format!("t-{prefix}-{}", std::process::id()))
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
}

/// Connecting fails: how, and how long it took (a handshake refused is no timeout).
async fn refused(builder: RedisStoreBuilder) -> (ConnectError, Duration) {
    let started = Instant::now();
    let err = builder
        .connect()
        .await
        .expect_err("the connection must be refused");
    println!("refused: {}", chain(&err));
    (err, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_ca_a_store_calls_replays_and_wakes_a_waiter_on_another_instance_over_tls() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static FINISH: LazyLock<Gate> = LazyLock::new(Gate::default);
    // A 30 s lease and a 10 s wait: a waiter that returns within seconds heard the
    // completion on the store's channel, since without it it would look again only when
    // the lease ends.
    #[idempotent(name = "orders.tls", store = node, skip(node), lease = "30s", wait = "10s")]
    async fn create(node: &RedisStore, id: u64) -> Result<String, AppError> {
        let run = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
        STARTED.open();
        FINISH.wait().await;
        Ok(format!("order {id}, run {run}"))
    }
    #[idempotent(name = "orders.tls", store = node, skip(node), lease = "30s", wait = "10s")]
    async fn create_on_b(node: &Probe<RedisStore>, id: u64) -> Result<String, AppError> {
        let run = RUNS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("order {id}, run {run} (on b)"))
    }

    let started = Instant::now();
    let ca = Ca::new("idempotency test CA");
    let (server, _files) = tls_server(&ca, &ca.server(&["127.0.0.1", "localhost"]), false);
    let node_a = builder(&server, "tls-calls")
        .tls_root_certificates(ca.cert.as_bytes())
        .connect()
        .await
        .unwrap();
    let node_b = Arc::new(Probe::new(
        builder(&server, "tls-calls")
            .tls_root_certificates(ca.cert.clone())
            .connect()
            .await
            .unwrap(),
    ));
    assert!(node_a.servers()[0].address.starts_with("rediss://"));

    let first = tokio::spawn({
        let node_a = node_a.clone();
        async move { create(&node_a, 7).await }
    });
    STARTED.wait().await;
    let waiter = tokio::spawn({
        let node_b = Arc::clone(&node_b);
        async move {
            let waiting = Instant::now();
            let value = create_on_b(&node_b, 7).await;
            (value, waiting.elapsed())
        }
    });
    node_b.until_busy(1).await;
    FINISH.open();
    let value = first.await.unwrap().unwrap();
    let (waited, took) = waiter.await.unwrap();
    assert_eq!(value, "order 7, run 1");
    assert_eq!(waited.unwrap(), value, "the waiter on B got A's result");
    assert!(
        took < Duration::from_secs(5),
        "the waiter was woken by the completion over TLS, not by its lease ({took:?})"
    );
    assert_eq!(node_b.claims(), 0, "B never ran the body");

    // Replays, on both instances.
    assert_eq!(create(&node_a, 7).await.unwrap(), value);
    assert_eq!(create_on_b(&node_b, 7).await.unwrap(), value);
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        1,
        "one execution for four calls"
    );
    // A fresh key runs, once.
    assert_eq!(
        create_on_b(&node_b, 8).await.unwrap(),
        "order 8, run 2 (on b)"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    println!(
        "TLS: 1 execution for 4 calls on 2 instances, waiter woke {took:?} after it started waiting; test {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_commands_and_the_listener_reconnect_over_tls() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static STARTED: LazyLock<Gate> = LazyLock::new(Gate::default);
    static FINISH: LazyLock<Gate> = LazyLock::new(Gate::default);
    #[idempotent(name = "orders.tls-restart", store = node, skip(node), lease = "30s", wait = "10s")]
    async fn create(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        if id == 2 {
            STARTED.open();
            FINISH.wait().await;
        }
        Ok(id * 10)
    }
    #[idempotent(name = "orders.tls-restart", store = node, skip(node), lease = "30s", wait = "10s")]
    async fn create_on_b(node: &Probe<RedisStore>, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }

    let ca = Ca::new("idempotency test CA");
    let (mut server, files) = tls_server(&ca, &ca.server(&["127.0.0.1"]), false);
    let prefix = format!("t-tls-restart-{}", std::process::id());
    let connect = || {
        RedisStore::builder(server.url())
            .prefix(prefix.clone())
            .connect_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_millis(500))
            .heartbeat(Duration::from_millis(100))
            .tls_root_certificates(ca.cert.clone())
            .connect()
    };
    let node_a = connect().await.unwrap();
    let node_b = Arc::new(Probe::new(connect().await.unwrap()));
    assert_eq!(create(&node_a, 1).await.unwrap(), 10);

    // The server comes back empty, and speaks only TLS: a connection that forgot its TLS
    // options could not get back.
    server.restart();
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(10);
    // Each store's first call meets the broken connection, and fails before its body.
    while create(&node_a, 1).await.is_err() || create_on_b(&node_b, 100).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the commands did not reconnect over TLS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let commands_back = restarted.elapsed();
    let channel = format!("{prefix}:completions");
    while !tls_cli(&server, &files, &["PUBSUB", "NUMSUB", &channel]).ends_with("2\n") {
        assert!(
            Instant::now() < deadline,
            "the listeners did not resubscribe over TLS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listeners_back = restarted.elapsed();

    // The record of 1 was lost with the server's memory, so it ran again; 100 ran on B.
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);
    let holder = tokio::spawn({
        let node_a = node_a.clone();
        async move { create(&node_a, 2).await }
    });
    STARTED.wait().await;
    let waiter = tokio::spawn({
        let node_b = Arc::clone(&node_b);
        async move {
            let waiting = Instant::now();
            (create_on_b(&node_b, 2).await, waiting.elapsed())
        }
    });
    node_b.until_busy(1).await;
    FINISH.open();
    assert_eq!(holder.await.unwrap().unwrap(), 20);
    let (waited, took) = waiter.await.unwrap();
    assert_eq!(waited.unwrap(), 20, "B got A's result");
    assert!(
        took < Duration::from_secs(5),
        "woken by the notice over TLS: {took:?}"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 4, "2 ran once, on A");
    assert_eq!(node_b.claims(), 1, "B ran only 100");
    println!(
        "TLS restart: commands back after {commands_back:?}, both listeners after {listeners_back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_roots_alone_refuse_a_private_ca_with_a_tls_error_that_says_what_to_give() {
    let ca = Ca::new("idempotency test CA");
    let (server, _files) = tls_server(&ca, &ca.server(&["127.0.0.1"]), false);

    let (err, took) = refused(builder(&server, "tls-system-roots")).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{}", chain(&err));
    let message = err.to_string();
    assert!(
        message.contains("not signed by a CA") && message.contains("tls_root_certificates"),
        "{message}"
    );
    assert!(
        chain(&err).contains("UnknownIssuer"),
        "the cause says what rustls saw: {}",
        chain(&err)
    );
    assert!(
        took < Duration::from_secs(1),
        "refused at once, not timed out: {took:?}"
    );

    // Another CA is no better than the system's.
    let stranger = Ca::new("another CA");
    let (err, _) =
        refused(builder(&server, "tls-other-ca").tls_root_certificates(stranger.cert.clone()))
            .await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{}", chain(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_for_another_host_is_a_tls_error() {
    let ca = Ca::new("idempotency test CA");
    let (server, _files) = tls_server(&ca, &ca.server(&["redis.example.com"]), false);
    let (err, _) =
        refused(builder(&server, "tls-host").tls_root_certificates(ca.cert.clone())).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{}", chain(&err));
    assert!(
        err.to_string().contains("not for the host"),
        "{}",
        chain(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_authenticates_clients_refuses_a_store_without_its_certificate() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "orders.mtls", store = node, skip(node))]
    async fn create(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(id * 10)
    }

    let ca = Ca::new("idempotency test CA");
    let (server, _files) = tls_server(&ca, &ca.server(&["127.0.0.1"]), true);

    let (err, took) =
        refused(builder(&server, "mtls-none").tls_root_certificates(ca.cert.clone())).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{}", chain(&err));
    assert!(
        err.to_string().contains("requires a client certificate"),
        "{}",
        chain(&err)
    );
    assert!(
        took < Duration::from_secs(1),
        "refused at once, not timed out: {took:?}"
    );

    // A certificate the server's CA did not sign is refused too.
    let stranger = Ca::new("another CA").client();
    let (err, _) = refused(
        builder(&server, "mtls-stranger")
            .tls_root_certificates(ca.cert.clone())
            .tls_client_certificate(stranger.cert, stranger.key),
    )
    .await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{}", chain(&err));
    assert!(
        err.to_string()
            .contains("refused this store's client certificate"),
        "{}",
        chain(&err)
    );

    let client = ca.client();
    let node = builder(&server, "mtls")
        .tls_root_certificates(ca.cert.clone())
        .tls_client_certificate(client.cert, client.key)
        .connect()
        .await
        .unwrap();
    assert_eq!(create(&node, 4).await.unwrap(), 40);
    assert_eq!(create(&node, 4).await.unwrap(), 40, "a replay");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn certificates_that_do_not_read_are_invalid_configuration_before_anything_connects() {
    let ca = Ca::new("idempotency test CA");
    let client = ca.client();
    let other = ca.client();
    // Nothing listens on port 1: each error must come before any connection is tried.
    let url = "rediss://127.0.0.1:1";
    let garbled = ca.cert.replace(&ca.cert[40..80], &"A".repeat(40));
    let cases: Vec<(&str, RedisStoreBuilder, &str)> = vec![
        (
            "text that is no PEM",
            RedisStore::builder(url).tls_root_certificates("/etc/redis/ca.crt"),
            "hold no certificate",
        ),
        (
            "a PEM block that is no certificate",
            RedisStore::builder(url).tls_root_certificates(garbled),
            "root certificate",
        ),
        (
            "a key where the root certificate goes",
            RedisStore::builder(url).tls_root_certificates(client.key.clone()),
            "hold no certificate",
        ),
        (
            "a client key that is no key",
            RedisStore::builder(url).tls_client_certificate(
                client.cert.clone(),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            "not a key rustls can sign with",
        ),
        (
            "a client certificate where the key goes",
            RedisStore::builder(url)
                .tls_client_certificate(client.cert.clone(), client.cert.clone()),
            "not a PEM private key",
        ),
        (
            "another certificate's key",
            RedisStore::builder(url).tls_client_certificate(client.cert.clone(), other.key.clone()),
            "does not go with the client certificate",
        ),
        (
            "a TLS option for a URL that is not rediss://",
            RedisStore::builder("redis://127.0.0.1:1").tls_root_certificates(ca.cert.clone()),
            "not `rediss://`",
        ),
        (
            "a cluster node that is not rediss://",
            RedisStore::cluster_builder(["rediss://127.0.0.1:1", "redis://127.0.0.1:2"])
                .tls_root_certificates(ca.cert.clone()),
            "not `rediss://`",
        ),
    ];
    for (case, builder, says) in cases {
        let printed = format!("{builder:?}");
        assert!(
            !printed.contains("PRIVATE KEY"),
            "{case}: Debug prints no key: {printed}"
        );
        let started = Instant::now();
        let err = builder.connect().await.expect_err(case);
        assert_eq!(
            err.kind(),
            ConnectErrorKind::InvalidConfig,
            "{case}: {}",
            chain(&err)
        );
        assert!(err.to_string().contains(says), "{case}: {}", chain(&err));
        assert!(started.elapsed() < Duration::from_millis(500), "{case}");
        println!("{case}: {}", chain(&err));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_runs_each_key_once_across_instances_and_refuses_a_store_without_the_ca()
{
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(name = "orders.cluster-tls", store = node, skip(node), lease = "30s", wait = "10s")]
    async fn create(node: &RedisStore, id: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        // Long enough for the duplicates on the other instance to wait for it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(id * 10)
    }

    let started = Instant::now();
    let ca = Ca::new("idempotency test CA");
    let cluster = TlsCluster::start(&ca);
    let created = started.elapsed();
    let client = ca.client();
    let connect = || {
        RedisStore::cluster_builder(cluster.urls())
            .prefix(format!("t-cluster-tls-{}", std::process::id()))
            .tls_root_certificates(ca.cert.clone())
            .tls_client_certificate(client.cert.clone(), client.key.clone())
            .connect()
    };
    let (node_a, node_b) = (connect().await.unwrap(), connect().await.unwrap());
    assert_eq!(node_a.servers().len(), 3, "every seed node was checked");

    // Eight keys over the slots of all three masters, each called four times at once on
    // two instances: the duplicates wait for the completion notice over TLS.
    let calling = Instant::now();
    let calls: Vec<_> = (0..8u64)
        .flat_map(|id| {
            [&node_a, &node_b, &node_a, &node_b].map(|node| {
                let node = node.clone();
                tokio::spawn(async move { create(&node, id).await.unwrap() })
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let expected: Vec<u64> = (0..8u64).flat_map(|id| [id * 10; 4]).collect();
    assert_eq!(results, expected);
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        8,
        "one execution per key for 32 calls"
    );
    // With 30 s leases, only the completion notices can have woken the duplicates so soon.
    assert!(
        calling.elapsed() < Duration::from_secs(5),
        "{:?}",
        calling.elapsed()
    );

    let (err, _) = refused(RedisStore::cluster_builder(cluster.urls())).await;
    assert_eq!(err.kind(), ConnectErrorKind::Tls, "{}", chain(&err));
    println!(
        "TLS cluster: 8 executions for 32 calls on 2 instances; cluster created in {created:?}, test {:?}",
        started.elapsed()
    );
}
