//! Helpers of the server's integration tests: a server in this process on
//! a free port, protocol clients over ferrows, and a tiny HTTP client.
//!
//! Clients speak the encoding of the test they run in ([`ENCODING`], set
//! by [`per_encoding!`]; JSON otherwise) and show every message as the
//! JSON encoding would (a MessagePack `data` of bytes as its JSON value, or
//! `data_base64`), so one test body checks both encodings.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use ferrows::{CloseFrame, MaybeTlsStream, Message, WebSocket};
use ferrows_hub::protocol::Encoding;
use ferrows_server::{Config, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every wait of these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

tokio::task_local! {
    /// The encoding clients of the running test speak.
    pub static ENCODING: Encoding;
}

/// Defines each test twice, in modules `json` and `msgpack` of a module
/// named after it: the same body with clients of each encoding.
#[macro_export]
macro_rules! per_encoding {
    ($($(#[$meta:meta])* async fn $name:ident() $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body() $body

                #[tokio::test]
                async fn json() {
                    common::ENCODING.scope(ferrows_hub::protocol::Encoding::Json, body()).await
                }

                #[tokio::test]
                async fn msgpack() {
                    common::ENCODING.scope(ferrows_hub::protocol::Encoding::Msgpack, body()).await
                }
            }
        )*
    };
}

/// The encoding of the running test.
pub fn encoding() -> Encoding {
    ENCODING.try_with(|e| *e).unwrap_or_default()
}

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
    pub encoding: Encoding,
    next_id: u64,
    /// Pushes that arrived while waiting for a reply.
    pub pushes: Vec<Value>,
}

impl Client {
    /// Opens the WebSocket only.
    pub async fn open(addr: SocketAddr) -> Self {
        let encoding = encoding();
        let config = client_config(encoding);
        let connect = ferrows::connect_with(format!("ws://{addr}/ws"), &config);
        let ws = tokio::time::timeout(WAIT, connect).await.unwrap().unwrap();
        assert_eq!(Encoding::from_subprotocol(ws.subprotocol()), Some(encoding));
        Self { ws, encoding, next_id: 1, pushes: Vec::new() }
    }

    /// Opens the WebSocket only, over `tcp` (a socket the test tuned).
    pub async fn open_over(addr: SocketAddr, tcp: tokio::net::TcpStream) -> Self {
        let uri = format!("ws://{addr}/ws").parse().unwrap();
        let encoding = encoding();
        let config = client_config(encoding);
        let handshake = ferrows::client_handshake(MaybeTlsStream::Plain(tcp), &uri, &config);
        let ws = tokio::time::timeout(WAIT, handshake).await.unwrap().unwrap();
        Self { ws, encoding, next_id: 1, pushes: Vec::new() }
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

    /// `command` as a message of the client's encoding.
    pub fn message(&self, command: &Value) -> Message {
        match self.encoding {
            Encoding::Json => Message::text(command.to_string()),
            Encoding::Msgpack => Message::binary(msgpack::command(command)),
        }
    }

    /// A message from the server as JSON shows it (`None`: not a data
    /// message of the client's encoding).
    pub fn view(&self, message: &Message) -> Option<Value> {
        match (self.encoding, message) {
            (Encoding::Json, Message::Text(text)) => Some(serde_json::from_str(text.as_str()).unwrap()),
            (Encoding::Msgpack, Message::Binary(bytes)) => Some(msgpack::as_json(bytes)),
            _ => None,
        }
    }

    /// Sends `command` in the client's encoding.
    pub async fn send_command(&mut self, command: &Value) {
        let message = self.message(command);
        self.ws.send(message).await.unwrap();
    }

    /// Sends a command (an id is added) and returns its reply, keeping
    /// pushes that arrive meanwhile.
    pub async fn call(&mut self, mut command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.send_command(&command).await;
        loop {
            let value = self.next_json().await;
            if value["id"] == json!(id) {
                return value;
            }
            self.pushes.push(value);
        }
    }

    /// The next message, as JSON shows it (panics on anything else, or
    /// after `WAIT`).
    pub async fn next_json(&mut self) -> Value {
        let message = tokio::time::timeout(WAIT, self.ws.recv()).await.expect("a message in time");
        match message.map(|m| m.map(|m| (self.view(&m), m))) {
            Some(Ok((Some(value), _))) => value,
            other => panic!("expected a {:?} message, got {other:?}", self.encoding),
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

/// A Server-Sent Events stream, read as a browser reads it.
pub struct EventStream {
    /// The answer's status.
    pub status: u16,
    /// Its headers.
    pub headers: http::HeaderMap,
    body: Option<hyper::body::Incoming>,
    reader: ferrows_hub::protocol::stream::EventReader,
    events: std::collections::VecDeque<ferrows_hub::protocol::stream::StreamEvent>,
    /// The body of an error answer.
    pub error: Value,
    connection: tokio::task::JoinHandle<()>,
}

impl EventStream {
    /// `GET path` with `headers`.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        use http_body_util::BodyExt;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = http::Request::get(path).header("host", addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
        let response = tokio::time::timeout(WAIT, sender.send_request(request)).await.expect("an answer").unwrap();
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        let (body, error) = if status == 200 {
            (Some(body), Value::Null)
        } else {
            let bytes = tokio::time::timeout(WAIT, body.collect()).await.expect("a body").unwrap().to_bytes();
            (None, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        };
        let reader = ferrows_hub::protocol::stream::EventReader::new(1 << 20);
        Self { status, headers: parts.headers, body, reader, events: Default::default(), error, connection }
    }

    /// The next event (keepalive comments are not events); `None` once the
    /// stream ended. Bounded by [`WAIT`].
    pub async fn next(&mut self) -> Option<ferrows_hub::protocol::stream::StreamEvent> {
        use http_body_util::BodyExt;
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let body = self.body.as_mut()?;
            let frame = tokio::time::timeout(WAIT, body.frame()).await.expect("an event in time");
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let mut events = Vec::new();
                        self.reader.feed(&data, &mut events).unwrap();
                        self.events.extend(events);
                    }
                }
                Some(Err(_)) | None => {
                    self.body = None;
                    return None;
                }
            }
        }
    }

    /// The next event's data as JSON, with its type and id.
    pub async fn next_json(&mut self) -> (String, Option<String>, Value) {
        let event = self.next().await.expect("the stream goes on");
        let data = serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{e}: {}", event.data));
        (event.kind, event.id, data)
    }

    /// The last `id` the stream gave (what a browser sends back as
    /// `Last-Event-ID`).
    pub fn last_id(&self) -> Option<String> {
        self.reader.last_id().map(str::to_owned)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.connection.abort();
    }
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

/// The secret of the tests' HS256 tokens (`token_hmac_secret`).
pub const TOKEN_SECRET: &str = "secret";

/// An HS256 token of `claims`, signed with [`TOKEN_SECRET`].
pub fn token(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// The WebSocket options of a client of `encoding`.
fn client_config(encoding: Encoding) -> ferrows::ClientConfig {
    let subprotocols = match encoding {
        Encoding::Json => Vec::new(),
        other => vec![other.subprotocol().to_owned()],
    };
    ferrows::ClientConfig { subprotocols, ..ferrows::ClientConfig::default() }
}

/// MessagePack messages to and from the JSON view of the tests.
mod msgpack {
    use base64::Engine;
    use rmpv::Value as Pack;
    use serde_json::Value;

    /// A command: as in JSON, but the `data` of its arguments (`publish`,
    /// `rpc`, `connect`) as the bytes of its JSON text, or the bytes of
    /// its `data_base64`.
    pub fn command(command: &Value) -> Vec<u8> {
        let mut value = pack(command);
        if let Pack::Map(entries) = &mut value {
            for (method, args) in entries.iter_mut() {
                let Some(method) = method.as_str() else { continue };
                let Pack::Map(args) = args else { continue };
                let given = &command[method];
                for (key, data) in args.iter_mut() {
                    match key.as_str() {
                        Some("data") => *data = Pack::Binary(given["data"].to_string().into_bytes()),
                        Some("data_base64") => {
                            let text = given["data_base64"].as_str().unwrap();
                            *key = Pack::from("data");
                            *data = Pack::Binary(base64::engine::general_purpose::STANDARD.decode(text).unwrap());
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).unwrap();
        out
    }

    fn pack(value: &Value) -> Pack {
        match value {
            Value::Null => Pack::Nil,
            Value::Bool(b) => Pack::Boolean(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Pack::from(u),
                (None, Some(i)) => Pack::from(i),
                _ => Pack::from(n.as_f64().unwrap()),
            },
            Value::String(s) => Pack::from(s.as_str()),
            Value::Array(items) => Pack::Array(items.iter().map(pack).collect()),
            Value::Object(map) => Pack::Map(map.iter().map(|(k, v)| (Pack::from(k.as_str()), pack(v))).collect()),
        }
    }

    /// A server message as JSON shows it: `data` bytes that are JSON text
    /// as that value, others as `data_base64`.
    pub fn as_json(bytes: &[u8]) -> Value {
        let value = rmpv::decode::read_value(&mut &bytes[..]).expect("a MessagePack value");
        unpack(&value)
    }

    fn unpack(value: &Pack) -> Value {
        match value {
            Pack::Nil => Value::Null,
            Pack::Boolean(b) => Value::Bool(*b),
            Pack::Integer(i) => i.as_u64().map_or_else(|| Value::from(i.as_i64().unwrap()), Value::from),
            Pack::F32(f) => Value::from(f64::from(*f)),
            Pack::F64(f) => Value::from(*f),
            Pack::String(s) => Value::String(s.as_str().expect("UTF-8").to_owned()),
            Pack::Array(items) => Value::Array(items.iter().map(unpack).collect()),
            Pack::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (key, value) in entries {
                    let key = key.as_str().expect("string keys").to_owned();
                    match (key.as_str(), value) {
                        ("data", Pack::Binary(data)) => match serde_json::from_slice(data) {
                            Ok(json) => map.insert(key, json),
                            Err(_) => {
                                let text = base64::engine::general_purpose::STANDARD.encode(data);
                                map.insert("data_base64".into(), Value::String(text))
                            }
                        },
                        _ => map.insert(key, unpack(value)),
                    };
                }
                Value::Object(map)
            }
            other => panic!("no JSON view of {other:?}"),
        }
    }
}

impl Client {
    /// Opens the WebSocket only, with `headers` in its opening handshake.
    pub async fn open_with_headers(addr: SocketAddr, headers: &[(&'static str, &str)]) -> Self {
        let encoding = encoding();
        let mut config = client_config(encoding);
        for (name, value) in headers {
            config.headers.append(*name, value.parse().unwrap());
        }
        let connect = ferrows::connect_with(format!("ws://{addr}/ws"), &config);
        let ws = tokio::time::timeout(WAIT, connect).await.unwrap().unwrap();
        Self { ws, encoding, next_id: 1, pushes: Vec::new() }
    }
}

/// The application's backend of the proxy tests (`tests/backend/backend.py`),
/// a real HTTP server in a process of its own, killed when dropped.
pub struct Backend {
    pub port: u16,
    _process: tokio::process::Child,
}

impl Backend {
    /// Starts it (with `args`, such as `--secret S`) and waits until it
    /// listens.
    pub async fn start(args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/backend/backend.py");
        let mut process = tokio::process::Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the test backend");
        let stdout = process.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("the backend starts").unwrap().unwrap();
        let port = line.strip_prefix("listening ").expect("the backend says where it listens").parse().unwrap();
        Self { port, _process: process }
    }

    /// The URL of one of its routes (`connect`, `subscribe`, ...).
    pub fn url(&self, route: &str) -> http::Uri {
        format!("http://127.0.0.1:{}/{route}", self.port).parse().unwrap()
    }

    /// Every request it received, oldest first.
    pub async fn log(&self) -> Vec<Value> {
        let (status, log) = http(SocketAddr::from(([127, 0, 0, 1], self.port)), "GET", "/log", &[], "").await;
        assert_eq!(status, 200);
        log.as_array().unwrap().clone()
    }

    /// The bodies of the requests received on `route`.
    pub async fn requests(&self, route: &str) -> Vec<Value> {
        let path = format!("/{route}");
        self.log().await.into_iter().filter(|r| r["path"] == path).map(|r| r["body"].clone()).collect()
    }

    /// The most requests it held at once.
    pub async fn max_in_flight(&self) -> u64 {
        let (_, stats) = http(SocketAddr::from(([127, 0, 0, 1], self.port)), "GET", "/stats", &[], "").await;
        stats["max_in_flight"].as_u64().unwrap()
    }
}

/// A URL where nothing listens (a port bound, then let go).
pub fn nothing_listens(route: &str) -> http::Uri {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/{route}").parse().unwrap()
}
