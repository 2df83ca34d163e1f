//! Options of a WebSocket endpoint.

use ferrows_proto::config::HandshakeLimits;
use ferrows_proto::deflate::DeflateOptions;

/// Default bound of the outgoing buffer: 1 MiB.
///
/// `send` waits while more than this is queued, so a peer that reads slowly
/// costs at most this much memory (plus one message) and the sender feels
/// backpressure instead of growing a queue without bound.
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 1 << 20;

/// Default size of one socket read: 16 KiB.
///
/// Large enough that a burst of small frames is parsed from one read; the
/// buffer is only held while data is in flight.
pub const DEFAULT_READ_CHUNK: usize = 16 << 10;

/// Options shared by clients and servers.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// Protocol limits (frame and message size ...).
    pub protocol: ferrows_proto::Config,
    /// Limits of the opening handshake.
    pub handshake: HandshakeLimits,
    /// permessage-deflate to offer (client) or accept (server); `None`
    /// disables compression. Default: offered and accepted with the
    /// defaults of [`DeflateOptions`].
    pub deflate: Option<DeflateOptions>,
    /// See [`DEFAULT_MAX_WRITE_BUFFER`].
    pub max_write_buffer: usize,
    /// See [`DEFAULT_READ_CHUNK`].
    pub read_chunk: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            protocol: ferrows_proto::Config::default(),
            handshake: HandshakeLimits::default(),
            deflate: Some(DeflateOptions::default()),
            max_write_buffer: DEFAULT_MAX_WRITE_BUFFER,
            read_chunk: DEFAULT_READ_CHUNK,
        }
    }
}
