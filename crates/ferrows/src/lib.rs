//! WebSocket client and server for tokio, on the sans-I/O core
//! [`ferrows_proto`].
//!
//! - [`connect`] / [`connect_with`] for `ws://` and `wss://` (rustls, system
//!   or custom roots, SNI, ALPN `http/1.1`), IPv4/IPv6/names, custom headers,
//!   subprotocols, connect and handshake timeouts, HTTP `CONNECT` proxies.
//! - [`accept`] / [`accept_with`] on any stream (TCP, TLS, ...), with a
//!   [`Callback`] that sees the request and may refuse it with any status;
//!   `hyper_upgrade` (feature `hyper`) upgrades hyper requests, and
//!   `axum_upgrade` (feature `axum`) is an axum `WebSocketUpgrade`
//!   extractor with permessage-deflate.
//! - `testing` (feature `testing`): the invalid handshakes and hostile
//!   frames every ferrows server answers the same way, and checks that play
//!   them against a live server.
//! - [`WebSocket`] is a `Stream` + `Sink` of [`Message`]s whose payloads are
//!   `Bytes` (text as [`Utf8Bytes`], checked once, never copied); it
//!   [`split`](WebSocket::split)s into halves for two tasks.
//! - Keepalive pings, dead-peer detection, idle and close timeouts
//!   ([`WebSocketConfig`]); a bounded, vectored output queue (backpressure);
//!   no buffers held while idle.
//! - [`PreparedMessage`]: frame (and compress) a message once, send the same
//!   bytes to many connections.
//!
//! A client:
//!
//! ```no_run
//! # async fn run() -> ferrows::Result<()> {
//! let mut ws = ferrows::connect("ws://127.0.0.1:9001/").await?;
//! ws.send(ferrows::Message::text("hello")).await?;
//! if let Some(reply) = ws.recv().await {
//!     println!("{:?}", reply?);
//! }
//! ws.close(ferrows::CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```
//!
//! An echo server:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = ferrows::accept(tcp).await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```

#[cfg(feature = "axum")]
pub mod axum_upgrade;
mod buffer_pool;
mod client;
mod config;
mod error;
mod handshake_io;
#[cfg(feature = "hyper")]
pub mod hyper_upgrade;
#[cfg(unix)]
pub mod lot;
mod message;
mod parked;
mod proxy;
mod read_side;
mod server;
mod split;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;
pub mod tls;
mod websocket;
mod write_side;

pub use buffer_pool::cached_buffer_bytes;
pub use client::{ClientConfig, DEFAULT_CONNECT_TIMEOUT, IntoClientRequest, client_handshake, connect, connect_with};
pub use config::{
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_WRITE_BUFFER, DEFAULT_PARK_AFTER,
    DEFAULT_PONG_TIMEOUT, DEFAULT_READ_CHUNK, WebSocketConfig,
};
pub use error::{Error, Result};
pub use ferrows_proto::{self as proto, CloseCode, CloseFrame, PreparedMessage, Utf8Bytes};
pub use http;
pub use message::Message;
pub use parked::{ParkedWebSocket, ParkingWebSocket};
pub use proxy::{Proxy, ProxySetting};
pub use server::{AcceptAll, Callback, Rejection, ServerConfig, accept, accept_with};
pub use split::{SplitIo, WsReader, WsWriter};
pub use stream::MaybeTlsStream;
pub use tokio_rustls;
pub use websocket::WebSocket;
