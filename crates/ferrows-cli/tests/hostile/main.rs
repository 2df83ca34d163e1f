//! The hostile-input suite of `ferrows serve`, against the real binary:
//! every route, every invalid handshake, every frame-level violation before
//! and after `connect`, compression bombs, floods of connections and of
//! commands, and slow or silent clients. Each case must get the answer
//! `docs/hostile-input.md` gives for it from the rule that applies, within
//! 5 s, while the server goes on serving a subscriber and a publisher
//! beside the cases, with bounded memory.
//!
//! The main server runs with its connect, ping and request timeouts at
//! 60 s, so that no answer can come from a timeout; the slow clients have
//! a server of their own with those timeouts at 1 s.

mod backend;
mod cases;
mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cases::Answer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{ANSWER_WITHIN, Serve, exchange, listen, text};

/// Connections per address of the main server: small, so that the flood
/// of connections from one address is quick to play.
const PER_ADDRESS: usize = 50;

/// What the server may grow by over the whole suite (a 1 MiB head, 2 MiB
/// bodies, floods): far less than what unbounded buffering would take.
const MEMORY_BOUND: usize = 64 << 20;

/// The answers found, by case name, as `docs/hostile-input.md` writes them.
type Found = BTreeMap<String, Answer>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_gets_its_documented_answer_in_time_and_the_others_are_served() {
    let backend = backend::start().await;
    let rpc_url = format!("http://{backend}/rpc");
    let serve = Serve::start(&[
        "--proxy-rpc-url",
        &rpc_url,
        "--proxy-timeout",
        "2",
        "--connect-timeout",
        "60",
        "--ping-interval",
        "60",
        "--request-timeout",
        "60",
        "--max-connections-per-address",
        &PER_ADDRESS.to_string(),
    ]);
    let addr = serve.addr;
    let rss_before = serve.rss();
    let bystanders = Bystanders::start(addr).await;
    let mut failures = Vec::new();
    let mut found = Found::new();

    for case in cases::http_cases() {
        let answer = tokio::time::timeout(ANSWER_WITHIN, exchange(addr, &case.request)).await;
        let got = match answer {
            Ok(answer) => Answer::Http(answer.status, answer.error),
            Err(_) => Answer::CutOff,
        };
        check(&mut failures, &mut found, case.name, case.answer, got);
    }
    for case in cases::socket_cases().into_iter().chain(cases::msgpack_cases()).chain(cases::backend_cases()) {
        let got =
            tokio::time::timeout(ANSWER_WITHIN * 2, play_socket_case(addr, &case)).await.unwrap_or(Answer::CutOff);
        check(&mut failures, &mut found, case.name, case.answer, got);
    }
    // The library's shared lists: every invalid opening handshake, and
    // every frame-level violation before `connect` and after it (each
    // bounded by 5 s there).
    for failure in ferrows::testing::check_handshakes(addr, "/ws").await {
        failures.push(format!("handshake {failure}"));
    }
    for failure in ferrows::testing::check_frames(addr, "/ws", &[]).await {
        failures.push(format!("before connect: {failure}"));
    }
    let connect = r#"{"id": 1, "connect": {"name": "hostile"}}"#;
    for failure in ferrows::testing::check_frames(addr, "/ws", &[connect]).await {
        failures.push(format!("after connect: {failure}"));
    }
    let got = tokio::time::timeout(ANSWER_WITHIN, deflate_bomb(addr)).await.unwrap_or(Answer::CutOff);
    check(&mut failures, &mut found, "deflate-bomb", Answer::Close(1009), got);
    let got = tokio::time::timeout(ANSWER_WITHIN, deflate_garbage(addr)).await.unwrap_or(Answer::CutOff);
    check(&mut failures, &mut found, "deflate-garbage", Answer::Close(1002), got);
    let got = tokio::time::timeout(ANSWER_WITHIN, command_flood(addr)).await.unwrap_or(Answer::CutOff);
    check(&mut failures, &mut found, "command-flood", Answer::ErrorThenClose(110, 4006), got);
    let got = tokio::time::timeout(ANSWER_WITHIN * 4, stream_never_read(addr)).await.unwrap_or(Answer::Http(0, None));
    check(&mut failures, &mut found, "stream-never-read", Answer::CutOff, got);
    let got = tokio::time::timeout(ANSWER_WITHIN * 2, connection_flood(addr)).await.unwrap_or(Answer::CutOff);
    check(&mut failures, &mut found, "connections-from-one-address", Answer::Http(429, Some(110)), got);

    let grown = serve.rss().saturating_sub(rss_before);
    eprintln!("server RSS grew by {} KiB over the suite", grown >> 10);
    if grown > MEMORY_BOUND {
        failures.push(format!("the server grew by {grown} bytes (bound {MEMORY_BOUND})"));
    }
    if let Err(e) = bystanders.finish().await {
        failures.push(format!("bystanders: {e}"));
    }
    failures.extend(documented(&found, "strict"));
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_off_by_their_timeouts() {
    let timeout = Duration::from_secs(1);
    let serve = Serve::start(&[
        "--connect-timeout",
        "1",
        "--ping-interval",
        "1",
        "--pong-timeout",
        "1",
        "--request-timeout",
        "1",
    ]);
    let addr = serve.addr;
    let bystanders = Bystanders::start(addr).await;
    let (mut failures, mut found) = (Vec::new(), Found::new());
    // Each answer is due one timeout (two for the Pong: the Ping's interval
    // and its timeout) after the case starts, and must come within 5 s more.
    let within = |n: u32| timeout * n + ANSWER_WITHIN;
    let got = tokio::time::timeout(within(1), slow_head(addr)).await.unwrap_or(Answer::Http(0, None));
    check(&mut failures, &mut found, "head-sent-a-byte-at-a-time", Answer::CutOff, got);
    let got = tokio::time::timeout(within(1), silent_connection(addr)).await.unwrap_or(Answer::Http(0, None));
    check(&mut failures, &mut found, "connection-that-sends-nothing", Answer::CutOff, got);
    let got = tokio::time::timeout(within(1), slow_body(addr)).await.unwrap_or(Answer::CutOff);
    check(&mut failures, &mut found, "body-that-stops-halfway", Answer::Http(408, Some(107)), got);
    let got = tokio::time::timeout(within(1), no_connect(addr)).await.unwrap_or(Answer::CutOff);
    check(&mut failures, &mut found, "websocket-without-connect", Answer::Close(4005), got);
    let got = tokio::time::timeout(within(2), no_pong(addr)).await.unwrap_or(Answer::Http(0, None));
    check(&mut failures, &mut found, "client-that-never-answers-pings", Answer::CutOff, got);
    if let Err(e) = bystanders.finish().await {
        failures.push(format!("bystanders: {e}"));
    }
    failures.extend(documented(&found, "slow"));
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

fn check(failures: &mut Vec<String>, found: &mut Found, name: &str, expected: Answer, got: Answer) {
    if got != expected {
        failures.push(format!("{name}: expected {expected}, got {got}"));
    }
    found.insert(name.to_owned(), expected);
}

/// The rows of `docs/hostile-input.md` that differ from the cases of a
/// group (`| \`name\` | what | answer |`).
fn documented(found: &Found, group: &str) -> Vec<String> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/hostile-input.md"))
        .expect("docs/hostile-input.md");
    let rows: BTreeMap<&str, &str> = page
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name, *cells.get(cells.len().checked_sub(2)?)?))
        })
        .collect();
    found
        .iter()
        .filter_map(|(name, answer)| match rows.get(name.as_str()) {
            Some(row) if *row == answer.to_string() => None,
            Some(row) => {
                Some(format!("docs/hostile-input.md ({group}): `{name}` says {row:?}, the case gets {answer}"))
            }
            None => Some(format!("docs/hostile-input.md ({group}): no row for `{name}` ({answer})")),
        })
        .collect()
}

/// Plays one [`cases::SocketCase`].
async fn play_socket_case(addr: SocketAddr, case: &cases::SocketCase) -> Answer {
    let (mut tcp, _) = wire::websocket_in(addr, case.encoding).await;
    if case.connected {
        tcp.write_all(&wire::command(case.encoding, r#"{"id":1,"connect":{"name":"hostile"}}"#)).await.unwrap();
        let heard = listen(&mut tcp, |h| h.results() == 1).await;
        assert_eq!(heard.results(), 1, "{}: connect failed: {heard:?}", case.name);
    }
    let _ = tcp.write_all(&case.send).await;
    let heard = listen(&mut tcp, |h| !h.errors().is_empty()).await;
    let error = heard.errors().first().copied();
    if let Some(close) = heard.close {
        return match error {
            Some(code) => Answer::ErrorThenClose(code, close),
            None => Answer::Close(close),
        };
    }
    let Some(code) = error else { return Answer::CutOff };
    // Kept open: a ping still gets its answer.
    let _ = tcp.write_all(&wire::command(case.encoding, r#"{"id":99999,"ping":{}}"#)).await;
    let pong = listen(&mut tcp, |h| h.messages.iter().any(|m| m["id"] == 99999)).await;
    match pong.close {
        Some(close) => Answer::ErrorThenClose(code, close),
        None if pong.messages.iter().any(|m| m["id"] == 99999) => Answer::Error(code),
        None => Answer::CutOff,
    }
}

/// A compressed message that inflates to 16 MiB of zeros (16 KiB on the
/// wire), on a connection that negotiated permessage-deflate.
async fn deflate_bomb(addr: SocketAddr) -> Answer {
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let zeros = vec![0u8; 16 << 20];
    let mut out = Vec::with_capacity(64 << 10);
    deflate.compress_vec(&zeros, &mut out, flate2::FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    compressed_message(addr, &out).await
}

/// A compressed frame whose payload is not DEFLATE data.
async fn deflate_garbage(addr: SocketAddr) -> Answer {
    compressed_message(addr, &[0xFF; 64]).await
}

async fn compressed_message(addr: SocketAddr, payload: &[u8]) -> Answer {
    let (mut tcp, head) = wire::websocket(addr, Some("permessage-deflate")).await;
    assert!(head.to_ascii_lowercase().contains("permessage-deflate"), "not negotiated: {head}");
    let _ = tcp.write_all(&wire::frame(0xC1, payload)).await;
    match listen(&mut tcp, |_| false).await.close {
        Some(code) => Answer::Close(code),
        None => Answer::CutOff,
    }
}

/// 3 000 pings at once: the burst (1 000) runs, the next burst is refused
/// with error 110, then the connection is closed with 4006.
async fn command_flood(addr: SocketAddr) -> Answer {
    let (mut tcp, _) = wire::websocket(addr, None).await;
    let mut flood = text(r#"{"id":1,"connect":{"name":"flood"}}"#);
    for id in 2..3002 {
        flood.extend(text(&format!(r#"{{"id":{id},"ping":{{}}}}"#)));
    }
    let _ = tcp.write_all(&flood).await;
    let heard = listen(&mut tcp, |_| false).await;
    let errors = heard.errors();
    let (ran, refused) = (heard.results(), errors.iter().filter(|&&code| code == 110).count());
    // The burst runs and the next one is refused; the allowance that comes
    // back meanwhile (1 per ms) lets a few more through.
    let expected = ran >= 1000 && refused >= 1000 && errors.len() == refused && ran + refused < 3001;
    match heard.close {
        Some(close) if expected => Answer::ErrorThenClose(110, close),
        close => {
            eprintln!("command-flood: {ran} ran, {refused} refused, {} errors, close {close:?}", errors.len());
            Answer::CutOff
        }
    }
}

/// An event stream whose client never reads a byte while its channel gets
/// publications of 60 KiB: its queue overflows and the server closes the
/// connection (reading then finds what was sent, and the end).
async fn stream_never_read(addr: SocketAddr) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /api/stream?channel=never-read HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Subscribed once the `connected` event could be sent: wait for the
    // answer's head without reading further.
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    let data = "x".repeat(60 << 10);
    let body = format!(r#"{{"channel":"never-read","data":"{data}"}}"#);
    // The queue (4 MiB) and the socket buffers take a few hundred.
    for n in 1..=1000 {
        let answer = exchange(addr, &cases_post("/api/publish", &body)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        if n % 25 == 0 {
            let metrics = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
            if metrics.text.contains("\nferrows_streams 0\n") {
                eprintln!("stream-never-read: closed after {n} publications of 60 KiB");
                break;
            }
        }
    }
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match tcp.read(&mut sink).await {
            Ok(0) | Err(_) => return Answer::CutOff,
            Ok(_) => {}
        }
    }
}

/// `PER_ADDRESS` connections from 127.0.0.2 that send nothing, then one
/// more request from there: 429; and from another address, 200.
async fn connection_flood(addr: SocketAddr) -> Answer {
    let flooder: IpAddr = "127.0.0.2".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..PER_ADDRESS {
        held.push(wire::connect_from(flooder, addr).await.unwrap());
    }
    // The server counts a connection once it accepted it: wait for that by
    // asking until the answer is the refusal (bounded by the caller).
    loop {
        let mut tcp = wire::connect_from(flooder, addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = wire::read_answer(&mut tcp).await;
        if answer.status != 200 {
            let other = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
            assert_eq!(other.status, 200, "another address is refused too: {}", other.text);
            // A refused connection that sends nothing gets the answer at once
            // and its end within a second: a flood of them holds no sockets.
            let mut silent = wire::connect_from(flooder, addr).await.unwrap();
            let mut all = Vec::new();
            let ended = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut all)).await;
            assert!(ended.is_ok(), "a refused connection was held open");
            assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 429"), "{}", String::from_utf8_lossy(&all));
            return Answer::Http(answer.status, answer.error);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn slow_head(addr: SocketAddr) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    for byte in request {
        if tcp.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = wire::read_answer(&mut tcp).await;
    // All of it would take 14 s: the cut must come first.
    match answer.status {
        0 if started.elapsed() < Duration::from_secs(10) => Answer::CutOff,
        status => Answer::Http(status, answer.error),
    }
}

async fn silent_connection(addr: SocketAddr) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = wire::read_answer(&mut tcp).await;
    if answer.status == 0 { Answer::CutOff } else { Answer::Http(answer.status, answer.error) }
}

async fn slow_body(addr: SocketAddr) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey k\r\nContent-Length: 100\r\n\r\n{\"chan";
    tcp.write_all(request).await.unwrap();
    let answer = wire::read_answer(&mut tcp).await;
    Answer::Http(answer.status, answer.error)
}

async fn no_connect(addr: SocketAddr) -> Answer {
    let (mut tcp, _) = wire::websocket(addr, None).await;
    listen(&mut tcp, |_| false).await.close.map_or(Answer::CutOff, Answer::Close)
}

/// Connected and subscribed, then silent: it reads (the Pings arrive) but
/// never answers.
async fn no_pong(addr: SocketAddr) -> Answer {
    let (mut tcp, _) = wire::websocket(addr, None).await;
    tcp.write_all(&text(r#"{"id":1,"connect":{"name":"half-open"}}"#)).await.unwrap();
    let heard = listen(&mut tcp, |_| false).await;
    match heard.close {
        None => Answer::CutOff,
        Some(code) => Answer::Close(code),
    }
}

/// A subscriber and a publisher beside the cases: the publisher publishes
/// every 20 ms through the server API, the subscriber (which reads all the
/// time, so it answers the server's Pings) must get every acknowledged
/// publication, in order, on one connection.
struct Bystanders {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    publisher: tokio::task::JoinHandle<Result<(), String>>,
    /// The publications the subscriber got, in order; an error ends it.
    received: tokio::sync::watch::Receiver<Result<Vec<u64>, String>>,
    started: tokio::time::Instant,
}

impl Bystanders {
    async fn start(addr: SocketAddr) -> Self {
        let mut subscriber = ferrows::connect(format!("ws://{addr}/ws")).await.expect("the subscriber connects");
        for command in [r#"{"id":1,"connect":{"name":"bystander"}}"#, r#"{"id":2,"subscribe":{"channel":"bystander"}}"#]
        {
            subscriber.send(ferrows::Message::text(command)).await.unwrap();
            let reply = subscriber.recv().await.expect("a reply").unwrap();
            assert!(matches!(&reply, ferrows::Message::Text(t) if t.as_str().contains("result")), "{reply:?}");
        }
        let (tx, received) = tokio::sync::watch::channel(Ok(Vec::new()));
        tokio::spawn(async move {
            loop {
                let message = match subscriber.recv().await {
                    Some(Ok(ferrows::Message::Text(message))) => message,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return tx.send_replace(Err(e.to_string())),
                    None => return tx.send_replace(Err("the subscriber was disconnected".into())),
                };
                let push: serde_json::Value = serde_json::from_str(message.as_str()).unwrap_or_default();
                if let Some(data) = push["push"]["pub"]["data"].as_u64() {
                    tx.send_modify(|received| {
                        if let Ok(received) = received {
                            received.push(data);
                        }
                    });
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let publisher = tokio::spawn({
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let body = format!(r#"{{"channel":"bystander","data":{seq}}}"#);
                    let request = cases_post("/api/publish", &body);
                    let answer = tokio::time::timeout(ANSWER_WITHIN, exchange(addr, &request))
                        .await
                        .map_err(|_| format!("publication {seq} not answered within 5 s"))?;
                    if answer.status != 200 {
                        return Err(format!("publication {seq}: {}", answer.text));
                    }
                    acknowledged.store(seq, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(())
            }
        });
        Self { stop, acknowledged, publisher, received, started: tokio::time::Instant::now() }
    }

    /// Stops publishing (after a second at least, however fast the cases
    /// went); every acknowledged publication must reach the subscriber, in
    /// order.
    async fn finish(mut self) -> Result<(), String> {
        tokio::time::sleep_until(self.started + Duration::from_secs(1)).await;
        self.stop.store(true, Ordering::Relaxed);
        self.publisher.await.map_err(|e| e.to_string())??;
        let last = self.acknowledged.load(Ordering::Relaxed);
        if last < 20 {
            return Err(format!("only {last} publications acknowledged while the cases ran"));
        }
        let all = tokio::time::timeout(
            ANSWER_WITHIN,
            self.received.wait_for(|received| received.as_ref().map_or(true, |r| r.len() as u64 >= last)),
        )
        .await
        .is_ok();
        let received = self.received.borrow().clone()?;
        if !all {
            return Err(format!("{} of {last} publications arrived", received.len()));
        }
        let expected: Vec<u64> = (1..=last).collect();
        if received[..last as usize] != expected[..] {
            return Err(format!("publications out of order or repeated: {:?}", &received[..received.len().min(50)]));
        }
        Ok(())
    }
}

fn cases_post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: apikey k\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
