//! The tokio layer end to end over loopback TCP: client and server
//! `WebSocket`s, with and without compression, plus raw-socket peers that
//! misbehave.
#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use ferrows::{ClientConfig, CloseCode, Error, Message, ServerConfig};
use ferrows_proto::{HandshakeError, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every wait in these tests is bounded.
const WAIT: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("test step timed out")
}

/// An echo server on a free port; returns its URL.
async fn echo_server(config: ServerConfig) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = ferrows::accept_with(tcp, ferrows::AcceptAll, &config).await else { return };
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

fn no_compression_client() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.websocket.deflate = None;
    config
}

async fn exchange(url: &str, client: &ClientConfig, expect_compressed: bool) {
    let mut ws = bounded(ferrows::connect_with(url, client)).await.unwrap();
    assert_eq!(ws.is_compressed(), expect_compressed);
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let messages = vec![
        Message::text(""),
        Message::text("héllo wörld"),
        Message::binary(Bytes::new()),
        Message::binary(vec![0u8; 125]),
        Message::binary(vec![1u8; 65536]),
        Message::binary(big),
        Message::text("x".repeat(100_000)),
    ];
    for msg in &messages {
        ws.feed(msg.clone()).await.unwrap();
    }
    ws.flush().await.unwrap();
    for msg in &messages {
        let got = bounded(ws.recv()).await.unwrap().unwrap();
        assert_eq!(&got, msg);
    }
    bounded(ws.close(CloseCode::NORMAL, "done")).await.unwrap();
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn echo_round_trip_plain_and_compressed() {
    let url = echo_server(ServerConfig::default()).await;
    exchange(&url, &no_compression_client(), false).await;
    exchange(&url, &ClientConfig::default(), true).await;
    let mut no_context = ClientConfig::default();
    no_context.websocket.deflate = Some(ferrows_proto::deflate::DeflateOptions {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 10,
        client_max_window_bits: 9,
    });
    exchange(&url, &no_context, true).await;
}

#[tokio::test]
async fn ping_is_answered_while_reading() {
    let url = echo_server(ServerConfig::default()).await;
    let mut ws = bounded(ferrows::connect(&url)).await.unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"are you there"))).await.unwrap();
    let got = bounded(ws.recv()).await.unwrap().unwrap();
    assert_eq!(got, Message::Pong(Bytes::from_static(b"are you there")));
}

#[tokio::test]
async fn close_handshake_reports_code_and_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = ferrows::accept(tcp).await.unwrap();
        ws.close(CloseCode(4000), "bye now").await.unwrap();
    });
    let mut ws = bounded(ferrows::connect(&url)).await.unwrap();
    let got = bounded(ws.recv()).await.unwrap().unwrap();
    match got {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode(4000));
            assert_eq!(frame.reason, "bye now");
        }
        other => panic!("expected Close, got {other:?}"),
    }
    assert!(bounded(ws.recv()).await.is_none());
    bounded(server).await.unwrap();
    assert!(matches!(ws.send(Message::text("late")).await, Err(Error::Closed | Error::Usage(_))));
}

async fn raw_request(url: &str, request: &[u8]) -> String {
    let addr = url.trim_start_matches("ws://");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut response = Vec::new();
    bounded(tcp.read_to_end(&mut response)).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// Every invalid handshake of the shared list gets its status (and the
/// headers the RFCs ask for) from `accept_with`.
#[tokio::test]
async fn bad_handshakes_get_http_errors() {
    let url = echo_server(ServerConfig::default()).await;
    let addr = url.trim_start_matches("ws://").parse().unwrap();
    let failures = ferrows::testing::check_handshakes(addr, "/").await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn client_refuses_non_websocket_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf).await;
        tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    });
    let err = bounded(ferrows::connect(&url)).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::UnexpectedStatus(200))), "{err}");
}

/// A raw client: completes the handshake by hand, then sends `frames`.
async fn raw_client(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("ws://").parse().unwrap();
    bounded(ferrows::testing::raw_websocket(addr, "/")).await.unwrap()
}

async fn read_close_code(tcp: &mut TcpStream) -> u16 {
    let mut rest = Vec::new();
    bounded(tcp.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest[0], 0x88, "expected a Close frame, got {rest:02x?}");
    u16::from_be_bytes([rest[2], rest[3]])
}

/// Each hostile frame of the shared list gets its close code from the
/// echo server.
#[tokio::test]
async fn hostile_frames_get_the_right_close_code() {
    let url = echo_server(ServerConfig::default()).await;
    let addr = url.trim_start_matches("ws://").parse().unwrap();
    let failures = ferrows::testing::check_frames(addr, "/", &[]).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Messages sent together with the bad bytes are echoed before the Close.
    let failures = ferrows::testing::check_frames(addr, "/", &["one", "two"]).await;
    assert!(failures.is_empty(), "after two messages:\n{}", failures.join("\n"));
}

/// A server that accepts one connection and returns what its first
/// `recv` gave.
async fn server_reading_one_message() -> (String, tokio::task::JoinHandle<Option<ferrows::Result<Message>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = ferrows::accept(tcp).await.unwrap();
        ws.recv().await
    });
    (url, server)
}

#[tokio::test]
async fn protocol_error_reaches_the_application() {
    let (url, server) = server_reading_one_message().await;
    let mut tcp = raw_client(&url).await;
    tcp.write_all(&[0x83, 0x80, 0, 0, 0, 0]).await.unwrap();
    assert_eq!(read_close_code(&mut tcp).await, 1002);
    // The server reads on until the peer closes too (a lingering close).
    drop(tcp);
    let result = bounded(server).await.unwrap();
    assert!(matches!(result, Some(Err(Error::Protocol(ProtocolError::ReservedOpcode(3))))), "{result:?}");
}

#[tokio::test]
async fn abrupt_disconnect_is_abnormal_closure() {
    let (url, server) = server_reading_one_message().await;
    let tcp = raw_client(&url).await;
    drop(tcp);
    let result = bounded(server).await.unwrap();
    assert!(matches!(result, Some(Err(Error::Protocol(ProtocolError::AbnormalClosure)))), "{result:?}");
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    use futures_util::{SinkExt, StreamExt};
    let url = echo_server(ServerConfig::default()).await;
    let addr = url.trim_start_matches("ws://").to_owned();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let uri: http::Uri = url.parse().unwrap();
    let ws = bounded(ferrows::client_handshake(tcp, &uri, &ClientConfig::default())).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    let count = 2000usize;
    let sender = tokio::spawn(async move {
        for i in 0..count {
            writer.feed(Message::text(format!("message {i}"))).await.unwrap();
        }
        writer.flush().await.unwrap();
        // A Ping sent from the writer; its Pong arrives at the reader.
        writer.send(Message::Ping(Bytes::from_static(b"p"))).await.unwrap();
        writer
    });
    let mut received = 0;
    while received < count {
        match bounded(reader.next()).await.unwrap().unwrap() {
            Message::Text(text) => {
                assert_eq!(text, format!("message {received}").as_str());
                received += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(bounded(reader.next()).await.unwrap().unwrap(), Message::Pong(Bytes::from_static(b"p")));
    let mut writer = sender.await.unwrap();
    SinkExt::close(&mut writer).await.unwrap();
    // The server echoes the Close; the reader ends cleanly.
    assert!(matches!(bounded(reader.next()).await, Some(Ok(Message::Close(_)))));
    assert!(bounded(reader.next()).await.is_none());
}

#[tokio::test]
async fn callback_sees_request_and_may_refuse() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let callback = |req: &http::Request<()>, res: &mut http::Response<()>| {
                    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
                    if origin != Some("https://good.example") || req.uri().query() != Some("token=abc") {
                        return Err(ferrows::Rejection::new(http::StatusCode::FORBIDDEN, "forbidden origin\n"));
                    }
                    res.headers_mut().insert("x-room", req.uri().path().trim_start_matches('/').parse().unwrap());
                    Ok(())
                };
                let Ok(mut ws) = ferrows::accept_with(tcp, callback, &ServerConfig::default()).await else { return };
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut good = ClientConfig::default();
    good.headers.insert("origin", http::HeaderValue::from_static("https://good.example"));
    let ws = bounded(ferrows::connect_with(format!("{url}/lobby?token=abc"), &good)).await.unwrap();
    drop(ws);
    let mut bad = ClientConfig::default();
    bad.headers.insert("origin", http::HeaderValue::from_static("https://evil.example"));
    let err = bounded(ferrows::connect_with(format!("{url}/lobby?token=abc"), &bad)).await.unwrap_err();
    assert!(matches!(err, Error::Handshake(HandshakeError::UnexpectedStatus(403))), "{err}");
    let raw = raw_request(
        &url,
        b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(raw.ends_with("forbidden origin\n"), "{raw}");
}

#[tokio::test]
async fn ipv6_loopback_and_host_names() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback on this machine");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = ferrows::accept(tcp).await.unwrap();
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut ws = bounded(ferrows::connect(format!("ws://[::1]:{port}/v6"))).await.unwrap();
    ws.send(Message::text("over IPv6")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("over IPv6"));
    let err = bounded(ferrows::connect("http://example.com/")).await.unwrap_err();
    assert!(matches!(err, Error::Url(_)), "{err}");
}
