//! Options of a WebSocket endpoint.

use std::time::Duration;

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
/// buffer is only held while data is in flight. While reads come back full,
/// the next read doubles, up to 8 chunks (128 KiB), so a sustained stream
/// costs few system calls; an idle connection drops back to one chunk and
/// frees the buffer.
pub const DEFAULT_READ_CHUNK: usize = 16 << 10;

/// Default time allowed for the peer to answer our Close, and then to
/// close its side of the transport: 5 s.
///
/// A peer that never answers would otherwise keep the connection (and its
/// file descriptor) forever; 5 s is ample for a round trip across the world
/// and short enough that a shutting-down server is not held up. Until the
/// peer closes, what it still sends is read and dropped (a lingering
/// close): closing with its bytes unread would send a reset that can
/// destroy our last frames before the peer reads them.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time to wait for a Pong after a keepalive Ping: 20 s.
///
/// Generous for mobile networks with second-long stalls, yet a dead peer
/// (gone without a FIN) is found within `ping_interval + 20 s`.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(20);

/// Default quiet spell before a [`ParkingWebSocket`](crate::ParkingWebSocket)
/// parks its connection: 100 ms.
///
/// Parking frees the `WebSocket` (about 600 bytes and its buffers) and
/// making it again costs about as much user-space work as a small message,
/// so a connection that talks several times a second should stay whole
/// between its messages, and one that waits longer should not hold what it
/// does not use. A connection parks between 100 and 200 ms after its last
/// activity: well inside the pause of any human-driven client, and longer
/// than the gaps of a 10 Hz stream or a request/response exchange.
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_millis(100);

/// Default limit for the opening handshake (TCP connect excluded): 10 s.
///
/// A client that opens a socket and trickles or never sends its request
/// must not hold server memory; 10 s covers slow links and TLS.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Send a Ping when nothing arrived for this long. Default `None`: the
    /// library sends nothing unasked (many applications have their own
    /// heartbeat); servers behind NATs and load balancers that drop idle
    /// flows after 60 s usually set 20-30 s.
    pub ping_interval: Option<Duration>,
    /// With `ping_interval`: fail the connection when nothing (a Pong or
    /// anything else) arrives this long after a Ping. See
    /// [`DEFAULT_PONG_TIMEOUT`].
    pub pong_timeout: Duration,
    /// Close (code 1000, reason "idle timeout") when no data message went
    /// either way for this long. Default `None`.
    pub idle_timeout: Option<Duration>,
    /// See [`DEFAULT_CLOSE_TIMEOUT`].
    pub close_timeout: Duration,
    /// See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// How long a [`ParkingWebSocket`](crate::ParkingWebSocket) waits with
    /// nothing happening before it parks; zero parks at once. See
    /// [`DEFAULT_PARK_AFTER`].
    pub park_after: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            protocol: ferrows_proto::Config::default(),
            handshake: HandshakeLimits::default(),
            deflate: Some(DeflateOptions::default()),
            max_write_buffer: DEFAULT_MAX_WRITE_BUFFER,
            read_chunk: DEFAULT_READ_CHUNK,
            ping_interval: None,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            idle_timeout: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            park_after: DEFAULT_PARK_AFTER,
        }
    }
}
