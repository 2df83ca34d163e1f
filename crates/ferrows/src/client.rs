//! The client: `connect(url)` over TCP.

use bytes::BytesMut;
use ferrows_proto::Role;
use ferrows_proto::handshake::{ClientHandshake, ClientOptions, parse_response, write_request};
use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::handshake_io::read_head;
use crate::websocket::WebSocket;

/// Default limit for the TCP connect: 10 s (a host that drops SYNs would
/// otherwise take the OS's two-minute retry schedule).
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Options of a client connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Options shared with servers.
    pub websocket: WebSocketConfig,
    /// Subprotocols to offer, in order of preference.
    pub subprotocols: Vec<String>,
    /// Extra request headers (`Origin`, `Authorization`, cookies ...).
    pub headers: http::HeaderMap,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: std::time::Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            websocket: WebSocketConfig::default(),
            subprotocols: Vec::new(),
            headers: http::HeaderMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Connects to a `ws://` URL with the default configuration.
pub async fn connect(url: &str) -> Result<WebSocket<TcpStream>> {
    connect_with(url, &ClientConfig::default()).await
}

/// Connects to a `ws://` URL.
pub async fn connect_with(url: &str, config: &ClientConfig) -> Result<WebSocket<TcpStream>> {
    let uri: Uri = url.parse().map_err(|e| Error::Url(format!("{url}: {e}")))?;
    let port = match uri.scheme_str() {
        Some("ws") => uri.port_u16().unwrap_or(80),
        Some("wss") => return Err(Error::Url("wss:// needs the TLS support of a later version".into())),
        _ => return Err(Error::Url(format!("{url}: scheme must be ws"))),
    };
    let host = uri.host().ok_or_else(|| Error::Url(format!("{url}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Error::Timeout("TCP connect"))??;
    stream.set_nodelay(true)?;
    client_handshake(stream, &uri, config).await
}

/// Runs the client handshake over an already connected stream.
/// The handshake must finish within
/// [`WebSocketConfig::handshake_timeout`](crate::WebSocketConfig::handshake_timeout).
pub async fn client_handshake<S>(stream: S, uri: &Uri, config: &ClientConfig) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(config.websocket.handshake_timeout, handshake_inner(stream, uri, config))
        .await
        .map_err(|_| Error::Timeout("opening handshake"))?
}

async fn handshake_inner<S>(mut stream: S, uri: &Uri, config: &ClientConfig) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let options = ClientOptions {
        subprotocols: config.subprotocols.clone(),
        deflate: config.websocket.deflate,
        headers: config.headers.clone(),
    };
    let handshake = ClientHandshake::new(uri, options)?;
    let mut head = Vec::with_capacity(256);
    write_request(handshake.request(), &mut head);
    stream.write_all(&head).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    let response = read_head(&mut stream, &mut buf, &config.websocket.handshake, parse_response).await?;
    let outcome = handshake.validate(response)?;
    Ok(WebSocket::from_raw(stream, Role::Client, &config.websocket, &outcome.negotiated, outcome.subprotocol, buf))
}
