//! The server: `accept(stream)`.

use bytes::BytesMut;
use ferrows_proto::Role;
use ferrows_proto::handshake::{
    ServerOptions, accept_response, parse_request, reject_response, validate_request, write_response,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::WebSocketConfig;
use crate::error::Result;
use crate::handshake_io::read_head;
use crate::websocket::WebSocket;

/// Options of a server connection.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Options shared with clients.
    pub websocket: WebSocketConfig,
    /// Subprotocols this server speaks.
    pub subprotocols: Vec<String>,
}

/// Accepts a WebSocket on `stream` with the default configuration.
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, &ServerConfig::default()).await
}

/// Reads and answers the opening handshake. A request that is not a valid
/// WebSocket upgrade gets its HTTP error response (400, 405, 426, 431)
/// before the error is returned.
///
/// The whole handshake must finish within
/// [`WebSocketConfig::handshake_timeout`](crate::WebSocketConfig::handshake_timeout).
pub async fn accept_with<S>(stream: S, config: &ServerConfig) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(config.websocket.handshake_timeout, accept_inner(stream, config))
        .await
        .map_err(|_| crate::Error::Timeout("opening handshake"))?
}

async fn accept_inner<S>(mut stream: S, config: &ServerConfig) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let result = read_head(&mut stream, &mut buf, &config.websocket.handshake, parse_request)
        .await
        .and_then(|request| Ok(validate_request(&request)?));
    let upgrade = match result {
        Ok(upgrade) => upgrade,
        Err(crate::Error::Handshake(error)) => {
            let response = reject_response(&error);
            let mut head = Vec::new();
            write_response(&response.map(|_| ()), &mut head);
            head.extend_from_slice(format!("{error}\n").as_bytes());
            // The client may already be gone; the handshake error matters.
            let _ = stream.write_all(&head).await;
            let _ = stream.shutdown().await;
            return Err(error.into());
        }
        Err(other) => return Err(other),
    };
    let options = ServerOptions { subprotocols: config.subprotocols.clone(), deflate: config.websocket.deflate };
    let outcome = accept_response(&upgrade, &options);
    let mut head = Vec::with_capacity(256);
    write_response(&outcome.response, &mut head);
    stream.write_all(&head).await?;
    stream.flush().await?;
    Ok(WebSocket::from_raw(stream, Role::Server, &config.websocket, &outcome.negotiated, outcome.subprotocol, buf))
}
