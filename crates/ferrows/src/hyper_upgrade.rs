//! Upgrading requests served by hyper 1.x (and frameworks on it) into
//! //! ferrows WebSockets. Enabled by the `hyper` feature; with axum, the
//! extractor of `ferrows::axum_upgrade` (feature `axum`) does this for a
//! handler.
//!
//! ```no_run
//! # use http_body_util::Full;
//! # use bytes::Bytes;
//! # async fn service(mut req: hyper::Request<hyper::body::Incoming>) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
//! let config = ferrows::ServerConfig::default();
//! let (response, websocket) = match ferrows::hyper_upgrade::upgrade(&mut req, &config) {
//!     Ok(accepted) => accepted,
//!     Err(e) => return Ok(ferrows::hyper_upgrade::reject(&e)),
//! };
//! tokio::spawn(async move {
//!     if let Ok(mut ws) = websocket.await {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() { break; }
//!         }
//!     }
//! });
//! Ok(response)
//! # }
//! ```

use std::future::Future;

use bytes::BytesMut;
use ferrows_proto::config::Negotiated;
use ferrows_proto::handshake::{ServerOptions, UpgradeRequest, accept_response, reject_response, validate_request};
use ferrows_proto::{HandshakeError, Role};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::server::ServerConfig;
use crate::websocket::WebSocket;

/// The WebSocket a hyper upgrade becomes.
pub type HyperWebSocket = WebSocket<TokioIo<Upgraded>>;

/// Whether `request` asks for a WebSocket upgrade (`Upgrade: websocket`).
pub fn is_upgrade_request<B>(request: &hyper::Request<B>) -> bool {
    request
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket")))
}

/// Validates the upgrade request and returns the `101` response to give
/// hyper, plus a future that resolves to the WebSocket once hyper hands
/// the connection over. A request that is not a valid upgrade is an error
/// to answer with [`reject`].
pub fn upgrade<B, R: Default>(
    request: &mut hyper::Request<B>,
    config: &ServerConfig,
) -> std::result::Result<
    (hyper::Response<R>, impl Future<Output = Result<HyperWebSocket>> + Send + 'static),
    HandshakeError,
> {
    let (response, upgrade) = upgrade_handover(request, config)?;
    Ok((response, async move { Ok(upgrade.await?.into_websocket()) }))
}

/// Like [`upgrade`], but the future resolves to the [`Handover`] itself, so
/// that a server that knows its connections' stream type can take the
/// WebSocket over that stream ([`Handover::downcast`]) rather than over
/// hyper's boxed `Upgraded`: a smaller connection, one indirection less
/// per read and write.
pub fn upgrade_handover<B, R: Default>(
    request: &mut hyper::Request<B>,
    config: &ServerConfig,
) -> std::result::Result<(hyper::Response<R>, impl Future<Output = Result<Handover>> + Send + 'static), HandshakeError>
{
    let upgrade = validate_request(request)?;
    let (response, handover) = accept_upgrade(&upgrade, hyper::upgrade::on(request), config);
    Ok((response.map(|()| R::default()), handover))
}

/// The `101` response to a validated upgrade request and the future of
/// its connection, once hyper hands it over (`on_upgrade`, taken from the
/// request): the part of [`upgrade_handover`] shared with extractors that
/// validate the request themselves.
pub(crate) fn accept_upgrade(
    upgrade: &UpgradeRequest,
    on_upgrade: OnUpgrade,
    config: &ServerConfig,
) -> (hyper::Response<()>, impl Future<Output = Result<Handover>> + Send + 'static + use<>) {
    let options = ServerOptions { subprotocols: config.subprotocols.clone(), deflate: config.websocket.deflate };
    let outcome = accept_response(upgrade, &options);
    let config = Box::new(config.websocket.clone());
    let (negotiated, subprotocol) = (outcome.negotiated, outcome.subprotocol);
    let handover = async move {
        let upgraded = on_upgrade.await.map_err(|e| Error::Io(std::io::Error::other(e)))?;
        Ok(Handover { upgraded, config, negotiated, subprotocol })
    };
    (outcome.response, handover)
}

/// A connection hyper handed over after the `101` response, with what the
/// handshake agreed: becomes a [`WebSocket`].
pub struct Handover {
    upgraded: Upgraded,
    config: Box<WebSocketConfig>,
    negotiated: Negotiated,
    subprotocol: Option<String>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover").field("subprotocol", &self.subprotocol).finish_non_exhaustive()
    }
}

impl Handover {
    /// The WebSocket over hyper's `Upgraded` (any connection type).
    pub fn into_websocket(self) -> HyperWebSocket {
        WebSocket::from_raw(
            TokioIo::new(self.upgraded),
            Role::Server,
            &self.config,
            &self.negotiated,
            self.subprotocol,
            BytesMut::new(),
        )
    }

    /// The WebSocket over the connection's own stream, when hyper served
    /// it as `TokioIo<T>` (bytes hyper had read past the request are kept);
    /// the handover back otherwise.
    pub fn downcast<T>(self) -> std::result::Result<WebSocket<T>, Self>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self { upgraded, config, negotiated, subprotocol } = self;
        match upgraded.downcast::<TokioIo<T>>() {
            Ok(parts) => Ok(WebSocket::from_raw(
                parts.io.into_inner(),
                Role::Server,
                &config,
                &negotiated,
                subprotocol,
                BytesMut::from(parts.read_buf),
            )),
            Err(upgraded) => Err(Self { upgraded, config, negotiated, subprotocol }),
        }
    }
}

/// The answer to a request that [`upgrade`] refused: the very response
/// [`accept_with`](crate::accept_with) writes for the same error (its
/// status, `Sec-WebSocket-Version: 13` on 426 and `Allow: GET` on 405 as
/// RFC 6455 and RFC 9110 ask, `Connection: close`, a one-line text body).
pub fn reject<R: From<String>>(error: &HandshakeError) -> hyper::Response<R> {
    reject_response(error).map(R::from)
}
