//! Helpers of the server's integration tests: a server in this process on
//! a free port, JSON clients over ferrows, and a tiny HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use ferrows::{CloseFrame, MaybeTlsStream, Message, WebSocket};
use ferrows_server::{Config, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every wait of these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1, port 0, with an API key, tuned by `tune`.
pub async fn server(tune: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::default();
    config.server.port = 0;
    config.auth.api_key = Some("test-key".into());
    tune(&mut config);
    Server::start(config).await.expect("server starts")
}

/// A connected protocol client.
pub struct Client {
    pub ws: WebSocket<MaybeTlsStream>,
    next_id: u64,
    /// Pushes that arrived while waiting for a reply.
    pub pushes: Vec<Value>,
}

impl Client {
    /// Opens the WebSocket only.
    pub async fn open(addr: SocketAddr) -> Self {
        let ws = tokio::time::timeout(WAIT, ferrows::connect(format!("ws://{addr}/ws"))).await.unwrap().unwrap();
        Self { ws, next_id: 1, pushes: Vec::new() }
    }

    /// Opens the WebSocket only, over `tcp` (a socket the test tuned).
    pub async fn open_over(addr: SocketAddr, tcp: tokio::net::TcpStream) -> Self {
        let uri = format!("ws://{addr}/ws").parse().unwrap();
        let config = ferrows::ClientConfig::default();
        let handshake = ferrows::client_handshake(MaybeTlsStream::Plain(tcp), &uri, &config);
        let ws = tokio::time::timeout(WAIT, handshake).await.unwrap().unwrap();
        Self { ws, next_id: 1, pushes: Vec::new() }
    }

    /// Sends `connect` (anonymous) on a WebSocket opened already.
    pub async fn connected(mut self) -> Self {
        let reply = self.call(json!({"connect": {"name": "tester"}})).await;
        assert!(reply.get("result").is_some(), "connect failed: {reply}");
        self
    }

    /// Opens and sends `connect` (anonymous unless `token`).
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Self {
        let mut client = Self::open(addr).await;
        let reply = client.call(json!({"connect": {"token": token, "name": "tester"}})).await;
        assert!(reply.get("result").is_some(), "connect failed: {reply}");
        client
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Sends a command (an id is added) and returns its reply, keeping
    /// pushes that arrive meanwhile.
    pub async fn call(&mut self, mut command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.send_text(command.to_string()).await;
        loop {
            let value = self.next_json().await;
            if value["id"] == json!(id) {
                return value;
            }
            self.pushes.push(value);
        }
    }

    /// The next JSON message (panics on anything else, or after `WAIT`).
    pub async fn next_json(&mut self) -> Value {
        match tokio::time::timeout(WAIT, self.ws.recv()).await.expect("a message in time") {
            Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next push (from those kept first).
    pub async fn next_push(&mut self) -> Value {
        if !self.pushes.is_empty() {
            return self.pushes.remove(0);
        }
        self.next_json().await
    }

    /// Reads until the server closes; returns its Close frame.
    ///
    /// Reads on after the Close until the connection is over, as a client
    /// should: the server closes its side, then waits for ours.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut close = None;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.recv()).await.expect("closed in time") {
                Some(Ok(Message::Close(frame))) => close = frame,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("error instead of a Close: {e}"),
                None => return close,
            }
        }
    }
}

/// The next publication push's `pub` (join/leave and other pushes are
/// skipped).
pub async fn next_publication(client: &mut Client) -> Value {
    loop {
        let push = client.next_push().await;
        if let Some(publication) = push["push"].get("pub") {
            return publication.clone();
        }
    }
}

/// Subscribes and returns the reply's result.
pub async fn subscribe(client: &mut Client, channel: &str) -> Value {
    let reply = client.call(json!({"subscribe": {"channel": channel}})).await;
    reply.get("result").cloned().unwrap_or_else(|| panic!("subscribe {channel}: {reply}"))
}

/// A plain HTTP/1.1 request; returns the status and the JSON body (or the
/// body as a JSON string when it is not JSON).
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await.unwrap();
        response
    };
    // Long polls may take a while; the bound covers the longest used here.
    let response = tokio::time::timeout(WAIT * 2, exchange).await.expect("HTTP answer in time");
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, body)
}

/// Sends `request` as it is and reads the answer until the server closes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let _ = tcp.read_to_end(&mut response).await;
        response
    };
    let response = tokio::time::timeout(WAIT, exchange).await.expect("an answer and the end in time");
    String::from_utf8_lossy(&response).into_owned()
}

/// Publishes through the server API.
pub async fn api_publish(addr: SocketAddr, channel: &str, data: Value) -> Value {
    let body = json!({"channel": channel, "data": data}).to_string();
    let (status, reply) = http(addr, "POST", "/api/publish", &[("Authorization", "apikey test-key")], &body).await;
    assert_eq!(status, 200, "{reply}");
    reply["result"].clone()
}

/// The value of a metric line `name value` in `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = http(addr, "GET", "/metrics", &[], "").await;
    let text = body.as_str().expect("metrics are text").to_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// Waits (bounded) until `check` holds.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
