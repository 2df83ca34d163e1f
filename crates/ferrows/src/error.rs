//! Errors of the tokio layer, split by where they come from.

use std::{fmt, io};

use ferrows_proto::{HandshakeError, ProtocolError, UsageError};

/// Everything that can go wrong on a WebSocket, by origin.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (connection reset, broken pipe, DNS ...).
    Io(io::Error),
    /// The TLS handshake or the TLS layer failed (certificate not trusted,
    /// name mismatch, bad record ...).
    Tls(io::Error),
    /// The URL cannot be used (bad scheme, no host ...).
    Url(String),
    /// The opening handshake was refused or malformed.
    Handshake(HandshakeError),
    /// The peer broke the protocol; a Close frame with the matching code
    /// was sent.
    Protocol(ProtocolError),
    /// The application asked for something not allowed now.
    Usage(UsageError),
    /// A deadline passed (handshake, close handshake ...).
    Timeout(&'static str),
    /// The connection is closed: the closing handshake completed before
    /// this call.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Tls(e) => write!(f, "TLS error: {e}"),
            Self::Url(why) => write!(f, "invalid URL: {why}"),
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Usage(e) => write!(f, "invalid use: {e}"),
            Self::Timeout(what) => write!(f, "timed out: {what}"),
            Self::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) | Self::Tls(e) => Some(e),
            Self::Handshake(e) => Some(e),
            Self::Protocol(e) => Some(e),
            Self::Usage(e) => Some(e),
            Self::Url(_) | Self::Timeout(_) | Self::Closed => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Self::Usage(e)
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
