//! `ferrows echo`: a server that sends every message back.

use std::net::SocketAddr;

use clap::Args;
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
    // Scripts wait for this line before they connect.
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, &config).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

async fn serve(tcp: TcpStream, config: &ServerConfig) -> ferrows::Result<()> {
    tcp.set_nodelay(true)?;
    let mut ws = ferrows::accept_with(tcp, ferrows::AcceptAll, config).await?;
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
