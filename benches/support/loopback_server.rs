//! A minimal HTTP/1.1 server on 127.0.0.1 for benches/seed_table.rs: fixed answers by path,
//! persistent connections, nothing recorded, nothing delayed.
//!
//! Why not tests/it/builtin_server (the built-in plugins' test server, which the bench first
//! used): it sleeps `Duration::ZERO` twice per answer (its delay and chunk pauses), and a tokio
//! sleep always waits for the next tick of the 1 ms timer wheel, so every answer took ~2.5 ms
//! whoever the client was; it also closes every connection and keeps a copy of every request.
//! Here an answer is written as soon as its request is read, in one write with `TCP_NODELAY`,
//! and the connection stays open (HTTP/1.1 keep-alive), so a client that pools connections
//! (reqwest, the built-in plugins, Python's `http.client.HTTPConnection` kept open) pays for
//! the request and its answer, not for a TCP handshake each time.
//!
//! Requests must carry their body with `Content-Length` (no chunked uploads): that is what
//! every client of the bench sends.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers for one path: status, content type, body.
#[derive(Clone)]
pub struct Route {
    pub path: String,
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Route {
    pub fn json(path: &str, body: &serde_json::Value) -> Self {
        Self {
            path: path.to_string(),
            status: 200,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }
}

/// The running server; it stops with the runtime it was started on.
pub struct LoopbackServer {
    pub addr: SocketAddr,
}

impl LoopbackServer {
    /// Starts on 127.0.0.1:0, answering `routes` (404 elsewhere). Call inside a runtime.
    pub async fn start(routes: Vec<Route>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let answers: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
            routes
                .into_iter()
                .map(|route| (route.path.clone(), answer(&route)))
                .collect(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answers = Arc::clone(&answers);
                tokio::spawn(async move {
                    let _ = serve(stream, &answers).await;
                });
            }
        });
        Self { addr }
    }

    /// `http://127.0.0.1:<port>` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The whole response, head and body, ready to write.
fn answer(route: &Route) -> Vec<u8> {
    let reason = if route.status == 200 { "OK" } else { "Status" };
    let mut bytes = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        route.status,
        route.content_type,
        route.body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&route.body);
    bytes
}

const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

/// Serves the requests of one connection until the client closes it.
async fn serve(mut stream: TcpStream, answers: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut piece = [0u8; 4096];
    loop {
        // The head: up to the blank line.
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = stream.read(&mut piece).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&piece[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]);
        let path = head
            .split("\r\n")
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or_default()
            .to_string();
        let length: usize = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0);
        // The body, which the answers do not depend on.
        let request_end = head_end + 4 + length;
        while buffer.len() < request_end {
            let n = stream.read(&mut piece).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&piece[..n]);
        }
        buffer.drain(..request_end);
        let response = answers
            .iter()
            .find(|(route, _)| *route == path)
            .map_or(NOT_FOUND, |(_, bytes)| bytes.as_slice());
        stream.write_all(response).await?;
    }
}
