//! The HTTP example as a real server process on loopback, and a real HTTP/1.1 client.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;

/// `examples/orders_http` running in a process of its own, killed when dropped.
pub struct HttpServer {
    child: Child,
    pub addr: SocketAddr,
}

/// The example's binary, which `cargo test` builds beside the test binaries.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<test> -> <target>/<profile>/examples/orders_http
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("a test binary under <target>/<profile>/deps");
    let binary = profile.join("examples").join("orders_http");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test --all-features` builds it (the example needs the axum feature)",
        binary.display()
    );
    binary
}

impl HttpServer {
    /// Starts the example on a free port with these extra flags, and waits for its
    /// `listening on http://ADDR` line.
    pub fn start(flags: &[&str]) -> Self {
        let mut child = Command::new(example_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the example's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        HttpServer { child, addr }
    }

    /// `GET /stats`: how many orders and payments this process created.
    pub async fn stats(&self) -> (u64, u64) {
        let reply = send(self.addr, Method::GET, "/stats", &[], b"").await;
        let json = reply.json();
        (
            json["orders_created"].as_u64().expect("orders_created"),
            json["payments_created"].as_u64().expect("payments_created"),
        )
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response, read to its end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    /// The problem's `code`, for a problem response.
    pub fn code(&self) -> String {
        assert_eq!(
            self.headers[http::header::CONTENT_TYPE],
            "application/problem+json",
            "{self:?}"
        );
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

fn build(
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("a valid request")
}

async fn connection(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1.1 connection");
    tokio::spawn(driver);
    sender
}

/// Sends one request on a connection of its own and reads the whole response.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    exchange(addr, build(method, path, headers, body)).await
}

/// Sends `request` on a connection of its own and reads the whole response.
async fn exchange(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    let mut sender = connection(addr).await;
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("the whole body").to_bytes(),
    }
}

/// `POST path` with a JSON body and these headers.
pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(addr, Method::POST, path, &all, body.as_bytes()).await
}

/// Sends a request and closes the connection after `after`, before its response: a
/// client that gave up.
pub async fn post_and_disconnect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    after: Duration,
) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let mut sender = connection(addr).await;
    let request = build(Method::POST, path, &all, body.as_bytes());
    let answered = tokio::time::timeout(after, sender.send_request(request)).await;
    assert!(
        answered.is_err(),
        "the response came before the client gave up"
    );
    // Dropping the sender and its connection closes the socket.
}

/// `POST path` whose `Idempotency-Key` header is these raw bytes (which need not be text).
pub async fn post_with_key_bytes(addr: SocketAddr, path: &str, key: &[u8], body: &str) -> Reply {
    let mut request = build(
        Method::POST,
        path,
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    request.headers_mut().insert(
        "idempotency-key",
        http::HeaderValue::from_bytes(key).expect("a header value"),
    );
    exchange(addr, request).await
}

/// `POST path` that announces a body of `content_length` bytes with
/// `Expect: 100-continue` and never sends it: how a client asks whether a large body is
/// welcome. The server must answer from the headers alone (a `100 Continue` is skipped).
/// Sending the body instead would race the server's early answer against the reset of a
/// connection closed with unread data.
pub async fn post_announcing(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    content_length: usize,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("the server accepts");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\nexpect: 100-continue\r\nconnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the headers are sent");
    let mut received = Vec::new();
    loop {
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await.expect("the answer is read");
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        // Skip interim answers.
        let text = text.trim_start_matches("HTTP/1.1 100 Continue\r\n\r\n");
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let mut lines = head.lines();
            let status: u16 = lines
                .next()
                .and_then(|line| line.split(' ').nth(1))
                .and_then(|code| code.parse().ok())
                .expect("a status line");
            let mut headers = HeaderMap::new();
            for line in lines {
                if let Some((name, value)) = line.split_once(':') {
                    headers.append(
                        http::HeaderName::from_bytes(name.trim().as_bytes()).expect("a name"),
                        http::HeaderValue::from_str(value.trim()).expect("a value"),
                    );
                }
            }
            let length: usize = headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                return Reply {
                    status: StatusCode::from_u16(status).expect("a status"),
                    headers,
                    body: Bytes::copy_from_slice(&body.as_bytes()[..length.min(body.len())]),
                };
            }
        }
        assert!(
            n > 0,
            "the connection closed before an answer: {:?}",
            String::from_utf8_lossy(&received)
        );
    }
}
