//! Parked WebSockets: a connection parked whenever it waits with nothing
//! in progress loses nothing (messages, compression contexts, keepalive,
//! the peer's end), and a busy one does not park.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use ferrows::{ClientConfig, Message, ParkedWebSocket, ParkingWebSocket, ServerConfig, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("test step timed out")
}

/// What the parking echo server saw.
#[derive(Default)]
struct Seen {
    parks: AtomicUsize,
    ended: AtomicUsize,
}

/// A server configuration whose connections park as soon as they wait with
/// nothing in progress (no quiet spell first).
fn parks_at_once() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.websocket.park_after = Duration::ZERO;
    config
}

/// An echo server whose connections park whenever they wait with nothing in
/// progress (after `config`'s quiet spell); returns its URL.
async fn parking_echo_server(config: ServerConfig, seen: Arc<Seen>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (config, seen) = (config.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(ws) = ferrows::accept_with(tcp, ferrows::AcceptAll, &config).await else { return };
                let mut conn = ParkingWebSocket::new(Box::new(ws));
                let mut echo: Option<Message> = None;
                std::future::poll_fn(|cx| {
                    loop {
                        ready!(conn.poll_activity(cx));
                        let ws = conn.active(&config.websocket);
                        if let Some(message) = echo.take() {
                            match ws.poll_write_ready(cx) {
                                Poll::Ready(Ok(())) => {}
                                Poll::Ready(Err(_)) => return Poll::Ready(()),
                                Poll::Pending => {
                                    echo = Some(message);
                                    return Poll::Pending;
                                }
                            }
                            let prepared = ferrows::PreparedMessage::binary(match message {
                                Message::Text(text) => Bytes::from(text),
                                Message::Binary(data) => data,
                                _ => unreachable!("only data is echoed"),
                            });
                            if ws.queue_prepared(&prepared).is_err() {
                                return Poll::Ready(());
                            }
                        }
                        if let Poll::Ready(Err(_)) = ws.poll_write_out(cx) {
                            return Poll::Ready(());
                        }
                        match ws.poll_recv(cx) {
                            Poll::Ready(Some(Ok(message))) => echo = Some(message).filter(Message::is_data),
                            Poll::Ready(_) => return Poll::Ready(()),
                            Poll::Pending if echo.is_none() && conn.park_if_idle(cx, &config.websocket) => {
                                seen.parks.fetch_add(1, Ordering::Relaxed);
                            }
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                })
                .await;
                seen.ended.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    url
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Messages of every size, one at a time (the server parks between them),
/// with and without compression: with context takeover, each compressed
/// message needs the contexts the parked connection kept.
#[tokio::test]
async fn a_parked_connection_loses_nothing_between_messages() {
    for compress in [false, true] {
        let seen = Arc::new(Seen::default());
        let url = parking_echo_server(parks_at_once(), seen.clone()).await;
        let mut client = ClientConfig::default();
        if !compress {
            client.websocket.deflate = None;
        }
        let mut ws = bounded(ferrows::connect_with(url.as_str(), &client)).await.unwrap();
        assert_eq!(ws.is_compressed(), compress);
        let sizes = [0usize, 1, 125, 126, 4096, 65_536, 1 << 20];
        for (round, size) in sizes.iter().cycle().take(20).enumerate() {
            let payload: Vec<u8> = (0..*size).map(|i| ((i * 7 + round) % 251) as u8).collect();
            let parks_before = seen.parks.load(Ordering::Relaxed);
            bounded(ws.send(Message::binary(payload.clone()))).await.unwrap();
            let echoed = bounded(ws.recv()).await.unwrap().unwrap();
            assert_eq!(echoed, Message::binary(payload), "round {round}, compress {compress}");
            // The server parks again once it waits.
            wait_until("the server to park", || seen.parks.load(Ordering::Relaxed) > parks_before).await;
        }
        bounded(ws.close(ferrows::CloseCode::NORMAL, "")).await.unwrap();
        wait_until("the server loop to end", || seen.ended.load(Ordering::Relaxed) == 1).await;
    }
}

/// Bytes that trickle in one at a time: the connection parks between them
/// only while no frame is in progress.
#[tokio::test]
async fn a_frame_that_trickles_in_arrives_whole() {
    let seen = Arc::new(Seen::default());
    let url = parking_echo_server(parks_at_once(), seen.clone()).await;
    let mut tcp = raw_client(&url).await;
    wait_until("the server to park", || seen.parks.load(Ordering::Relaxed) >= 1).await;
    let parks = seen.parks.load(Ordering::Relaxed);
    // A masked text frame "hi" (mask 1 2 3 4), one byte at a time.
    let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    for byte in frame {
        tcp.write_all(&[byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut echoed = [0u8; 4];
    bounded(tcp.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(echoed, [0x82, 2, b'h', b'i']);
    wait_until("the server to park again", || seen.parks.load(Ordering::Relaxed) > parks).await;
    // It could not park in the middle of the frame: at most once for the
    // first byte (before anything was buffered), once after the echo.
    assert!(seen.parks.load(Ordering::Relaxed) <= parks + 2, "parked with a frame in progress");
}

/// A client that does not offer compression.
async fn uncompressed_client(url: &str) -> WebSocket<ferrows::MaybeTlsStream> {
    let mut client = ClientConfig::default();
    client.websocket.deflate = None;
    bounded(ferrows::connect_with(url, &client)).await.unwrap()
}

async fn raw_client(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("ws://").parse().unwrap();
    bounded(ferrows::testing::raw_websocket(addr, "/")).await.unwrap()
}

/// Keepalive runs while parked: Pings go out, a peer that answers stays,
/// one that does not is dropped.
#[tokio::test]
async fn a_parked_connection_keeps_pinging() {
    let mut config = parks_at_once();
    config.websocket.ping_interval = Some(Duration::from_millis(100));
    config.websocket.pong_timeout = Duration::from_millis(300);
    let seen = Arc::new(Seen::default());
    let url = parking_echo_server(config, seen.clone()).await;

    // A client that reads (and so answers Pings) sees several of them and
    // stays connected.
    let mut ws = uncompressed_client(&url).await;
    let mut pings = 0;
    while pings < 3 {
        if let Message::Ping(_) = bounded(ws.recv()).await.unwrap().unwrap() {
            pings += 1;
        }
    }
    assert_eq!(seen.ended.load(Ordering::Relaxed), 0);
    assert!(seen.parks.load(Ordering::Relaxed) >= 3, "parked between the pings");

    // A raw client that never answers is dropped after the pong timeout.
    let mut silent = raw_client(&url).await;
    wait_until("the silent client to be dropped", || seen.ended.load(Ordering::Relaxed) == 1).await;
    let mut rest = Vec::new();
    let _ = bounded(silent.read_to_end(&mut rest)).await;
    assert_eq!(rest.first(), Some(&0x89), "a Ping came first");
    drop(ws);
}

/// The peer's end of file reaches a parked connection.
#[tokio::test]
async fn a_parked_connection_sees_the_peer_leave() {
    let seen = Arc::new(Seen::default());
    let url = parking_echo_server(parks_at_once(), seen.clone()).await;
    let tcp = raw_client(&url).await;
    wait_until("the server to park", || seen.parks.load(Ordering::Relaxed) >= 1).await;
    drop(tcp);
    wait_until("the server loop to end", || seen.ended.load(Ordering::Relaxed) == 1).await;
}

/// A connection that talks stays whole between its messages, and parks
/// once it has been quiet for the configured spell.
#[tokio::test]
async fn a_chatty_connection_parks_only_once_quiet() {
    let mut config = ServerConfig::default();
    config.websocket.park_after = Duration::from_millis(500);
    let seen = Arc::new(Seen::default());
    let url = parking_echo_server(config, seen.clone()).await;
    let mut ws = uncompressed_client(&url).await;
    let rounds = 200;
    for round in 0..rounds {
        bounded(ws.send(Message::text(format!("m{round}")))).await.unwrap();
        // (The test server echoes everything as binary.)
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::binary(format!("m{round}").into_bytes()));
    }
    // Round trips take microseconds here: only a stall of half a second
    // between two of them lets the server park, and never on most rounds.
    let parked_while_talking = seen.parks.load(Ordering::Relaxed);
    assert!(parked_while_talking < 5, "parked {parked_while_talking} times in {rounds} quick rounds");
    wait_until("the quiet connection to park", || seen.parks.load(Ordering::Relaxed) > parked_while_talking).await;
    // Parked, it still answers.
    bounded(ws.send(Message::text("after"))).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::binary(&b"after"[..]));
    bounded(ws.close(ferrows::CloseCode::NORMAL, "")).await.unwrap();
    wait_until("the server loop to end", || seen.ended.load(Ordering::Relaxed) == 1).await;
}

/// A WebSocket with output not yet written does not park.
#[tokio::test]
async fn a_busy_websocket_does_not_park() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        ferrows::accept(tcp).await.unwrap()
    });
    let _client = bounded(ferrows::connect(url.as_str())).await.unwrap();
    let mut ws: WebSocket<TcpStream> = bounded(server).await.unwrap();
    assert!(ws.can_park());
    bounded(ws.feed(Message::text("unflushed"))).await.unwrap();
    assert!(!ws.can_park());
    let ws = ws.park().expect_err("output is waiting");
    let mut ws = ws;
    bounded(ws.flush()).await.unwrap();
    assert!(ws.park().is_ok());
}

#[test]
fn a_parked_websocket_is_small() {
    // What an idle server connection holds instead of the WebSocket.
    let parked = std::mem::size_of::<ParkedWebSocket<TcpStream>>();
    let whole = std::mem::size_of::<WebSocket<TcpStream>>();
    eprintln!("ParkedWebSocket<TcpStream>: {parked} bytes, WebSocket<TcpStream>: {whole}");
    assert!(parked <= 128, "ParkedWebSocket<TcpStream> grew to {parked} bytes");
    assert!(parked * 3 < whole, "parked {parked} bytes, whole {whole}");
}
