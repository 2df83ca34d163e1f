//! The cases of the suite and the answers `docs/hostile-input.md` promises
//! for them (the suite checks that the page lists each case with the same
//! answer).

use ferrows_hub::protocol::Encoding;

/// What a case must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An HTTP status, and the `error.code` of its JSON body when it has one.
    Http(u16, Option<u64>),
    /// A WebSocket Close with this code.
    Close(u16),
    /// A reply with this error code; the connection stays open.
    Error(u64),
    /// Replies with these error codes, then a Close with this code.
    ErrorThenClose(u64, u16),
    /// The server closes the connection without an answer.
    CutOff,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(status, None) => write!(f, "HTTP {status}"),
            Self::Http(status, Some(code)) => write!(f, "HTTP {status}, error {code}"),
            Self::Close(code) => write!(f, "close {code}"),
            Self::Error(code) => write!(f, "error {code}, connection kept"),
            Self::ErrorThenClose(code, close) => write!(f, "error {code}, then close {close}"),
            Self::CutOff => write!(f, "connection closed"),
        }
    }
}

/// A case that is one request on a new connection.
pub(crate) struct HttpCase {
    pub(crate) name: &'static str,
    pub(crate) request: Vec<u8>,
    pub(crate) answer: Answer,
}

fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A request of `method` without a body.
fn raw_method(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

const KEY: &str = "Authorization: apikey k\r\n";

/// Every route: heads, bodies, the server API, polling, the static files.
pub(crate) fn http_cases() -> Vec<HttpCase> {
    let case = |name, request, answer| HttpCase { name, request, answer };
    let big_header = format!("X-Big: {}\r\n", "a".repeat(40 << 10));
    let many_headers: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
    let huge_line = format!("X-Huge: {}\r\n", "a".repeat(1 << 20));
    let two_mib = vec![b'1'; 2 << 20];
    let mut chunked_forever =
        format!("POST /api/publish HTTP/1.1\r\nHost: localhost\r\n{KEY}Transfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for _ in 0..40 {
        chunked_forever.extend_from_slice(format!("{:x}\r\n", 64 << 10).as_bytes());
        chunked_forever.extend(std::iter::repeat_n(b' ', 64 << 10));
        chunked_forever.extend_from_slice(b"\r\n");
    }
    let batch: String = (0..1001).map(|i| format!(r#"{{"channel":"b","data":{i}}}"#)).collect::<Vec<_>>().join(",");
    let batch = format!(r#"{{"publications":[{batch}]}}"#);
    let big_data = format!(r#"{{"channel":"big","data":"{}"}}"#, "x".repeat(70 << 10));
    let many_channels: String = (0..33).map(|i| format!("channel=c{i}&")).collect();
    vec![
        case("not-http", b"hello world\r\n\r\n".to_vec(), Answer::Http(400, None)),
        case("unknown-http-version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(), Answer::Http(400, None)),
        case("nul-in-a-header", get("/", "X-A: a\0b\r\n"), Answer::Http(400, None)),
        case("two-content-lengths", post("/api/publish", "Content-Length: 7\r\n", b"{}"), Answer::Http(400, None)),
        case("head-over-32-kib", get("/healthz", &big_header), Answer::Http(431, Some(106))),
        case(
            "uri-over-32-kib",
            get(&format!("/api/poll?channel={}", "a".repeat(40 << 10)), ""),
            Answer::Http(431, Some(106)),
        ),
        case("head-of-1-mib", get("/", &huge_line), Answer::Http(431, None)),
        case("200-header-lines", get("/", &many_headers), Answer::Http(431, None)),
        case("unknown-path", get("/nothing-here", ""), Answer::Http(404, Some(104))),
        case("path-traversal", get("/../../etc/passwd", ""), Answer::Http(404, Some(104))),
        case("path-traversal-under-demo", get("/demo/../../Cargo.toml", ""), Answer::Http(404, Some(104))),
        case("post-to-a-static-file", post("/", "", b"x"), Answer::Http(405, Some(107))),
        case("post-to-metrics", post("/metrics", "", b""), Answer::Http(405, Some(107))),
        case("api-without-key", post("/api/publish", "", br#"{"channel":"a","data":1}"#), Answer::Http(401, Some(101))),
        case(
            "api-wrong-key",
            post("/api/publish", "Authorization: apikey nope\r\n", br#"{"channel":"a","data":1}"#),
            Answer::Http(401, Some(101)),
        ),
        case(
            "api-wrong-scheme",
            post("/api/publish", "Authorization: Bearer k\r\n", br#"{"channel":"a","data":1}"#),
            Answer::Http(401, Some(101)),
        ),
        case("api-bad-json", post("/api/publish", KEY, b"{not json"), Answer::Http(400, Some(107))),
        case(
            "api-unknown-field",
            post("/api/publish", KEY, br#"{"channel":"a","data":1,"x":2}"#),
            Answer::Http(400, Some(107)),
        ),
        case(
            "api-bad-channel",
            post("/api/publish", KEY, br#"{"channel":"a b","data":1}"#),
            Answer::Http(400, Some(102)),
        ),
        case("api-body-over-1-mib", post("/api/publish", KEY, &two_mib), Answer::Http(413, Some(106))),
        case("api-chunked-body-over-1-mib", chunked_forever, Answer::Http(413, Some(106))),
        case(
            "api-broken-chunked-body",
            format!("POST /api/publish HTTP/1.1\r\nHost: x\r\n{KEY}Transfer-Encoding: chunked\r\n\r\nzz\r\n")
                .into_bytes(),
            Answer::Http(400, Some(107)),
        ),
        case("api-batch-of-1001", post("/api/batch", KEY, batch.as_bytes()), Answer::Http(413, Some(106))),
        case(
            "api-publication-over-64-kib",
            post("/api/publish", KEY, big_data.as_bytes()),
            Answer::Http(413, Some(106)),
        ),
        case("poll-empty-channel", get("/api/poll?channel=", ""), Answer::Http(400, Some(102))),
        case("poll-bad-channel", get("/api/poll?channel=a%00b", ""), Answer::Http(400, Some(102))),
        case("poll-bad-offset", get("/api/poll?channel=a&offset=x", ""), Answer::Http(400, Some(107))),
        case("poll-timeout-over-60-s", get("/api/poll?channel=a&timeout=1000", ""), Answer::Http(400, Some(107))),
        case("poll-unknown-parameter", get("/api/poll?channel=a&x=1", ""), Answer::Http(400, Some(107))),
        case("poll-bad-token", get("/api/poll?channel=a&token=not.a.jwt", ""), Answer::Http(401, Some(101))),
        case("poll-post", post("/api/poll", "", b""), Answer::Http(405, Some(107))),
        case("poll-33-channels", get(&format!("/api/poll?{many_channels}"), ""), Answer::Http(413, Some(106))),
        case("poll-channel-twice", get("/api/poll?channel=a&channel=a", ""), Answer::Http(400, Some(107))),
        case("poll-malformed-since", get("/api/poll?channel=a&since=a:1", ""), Answer::Http(400, Some(107))),
        case("poll-since-of-another-channel", get("/api/poll?channel=a&since=b:1:e", ""), Answer::Http(400, Some(107))),
        case("stream-empty-channel", get("/api/stream?channel=", ""), Answer::Http(400, Some(102))),
        case("stream-bad-channel", get("/api/stream?channel=a%00b", ""), Answer::Http(400, Some(102))),
        case("stream-33-channels", get(&format!("/api/stream?{many_channels}"), ""), Answer::Http(413, Some(106))),
        case("stream-malformed-since", get("/api/stream?channel=a&since=a:x:e", ""), Answer::Http(400, Some(107))),
        case(
            "stream-malformed-last-event-id",
            get("/api/stream?channel=a", "Last-Event-ID: a:1:e:,,\r\n"),
            Answer::Http(400, Some(107)),
        ),
        case(
            "stream-epoch-over-64-bytes",
            get(&format!("/api/stream?channel=a&since=a:1:{}", "e".repeat(65)), ""),
            Answer::Http(400, Some(107)),
        ),
        case("stream-bad-token", get("/api/stream?channel=a&token=x.y.z", ""), Answer::Http(401, Some(101))),
        case("stream-unknown-parameter", get("/api/stream?channel=a&timeout=1", ""), Answer::Http(400, Some(107))),
        case("stream-post", post("/api/stream?channel=a", "", b""), Answer::Http(405, Some(107))),
        case(
            "client-publish-bad-token",
            post("/api/client/publish?token=x.y.z", "", br#"{"channel":"a","data":1}"#),
            Answer::Http(401, Some(101)),
        ),
        case(
            "client-publish-into-a-server-channel",
            post("/api/client/publish", "", br#"{"channel":"$sys:stats","data":1}"#),
            Answer::Http(403, Some(103)),
        ),
        case(
            "client-publish-over-64-kib",
            post("/api/client/publish", "", big_data.as_bytes()),
            Answer::Http(413, Some(106)),
        ),
        case("client-publish-bad-json", post("/api/client/publish", "", b"{not json"), Answer::Http(400, Some(107))),
        case(
            "client-publish-bad-channel",
            post("/api/client/publish", "", br#"{"channel":"a b","data":1}"#),
            Answer::Http(400, Some(102)),
        ),
        case("client-publish-get", get("/api/client/publish", ""), Answer::Http(405, Some(107))),
        case("history-without-channel", get("/api/history", ""), Answer::Http(400, Some(102))),
        case("history-bad-limit", get("/api/history?channel=a&limit=-1", ""), Answer::Http(400, Some(107))),
        case("presence-two-channels", get("/api/presence?channel=a&channel=b", ""), Answer::Http(400, Some(107))),
        case("presence-post", post("/api/presence?channel=a", "", b""), Answer::Http(401, Some(101))),
        case("presence-put", raw_method("PUT", "/api/presence?channel=a"), Answer::Http(405, Some(107))),
        case(
            "api-subscribe-without-key",
            post("/api/subscribe", "", br#"{"user":"u","channel":"a"}"#),
            Answer::Http(401, Some(101)),
        ),
        case("api-subscribe-no-user", post("/api/subscribe", KEY, br#"{"channel":"a"}"#), Answer::Http(400, Some(107))),
        case(
            "api-subscribe-anonymous",
            post("/api/subscribe", KEY, br#"{"user":"","channel":"a"}"#),
            Answer::Http(400, Some(107)),
        ),
        case(
            "api-subscribe-server-channel",
            post("/api/subscribe", KEY, br#"{"user":"u","channel":"$sys:stats"}"#),
            Answer::Http(403, Some(103)),
        ),
        case(
            "api-unsubscribe-bad-channel",
            post("/api/unsubscribe", KEY, br##"{"user":"u","channel":"#control"}"##),
            Answer::Http(400, Some(102)),
        ),
        case(
            "api-disconnect-bad-code",
            post("/api/disconnect", KEY, br#"{"user":"u","code":1000}"#),
            Answer::Http(400, Some(107)),
        ),
        case(
            "api-disconnect-long-reason",
            post("/api/disconnect", KEY, format!(r#"{{"user":"u","reason":"{}"}}"#, "r".repeat(124)).as_bytes()),
            Answer::Http(400, Some(107)),
        ),
        case("api-channels-bad-body", post("/api/channels", KEY, b"[1]"), Answer::Http(400, Some(107))),
        case("api-channels-get", get("/api/channels", ""), Answer::Http(405, Some(107))),
        case(
            "api-bad-idempotency-key",
            post("/api/publish", KEY, br#"{"channel":"a","data":1,"idempotency_key":""}"#),
            Answer::Http(400, Some(107)),
        ),
        case("api-history-bad-body", post("/api/history", KEY, br#"{"channel":5}"#), Answer::Http(400, Some(107))),
    ]
}

/// A case played on a WebSocket of `serve` (opened by hand, in
/// `encoding`): `send` after the handshake, optionally after `connect`.
pub(crate) struct SocketCase {
    pub(crate) name: &'static str,
    pub(crate) encoding: Encoding,
    pub(crate) connected: bool,
    pub(crate) send: Vec<u8>,
    pub(crate) answer: Answer,
}

/// The protocol of `serve` over a well-formed WebSocket: what is not a
/// command, commands out of order, and the limits.
pub(crate) fn socket_cases() -> Vec<SocketCase> {
    use super::wire::{frame, text};
    let case = |name, connected, send, answer| SocketCase { name, encoding: Encoding::Json, connected, send, answer };
    let big = format!(r#"{{"id":2,"publish":{{"channel":"a","data":"{}"}}}}"#, "x".repeat(64 << 10));
    let mut many_subscribes = Vec::new();
    for i in 0..129 {
        many_subscribes.extend(text(&format!(r#"{{"id":{},"subscribe":{{"channel":"many:{i}"}}}}"#, 10 + i)));
    }
    vec![
        case("binary-before-connect", false, frame(0x82, b"{}"), Answer::Close(4000)),
        case("binary-after-connect", true, frame(0x82, b"{}"), Answer::Close(4000)),
        case("not-json", true, text("hello"), Answer::Close(4000)),
        case("json-without-id", true, text(r#"{"ping":{}}"#), Answer::Close(4000)),
        case("command-before-connect", false, text(r#"{"id":2,"subscribe":{"channel":"a"}}"#), Answer::Error(108)),
        case("unknown-method", true, text(r#"{"id":2,"fly":{}}"#), Answer::Error(104)),
        case("two-methods", true, text(r#"{"id":2,"ping":{},"presence":{"channel":"a"}}"#), Answer::Error(107)),
        case("connect-twice", true, text(r#"{"id":2,"connect":{}}"#), Answer::Error(107)),
        case("bad-token", false, text(r#"{"id":1,"connect":{"token":"x.y.z"}}"#), Answer::ErrorThenClose(101, 4001)),
        case("bad-channel-name", true, text(r#"{"id":2,"subscribe":{"channel":"a b"}}"#), Answer::Error(102)),
        case("message-over-64-kib", true, text(&big), Answer::Close(1009)),
        case("129-subscriptions", true, many_subscribes, Answer::Error(106)),
    ]
}

/// What the main server's hostile backend answers its RPC proxy with
/// (`backend.rs`), and commands of the backend in the loop that are wrong.
pub(crate) fn backend_cases() -> Vec<SocketCase> {
    use super::wire::text;
    let case = |name, send, answer| SocketCase { name, encoding: Encoding::Json, connected: true, send, answer };
    let rpc = |method: &str| text(&format!(r#"{{"id":2,"rpc":{{"method":"{method}","data":null}}}}"#));
    let bad_answers = [
        ("backend-answers-garbage", "garbage"),
        ("backend-answers-10-mib", "huge"),
        ("backend-answers-without-end", "endless"),
        ("backend-never-answers", "silent"),
        ("backend-closes-the-connection", "reset"),
        ("backend-answers-500", "status"),
        ("backend-answers-result-and-error", "two-answers"),
        ("backend-answers-a-code-not-its-own", "bad-code"),
        ("backend-answers-a-byte-at-a-time", "trickle"),
    ];
    assert_eq!(bad_answers.map(|(_, method)| method), super::backend::METHODS, "a case for every way to answer badly");
    let mut cases: Vec<SocketCase> =
        bad_answers.into_iter().map(|(name, method)| case(name, rpc(method), Answer::Error(111))).collect();
    cases.extend([
        case("rpc-bad-method-name", text(r#"{"id":2,"rpc":{"method":"a b","data":1}}"#), Answer::Error(107)),
        case("rpc-method-over-64-bytes", rpc(&"m".repeat(65)), Answer::Error(107)),
        case("rpc-without-data", text(r#"{"id":2,"rpc":{"method":"m"}}"#), Answer::Error(107)),
        case("refresh-bad-token", text(r#"{"id":2,"refresh":{"token":"x.y.z"}}"#), Answer::Error(101)),
        case(
            "publish-bad-idempotency-key",
            text(r#"{"id":2,"publish":{"channel":"a","data":1,"idempotency_key":"a b"}}"#),
            Answer::Error(107),
        ),
        case("connect-subs-malformed", text(r#"{"id":2,"connect":{"subs":{"a":1}}}"#), Answer::Error(107)),
    ]);
    cases
}

/// The same protocol in MessagePack (`ferrows.msgpack`): what is not a
/// command in that encoding, and commands that are wrong in it.
pub(crate) fn msgpack_cases() -> Vec<SocketCase> {
    use super::wire::{command, frame, text};
    let case = |name, send, answer| SocketCase { name, encoding: Encoding::Msgpack, connected: true, send, answer };
    // A map whose `data` nests arrays 100 deep.
    let mut deep = vec![0x82, 0xa2, b'i', b'd', 0x02, 0xa7];
    deep.extend_from_slice(b"publish");
    deep.extend_from_slice(&[0x82, 0xa7]);
    deep.extend_from_slice(b"channel");
    deep.extend_from_slice(&[0xa1, b'a', 0xa4]);
    deep.extend_from_slice(b"data");
    deep.extend(std::iter::repeat_n(0x91, 100));
    deep.push(0x01);
    // `{"id":2,"id":3,"ping":{}}`: a key twice.
    let mut twice = vec![0x83, 0xa2, b'i', b'd', 0x02, 0xa2, b'i', b'd', 0x03, 0xa4];
    twice.extend_from_slice(b"ping");
    twice.push(0x80);
    vec![
        case("msgpack-text-frame", text(r#"{"id":2,"ping":{}}"#), Answer::Close(4000)),
        case("msgpack-not-a-map", frame(0x82, &[0x92, 0x01, 0x02]), Answer::Close(4000)),
        case("msgpack-length-past-the-end", frame(0x82, &[0xdd, 0xff, 0xff, 0xff, 0xff]), Answer::Close(4000)),
        case("msgpack-id-twice", frame(0x82, &twice), Answer::Close(4000)),
        case("msgpack-nested-100-deep", frame(0x82, &deep), Answer::Close(4000)),
        case("msgpack-unknown-method", command(Encoding::Msgpack, r#"{"id":2,"fly":{}}"#), Answer::Error(104)),
        case(
            "msgpack-bad-channel-name",
            command(Encoding::Msgpack, r#"{"id":2,"subscribe":{"channel":"a b"}}"#),
            Answer::Error(102),
        ),
    ]
}
