//! The client: `connect(url)` over TCP or TLS, directly or through a proxy.

use bytes::BytesMut;
use ferrows_proto::Role;
use ferrows_proto::handshake::{ClientHandshake, ClientOptions, parse_response, write_request};
use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::handshake_io::read_head;
use crate::proxy::{Proxy, ProxySetting};
use crate::stream::MaybeTlsStream;
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
    /// TLS settings for `wss://`; `None` trusts the system's roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// HTTP proxy (opt-in).
    pub proxy: ProxySetting,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            websocket: WebSocketConfig::default(),
            subprotocols: Vec::new(),
            headers: http::HeaderMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
            proxy: ProxySetting::None,
        }
    }
}

/// Something that names the server to connect to: a URL (`&str`,
/// `String`, [`Uri`]) or a whole [`http::Request`] whose headers are sent
/// with the handshake.
pub trait IntoClientRequest {
    /// The request to send.
    fn into_client_request(self) -> Result<http::Request<()>>;
}

impl IntoClientRequest for &str {
    fn into_client_request(self) -> Result<http::Request<()>> {
        let uri: Uri = self.parse().map_err(|e| Error::Url(format!("{self}: {e}")))?;
        uri.into_client_request()
    }
}

impl IntoClientRequest for String {
    fn into_client_request(self) -> Result<http::Request<()>> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for &String {
    fn into_client_request(self) -> Result<http::Request<()>> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for Uri {
    fn into_client_request(self) -> Result<http::Request<()>> {
        let mut request = http::Request::new(());
        *request.uri_mut() = self;
        Ok(request)
    }
}

impl IntoClientRequest for http::Request<()> {
    fn into_client_request(self) -> Result<http::Request<()>> {
        Ok(self)
    }
}

/// Connects to a `ws://` or `wss://` URL with the default configuration.
pub async fn connect(request: impl IntoClientRequest) -> Result<WebSocket<MaybeTlsStream>> {
    connect_with(request, &ClientConfig::default()).await
}

/// Connects to a `ws://` or `wss://` URL (IPv4, `[IPv6]` or a name; ports
/// 80 and 443 by default), through a proxy if configured, with TLS for
/// `wss://` (SNI from the host name, ALPN `http/1.1`).
pub async fn connect_with(request: impl IntoClientRequest, config: &ClientConfig) -> Result<WebSocket<MaybeTlsStream>> {
    let request = request.into_client_request()?;
    let uri = request.uri().clone();
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(Error::Url(format!("{uri}: scheme must be ws or wss"))),
    };
    let host = uri.host().ok_or_else(|| Error::Url(format!("{uri}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let proxy = match &config.proxy {
        ProxySetting::None => None,
        ProxySetting::FromEnv => Proxy::from_env(&host, tls),
        ProxySetting::Url(proxy) => Some(proxy.clone()),
    };
    let connecting = async {
        let tcp = match &proxy {
            Some(proxy) => proxy.tunnel(&host, port, &config.websocket.handshake).await?,
            None => TcpStream::connect((host.as_str(), port)).await?,
        };
        tcp.set_nodelay(true)?;
        Ok::<_, Error>(tcp)
    };
    let tcp =
        tokio::time::timeout(config.connect_timeout, connecting).await.map_err(|_| Error::Timeout("TCP connect"))??;
    let stream = if tls {
        let tls_config = match &config.tls {
            Some(c) => c.clone(),
            None => crate::tls::default_client_config()?,
        };
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|_| Error::Url(format!("{host}: not a valid TLS server name")))?;
        let connector = tokio_rustls::TlsConnector::from(tls_config);
        let tls_stream = tokio::time::timeout(config.websocket.handshake_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::Timeout("TLS handshake"))?
            .map_err(Error::Tls)?;
        MaybeTlsStream::Tls(Box::new(tls_stream))
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    let mut config = config.clone();
    for (name, value) in request.headers() {
        config.headers.append(name, value.clone());
    }
    client_handshake(stream, &uri, &config).await
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
