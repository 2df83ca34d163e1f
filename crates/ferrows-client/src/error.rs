//! The client's errors: the server's (with its code), and those the
//! client finds itself (no reply in time, the connection went away, the
//! client stopped).

use ferrows_hub::protocol::ErrorBody;

/// Close codes after which reconnecting cannot help: the client stops
/// (1009 message too big, 4000 bad request, 4001 unauthorized), as the
/// JavaScript client does.
pub(crate) const FATAL_CLOSE_CODES: [u16; 3] = [1009, 4000, 4001];

/// Why a command, a subscription or the client failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The server refused: its error code (100 to 110, see
    /// `docs/protocol.md`), message and whether it is temporary.
    Server(ErrorBody),
    /// No reply within the command timeout (while connected, or while
    /// waiting for a connection).
    Timeout,
    /// The connection went away before the reply (the client reconnects by
    /// itself; whether the command took effect is not known).
    Disconnected,
    /// The client stopped for good: closed by the server with a code that
    /// reconnecting cannot help (1009, 4000, 4001), refused at `connect`,
    /// or closed by the application (`code` 1000).
    Closed {
        /// The close code (1000 when the application closed the client).
        code: u16,
        /// Why.
        reason: String,
    },
    /// The data cannot travel in the client's encoding: JSON carries only
    /// data that is JSON text (use MessagePack for other bytes).
    InvalidData(String),
    /// The server sent a message the client cannot read.
    Protocol(String),
    /// The client's configuration is unusable (no URL, a URL that is not
    /// `ws://` or `wss://`).
    Config(String),
}

impl Error {
    /// The server's error code, for [`Error::Server`].
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Server(body) => Some(body.code),
            _ => None,
        }
    }

    /// Whether the same request may succeed later, unchanged: the server
    /// said so (100 internal error, 110 too many requests), or no reply
    /// came in time. The client retries these itself for `connect` and
    /// `subscribe`; other commands are the application's to retry.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Server(body) => body.temporary || matches!(body.code, 100 | 110),
            Self::Timeout => true,
            _ => false,
        }
    }

    /// An error of the server's protocol module, as the server would send
    /// it (for refusals the client makes itself, such as a second
    /// subscription to one channel).
    pub(crate) fn local(error: &ferrows_hub::protocol::Error) -> Self {
        Self::Server(error.body())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(body) => write!(f, "error {}: {}", body.code, body.message),
            Self::Timeout => f.write_str("no reply in time"),
            Self::Disconnected => f.write_str("the connection was lost before the reply"),
            Self::Closed { code, reason } => write!(f, "client stopped: {code} {reason}"),
            Self::InvalidData(why) => write!(f, "invalid data: {why}"),
            Self::Protocol(why) => write!(f, "unreadable message from the server: {why}"),
            Self::Config(why) => write!(f, "invalid configuration: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ErrorBody> for Error {
    fn from(body: ErrorBody) -> Self {
        Self::Server(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, temporary: bool) -> Error {
        Error::Server(ErrorBody { code, message: "m".into(), temporary })
    }

    #[test]
    fn temporary_errors_are_those_the_js_client_retries() {
        assert!(server(100, true).is_temporary());
        assert!(server(110, false).is_temporary());
        assert!(Error::Timeout.is_temporary());
        assert!(!server(103, false).is_temporary());
        assert!(!Error::Disconnected.is_temporary());
        assert_eq!(server(102, false).code(), Some(102));
    }
}
