//! ferrows as the server for other WebSocket implementations' clients, for
//! the interop tests in `interop/` (`interop/run.sh` builds and runs it).
//!
//! ```text
//! interop server [--port N] [--cert CERT.pem --key KEY.pem] [--no-compression]
//!                [--send-frame-size N]
//! ```
//!
//! Listens on 127.0.0.1 (port 0 picks a free one) over `ws://`, or `wss://`
//! with a certificate and key, and prints `listening on ws://ADDR` (or
//! `wss://`). Every path echoes data messages, except `/cmd`, which speaks
//! the command protocol described in `common.rs`: fragmented
//! messages (with `--send-frame-size`, every message longer than N bytes
//! is sent in frames of N bytes), a Ping that the client must answer, a
//! Close with a chosen code, and the Close frame that the echo connection
//! `/echo/ID` received.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{WAIT, unb64, within};
use bytes::Bytes;
use ferrows::{CloseCode, CloseFrame, Message, Rejection, ServerConfig, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// The Close frame each named echo connection received (`None` inside:
/// a Close without a code).
type Seen = Arc<Mutex<HashMap<String, Option<CloseFrame>>>>;

struct Args {
    port: u16,
    cert: Option<String>,
    key: Option<String>,
    compression: bool,
    send_frame_size: Option<usize>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args { port: 0, cert: None, key: None, compression: true, send_frame_size: None };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => args.port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--cert" => args.cert = Some(value("--cert")?),
            "--key" => args.key = Some(value("--key")?),
            "--no-compression" => args.compression = false,
            "--send-frame-size" => {
                args.send_frame_size =
                    Some(value("--send-frame-size")?.parse().map_err(|e| format!("--send-frame-size: {e}"))?)
            }
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if args.cert.is_some() != args.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok(args)
}

/// Serves until killed; an error only if it cannot start.
pub(crate) async fn main(args: impl Iterator<Item = String>) -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args(args)?;
    let mut config = ServerConfig::default();
    if !args.compression {
        config.websocket.deflate = None;
    }
    if let Some(size) = args.send_frame_size {
        config.websocket.protocol.max_send_frame_size = size;
    }
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let tls = ferrows::tls::server_config_from_files(cert.as_ref(), key.as_ref())?;
            Some(tokio_rustls::TlsAcceptor::from(tls))
        }
        _ => None,
    };
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    // The test scripts wait for this line, then connect.
    println!("listening on {scheme}://{}", listener.local_addr()?);
    let config = Arc::new(config);
    let seen = Seen::default();
    loop {
        let (tcp, peer) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let (config, seen, tls) = (config.clone(), seen.clone(), tls.clone());
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => match within("TLS handshake", acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve(stream, &config, seen).await,
                    Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
                    Err(e) => Err(e),
                },
                None => serve(tcp, &config, seen).await,
            };
            if let Err(e) = result {
                eprintln!("interop server: connection from {peer}: {e}");
            }
        });
    }
}

async fn serve<S>(stream: S, config: &ServerConfig, seen: Seen) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut path = String::new();
    let remember_path = |request: &http::Request<()>, _: &mut http::Response<()>| -> Result<(), Rejection> {
        path = request.uri().path().to_owned();
        Ok(())
    };
    let mut ws = ferrows::accept_with(stream, remember_path, config).await.map_err(|e| format!("handshake: {e}"))?;
    if path == "/cmd" {
        commands(&mut ws, &seen).await
    } else {
        let id = path.strip_prefix("/echo/").map(str::to_owned);
        echo(&mut ws, id, &seen).await
    }
}

async fn echo<S>(ws: &mut WebSocket<S>, id: Option<String>, seen: &Seen) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Not bounded: an echo connection lasts as long as its client wants.
    while let Some(message) = ws.recv().await {
        match message.map_err(|e| format!("echo: {e}"))? {
            Message::Close(frame) => {
                if let Some(id) = &id {
                    seen.lock().unwrap().insert(id.clone(), frame);
                }
            }
            message if message.is_data() => ws.feed(message).await.map_err(|e| format!("echo: {e}"))?,
            _ => {}
        }
    }
    Ok(())
}

async fn commands<S>(ws: &mut WebSocket<S>, seen: &Seen) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = ws.recv().await {
        let line = match message.map_err(|e| format!("cmd: {e}"))? {
            Message::Text(line) => line.as_str().to_owned(),
            _ => continue,
        };
        let (op, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match op {
            "fragments" => {
                let (kind, parts) = rest.split_once(' ').unwrap_or((rest, ""));
                let mut whole = Vec::new();
                for part in parts.split(',') {
                    whole.extend_from_slice(&unb64(part)?);
                }
                let message = match kind {
                    "text" => Message::text(String::from_utf8(whole).map_err(|e| format!("fragments: {e}"))?),
                    _ => Message::binary(whole),
                };
                send(ws, message).await?;
            }
            "ping" => {
                let payload = Bytes::from(unb64(rest)?);
                send(ws, Message::Ping(payload.clone())).await?;
                loop {
                    match within("Pong", ws.recv()).await? {
                        Some(Ok(Message::Pong(p))) if p == payload => break,
                        Some(Ok(Message::Pong(_) | Message::Ping(_))) => {}
                        Some(Ok(other)) => return Err(format!("waiting for the Pong, got {other:?}")),
                        Some(Err(e)) => return Err(format!("waiting for the Pong: {e}")),
                        None => return Err("waiting for the Pong: the connection ended".into()),
                    }
                }
                send(ws, Message::text(format!("pong {rest}"))).await?;
            }
            "close" => {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let code = code.parse().map_err(|e| format!("close {code}: {e}"))?;
                let frame = CloseFrame { code: CloseCode(code), reason: reason.to_owned() };
                send(ws, Message::Close(Some(frame))).await?;
                // Read the client's answer; the loop ends with the connection.
            }
            "close-seen" => {
                let answer = close_seen(seen, rest).await;
                send(ws, Message::text(answer)).await?;
            }
            other => return Err(format!("unknown command {other:?}")),
        }
    }
    Ok(())
}

async fn send<S>(ws: &mut WebSocket<S>, message: Message) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within("send", ws.send(message)).await?.map_err(|e| format!("send: {e}"))
}

/// What the echo connection `id` received as its Close, waiting (bounded)
/// for its task to record it.
async fn close_seen(seen: &Seen, id: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(frame) = seen.lock().unwrap().get(id) {
            return match frame {
                Some(f) => format!("closed {} {}", f.code.0, f.reason),
                None => "closed none".to_owned(),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return format!("unknown {id}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
