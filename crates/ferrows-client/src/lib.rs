//! A tokio client for the `ferrows serve` pub/sub protocol
//! (`docs/protocol.md`), in JSON or MessagePack.
//!
//! - [`Client::builder`] takes one or several URLs of one service; the
//!   client connects, and when the connection is lost it reconnects by
//!   itself (jittered exponential backoff), moving to the next URL each
//!   time.
//! - [`Client::subscribe`] gives a [`Subscription`], a stream of
//!   [`Event`]s. After a reconnection every subscription is made again
//!   from the last position it delivered, so the publications made
//!   meanwhile arrive, each once and in order ([`Event::Resubscribed`]
//!   says how it went; `recovered: false`, like [`Event::Reset`], means
//!   some may be lost and the application should reload its state).
//! - [`Client::publish`], [`presence`](Client::presence),
//!   [`history`](Client::history), [`ping`](Client::ping): commands, each
//!   with a timeout; errors are [`Error`]s, the server's with their code.
//! - [`Client::watch_state`]: connecting, connected (with the `connect`
//!   result), disconnected (with the close code and reason).
//!
//! Every message is read and written with the protocol types of
//! [`ferrows_hub::protocol`].
//!
//! ```no_run
//! # async fn run() -> Result<(), ferrows_client::Error> {
//! use ferrows_client::{Client, Event};
//!
//! let client = Client::builder(["ws://127.0.0.1:8000/ws"]).connect().await?;
//! let mut news = client.subscribe("news").await?;
//! client.publish("news", r#"{"headline": "hello"}"#).await?;
//! if let Some(Event::Publication(publication)) = news.recv().await {
//!     println!("{} {:?}", publication.offset, publication.data);
//! }
//! # Ok(()) }
//! ```

mod client;
mod config;
mod connection;
mod error;
mod state;
mod subscription;
mod wire;

pub use client::Client;
pub use config::ClientBuilder;
pub use error::Error;
pub use ferrows_hub::protocol::{ClientInfo, Encoding, ErrorBody, Position};
pub use state::{Connection, Disconnect, State};
pub use subscription::{Event, Publication, Recovery, ServerSubscriptions, Subscription};
