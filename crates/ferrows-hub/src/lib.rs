//! Pub/sub for the `ferrows serve` server: channels, history with stream
//! positions and recovery, and the brokers that carry publications between
//! nodes.

pub mod broker;
pub mod history;
pub mod node;
pub mod protocol;
pub mod queue;

pub use history::{ChannelHistory, HistoryLimits, Publication, Recovery, StreamPosition};
#[cfg(feature = "testing")]
pub mod testing;
