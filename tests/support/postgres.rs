//! Real PostgreSQL servers for the tests: each test creates its own cluster in a scratch
//! directory and runs its own postmaster on a free port, which it can stop, kill, pause or
//! start again without touching anything else.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Settings for a throwaway server: no fsync (the data need not outlive the machine), room
/// for many pools at once, and a log that holds only what went wrong.
///
/// Commits stay synchronous: without fsync that costs nothing measurable, and with
/// `synchronous_commit=off` a kill loses what was committed in the last 600 ms (even a
/// `create table`), which no real crash of a server would.
const TEST_SETTINGS: [&str; 7] = [
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=on",
    "full_page_writes=off",
    "max_connections=300",
    "shared_buffers=32MB",
    "log_min_messages=warning",
];

/// How long a server may take to accept connections, or to exit once asked to.
const PATIENCE: Duration = Duration::from_secs(30);

/// The directory of PostgreSQL's server binaries (`initdb`, `postgres`, `psql`,
/// `pg_isready`), or a panic that says how to install them: tests never skip.
///
/// The newest version under Debian's `/usr/lib/postgresql/*/bin` first, as Debian keeps
/// each major version side by side and off `PATH`; then `pg_config --bindir`; then wherever
/// `initdb` on `PATH` really lives.
pub fn postgres_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed, and the Postgres store tests need a real server.\n\
                 Install it (Debian/Ubuntu: `sudo apt-get install -y postgresql`; macOS: `brew install postgresql`) \
                 and run the tests again."
            )
        })
    })
}

fn find_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &PathBuf| {
        ["initdb", "postgres", "psql", "pg_isready"]
            .iter()
            .all(|binary| dir.join(binary).is_file())
    };
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            // "15", or "9.6" before version 10: compared as numbers, 9.6 < 15.
            let version: Option<Vec<u32>> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect();
            Some((version?, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .max()
        .map(|(_, bin)| bin);
    let pg_config = || {
        let output = Command::new("pg_config").arg("--bindir").output().ok()?;
        let bin = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
        Some(bin).filter(|bin| output.status.success() && complete(bin))
    };
    // Often a symbolic link, and `postgres` lies next to its target only.
    let on_path = || {
        let paths = std::env::var_os("PATH")?;
        let initdb = std::env::split_paths(&paths)
            .map(|dir| dir.join("initdb"))
            .find(|path| path.is_file())?;
        let bin = initdb.canonicalize().ok()?.parent()?.to_owned();
        Some(bin).filter(complete)
    };
    debian.or_else(pg_config).or_else(on_path)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

fn scratch_dir() -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "idempotency-postgres-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // Left by an earlier run whose process had the same id.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// One PostgreSQL cluster and its postmaster, a direct child of the test, so that a test
/// can signal it. Stopped and deleted on drop.
///
/// The server trusts every local connection, as user `postgres`, and runs with settings
/// for tests (`TEST_SETTINGS`: no fsync, 300 connections); its unix socket and its log
/// (`postgres.log`) are in [`dir`](Self::dir).
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    /// Whether the test runs as root, which PostgreSQL refuses: the cluster then belongs
    /// to the `postgres` system user, and its programs run as that user.
    as_postgres_user: bool,
    /// `name=value` settings given at every start, after the `TEST_SETTINGS`.
    settings: Vec<String>,
    child: Option<Child>,
}

impl PostgresServer {
    /// Creates a cluster, starts its server on a free port and waits until it accepts
    /// connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with settings of its own (`["lock_timeout=1s"]`),
    /// which win over the defaults and are kept across restarts.
    pub fn start_with(settings: &[&str]) -> Self {
        let dir = scratch_dir();
        // A new directory belongs to the effective user: the one way to ask std who we are.
        let as_postgres_user = std::fs::metadata(&dir).unwrap().uid() == 0;
        let mut server = PostgresServer {
            port: free_port(),
            dir,
            as_postgres_user,
            settings: settings.iter().map(|&setting| setting.to_owned()).collect(),
            child: None,
        };
        if as_postgres_user {
            let chown = Command::new("chown")
                .arg("postgres:")
                .arg(&server.dir)
                .output()
                .expect("run chown");
            assert!(
                chown.status.success(),
                "the tests run as root, which PostgreSQL refuses, and the scratch directory \
                 cannot be given to the `postgres` user that Debian's package creates: {}",
                String::from_utf8_lossy(&chown.stderr)
            );
        }
        server.init();
        // Another process may take the port between `free_port` and the server's bind.
        for attempt in 1.. {
            match server.launch() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {
                    server.port = free_port();
                }
                Err(log) => panic!("postgres exited before it was ready:\n{log}"),
            }
        }
        server
    }

    fn init(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the postmaster and waits until it accepts connections over TCP; `Err` holds
    /// what it logged if it exited first.
    fn launch(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server's log");
        let logged_before = std::fs::read(self.log_path()).map_or(0, |log| log.len());
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.dir);
        for setting in TEST_SETTINGS
            .iter()
            .copied()
            .chain(self.settings.iter().map(String::as_str))
        {
            command.args(["-c", setting]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        // Polled: after a kill, the server refuses connections until it has replayed its WAL.
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                self.child = None;
                let log = std::fs::read(self.log_path()).unwrap_or_default();
                return Err(
                    String::from_utf8_lossy(&log[logged_before.min(log.len())..]).into_owned(),
                );
            }
            if self.is_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "postgres on port {} did not accept connections within {PATIENCE:?}; its log ends with:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn is_ready(&self) -> bool {
        Command::new(postgres_bin_dir().join("pg_isready"))
            .args(["-q", "-t", "2", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }

    /// One of PostgreSQL's programs, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let program = postgres_bin_dir().join(program);
        let mut command = if self.as_postgres_user {
            // setpriv execs the program (runuser and su fork and wait), so that the child
            // is the program itself and signals reach it.
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
            command
        } else {
            Command::new(program)
        };
        // The test's own directory may be closed to the `postgres` user.
        command.current_dir(&self.dir);
        command
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the database `postgres`, as the
    /// superuser, without a password.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port, kept across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scratch directory: the cluster (`data/`), the unix socket and `postgres.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The last 40 lines of the server's log (warnings and errors only), for a failure's
    /// message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs SQL with `psql` as the superuser (each statement in its own transaction, as a
    /// script would) and returns what it printed, unaligned and without headers: `"3"` for
    /// `select count(*) from orders`. Panics with psql's errors if a statement fails.
    pub fn psql(&self, sql: &str) -> String {
        let mut child = Command::new(postgres_bin_dir().join("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"])
            // A paused server accepts the connection and then never answers.
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        // Written from a thread, so that a large script and a large result cannot block
        // each other on full pipes; an early exit shows in psql's status.
        let mut stdin = child.stdin.take().unwrap();
        let script = sql.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        });
        let output = child.wait_with_output().expect("wait for psql");
        writer.join().unwrap();
        assert!(
            output.status.success(),
            "psql failed on {sql:?}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Shuts the server down the fast way (SIGINT: sessions are ended, the data is
    /// checkpointed), and waits until it has exited. Nothing happens if it is not running.
    pub fn stop(&mut self) {
        assert!(
            self.shut_down(),
            "postgres did not stop within {PATIENCE:?}, and was killed; its log ends with:\n{}",
            self.log_tail()
        );
    }

    /// Whether the server stopped in time (else it is killed).
    fn shut_down(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let pid = child.id();
        // A paused server would keep the SIGINT pending forever.
        let mut everyone = children_of(pid);
        everyone.push(pid);
        signal("-CONT", &everyone);
        signal("-INT", &[pid]);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Kills the postmaster and every process it started (SIGKILL), as a crash would:
    /// connections drop and nothing is checkpointed; [`start_again`](Self::start_again)
    /// then recovers from the WAL, and every committed transaction is there.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Stopped, the postmaster starts no process while its children are listed.
        signal("-STOP", &[pid]);
        let mut everyone = children_of(pid);
        everyone.push(pid);
        signal("-KILL", &everyone);
        let _ = child.wait();
        // A new postmaster refuses to start while a process of the old one still holds
        // its shared memory.
        let deadline = Instant::now() + PATIENCE;
        while everyone.iter().any(|&pid| running(pid)) {
            assert!(
                Instant::now() < deadline,
                "the server's processes survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the server again after [`stop`](Self::stop) or [`kill`](Self::kill), on the
    /// same cluster and port, and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "the server still runs: stop or kill it first"
        );
        if let Err(log) = self.launch() {
            panic!("postgres exited before it was ready:\n{log}");
        }
    }

    /// Freezes the postmaster and every backend (SIGSTOP), as a stalled machine would:
    /// connections stay open, new ones are accepted by the kernel, and nothing answers
    /// until [`resume`](Self::resume).
    pub fn pause(&self) {
        let pid = self.pid();
        // The postmaster first, so that it starts no process that would miss the signal.
        signal("-STOP", &[pid]);
        signal("-STOP", &children_of(pid));
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        let pid = self.pid();
        signal("-CONT", &children_of(pid));
        signal("-CONT", &[pid]);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.shut_down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `signal` (`"-KILL"`) to `pids`, some of which may have exited already.
fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
}

/// The processes that `parent` started and that still run: for a postmaster, its backends
/// and background workers.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| state(pid).is_some_and(|(state, ppid)| state != 'Z' && ppid == parent))
        .collect()
}

/// Whether `pid` runs: exists and is not a zombie, which holds no memory any more.
fn running(pid: u32) -> bool {
    state(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The state letter and the parent of `pid`, from `/proc/<pid>/stat`.
fn state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (name) state ppid ...`, where the name may hold spaces and parentheses.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}
