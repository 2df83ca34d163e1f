//! An axum 0.8 extractor that upgrades requests into ferrows WebSockets,
//! in the manner of axum's own `WebSocketUpgrade` but with ferrows's
//! [`WebSocketConfig`] (permessage-deflate included). Enabled by the `axum`
//! feature.
//!
//! ```no_run
//! use axum::{Router, response::Response, routing::get};
//! use ferrows::axum_upgrade::WebSocketUpgrade;
//!
//! async fn echo(ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["chat"]).on_upgrade(|mut socket| async move {
//!         while let Some(Ok(msg)) = socket.recv().await {
//!             if msg.is_data() && socket.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app: Router = Router::new().route("/ws", get(echo));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The handshake's rules are those of [`hyper_upgrade`](crate::hyper_upgrade)
//! (and of [`accept_with`](crate::accept_with)): a request that breaks one
//! is refused with the same HTTP response (400, 405 or 426 and a one-line
//! body that says why). WebSockets over HTTP/2 (RFC 8441) are not served.

use std::future::Future;

use ::axum::body::Body;
use ::axum::extract::FromRequestParts;
use ::axum::response::{IntoResponse, Response};
use ferrows_proto::HandshakeError;
use ferrows_proto::handshake::{UpgradeRequest, validate_request};
use http::StatusCode;
use http::request::Parts;
use hyper::upgrade::OnUpgrade;

use crate::config::WebSocketConfig;
use crate::error::Error;
use crate::hyper_upgrade::{HyperWebSocket, accept_upgrade};
use crate::server::ServerConfig;

/// What to do with a connection that hyper failed to hand over after the
/// `101` response.
type OnFailedUpgrade = Box<dyn FnOnce(Error) + Send>;

/// Extracts a WebSocket upgrade request; [`on_upgrade`](Self::on_upgrade)
/// answers it with `101 Switching Protocols` and runs a callback with the
/// WebSocket.
///
/// Extraction fails with a [`WebSocketUpgradeRejection`] when the request
/// is not a valid upgrade. Until `on_upgrade`, the subprotocols and the
/// options of the connection can be set; by default no subprotocol is
/// accepted and [`WebSocketConfig::default`] applies (permessage-deflate
/// accepted).
pub struct WebSocketUpgrade {
    config: ServerConfig,
    request: UpgradeRequest,
    on_upgrade: OnUpgrade,
    on_failed_upgrade: Option<OnFailedUpgrade>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("config", &self.config)
            .field("requested_protocols", &self.request.subprotocols)
            .finish_non_exhaustive()
    }
}

impl WebSocketUpgrade {
    /// The subprotocols this endpoint speaks: the first one the client
    /// offers (in its order of preference) is selected, none if it offers
    /// none of them.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.config.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The options of the connection: limits, timeouts, keepalive, and
    /// permessage-deflate (`deflate: None` refuses compression).
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config.websocket = config;
        self
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn requested_protocols(&self) -> impl Iterator<Item = &str> {
        self.request.subprotocols.iter().map(String::as_str)
    }

    /// Called instead of the `on_upgrade` callback when hyper fails to hand
    /// the connection over after the `101` response (the client went away,
    /// say). By default the error is logged at debug level.
    pub fn on_failed_upgrade(mut self, callback: impl FnOnce(Error) + Send + 'static) -> Self {
        self.on_failed_upgrade = Some(Box::new(callback));
        self
    }

    /// Accepts the upgrade: returns the `101` response for the handler to
    /// return, and once hyper hands the connection over, runs `callback`
    /// with the WebSocket in a task of its own.
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(HyperWebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self { config, request, on_upgrade, on_failed_upgrade } = self;
        let (response, handover) = accept_upgrade(&request, on_upgrade, &config);
        tokio::spawn(async move {
            match handover.await {
                Ok(handover) => callback(handover.into_websocket()).await,
                Err(error) => match on_failed_upgrade {
                    Some(on_failed_upgrade) => on_failed_upgrade(error),
                    None => tracing::debug!(%error, "WebSocket upgrade failed after the 101 response"),
                },
            }
        });
        response.map(|()| Body::empty())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request = validate_parts(parts).map_err(WebSocketUpgradeRejection::Handshake)?;
        let on_upgrade =
            parts.extensions.remove::<OnUpgrade>().ok_or(WebSocketUpgradeRejection::ConnectionNotUpgradable)?;
        Ok(Self { config: ServerConfig::default(), request, on_upgrade, on_failed_upgrade: None })
    }
}

/// [`validate_request`] on the parts of a request: they are lent to a
/// request without a body for the check, and put back.
fn validate_parts(parts: &mut Parts) -> Result<UpgradeRequest, HandshakeError> {
    let placeholder = http::Request::new(()).into_parts().0;
    let request = http::Request::from_parts(std::mem::replace(parts, placeholder), ());
    let validated = validate_request(&request);
    *parts = request.into_parts().0;
    validated
}

/// Why a request cannot become a WebSocket: as a response, the HTTP error
/// that says so.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebSocketUpgradeRejection {
    /// Not a valid WebSocket upgrade (not `GET`, not HTTP/1.1, a missing or
    /// wrong header, an unsupported version ...): answered as
    /// [`hyper_upgrade::reject`](crate::hyper_upgrade::reject) answers it.
    Handshake(HandshakeError),
    /// The request is valid but its connection cannot be taken over (it
    /// was not served by hyper with upgrades enabled): `426 Upgrade
    /// Required`, as axum answers it.
    ConnectionNotUpgradable,
}

impl std::fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Handshake(error) => error.fmt(f),
            Self::ConnectionNotUpgradable => f.write_str("the connection cannot be upgraded"),
        }
    }
}

impl std::error::Error for WebSocketUpgradeRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Handshake(error) => Some(error),
            Self::ConnectionNotUpgradable => None,
        }
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Handshake(error) => crate::hyper_upgrade::reject(&error),
            Self::ConnectionNotUpgradable => (StatusCode::UPGRADE_REQUIRED, format!("{self}\n")).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_parts() -> Parts {
        let request = http::Request::get("/ws")
            .header("host", "localhost")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "b, a")
            .body(())
            .unwrap();
        request.into_parts().0
    }

    #[test]
    fn validation_lends_the_parts_and_puts_them_back() {
        let mut parts = upgrade_parts();
        let request = validate_parts(&mut parts).unwrap();
        assert_eq!(request.subprotocols, ["b", "a"]);
        assert_eq!(parts.uri, "/ws");
        assert_eq!(parts.headers.len(), 6);
    }

    #[tokio::test]
    async fn a_connection_hyper_cannot_hand_over_is_refused_with_426() {
        // No `OnUpgrade` in the extensions: not served by hyper with
        // upgrades.
        let mut parts = upgrade_parts();
        let rejection = WebSocketUpgrade::from_request_parts(&mut parts, &()).await.unwrap_err();
        assert!(matches!(rejection, WebSocketUpgradeRejection::ConnectionNotUpgradable));
        assert_eq!(rejection.into_response().status(), StatusCode::UPGRADE_REQUIRED);
    }

    #[tokio::test]
    async fn an_invalid_request_gets_the_handshake_rejection() {
        let mut parts = upgrade_parts();
        parts.method = http::Method::POST;
        let rejection = WebSocketUpgrade::from_request_parts(&mut parts, &()).await.unwrap_err();
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[http::header::ALLOW], "GET");
    }
}
