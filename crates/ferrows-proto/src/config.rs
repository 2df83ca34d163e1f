//! Role and limits of one connection.
//!
//! Every limit exists to bound the memory a peer can make us hold. The
//! defaults are chosen to be safe on a server facing the open internet while
//! still passing every case of the Autobahn test suite (whose largest message
//! is 16 MiB, case 9.1.6 and 9.2.6).

use crate::deflate::DeflateConfig;

/// Which end of the connection this core plays.
///
/// The role decides masking (RFC 6455 section 5.3: a client masks every frame
/// it sends, a server never does, and each side rejects frames that break
/// this rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that sent the opening handshake.
    Client,
    /// The side that accepted the opening handshake.
    Server,
}

/// Default largest frame payload accepted: 16 MiB.
///
/// A frame header announces its payload length before any payload arrives;
/// anything larger is refused with close code 1009 before a byte of it is
/// buffered. 16 MiB lets the largest Autobahn frames through while a
/// malicious 2^63-byte announcement costs nothing. Frames of a compressed
/// message may be an eighth larger: they are inflated as they arrive (never
/// buffered whole), and compressing incompressible data makes it slightly
/// larger, so a message just under the limit still fits once compressed.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// Default largest message accepted (after decompression): 16 MiB.
///
/// This bounds the memory of one message in assembly, counted on the
/// *inflated* size so a decompression bomb is cut off after 16 MiB of
/// output.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Default largest opening handshake (request or response head): 16 KiB.
///
/// Browsers send 0.5 to 2 KiB; cookies can make it larger. 16 KiB matches
/// the common default of HTTP servers (nginx's large_client_header_buffers
/// is 4 x 8 KiB) and bounds what a slow or hostile client can make us hold
/// before the connection is even a WebSocket. Larger heads get HTTP 431.
pub const DEFAULT_MAX_HANDSHAKE_SIZE: usize = 16 << 10;

/// Default largest number of header lines in the opening handshake: 64.
///
/// Real handshakes carry 10 to 20 headers. The parser needs a fixed array of
/// this size on the stack, so the limit also bounds its stack use. More
/// header lines get HTTP 431.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Limits and options of one connection core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest payload of one frame (see [`DEFAULT_MAX_FRAME_SIZE`]).
    pub max_frame_size: usize,
    /// Largest message after reassembly and decompression (see
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub max_message_size: usize,
    /// Whether to accept frames that break the masking rule for our role.
    ///
    /// RFC 6455 requires rejecting them; the default (`false`) does.
    pub accept_unmasked_frames: bool,
    /// Largest payload of a data frame we send; longer messages are split
    /// into fragments. `usize::MAX` (the default) never fragments: fewer
    /// headers, and peers all reassemble anyway.
    pub max_send_frame_size: usize,
    /// zlib level (0-9) for permessage-deflate. Default 1: most of the size
    /// reduction on text at a fraction of the CPU time of level 6.
    pub deflate_level: u32,
    /// Messages shorter than this are sent uncompressed even when
    /// permessage-deflate is in force (RFC 7692 allows it per message).
    /// Default 0: compress everything; raise it for traffic of tiny messages,
    /// where deflate's block overhead eats the gain.
    pub deflate_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            accept_unmasked_frames: false,
            max_send_frame_size: usize::MAX,
            deflate_level: 1,
            deflate_threshold: 0,
        }
    }
}

/// Limits of the opening handshake parser.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Largest request or response head in bytes (see
    /// [`DEFAULT_MAX_HANDSHAKE_SIZE`]).
    pub max_size: usize,
    /// Largest number of header lines (see [`DEFAULT_MAX_HEADERS`]).
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self { max_size: DEFAULT_MAX_HANDSHAKE_SIZE, max_headers: DEFAULT_MAX_HEADERS }
    }
}

/// What was agreed in the opening handshake and shapes the connection.
#[derive(Debug, Clone, Default)]
pub struct Negotiated {
    /// The permessage-deflate parameters in force, if the extension was
    /// negotiated.
    pub deflate: Option<DeflateConfig>,
}
