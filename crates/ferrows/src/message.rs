//! Messages as the application sees them.

use bytes::Bytes;
use ferrows_proto::{CloseFrame, Event, Utf8Bytes};

/// A WebSocket message or control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (UTF-8 checked, shared without a copy).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A Ping. Received Pings are answered automatically.
    Ping(Bytes),
    /// A Pong.
    Pong(Bytes),
    /// A Close frame. Received Close frames are answered automatically.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// Whether this is a text or binary message.
    pub fn is_data(&self) -> bool {
        matches!(self, Self::Text(_) | Self::Binary(_))
    }
}

impl From<Event> for Message {
    fn from(event: Event) -> Self {
        match event {
            Event::Text(t) => Self::Text(t),
            Event::Binary(b) => Self::Binary(b),
            Event::Ping(p) => Self::Ping(p),
            Event::Pong(p) => Self::Pong(p),
            Event::Close(c) => Self::Close(c),
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::Binary(data.into())
    }
}
