//! Real Redis servers for the tests: each test starts its own on a free port, and can
//! kill, restart or pause it without touching anything else.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A store on `url` under `prefix`, with short timeouts so that a fault shows within a test:
/// 500 ms to connect, `response_timeout` for an answer.
pub async fn connect(
    url: &str,
    prefix: &str,
    response_timeout: Duration,
) -> idempotency::RedisStore {
    idempotency::RedisStore::builder(url)
        .prefix(prefix)
        .response_timeout(response_timeout)
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap()
}

/// The `redis-server` binary, or a panic that says how to install it: tests never skip.
pub fn redis_server_binary() -> PathBuf {
    which("redis-server").unwrap_or_else(|| {
        panic!(
            "redis-server is not installed, and the Redis store tests need a real server.\n\
             Install it (Debian/Ubuntu: `sudo apt-get install -y redis-server`; macOS: `brew install redis`) \
             and run the tests again."
        )
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// A port that is free now, and whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn scratch_dir(port: u16) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "idempotency-redis-{}-{port}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// What a server is started as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Cluster,
    Tls,
}

/// One `redis-server` process, stopped on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    cluster: bool,
    /// Whether the port speaks TLS only (`rediss://`).
    tls: bool,
    /// Configuration given at every start, e.g. `--maxmemory 10mb`.
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::launch(free_port(), Mode::Plain, &[])
    }

    /// Starts a server with extra configuration (`["--maxmemory", "10mb"]`), kept across
    /// restarts.
    pub fn start_with(config: &[&str]) -> Self {
        Self::launch(free_port(), Mode::Plain, config)
    }

    /// Starts a server that speaks only TLS on a free port (`--port 0 --tls-port ..`), with
    /// its TLS configuration (`["--tls-cert-file", path, ..]`), kept across restarts. Its
    /// [`url`](Self::url) is `rediss://`; `cli` and `monitor` do not speak TLS.
    pub fn start_tls(config: &[&str]) -> Self {
        Self::launch(free_port(), Mode::Tls, config)
    }

    fn launch(port: u16, mode: Mode, config: &[&str]) -> Self {
        let mut server = RedisServer {
            port,
            dir: scratch_dir(port),
            cluster: mode == Mode::Cluster,
            tls: mode == Mode::Tls,
            extra: config.iter().map(|&arg| arg.to_owned()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new(redis_server_binary());
        let port = self.port.to_string();
        if self.tls {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if self.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
        let mut child = command.spawn().expect("start redis-server");
        // The server says when it is ready; read its log until then.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        assert!(
            ready,
            "redis-server on port {} exited before it was ready",
            self.port
        );
        // Keep draining its log so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        self.child = Some(child);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops the process (SIGSTOP) without killing it: it keeps its connections and
    /// answers nothing until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Runs `redis-cli` against this server and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if let Some(at) = self.extra.iter().position(|arg| arg == "--requirepass") {
            command.args(["--no-auth-warning", "-a", &self.extra[at + 1]]);
        }
        let output = command.args(args).output().expect("run redis-cli");
        assert!(output.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts watching every command the server receives (`MONITOR`).
    pub fn monitor(&self) -> Monitor {
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "monitor"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run redis-cli monitor");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The server confirms before it streams anything.
        assert_eq!(
            lines.next().and_then(Result::ok).as_deref(),
            Some("OK"),
            "MONITOR did not start"
        );
        Monitor {
            child,
            lines,
            port: self.port,
        }
    }

    /// The number of calls of `command` since the statistics were last reset.
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.trim().parse().ok()?))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `MONITOR`.
pub struct Monitor {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    port: u16,
}

impl Monitor {
    /// The commands that clients sent since the monitor started, without their timestamps
    /// and without what scripts ran inside the server. Ends the monitor.
    pub fn client_commands(mut self) -> Vec<String> {
        // A marker of our own: once the monitor shows it, it has shown everything before.
        let marker = format!("end-of-monitor-{}", std::process::id());
        let status = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "ECHO", &marker])
            .stdout(Stdio::null())
            .status()
            .expect("run redis-cli");
        assert!(status.success());
        let mut commands = Vec::new();
        for line in self.lines.by_ref().map_while(Result::ok) {
            if line.contains(&marker) {
                break;
            }
            // `1700000000.123456 [0 127.0.0.1:5000] "SET" ...`, or `[0 lua]` inside scripts.
            let Some((source, command)) = line.split_once("] ") else {
                continue;
            };
            if !source.ends_with(" lua") {
                commands.push(command.to_owned());
            }
        }
        commands
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local Redis Cluster of three masters, created with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters.
    pub fn start() -> Self {
        Self::create(3, 0, &[])
    }

    /// Three masters with a replica each, which takes over within about a second of its
    /// master's death.
    pub fn start_replicated() -> Self {
        Self::create(6, 1, &["--cluster-node-timeout", "1000"])
    }

    fn create(size: usize, replicas: usize, config: &[&str]) -> Self {
        let nodes: Vec<RedisServer> = (0..size)
            .map(|_| RedisServer::launch(free_port(), Mode::Cluster, config))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes };
        // A replica that has not synced yet cannot take over: wait for every link.
        let deadline = Instant::now() + Duration::from_secs(30);
        while replicas > 0
            && !cluster.nodes.iter().all(|n| {
                let info = n.cli(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        {
            assert!(Instant::now() < deadline, "the replicas did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The nodes agree on the slots over their cluster bus; nothing signals the end of
        // that but the state itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster
            .nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Blocks until the nodes still running agree that every slot is served again.
    pub fn until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() < deadline,
                "the cluster did not recover within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One Redis Sentinel (`redis-server <conf> --sentinel`) watching one master, stopped on
/// drop. Its configuration file is written here, in a scratch directory of its own, since
/// a sentinel rewrites it as it learns the topology.
pub struct RedisSentinel {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisSentinel {
    /// Starts a sentinel that monitors the master at `master_port` as `name`, with a quorum
    /// of 2, seeing it down after 500 ms of silence, and waits until it monitors it.
    pub fn start(name: &str, master_port: u16) -> Self {
        let port = free_port();
        let dir = scratch_dir(port);
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {name} 500\n\
                 sentinel failover-timeout {name} 2000\n",
                dir.display()
            ),
        )
        .expect("write the sentinel's configuration");
        let mut child = Command::new(redis_server_binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let monitoring = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("+monitor master"));
        assert!(
            monitoring,
            "the sentinel on port {port} exited before it monitored {name}"
        );
        std::thread::spawn(move || lines.for_each(drop));
        RedisSentinel {
            port,
            dir,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this sentinel and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The port of the master this sentinel names `name` now
    /// (`SENTINEL get-master-addr-by-name`).
    pub fn master_port(&self, name: &str) -> Option<u16> {
        self.cli(&["SENTINEL", "get-master-addr-by-name", name])
            .lines()
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
    }

    /// One field of `SENTINEL master <name>` (`num-slaves`, `num-other-sentinels`, ..).
    pub fn master_field(&self, name: &str, field: &str) -> Option<String> {
        let answer = self.cli(&["SENTINEL", "master", name]);
        let mut lines = answer.lines();
        while let Some(line) = lines.next() {
            if line.trim() == field {
                return lines.next().map(|value| value.trim().to_owned());
            }
        }
        None
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
