//! A TCP proxy between the store and a real server, to inject what networks do to
//! connections: freeze the ones that exist (a NAT or load balancer forgetting an idle flow:
//! no FIN, no RST, just silence), hold the server's replies, or cut every connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A proxy on a free loopback port that forwards to `127.0.0.1:<target>`. Stopped on drop.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Connections accepted so far; a connection's id is the count before it.
    accepted: usize,
    /// Connections with a smaller id forward nothing any more, and stay open.
    frozen_below: usize,
    /// Replies (server to client) wait while this is set.
    holding_replies: bool,
    /// Bytes forwarded from clients to the server.
    to_server: u64,
    /// Both halves of every open connection, to cut them.
    open: Vec<(TcpStream, TcpStream)>,
    stopped: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    ToServer,
    ToClient,
}

impl Proxy {
    /// Starts forwarding to the server on `target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            changed: Condvar::new(),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept(&listener, target, &accepting));
        Proxy { port, shared }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection open now goes silent for good, in both directions, without being
    /// closed; connections opened afterwards work.
    pub fn freeze(&self) {
        let mut state = self.shared.lock();
        state.frozen_below = state.accepted;
        self.shared.changed.notify_all();
    }

    /// Replies from the server wait, on every connection, until [`Proxy::release_replies`];
    /// requests still reach the server.
    pub fn hold_replies(&self) {
        self.shared.lock().holding_replies = true;
    }

    /// Lets held replies through.
    pub fn release_replies(&self) {
        self.shared.lock().holding_replies = false;
        self.shared.changed.notify_all();
    }

    /// Closes every open connection at once, as a server or middlebox reset would.
    pub fn cut(&self) {
        let open = std::mem::take(&mut self.shared.lock().open);
        for (client, server) in open {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.lock().accepted
    }

    /// Blocks until `n` connections were accepted in all.
    pub fn until_accepted(&self, n: usize, within: Duration) {
        self.until(within, |state| state.accepted >= n)
            .unwrap_or_else(|| panic!("the proxy did not see {n} connections within {within:?}"));
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn to_server(&self) -> u64 {
        self.shared.lock().to_server
    }

    /// Blocks until more than `bytes` bytes were forwarded to the server in all.
    pub fn until_to_server(&self, bytes: u64, within: Duration) {
        self.until(within, |state| state.to_server > bytes)
            .unwrap_or_else(|| panic!("no request went through the proxy within {within:?}"));
    }

    fn until(&self, within: Duration, done: impl Fn(&State) -> bool) -> Option<()> {
        let deadline = Instant::now() + within;
        let mut state = self.shared.lock();
        while !done(&state) {
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
        Some(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_all();
        self.cut();
        // Wakes the accepting thread, which then sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn accept(listener: &TcpListener, target: u16, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        if shared.lock().stopped {
            return;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let id = {
            let mut state = shared.lock();
            let id = state.accepted;
            state.accepted += 1;
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                state.open.push((c, s));
            }
            shared.changed.notify_all();
            id
        };
        for (from, to, direction) in [
            (client.try_clone(), server.try_clone(), Direction::ToServer),
            (server.try_clone(), client.try_clone(), Direction::ToClient),
        ] {
            if let (Ok(from), Ok(to)) = (from, to) {
                let shared = Arc::clone(shared);
                std::thread::spawn(move || pump(from, to, id, direction, &shared));
            }
        }
    }
}

/// Copies one direction of one connection, honouring freezes and held replies.
fn pump(mut from: TcpStream, mut to: TcpStream, id: usize, direction: Direction, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut state = shared.lock();
        while !state.stopped
            && (id < state.frozen_below
                || (direction == Direction::ToClient && state.holding_replies))
        {
            state = shared.changed.wait(state).unwrap();
        }
        if state.stopped {
            break;
        }
        if direction == Direction::ToServer {
            state.to_server += n as u64;
            shared.changed.notify_all();
        }
        drop(state);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
