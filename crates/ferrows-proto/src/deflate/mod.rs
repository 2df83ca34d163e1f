//! permessage-deflate (RFC 7692): negotiation and per-message compression.
//!
//! A compressed message is one raw DEFLATE stream segment, flushed with a
//! sync flush, whose trailing `00 00 ff ff` is removed before sending and
//! appended again before inflating (section 7.2). Only the first frame of a
//! compressed message has RSV1 set.

mod cache;
mod codec;
mod negotiate;

pub use cache::{CachedStreams, cached_streams};
pub use codec::{Deflater, Inflater};
pub use negotiate::{accept_offers, offer, validate_response};

/// The permessage-deflate parameters agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window (base-2 log, 8 to 15) the server compresses with.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window (base-2 log, 8 to 15) the client compresses with.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// What this endpoint offers (client) or accepts (server).
///
/// The defaults give the best compression both ways with context takeover
/// and 32 KiB windows. Servers with many connections may ask for
/// `server_no_context_takeover` (so one compressed frame can be sent to many
/// clients, and no compressor is kept between messages) or smaller windows
/// (a zlib compressor with a 2^15 window holds about 256 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateOptions {
    /// Ask the server to drop its context after each message.
    pub server_no_context_takeover: bool,
    /// Ask the client to drop its context after each message.
    pub client_no_context_takeover: bool,
    /// Largest window the server may use (8-15; 15 puts no limit).
    pub server_max_window_bits: u8,
    /// Largest window the client may use (8-15; 15 puts no limit).
    pub client_max_window_bits: u8,
}

impl Default for DeflateOptions {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The extension token.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// zlib cannot produce raw DEFLATE with a 256-byte window: a sender limited
/// to 8 bits sends its messages uncompressed instead (always allowed).
pub(crate) const MIN_ZLIB_WINDOW_BITS: u8 = 9;
