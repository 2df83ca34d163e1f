//! The server: `accept(stream)` and `accept_with(stream, callback, config)`.

use bytes::BytesMut;
use ferrows_proto::handshake::{
    ServerOptions, accept_response, parse_request, reject_response, validate_request, write_response,
};
use ferrows_proto::{HandshakeError, Role};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
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

/// Looks at the upgrade request before it is accepted: the path, query,
/// headers and `Origin` are all in `request`. Return `Ok(())` to accept
/// (after adding headers to `response` if you like, such as a cookie), or
/// `Err(rejection)` to answer with any HTTP status and body instead.
pub trait Callback {
    /// See the trait documentation.
    fn on_request(self, request: &Request<()>, response: &mut Response<()>) -> Result<(), Rejection>;
}

impl<F> Callback for F
where
    F: FnOnce(&Request<()>, &mut Response<()>) -> Result<(), Rejection>,
{
    fn on_request(self, request: &Request<()>, response: &mut Response<()>) -> Result<(), Rejection> {
        self(request, response)
    }
}

/// The HTTP response that refuses an upgrade (boxed: it is built once, on
/// a cold path).
#[derive(Debug)]
pub struct Rejection(Box<Response<String>>);

impl Rejection {
    /// A plain-text refusal with `status`.
    pub fn new(status: http::StatusCode, body: impl Into<String>) -> Self {
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
        Self(Box::new(response))
    }
}

impl From<Response<String>> for Rejection {
    fn from(response: Response<String>) -> Self {
        Self(Box::new(response))
    }
}

/// A [`Callback`] that accepts every valid upgrade.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl Callback for AcceptAll {
    fn on_request(self, _: &Request<()>, _: &mut Response<()>) -> Result<(), Rejection> {
        Ok(())
    }
}

/// Accepts a WebSocket on `stream` with the default configuration.
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, AcceptAll, &ServerConfig::default()).await
}

/// Reads and answers the opening handshake. A request that is not a valid
/// WebSocket upgrade gets its HTTP error response (400, 405, 426, 431)
/// before the error is returned; so does one the callback refuses (with
/// the callback's response, and [`HandshakeError::Rejected`]).
///
/// The whole handshake must finish within
/// [`WebSocketConfig::handshake_timeout`](crate::WebSocketConfig::handshake_timeout).
pub async fn accept_with<S, C>(stream: S, callback: C, config: &ServerConfig) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Callback,
{
    // Boxed: the handshake's state (about 1.4 KiB) is freed once it is done
    // instead of sizing the caller's task for the connection's lifetime.
    let deadline = Instant::now() + config.websocket.handshake_timeout;
    tokio::time::timeout_at(deadline, Box::pin(accept_inner(stream, callback, config, deadline)))
        .await
        .map_err(|_| Error::Timeout("opening handshake"))?
}

/// Answers a refused handshake and closes, lingering until `linger_until`
/// at most.
async fn reject<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, response: Response<String>, linger_until: Instant) {
    let (parts, body) = response.into_parts();
    let mut head = Vec::new();
    let mut response = Response::from_parts(parts, ());
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    headers.entry(http::header::CONNECTION).or_insert(http::HeaderValue::from_static("close"));
    write_response(&response, &mut head);
    head.extend_from_slice(body.as_bytes());
    // The client may already be gone; the handshake's outcome matters.
    let _ = stream.write_all(&head).await;
    let _ = stream.shutdown().await;
    // A lingering close, as after a failed WebSocket: what the client still
    // sends (the rest of an oversized head) is read and dropped until it
    // closes, so that our answer is not lost to a reset.
    let _ = tokio::time::timeout_at(linger_until, discard_until_eof(stream)).await;
}

/// Reads and drops everything until the end of file or an error.
async fn discard_until_eof<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = vec![0u8; 4096];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

async fn accept_inner<S, C>(
    mut stream: S,
    callback: C,
    config: &ServerConfig,
    deadline: Instant,
) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Callback,
{
    // The lingering after a refusal ends with the close timeout, and before
    // the handshake's deadline so that the refusal is what is reported.
    let linger_until = || (Instant::now() + config.websocket.close_timeout).min(deadline);
    let mut buf = BytesMut::with_capacity(1024);
    let parsed =
        read_head(&mut stream, &mut buf, &config.websocket.handshake, parse_request).await.and_then(|request| {
            let upgrade = validate_request(&request)?;
            Ok((request, upgrade))
        });
    let (request, upgrade) = match parsed {
        Ok(parsed) => parsed,
        Err(Error::Handshake(error)) => {
            reject(&mut stream, reject_response(&error), linger_until()).await;
            return Err(error.into());
        }
        Err(other) => return Err(other),
    };
    let options = ServerOptions { subprotocols: config.subprotocols.clone(), deflate: config.websocket.deflate };
    let mut outcome = accept_response(&upgrade, &options);
    if let Err(Rejection(response)) = callback.on_request(&request, &mut outcome.response) {
        let status = response.status().as_u16();
        reject(&mut stream, *response, linger_until()).await;
        return Err(HandshakeError::Rejected(status).into());
    }
    let mut head = Vec::with_capacity(256);
    write_response(&outcome.response, &mut head);
    stream.write_all(&head).await?;
    stream.flush().await?;
    Ok(WebSocket::from_raw(stream, Role::Server, &config.websocket, &outcome.negotiated, outcome.subprotocol, buf))
}
