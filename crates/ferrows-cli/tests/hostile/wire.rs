//! Raw bytes to and from `ferrows serve`: the real binary as a child
//! process, HTTP exchanges and WebSocket frames written by hand (a
//! well-behaved client library would refuse to send most of what the
//! suite sends).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferrows_hub::protocol::Encoding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Every answer the suite waits for must come within this: an answer that
/// needs longer came from a timeout, not from the rule that applies.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A `ferrows serve` process, killed when dropped.
pub(crate) struct Serve {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Serve {
    /// Starts the binary with `args` after `serve --port 0 --api-key k`
    /// and waits for its `listening on` line.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrows"))
            .args(["serve", "--port", "0", "--api-key", "k"])
            .args(args)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the ferrows binary starts");
        let stdout = child.stdout.take().expect("piped");
        // The first line, read on a thread so that the wait is bounded.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("`listening on` in time");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { child, addr }
    }

    /// The server's resident memory, in bytes.
    pub(crate) fn rss(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches(" kB").trim().parse::<usize>().ok())
            .map_or(0, |kib| kib * 1024)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to `addr` from the local address `from`.
pub(crate) async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// What came back for a request: the status, the `error.code` of a JSON
/// body, and the whole answer as text.
#[derive(Debug, Clone)]
pub(crate) struct HttpAnswer {
    pub(crate) status: u16,
    pub(crate) error: Option<u64>,
    pub(crate) text: String,
}

/// Reads an HTTP answer on `tcp` until the server closes or one whole
/// answer (by its `content-length`) arrived.
pub(crate) async fn read_answer(tcp: &mut TcpStream) -> HttpAnswer {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
        if whole(&answer) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let error = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["error"]["code"].as_u64());
    HttpAnswer { status, error, text }
}

fn whole(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| body.len() >= length)
}

/// Sends `request` on a new connection (from 127.0.0.1) and reads the
/// answer. The server may answer before the whole request is written: a
/// failed write is not the outcome, the answer is.
pub(crate) async fn exchange(addr: SocketAddr, request: &[u8]) -> HttpAnswer {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.write_all(request).await;
    read_answer(&mut tcp).await
}

/// A masked client frame with the first header byte `first` (FIN, RSV and
/// opcode): the library's test frame builder.
pub(crate) fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    ferrows::testing::client_frame(first, payload)
}

/// A text frame of `text`.
pub(crate) fn text(text: &str) -> Vec<u8> {
    frame(0x81, text.as_bytes())
}

/// A command (given as JSON) in `encoding`'s frame: JSON text, or a
/// binary MessagePack map.
pub(crate) fn command(encoding: Encoding, command: &str) -> Vec<u8> {
    match encoding {
        Encoding::Json => text(command),
        Encoding::Msgpack => {
            let value: serde_json::Value = serde_json::from_str(command).expect("a JSON command");
            frame(0x82, &Encoding::Msgpack.encode(&value))
        }
    }
}

/// What the server sent on a WebSocket until it closed.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    /// Messages (replies and pushes), parsed: text as JSON, binary as
    /// MessagePack.
    pub(crate) messages: Vec<serde_json::Value>,
    /// The code of the server's Close frame.
    pub(crate) close: Option<u16>,
}

impl Heard {
    /// The error codes of the replies, in order.
    pub(crate) fn errors(&self) -> Vec<u64> {
        self.messages.iter().filter_map(|m| m["error"]["code"].as_u64()).collect()
    }

    /// Replies with a result.
    pub(crate) fn results(&self) -> usize {
        self.messages.iter().filter(|m| m.get("result").is_some()).count()
    }
}

/// Reads server frames (unmasked, unfragmented) until a Close, the end of
/// the connection, or `until` holds for what was heard.
pub(crate) async fn listen(tcp: &mut TcpStream, until: impl Fn(&Heard) -> bool) -> Heard {
    let mut heard = Heard::default();
    let mut wire = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        // Every whole frame read so far (a Close right behind a reply is
        // seen), then the condition.
        while let Some((opcode, payload, used)) = next_frame(&wire) {
            wire.drain(..used);
            match opcode {
                0x1 => heard.messages.push(serde_json::from_slice(&payload).unwrap_or(serde_json::Value::Null)),
                0x2 => heard.messages.push(Encoding::Msgpack.decode(&payload).unwrap_or(serde_json::Value::Null)),
                0x8 => {
                    heard.close =
                        Some(if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 });
                    return heard;
                }
                _ => {}
            }
        }
        if until(&heard) {
            return heard;
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return heard,
            Ok(n) => wire.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The first whole frame of `wire`: opcode, payload, bytes used.
fn next_frame(wire: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if wire.len() < 2 {
        return None;
    }
    let (header, len) = match wire[1] & 0x7F {
        126 if wire.len() >= 4 => (4, u16::from_be_bytes([wire[2], wire[3]]) as usize),
        127 if wire.len() >= 10 => (10, u64::from_be_bytes(wire[2..10].try_into().ok()?) as usize),
        126 | 127 => return None,
        n => (2, n as usize),
    };
    (wire.len() >= header + len).then(|| (wire[0] & 0x0F, wire[header..header + len].to_vec(), header + len))
}

/// Opens a WebSocket on `/ws` by hand, offering `extensions` when given;
/// the stream after the `101` and the answer's head.
pub(crate) async fn websocket(addr: SocketAddr, extensions: Option<&str>) -> (TcpStream, String) {
    let offer = extensions.map_or(String::new(), |e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
    open(addr, &offer).await
}

/// Opens a WebSocket on `/ws` by hand that speaks `encoding` (asked for
/// by its subprotocol).
pub(crate) async fn websocket_in(addr: SocketAddr, encoding: Encoding) -> (TcpStream, String) {
    let (tcp, head) = open(addr, &format!("Sec-WebSocket-Protocol: {}\r\n", encoding.subprotocol())).await;
    let chosen = head.to_ascii_lowercase().contains(&encoding.subprotocol().to_ascii_lowercase());
    assert!(chosen || encoding == Encoding::Json, "{} not chosen: {head}", encoding.subprotocol());
    (tcp, head)
}

async fn open(addr: SocketAddr, offer: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write the handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.expect("the handshake's answer"));
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
    (tcp, head)
}
