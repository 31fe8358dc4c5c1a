//! A minimal HTTP/1.1 server on 127.0.0.1 for the built-in plugins' tests.
//!
//! One request per connection (`Connection: close`), a handler closure decides each response,
//! and the server records what it received and how many connections it accepted, so a test can
//! check what a client sent, and that a refused request never connected. Responses can be
//! delayed (timeouts), streamed in chunks with pauses (server-sent events), or sent without a
//! `Content-Length` (bodies whose size is only known by reading them), or held until the test
//! opens a gate ([`Response::gated`]: a request known to be in flight while the test acts). It
//! also records how many requests it holds at once, and the most it has held
//! ([`TestServer::peak`]), for the tests of concurrent callers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Pieces of the body, each sent after its pause.
    pub chunks: Vec<(Duration, Vec<u8>)>,
    /// Whether to announce the body's length (else it ends when the connection closes).
    pub content_length: bool,
    /// A pause before anything is sent.
    pub delay: Duration,
    /// When set, nothing is sent (and the delay does not start) before a permit of this gate
    /// is taken; each answer uses up one.
    pub gate: Option<Arc<Semaphore>>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            chunks: vec![(Duration::ZERO, body.into())],
            content_length: true,
            delay: Duration::ZERO,
            gate: None,
        }
    }

    pub fn json(status: u16, body: Value) -> Self {
        Self::new(status, "application/json", body.to_string())
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain", body)
    }

    /// A server-sent-events stream: each payload as `data: <payload>\n\n`, `pause` apart.
    pub fn sse(payloads: &[String], pause: Duration) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            chunks: payloads
                .iter()
                .map(|p| (pause, format!("data: {p}\n\n").into_bytes()))
                .collect(),
            content_length: false,
            delay: Duration::ZERO,
            gate: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Held until `gate` gives a permit (`gate.add_permits(n)` lets n held answers go).
    pub fn gated(mut self, gate: &Arc<Semaphore>) -> Self {
        self.gate = Some(Arc::clone(gate));
        self
    }

    pub fn without_length(mut self) -> Self {
        self.content_length = false;
        self
    }
}

type Handler = dyn Fn(&Request, usize) -> Response + Send + Sync;

/// The running server; it stops with the test's runtime.
#[derive(Clone)]
pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    /// Requests received and not yet answered.
    in_flight: Arc<AtomicUsize>,
    /// The most `in_flight` has been.
    peak: Arc<AtomicUsize>,
}

/// Counts one request as held by the server until dropped.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0; `handler` gets each request and its 0-based number.
    pub async fn start(
        handler: impl Fn(&Request, usize) -> Response + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let server = TestServer {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            connections: Arc::default(),
            in_flight: Arc::default(),
            peak: Arc::default(),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        let state = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                state.connections.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let _ = state.serve(stream, &*handler).await;
                });
            }
        });
        server
    }

    /// `http://127.0.0.1:<port>` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The most requests the server has held at once: received, and not yet answered.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Requests received and not yet answered, now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    async fn serve(&self, mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
        let Some(request) = read_request(&mut stream).await? else {
            return Ok(());
        };
        let number = {
            let mut requests = self.requests.lock().unwrap();
            requests.push(request.clone());
            requests.len() - 1
        };
        let held = {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            Held(Arc::clone(&self.in_flight))
        };
        let response = handler(&request, number);
        if let Some(gate) = &response.gate {
            gate.acquire()
                .await
                .expect("the test keeps its gate open")
                .forget();
        }
        tokio::time::sleep(response.delay).await;
        // Released before the first byte of the answer: a client limited to N requests at once
        // sends its next one only after reading an answer, so the count never shows N + 1.
        drop(held);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            response.status,
            reason(response.status)
        );
        for (name, value) in &response.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if response.content_length {
            let length: usize = response.chunks.iter().map(|(_, c)| c.len()).sum();
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        for (pause, chunk) in &response.chunks {
            tokio::time::sleep(*pause).await;
            stream.write_all(chunk).await?;
            stream.flush().await?;
        }
        stream.shutdown().await
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::new();
    let mut piece = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut piece).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut piece).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&piece[..n]);
    }
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
