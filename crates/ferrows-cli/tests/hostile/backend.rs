//! A hostile application backend: the RPC proxy of the main server points
//! here, and each method gets an answer no backend should give (garbage,
//! too large, endless, silent, cut off, a trickle, a wrong status or
//! shape). The server must give its client error 111 for each, in time,
//! within its memory bound.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The backend's methods, each a way to answer badly.
pub(crate) const METHODS: [&str; 9] =
    ["garbage", "huge", "endless", "silent", "reset", "status", "two-answers", "bad-code", "trickle"];

/// Starts the backend on the loopback; its address.
pub(crate) async fn start() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port for the backend");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(answer(tcp));
        }
    });
    addr
}

/// Reads one request (head and `Content-Length` body) and answers it as
/// its method says.
async fn answer(mut tcp: TcpStream) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_start = loop {
        let Ok(n) = tcp.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < body_start + length {
        let Ok(n) = tcp.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let body: serde_json::Value = serde_json::from_slice(&request[body_start..]).unwrap_or_default();
    let ok = |body: &str| format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    let _ = match body["method"].as_str().unwrap_or("") {
        "garbage" => tcp.write_all(ok("{not json").as_bytes()).await,
        "huge" => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 10 << 20);
            let _ = tcp.write_all(head.as_bytes()).await;
            let filler = vec![b' '; 64 << 10];
            for _ in 0..160 {
                if tcp.write_all(&filler).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        "endless" => {
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
            let filler = format!("{:x}\r\n{}\r\n", 16 << 10, " ".repeat(16 << 10));
            loop {
                if tcp.write_all(filler.as_bytes()).await.is_err() {
                    break Ok(());
                }
            }
        }
        "silent" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        "reset" => Ok(()),
        "status" => tcp.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await,
        "two-answers" => tcp.write_all(ok(r#"{"result":{},"error":{"code":1000,"message":"x"}}"#).as_bytes()).await,
        "bad-code" => tcp.write_all(ok(r#"{"error":{"code":42,"message":"not ours"}}"#).as_bytes()).await,
        "trickle" => {
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n").await;
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if tcp.write_all(b" ").await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        _ => tcp.write_all(ok(r#"{"result":{"data":null}}"#).as_bytes()).await,
    };
}
