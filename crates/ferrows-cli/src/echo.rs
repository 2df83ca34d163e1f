//! `ferrows echo`: a server that sends every message back.

use std::net::SocketAddr;

use clap::Args;
use ferrows::tokio_rustls::TlsAcceptor;
use ferrows::{ServerConfig, WebSocket};
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
        let (tcp, peer) = listener.accept().await?;
        let (config, tls) = (config.clone(), tls.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, tls, &config).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

async fn serve(tcp: TcpStream, tls: Option<TlsAcceptor>, config: &ServerConfig) -> ferrows::Result<()> {
    tcp.set_nodelay(true)?;
    if let Some(acceptor) = tls {
        // Boxed: the TLS handshake's state must not size every plain
        // connection's task (idle memory per connection is a feature).
        return Box::pin(serve_tls(tcp, acceptor, config)).await;
    }
    let mut ws = ferrows::accept_with(tcp, ferrows::AcceptAll, config).await?;
    echo_messages(&mut ws).await
}

async fn serve_tls(tcp: TcpStream, acceptor: TlsAcceptor, config: &ServerConfig) -> ferrows::Result<()> {
    let handshake = acceptor.accept(tcp);
    let stream = tokio::time::timeout(config.websocket.handshake_timeout, handshake)
        .await
        .map_err(|_| ferrows::Error::Timeout("TLS handshake"))?
        .map_err(ferrows::Error::Tls)?;
    let mut ws = ferrows::accept_with(stream, ferrows::AcceptAll, config).await?;
    echo_messages(&mut ws).await
}

/// Echoes data messages until the connection closes. Messages are queued
/// with `feed`: a burst that arrived together is written back together.
pub(crate) async fn echo_messages<S>(ws: &mut WebSocket<S>) -> ferrows::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = ws.recv().await {
        let message = message?;
        if message.is_data() {
            ws.feed(message).await?;
        }
    }
    Ok(())
}
