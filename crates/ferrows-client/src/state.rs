//! The connection's state as the application observes it.

use std::time::Duration;

/// What the server said in its `connect` result, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The URL of the server this connection goes to.
    pub url: String,
    /// The client's id on this connection (in presence and `info`; a new
    /// one on every connection).
    pub client: String,
    /// The user of the token (`""`: anonymous).
    pub user: String,
    /// Seconds between the server's WebSocket Pings.
    pub ping: u64,
    /// Seconds (at connection) until its credentials expire, if they do:
    /// the client sends `refresh` with a token from its
    /// [`token_provider`](crate::ClientBuilder::token_provider) before then.
    pub expires: Option<u64>,
    /// What the server's connect proxy gave the client, if anything.
    pub data: Option<bytes::Bytes>,
}

/// Why the client is not connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// The close code the server sent (1001 going away, 4004 slow
    /// consumer ...), 1006 when the connection ended without one or could
    /// not be opened, 1000 when the application closed the client.
    pub code: u16,
    /// Why, for people.
    pub reason: String,
    /// When the next attempt is made; `None`: the client stopped for good.
    pub reconnect_in: Option<Duration>,
}

/// The connection's state; watch it with [`Client::watch_state`](crate::Client::watch_state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Opening a connection to `url` (`attempt` counts attempts since the
    /// last successful connection, from 0).
    Connecting {
        /// The server tried.
        url: String,
        /// Failed attempts since the last connection.
        attempt: u32,
    },
    /// Connected, with the `connect` result.
    Connected(Connection),
    /// Not connected, and why.
    Disconnected(Disconnect),
}

impl State {
    /// The connection, when connected.
    pub fn connection(&self) -> Option<&Connection> {
        match self {
            Self::Connected(connection) => Some(connection),
            _ => None,
        }
    }

    /// Whether the client stopped for good.
    pub fn is_stopped(&self) -> bool {
        matches!(self, Self::Disconnected(Disconnect { reconnect_in: None, .. }))
    }
}
