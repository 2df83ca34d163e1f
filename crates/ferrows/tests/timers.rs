//! Keepalive, dead-peer detection, idle, close and handshake timeouts, on
//! in-memory streams with tokio's paused clock (deterministic, instant).
#![allow(missing_docs)]

use std::time::Duration;

use bytes::BytesMut;
use ferrows::proto::Role;
use ferrows::proto::config::Negotiated;
use ferrows::{CloseCode, Error, Message, ServerConfig, WebSocket, WebSocketConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn pair(server: &WebSocketConfig, client: &WebSocketConfig) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let none = Negotiated::default();
    (
        WebSocket::from_raw(a, Role::Server, server, &none, None, BytesMut::new()),
        WebSocket::from_raw(b, Role::Client, client, &none, None, BytesMut::new()),
    )
}

/// A server WebSocket and the raw client end of its stream.
fn server_with_raw_peer(config: &WebSocketConfig) -> (WebSocket<DuplexStream>, DuplexStream) {
    let (a, b) = tokio::io::duplex(64 << 10);
    (WebSocket::from_raw(a, Role::Server, config, &Negotiated::default(), None, BytesMut::new()), b)
}

fn keepalive(interval: u64, timeout: u64) -> WebSocketConfig {
    WebSocketConfig {
        ping_interval: Some(Duration::from_secs(interval)),
        pong_timeout: Duration::from_secs(timeout),
        ..WebSocketConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_found_dead_by_keepalive() {
    let (mut server, mut peer) = server_with_raw_peer(&keepalive(10, 5));
    let started = tokio::time::Instant::now();
    let result = server.recv().await;
    assert!(matches!(result, Some(Err(Error::Timeout(_)))), "{result:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(15) && elapsed < Duration::from_secs(16), "{elapsed:?}");
    // The peer was pinged (an empty unmasked Ping) before it was given up.
    let mut wire = [0u8; 2];
    peer.read_exact(&mut wire).await.unwrap();
    assert_eq!(wire, [0x89, 0x00]);
}

#[tokio::test(start_paused = true)]
async fn live_peer_answers_pings_and_stays_connected() {
    let (mut server, mut client) = pair(&keepalive(10, 5), &WebSocketConfig::default());
    let client_task = tokio::spawn(async move {
        // Reading answers the server's pings; after a minute, say something.
        let reader = async { while let Some(Ok(_)) = client.recv().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(60), reader).await;
        client.send(Message::text("still here")).await.unwrap();
        while let Some(Ok(_)) = client.recv().await {}
    });
    let mut pongs = 0;
    let got = loop {
        match server.recv().await.unwrap().unwrap() {
            Message::Pong(_) => pongs += 1,
            other => break other,
        }
    };
    assert_eq!(got, Message::text("still here"));
    assert_eq!(pongs, 6, "one ping every 10 s for a minute");
    server.close(CloseCode::NORMAL, "").await.unwrap();
    client_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unanswered_close_times_out() {
    let config = WebSocketConfig { close_timeout: Duration::from_secs(3), ..WebSocketConfig::default() };
    let (mut server, _peer) = server_with_raw_peer(&config);
    let started = tokio::time::Instant::now();
    let result = server.close(CloseCode::GOING_AWAY, "shutdown").await;
    assert!(matches!(result, Err(Error::Timeout("closing handshake"))), "{result:?}");
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn lingering_after_a_failure_ends_at_the_close_timeout() {
    // A peer that sends a frame with a reserved opcode, then never closes
    // and keeps sending: the server reads and discards until the close
    // timeout, then gives up with the protocol error.
    let config = WebSocketConfig { close_timeout: Duration::from_secs(3), ..WebSocketConfig::default() };
    let (mut server, mut peer) = server_with_raw_peer(&config);
    peer.write_all(&[0x83, 0x80, 0, 0, 0, 0]).await.unwrap();
    let (mut peer_read, mut peer_write) = tokio::io::split(peer);
    let flood = tokio::spawn(async move {
        let mut sent = 0usize;
        while peer_write.write_all(&[0u8; 1024]).await.is_ok() {
            sent += 1024;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    });
    let started = tokio::time::Instant::now();
    let result = server.recv().await;
    assert!(matches!(result, Some(Err(Error::Protocol(_)))), "{result:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4), "{elapsed:?}");
    drop(server);
    // Everything the peer sent until then was read, not left to pile up.
    assert!(flood.await.unwrap() >= 250 << 10);
    let mut close = Vec::new();
    peer_read.read_to_end(&mut close).await.unwrap();
    assert_eq!(&close[..4], &[0x88, close[1], 0x03, 0xEA], "a Close 1002: {close:02x?}");
}

#[tokio::test(start_paused = true)]
async fn idle_connection_is_closed() {
    let config = WebSocketConfig { idle_timeout: Some(Duration::from_secs(30)), ..WebSocketConfig::default() };
    let (mut server, mut client) = pair(&config, &WebSocketConfig::default());
    let server_task = tokio::spawn(async move { while let Some(Ok(_)) = server.recv().await {} });
    let got = client.recv().await.unwrap().unwrap();
    match got {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::NORMAL);
            assert_eq!(frame.reason, "idle timeout");
        }
        other => panic!("expected Close, got {other:?}"),
    }
    assert!(client.recv().await.is_none());
    server_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stalled_handshake_times_out() {
    let (server_end, mut client_end) = tokio::io::duplex(4096);
    client_end.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let result = ferrows::accept_with(server_end, ferrows::AcceptAll, &ServerConfig::default()).await;
    assert!(matches!(result, Err(Error::Timeout("opening handshake"))), "{:?}", result.err());
}
