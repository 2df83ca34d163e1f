//! `ferrows echo`: a server that sends every message back.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Poll, ready};

use clap::Args;
use ferrows::tokio_rustls::TlsAcceptor;
use ferrows::{Message, ParkingWebSocket, ServerConfig, WebSocket};
use futures_util::{Sink, Stream};
use tokio::net::{TcpListener, TcpStream};

/// Options of `ferrows echo`.
#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, short, default_value_t = 9001)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Refuse permessage-deflate (compression is accepted when offered).
    #[arg(long)]
    no_compression: bool,
    /// PEM certificate chain: serve `wss://` (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Runtime threads: 1 runs everything on the calling thread (no work
    /// stealing); 0 (default) uses one worker per core.
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
}

pub(crate) async fn run(args: EchoArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
    let mut config = ServerConfig::default();
    if args.no_compression {
        config.websocket.deflate = None;
    }
    let config = std::sync::Arc::new(config);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsAcceptor::from(ferrows::tls::server_config_from_files(cert, key)?)),
        _ => None,
    };
    // Scripts wait for this line before they connect.
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("listening on {scheme}://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(serve(tcp, tls.clone(), config.clone()));
    }
}

/// One connection's task. Its state is what an idle connection costs, so
/// it holds little beside the `WebSocket`: the TLS path is boxed, and the
/// echo loop is a `poll_fn` rather than nested `async fn`s (whose
/// arguments and awaited futures would each add to every task).
async fn serve(tcp: TcpStream, tls: Option<TlsAcceptor>, config: std::sync::Arc<ServerConfig>) {
    let result = match tls {
        Some(acceptor) => Box::pin(serve_tls(tcp, acceptor, &config)).await,
        None => serve_plain(tcp, &config).await,
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

async fn serve_plain(tcp: TcpStream, config: &ServerConfig) -> ferrows::Result<()> {
    tcp.set_nodelay(true)?;
    // Boxed: the handshake's future would otherwise size the task.
    let ws = Box::pin(ferrows::accept_with(tcp, ferrows::AcceptAll, config)).await?;
    echo_parking(Box::new(ws), &config.websocket).await
}

async fn serve_tls(tcp: TcpStream, acceptor: TlsAcceptor, config: &ServerConfig) -> ferrows::Result<()> {
    tcp.set_nodelay(true)?;
    let handshake = acceptor.accept(tcp);
    let stream = tokio::time::timeout(config.websocket.handshake_timeout, handshake)
        .await
        .map_err(|_| ferrows::Error::Timeout("TLS handshake"))?
        .map_err(ferrows::Error::Tls)?;
    let ws = ferrows::accept_with(stream, ferrows::AcceptAll, config).await?;
    echo_parking(Box::new(ws), &config.websocket).await
}

/// Echoes data messages until the connection closes, like
/// [`echo_messages`], and parks the connection once it has waited a while with
/// nothing in progress: an idle connection's task holds the parked form
/// (a fraction of the `WebSocket`'s size), the `WebSocket` is made again
/// when something arrives. (The WebSocket comes boxed: an `async fn` keeps
/// room for its arguments for its whole life.)
pub(crate) async fn echo_parking<S>(ws: Box<WebSocket<S>>, config: &ferrows::WebSocketConfig) -> ferrows::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut conn = ParkingWebSocket::new(ws);
    let mut echo: Option<Message> = None;
    std::future::poll_fn(|cx| {
        loop {
            ready!(conn.poll_activity(cx));
            let mut ws = Pin::new(conn.active(config));
            if echo.is_some() {
                ready!(ws.as_mut().poll_ready(cx))?;
                ws.as_mut().start_send(echo.take().expect("checked"))?;
            }
            match ws.as_mut().poll_next(cx) {
                Poll::Ready(Some(message)) => echo = Some(message?).filter(Message::is_data),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                // Waiting with nothing in progress: park once quiet, and
                // wait parked.
                Poll::Pending if echo.is_none() && conn.park_if_idle(cx, config) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Echoes data messages until the connection closes. Messages are queued
/// with `feed`: a burst that arrived together is written back together.
pub(crate) async fn echo_messages<S>(ws: &mut WebSocket<S>) -> ferrows::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = Pin::new(ws);
    let mut echo: Option<Message> = None;
    std::future::poll_fn(|cx| {
        loop {
            if echo.is_some() {
                ready!(ws.as_mut().poll_ready(cx))?;
                ws.as_mut().start_send(echo.take().expect("checked"))?;
            }
            match ready!(ws.as_mut().poll_next(cx)) {
                Some(message) => echo = Some(message?).filter(Message::is_data),
                None => return Poll::Ready(Ok(())),
            }
        }
    })
    .await
}
