//! An axum router with the `WebSocketUpgrade` extractor, on a real socket.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use ferrows::axum_upgrade::WebSocketUpgrade;
use ferrows::{ClientConfig, CloseCode, Message, WebSocketConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo(ws: WebSocketUpgrade) -> Response {
    let requested: Vec<String> = ws.requested_protocols().map(str::to_owned).collect();
    ws.protocols(["echo.v2", "echo.v1"]).config(WebSocketConfig::default()).on_upgrade(|mut socket| async move {
        // The server's own view of what was agreed, sent first.
        let agreed = format!("{requested:?} {:?} {}", socket.subprotocol(), socket.is_compressed());
        if socket.send(Message::text(agreed)).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.recv().await {
            if message.is_data() && socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

async fn serve() -> SocketAddr {
    let app = Router::new().route("/ws", get(echo));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The status line and head of the answer to `request`, and its body.
async fn http_exchange(addr: SocketAddr, request: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The rejection says `Connection: close`: read to the end.
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn axum_route_echoes_with_deflate_and_a_subprotocol() {
    let addr = serve().await;
    let run = async {
        let config = ClientConfig { subprotocols: vec!["echo.v1".into(), "echo.v2".into()], ..ClientConfig::default() };
        let mut ws = ferrows::connect_with(format!("ws://{addr}/ws"), &config).await.unwrap();
        assert!(ws.is_compressed(), "permessage-deflate negotiated");
        // The client's first choice that the server speaks.
        assert_eq!(ws.subprotocol(), Some("echo.v1"));
        let agreed = ws.recv().await.unwrap().unwrap();
        assert_eq!(agreed, Message::text(r#"["echo.v1", "echo.v2"] Some("echo.v1") true"#));

        let text = "through axum ".repeat(1000);
        ws.send(Message::text(text.as_str())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text.as_str()));
        let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        ws.send(Message::binary(binary.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(binary));

        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        assert!(ws.close_sent() && ws.close_received());
    };
    tokio::time::timeout(Duration::from_secs(10), run).await.unwrap();
}

#[tokio::test]
async fn axum_route_refuses_what_is_not_an_upgrade() {
    let addr = serve().await;
    let run = async {
        let (head, body) = http_exchange(addr, "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 400 "), "{head}");
        assert!(!head.contains("upgrade"), "no upgrade offered: {head}");
        assert!(body.to_ascii_lowercase().contains("upgrade"), "the body says what is missing: {body:?}");

        // A version other than 13: 426 and the version the server speaks.
        let (head, _) = http_exchange(
            addr,
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("http/1.1 426 "), "{head}");
        assert!(head.contains("sec-websocket-version: 13"), "{head}");
    };
    tokio::time::timeout(Duration::from_secs(10), run).await.unwrap();
}
