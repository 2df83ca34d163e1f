//! Brokers: where channels' history and presence live and how publications
//! travel between the nodes of one service.
//!
//! A node never fans out a publication it made itself: it hands it to the
//! broker, which assigns its stream position and delivers it back, to every
//! node subscribed to the channel (this one included), through the
//! [`BrokerHandler`] given to [`Broker::start`]. So every node sees a
//! channel's publications in the same order, with positions that recovery
//! can rely on, whichever node published them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::history::{HistoryLimits, Publication, StreamPosition};

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

pub use memory::MemoryBroker;
#[cfg(feature = "redis")]
pub use redis::{RedisBroker, RedisOptions};

/// A boxed future, so brokers can be used as `Arc<dyn Broker>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a broker operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker's backend cannot be reached now (retry later).
    Unavailable(String),
    /// The backend answered with something unexpected.
    Backend(String),
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "broker unavailable: {why}"),
            Self::Backend(why) => write!(f, "broker error: {why}"),
        }
    }
}

impl std::error::Error for BrokerError {}

/// What a broker delivers to the nodes subscribed to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A publication, with its position in the channel's stream.
    Publication {
        /// The channel.
        channel: String,
        /// The channel's epoch when it was published.
        epoch: String,
        /// The publication (offset, data, info).
        publication: Publication,
    },
    /// A client joined the channel (namespaces with join/leave events).
    Join {
        /// The channel.
        channel: String,
        /// The client's info (a JSON object).
        info: Bytes,
    },
    /// A client left the channel.
    Leave {
        /// The channel.
        channel: String,
        /// The client's info (a JSON object).
        info: Bytes,
    },
}

/// The idempotency of a publication ([`Broker::publish_once`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Once<'a> {
    /// The key that makes it the same publication (already scoped by the
    /// caller: who may use which keys).
    pub key: &'a str,
    /// How long the key is remembered.
    pub window: std::time::Duration,
}

/// Receives a broker's events and state changes. Called from the broker's
/// tasks (or, for the memory broker, from the publisher's call): it must not
/// block and must not call back into the broker synchronously.
pub trait BrokerHandler: Send + Sync + 'static {
    /// An event for a channel this node subscribed to.
    fn on_event(&self, event: BrokerEvent);
    /// The broker lost (`false`) or regained (`true`) its backend. Events
    /// published in between may have been missed: after `true`, the node
    /// checks each channel's position against the broker's history.
    fn on_connection_change(&self, connected: bool);
    /// Whether the node behind this handler is gone: a broker that serves
    /// several nodes drops such handlers. (Default: never.)
    fn is_gone(&self) -> bool {
        false
    }
    /// The channels the node behind this handler has subscribers in, for
    /// a broker that cannot tell itself (the memory broker).
    fn channels(&self) -> Vec<String>;
}

/// The answer of [`Broker::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryAnswer {
    /// The channel's current position (its latest offset and epoch).
    pub position: StreamPosition,
    /// The publications asked for, oldest first.
    pub publications: Vec<Publication>,
    /// With `since`: whether `publications` fill the whole gap after it.
    /// `false` when the epoch changed or the history no longer reaches back.
    pub recovered: bool,
}

/// What to read from a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Only the current position.
    Position,
    /// The latest publications, at most this many.
    Latest(usize),
    /// Everything after this position, if at most `limit` publications.
    Since(StreamPosition, usize),
    /// Like `Since`, from the last publication this node delivered, asked
    /// after the broker reconnected. A history that lost that publication
    /// in the same epoch (a failover to a replica that had not received
    /// it: the offset is past the end, or holds a publication made at
    /// another time) gets a new epoch, so that no client can recover
    /// across what was lost; the answer's position is then where this
    /// node's subscribers restart in the new epoch (before the publications
    /// made since the loss, which the answer holds). (Never from a client's
    /// position: a client could name any offset.)
    Resync {
        /// Its position.
        last: StreamPosition,
        /// When it was made (ms since the Unix epoch; 0: not known).
        time_ms: u64,
        /// At most this many publications.
        limit: usize,
    },
}

/// A broker's health, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerHealth {
    /// The broker's kind (`memory`, `redis`).
    pub kind: &'static str,
    /// Whether its backend is reachable now.
    pub connected: bool,
    /// Why not, when it is not.
    pub detail: Option<String>,
}

/// Where channels' history and presence live, and how publications reach
/// every node. Implementations: [`MemoryBroker`] (one node, in process)
/// and the Redis broker (`redis` module).
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering events to `handler` (called once, before use).
    fn start(&self, handler: Arc<dyn BrokerHandler>) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Appends a publication to `channel`'s history (trimmed to `limits`)
    /// and delivers it to every subscribed node. Returns its position.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, BrokerError>>;

    /// Delivers a join or leave event (not kept in history).
    fn publish_event(&self, event: BrokerEvent) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Publishes as [`publish`](Self::publish) does, once per `once.key`
    /// in `channel` within `once.window`: a publication with a key used
    /// within the window is not made again, and answers the position of
    /// the one that was (across every node of the broker).
    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
        once: Once<'a>,
    ) -> BoxFuture<'a, Result<StreamPosition, BrokerError>>;

    /// This node wants `channel`'s events. Once this returns, every later
    /// publication into it is delivered.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// This node no longer wants `channel`'s events.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Reads `channel`'s history.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryAnswer, BrokerError>>;

    /// Records `client` (with its info, a JSON object) as present in
    /// `channel` until [`presence_remove`](Self::presence_remove). A broker
    /// shared by several nodes keeps the entry alive itself while this node
    /// runs, and lets the entries of a node that vanished expire.
    fn presence_add<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
        info: Bytes,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Removes `client` from `channel`'s presence.
    fn presence_remove<'a>(&'a self, channel: &'a str, client: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Who is present in `channel`: client id -> info.
    fn presence<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<HashMap<String, Bytes>, BrokerError>>;

    /// The broker's health now.
    fn health(&self) -> BrokerHealth;

    /// The channels with subscribers on any node, in no particular order.
    fn channels(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>>;
}
