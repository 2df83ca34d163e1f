//! Errors of the protocol core.
//!
//! [`ProtocolError`] is what the peer did wrong after the handshake; each
//! maps to the close code sent for it in exactly one place,
//! [`ProtocolError::close_code`]. [`HandshakeError`] is a rejected opening
//! handshake and maps to the HTTP status to answer with. [`UsageError`] is
//! what the application did wrong (for example sending after Close).

use std::fmt;

use crate::frame::CloseCode;

/// A violation of RFC 6455 or RFC 7692 by the peer, or a limit it exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved bit was set without an extension that defines it.
    ReservedBitSet,
    /// The opcode is one of the reserved values.
    ReservedOpcode(u8),
    /// A frame from a client was not masked, or one from a server was.
    BadMasking,
    /// The payload length was not encoded in its shortest form, or its
    /// 64-bit form had the most significant bit set.
    NonMinimalLength,
    /// A control frame was fragmented or longer than 125 bytes.
    BadControlFrame,
    /// A continuation frame came without a message to continue.
    UnexpectedContinuation,
    /// A new data message started before the previous one was finished.
    ExpectedContinuation,
    /// A Close frame carried a one-byte payload.
    CloseFrameTooShort,
    /// A Close frame carried a code that may not be sent on the wire.
    InvalidCloseCode(u16),
    /// A text message or a close reason was not valid UTF-8.
    InvalidUtf8,
    /// A frame announced a payload larger than the frame limit.
    FrameTooLarge {
        /// Announced payload length.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// A message grew larger than the message limit (after inflation).
    MessageTooLarge {
        /// Configured limit.
        limit: usize,
    },
    /// A compressed message could not be inflated.
    InflateFailed,
    /// The connection ended (EOF) without a closing handshake.
    AbnormalClosure,
}

impl ProtocolError {
    /// The close code that reports this error to the peer (RFC 6455 section
    /// 7.4.1). This is the only place that decides it.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::TOO_BIG,
            Self::AbnormalClosure => CloseCode::ABNORMAL,
            Self::ReservedBitSet
            | Self::ReservedOpcode(_)
            | Self::BadMasking
            | Self::NonMinimalLength
            | Self::BadControlFrame
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::CloseFrameTooShort
            | Self::InvalidCloseCode(_)
            | Self::InflateFailed => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBitSet => f.write_str("reserved bit set without a negotiated extension"),
            Self::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Self::BadMasking => f.write_str("frame masking does not match the sender's role"),
            Self::NonMinimalLength => f.write_str("payload length not minimally encoded"),
            Self::BadControlFrame => f.write_str("control frame fragmented or longer than 125 bytes"),
            Self::UnexpectedContinuation => f.write_str("continuation frame without a message"),
            Self::ExpectedContinuation => f.write_str("new message before the previous one ended"),
            Self::CloseFrameTooShort => f.write_str("close frame with a one-byte payload"),
            Self::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            Self::FrameTooLarge { size, limit } => {
                write!(f, "frame of {size} bytes exceeds the limit of {limit}")
            }
            Self::MessageTooLarge { limit } => write!(f, "message exceeds the limit of {limit} bytes"),
            Self::InflateFailed => f.write_str("compressed message could not be inflated"),
            Self::AbnormalClosure => f.write_str("connection ended without a closing handshake"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why an opening handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is larger than the limit (HTTP 431).
    HeadTooLarge,
    /// The head has more header lines than the limit (HTTP 431).
    TooManyHeaders,
    /// The bytes are not a valid HTTP/1.1 head.
    MalformedHttp(String),
    /// The request method is not GET (HTTP 405).
    MethodNotGet,
    /// The HTTP version is not 1.1.
    WrongHttpVersion,
    /// A required header is missing.
    MissingHeader(&'static str),
    /// A header has a value that does not satisfy RFC 6455.
    InvalidHeader(&'static str),
    /// `Sec-WebSocket-Version` is not 13 (HTTP 426 with the version we speak).
    UnsupportedVersion,
    /// The server did not answer `101 Switching Protocols`.
    UnexpectedStatus(u16),
    /// The server's `Sec-WebSocket-Accept` does not match our key.
    AcceptMismatch,
    /// The server selected a subprotocol we did not offer.
    UnofferedSubprotocol,
    /// The extension negotiation failed (malformed or unoffered parameters).
    Extension(String),
    /// The application refused the request with this HTTP status.
    Rejected(u16),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::MethodNotGet => http::StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedVersion => http::StatusCode::UPGRADE_REQUIRED,
            Self::Rejected(status) => http::StatusCode::from_u16(*status).unwrap_or(http::StatusCode::BAD_REQUEST),
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeadTooLarge => f.write_str("handshake head too large"),
            Self::TooManyHeaders => f.write_str("too many handshake header lines"),
            Self::MalformedHttp(why) => write!(f, "malformed HTTP: {why}"),
            Self::MethodNotGet => f.write_str("handshake method is not GET"),
            Self::WrongHttpVersion => f.write_str("handshake is not HTTP/1.1"),
            Self::MissingHeader(name) => write!(f, "missing header {name}"),
            Self::InvalidHeader(name) => write!(f, "invalid header {name}"),
            Self::UnsupportedVersion => f.write_str("unsupported Sec-WebSocket-Version"),
            Self::UnexpectedStatus(code) => write!(f, "unexpected HTTP status {code}"),
            Self::AcceptMismatch => f.write_str("Sec-WebSocket-Accept does not match the key"),
            Self::UnofferedSubprotocol => f.write_str("server selected an unoffered subprotocol"),
            Self::Extension(why) => write!(f, "extension negotiation failed: {why}"),
            Self::Rejected(status) => write!(f, "request rejected with HTTP {status}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// A call the application made that the protocol does not allow now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// A message was sent after our Close frame.
    AlreadyClosing,
    /// A control frame payload was longer than 125 bytes.
    ControlPayloadTooLarge,
    /// The close code may not be sent (see RFC 6455 section 7.4).
    InvalidCloseCode(u16),
    /// A fragment was sent out of order (continuation without a start, or a
    /// new message while one is unfinished).
    FragmentOrder,
    /// A client was asked for a shared, unmasked frame: it masks each
    /// frame with a key of its own.
    MaskedRole,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyClosing => f.write_str("the connection is closing"),
            Self::ControlPayloadTooLarge => f.write_str("control frame payload over 125 bytes"),
            Self::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            Self::FragmentOrder => f.write_str("fragment sent out of order"),
            Self::MaskedRole => f.write_str("a client has no shared frame: it masks each frame"),
        }
    }
}

impl std::error::Error for UsageError {}
