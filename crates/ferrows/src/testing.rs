//! Test support (feature `testing`): the invalid handshakes and hostile
//! frames a ferrows server must answer, each with the answer RFC 6455
//! asks for, and checks that play them against a live server over raw TCP.
//!
//! One list, so that every server built on ferrows is held to the same
//! answers: the library's tests run it against [`accept_with`](crate::accept_with),
//! `ferrows-server`'s against the `/ws` route of `serve` (hyper's upgrade).
//! Each check returns the cases that got a different answer, so a failing
//! test names all of them at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound of every wait of one case: a case answered by a timeout instead
/// of the rule that applies fails.
const CASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A good handshake's key (the example of RFC 6455 section 1.3).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An opening handshake the server must refuse, and how.
#[derive(Debug, Clone)]
pub struct HandshakeCase {
    /// What the case tries.
    pub name: &'static str,
    /// The bytes sent.
    pub request: Vec<u8>,
    /// The HTTP status the answer must have.
    pub status: u16,
    /// A header the answer must carry: lowercase name and exact value.
    pub header: Option<(&'static str, &'static str)>,
}

/// A valid upgrade request for `path` with `edit` applied: `(from, to)`
/// replaces the first `from`.
fn good_request(path: &str, edit: (&str, &str)) -> Vec<u8> {
    let good = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    good.replacen(edit.0, edit.1, 1).into_bytes()
}

/// The invalid opening handshakes of RFC 6455 section 4.2.1 and the
/// oversized heads, for a server whose WebSocket route is `path`.
pub fn hostile_handshakes(path: &str) -> Vec<HandshakeCase> {
    let case = |name, edit, status| HandshakeCase { name, request: good_request(path, edit), status, header: None };
    let with = |mut case: HandshakeCase, header| {
        case.header = Some(header);
        case
    };
    let mut huge_line = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Big: ").into_bytes();
    huge_line.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge_line.extend_from_slice(b"\r\n\r\n");
    let mut many_lines = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..10_000 {
        many_lines.push_str(&format!("X-{i}: 1\r\n"));
    }
    many_lines.push_str("\r\n");
    vec![
        case("plain HTTP, no Upgrade", ("Upgrade: websocket\r\n", ""), 400),
        case("Upgrade to another protocol", ("Upgrade: websocket", "Upgrade: h2c"), 400),
        case("Connection without the upgrade token", ("Connection: Upgrade", "Connection: keep-alive"), 400),
        case("no Host", ("Host: localhost\r\n", ""), 400),
        case("no Sec-WebSocket-Key", (&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""), 400),
        case("a key that is not 16 bytes", (KEY, "c2hvcnQ="), 400),
        case("a key that is not base64", (KEY, "not base64 at all!!!!!!!"), 400),
        case(
            "two keys",
            (
                &format!("Sec-WebSocket-Key: {KEY}\r\n"),
                &format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"),
            ),
            400,
        ),
        case(
            "a malformed extension offer",
            ("Sec-WebSocket-Version", "Sec-WebSocket-Extensions: permessage-deflate;\r\nSec-WebSocket-Version"),
            400,
        ),
        case("HTTP/1.0", ("HTTP/1.1", "HTTP/1.0"), 400),
        with(case("Sec-WebSocket-Version: 8", ("Version: 13", "Version: 8"), 426), ("sec-websocket-version", "13")),
        with(
            case("no Sec-WebSocket-Version", ("Sec-WebSocket-Version: 13\r\n", ""), 426),
            ("sec-websocket-version", "13"),
        ),
        with(case("POST", ("GET", "POST"), 405), ("allow", "GET")),
        with(case("PUT", ("GET", "PUT"), 405), ("allow", "GET")),
        HandshakeCase {
            name: "bytes that are not HTTP",
            request: b"hello world\r\n\r\n".to_vec(),
            status: 400,
            header: None,
        },
        HandshakeCase { name: "a 1 MiB header line", request: huge_line, status: 431, header: None },
        HandshakeCase { name: "10 000 header lines", request: many_lines.into_bytes(), status: 431, header: None },
    ]
}

/// Sends `request` on a new connection to `addr` and returns the answer's
/// status line and head, as text (what arrived before the server closed).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    // The server may answer (and stop reading) before the whole request is
    // written: a failed write is not the outcome, the answer is.
    let _ = tcp.write_all(request).await;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = find(&answer, b"\r\n\r\n") {
            answer.truncate(end);
            break;
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Plays every [`hostile_handshakes`] case against `addr`; returns one line
/// per case whose answer differs from the expected one.
pub async fn check_handshakes(addr: SocketAddr, path: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for case in hostile_handshakes(path) {
        let head = match tokio::time::timeout(CASE_TIMEOUT, raw_request(addr, &case.request)).await {
            Ok(Ok(head)) => head,
            Ok(Err(e)) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
            Err(_) => {
                failures.push(format!("{}: no answer within {CASE_TIMEOUT:?}", case.name));
                continue;
            }
        };
        let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
        if status != Some(case.status) {
            failures.push(format!("{}: expected {}, got {:?}", case.name, case.status, head.lines().next()));
            continue;
        }
        if let Some((name, value)) = case.header {
            let found = head.lines().skip(1).any(|line| {
                line.split_once(':').is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value)
            });
            if !found {
                failures.push(format!("{}: no `{name}: {value}` in\n{head}", case.name));
            }
        }
    }
    failures
}

/// Bytes sent after a good handshake, and the close code they must get.
#[derive(Debug, Clone)]
pub struct FrameCase {
    /// What the case tries.
    pub name: &'static str,
    /// The bytes sent (masked client frames).
    pub bytes: Vec<u8>,
    /// The close code of the server's Close frame.
    pub close_code: u16,
}

/// A masked client frame (mask key 0, so the payload goes as is) with the
/// first header byte `first` (FIN, RSV and opcode).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

fn header_with_length(len: u64) -> Vec<u8> {
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame
}

/// Frame-level violations of RFC 6455 sections 5 and 7, each with the
/// close code it must get (1002 protocol error, 1007 invalid data, 1009
/// too big), on a connection without permessage-deflate.
pub fn hostile_frames() -> Vec<FrameCase> {
    let case = |name, bytes, close_code| FrameCase { name, bytes, close_code };
    vec![
        case("a frame that announces a 2^63-byte payload", header_with_length(1 << 63), 1002),
        case("2^62 bytes: well-formed, far over the frame limit", header_with_length(1 << 62), 1009),
        case("an unmasked client frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        case("a reserved data opcode", client_frame(0x83, b""), 1002),
        case("a reserved control opcode", client_frame(0x8B, b""), 1002),
        case("RSV1 without an extension", client_frame(0xC1, b"hi"), 1002),
        case("RSV2", client_frame(0xA1, b"hi"), 1002),
        case("a fragmented Ping", client_frame(0x09, b"hi"), 1002),
        case("a Ping of 126 bytes", client_frame(0x89, &[0; 126]), 1002),
        case("a continuation with nothing to continue", client_frame(0x80, b"hi"), 1002),
        case(
            "a new message inside a fragmented one",
            [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(),
            1002,
        ),
        case("a Close with a 1-byte payload", client_frame(0x88, &[3]), 1002),
        case("a Close with code 1005", client_frame(0x88, &[0x03, 0xED]), 1002),
        case("a Close with code 999", client_frame(0x88, &[0x03, 0xE7]), 1002),
        case("a Close with code 1004", client_frame(0x88, &[0x03, 0xEC]), 1002),
        case("a Close whose reason is not UTF-8", client_frame(0x88, &[0x03, 0xE8, 0xC3]), 1007),
        case("a text message invalid in its last byte", client_frame(0x81, b"abc\xC3"), 1007),
        case("a text message with a surrogate", client_frame(0x81, b"\xED\xA0\x80"), 1007),
        case(
            "a fragmented text message invalid in its first fragment",
            [client_frame(0x01, b"\xF8\x88\x80"), client_frame(0x80, b"a")].concat(),
            1007,
        ),
    ]
}

/// Opens a WebSocket by hand on `addr` (no extensions): the stream after
/// the server's `101`, for a test that writes frames itself.
pub async fn raw_websocket(addr: SocketAddr, path: &str) -> std::io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(&good_request(path, ("", ""))).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await?);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(format!("no upgrade: {}", String::from_utf8_lossy(&head))));
    }
    Ok(tcp)
}

/// Reads server frames until a Close; returns how many data frames came
/// before it and its code (`None` when the connection ended without one).
async fn read_close_code(tcp: &mut TcpStream) -> std::io::Result<(usize, Option<u16>)> {
    let mut wire = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Walk the whole frames read so far (answers to the prelude).
        let (mut at, mut data_frames) = (0, 0);
        while wire.len() >= at + 2 {
            let (opcode, len7) = (wire[at] & 0x0F, (wire[at + 1] & 0x7F) as usize);
            let (header, len) = match len7 {
                126 if wire.len() >= at + 4 => (4, u16::from_be_bytes([wire[at + 2], wire[at + 3]]) as usize),
                127 if wire.len() >= at + 10 => {
                    (10, u64::from_be_bytes(wire[at + 2..at + 10].try_into().expect("8 bytes")) as usize)
                }
                126 | 127 => break,
                n => (2, n),
            };
            if wire.len() < at + header + len {
                break;
            }
            if opcode == 0x8 {
                let payload = &wire[at + header..at + header + len];
                let code = if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
                return Ok((data_frames, Some(code)));
            }
            if opcode & 0x8 == 0 {
                data_frames += 1;
            }
            at += header + len;
        }
        match tcp.read(&mut chunk).await? {
            0 => return Ok((data_frames, None)),
            n => wire.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Plays every [`hostile_frames`] case on a new connection to `addr`;
/// returns one line per case whose answer differs from the expected.
///
/// `prelude` are text messages (a login command, say) sent in the same
/// write as the case's bytes, each of which the server answers with one
/// message: every answer must come before the Close, as in Autobahn's
/// case 4.1.5 (a connection failed by a later frame still answers the
/// messages before it).
pub async fn check_frames(addr: SocketAddr, path: &str, prelude: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in hostile_frames() {
        let play = async {
            let mut tcp = raw_websocket(addr, path).await?;
            let mut bytes: Vec<u8> = prelude.iter().flat_map(|text| client_frame(0x81, text.as_bytes())).collect();
            bytes.extend_from_slice(&case.bytes);
            tcp.write_all(&bytes).await?;
            read_close_code(&mut tcp).await
        };
        let failure = match tokio::time::timeout(CASE_TIMEOUT, play).await {
            Ok(Ok((answers, Some(code)))) if code == case.close_code => {
                (answers < prelude.len()).then(|| format!("{answers} answers before the Close, not {}", prelude.len()))
            }
            Ok(Ok((_, code))) => Some(format!("expected close code {}, got {code:?}", case.close_code)),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no Close within {CASE_TIMEOUT:?}")),
        };
        if let Some(failure) = failure {
            failures.push(format!("{}: {failure}", case.name));
        }
    }
    failures
}

/// A global allocator that counts the bytes live on the heap, for tests
/// that bound what connections cost: install it with
/// `#[global_allocator] static A: CountingAllocator = CountingAllocator;`
/// and read [`live_bytes`](Self::live_bytes).
#[derive(Debug)]
pub struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// Allocations counted by size class: sizes rounded up to 8 bytes, up to
/// 4 KiB; the last class holds every larger one.
const SIZE_CLASSES: usize = 513;
static LIVE_BY_SIZE: [AtomicIsize; SIZE_CLASSES] = [const { AtomicIsize::new(0) }; SIZE_CLASSES];

fn size_class(size: usize) -> usize {
    size.div_ceil(8).min(SIZE_CLASSES - 1)
}

impl CountingAllocator {
    /// Bytes allocated and not yet freed, in this process.
    pub fn live_bytes() -> isize {
        LIVE_BYTES.load(Ordering::SeqCst)
    }

    /// Live allocations by size: `(size rounded up to 8 bytes, count)` for
    /// each size with any (the last size, 4104, stands for every larger
    /// one). Subtract two snapshots to see what a change allocated.
    pub fn live_by_size() -> Vec<(usize, isize)> {
        LIVE_BY_SIZE
            .iter()
            .enumerate()
            .map(|(class, count)| (class * 8, count.load(Ordering::SeqCst)))
            .filter(|(_, count)| *count != 0)
            .collect()
    }

    fn count(size: usize, delta: isize) {
        LIVE_BYTES.fetch_add(size as isize * delta, Ordering::Relaxed);
        LIVE_BY_SIZE[size_class(size)].fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so `System`'s guarantees hold; the counter is only
// bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size(), 1);
        // SAFETY: forwarded as is (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::count(layout.size(), -1);
        // SAFETY: forwarded as is (see above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(layout.size(), -1);
        Self::count(new_size, 1);
        // SAFETY: forwarded as is (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
