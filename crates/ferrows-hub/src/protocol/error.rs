//! The protocol's errors and close codes: each error's code, whether it is
//! temporary, its HTTP status and, where it ends a WebSocket, its close
//! code. `docs/protocol.md` lists exactly these.

use serde::{Deserialize, Serialize};

/// An error a client receives: in a reply, as an HTTP answer, or (with
/// [`Error::close_code`]) as the reason its connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 100: the server cannot serve it now (its broker is unreachable, it
    /// is shutting down). Temporary; HTTP 503.
    Unavailable(String),
    /// 101: a bad, expired or missing token, or API key. HTTP 401; closes
    /// a WebSocket with 4001 at `connect`.
    Unauthorized(String),
    /// 102: an invalid channel name or an unknown namespace. HTTP 400.
    UnknownChannel(String),
    /// 103: the token, the namespace or the origin does not allow it.
    /// HTTP 403.
    PermissionDenied(String),
    /// 104: an unknown command, route or disabled API. HTTP 404.
    NotFound(String),
    /// 105: a subscribe to a channel the client is subscribed to. HTTP 409.
    AlreadySubscribed,
    /// 106: a size or count over its limit (subscriptions, a publication,
    /// a body, a batch). HTTP 413.
    LimitExceeded(String),
    /// 106: a request head over its limit. HTTP 431.
    HeadTooLarge,
    /// 106: the server holds all the connections it may. Temporary; HTTP
    /// 503.
    ServerFull,
    /// 107: a malformed command or request. HTTP 400; closes a WebSocket
    /// with 4000 when a message is not a command at all.
    BadRequest(String),
    /// 107: an HTTP method the route does not take. HTTP 405.
    MethodNotAllowed,
    /// 107: a request body that did not arrive in time. HTTP 408.
    RequestTimeout,
    /// 108: a command before `connect`. HTTP 400.
    NotConnected,
    /// 109: an unsubscribe from a channel the client is not subscribed to.
    /// HTTP 400.
    NotSubscribed(String),
    /// 110: too many commands or connections: over the connection's
    /// command rate, or over the connections of one address. Temporary
    /// (send it again later); HTTP 429; a flood of them closes a WebSocket
    /// with 4006.
    TooManyRequests(String),
    /// 111: the application's backend could not decide: it did not answer
    /// within the proxy timeout, could not be reached, had too many
    /// requests of this server in flight, or answered something unusable
    /// (malformed, too large). Temporary; HTTP 502.
    Backend(String),
    /// 1000-1999: an error of the application's backend, passed on to the
    /// client as the backend gave it (a refused publication, an RPC that
    /// failed). HTTP 403, or 503 when the backend says it is temporary.
    Application {
        /// The backend's code, in [`APPLICATION_CODES`].
        code: u16,
        /// What the backend said.
        message: String,
        /// Whether the backend says the same request may succeed later.
        temporary: bool,
    },
}

/// The codes an application's backend may give its errors: a range of
/// their own, so that a client tells them from the server's (100-111).
pub const APPLICATION_CODES: std::ops::RangeInclusive<u16> = 1000..=1999;

impl Error {
    /// Every kind, once (for tests and documentation checks).
    #[doc(hidden)]
    pub fn examples() -> Vec<Error> {
        let m = || "m".to_owned();
        vec![
            Self::Unavailable(m()),
            Self::Unauthorized(m()),
            Self::UnknownChannel(m()),
            Self::PermissionDenied(m()),
            Self::NotFound(m()),
            Self::AlreadySubscribed,
            Self::LimitExceeded(m()),
            Self::HeadTooLarge,
            Self::ServerFull,
            Self::BadRequest(m()),
            Self::MethodNotAllowed,
            Self::RequestTimeout,
            Self::NotConnected,
            Self::NotSubscribed(m()),
            Self::TooManyRequests(m()),
            Self::Backend(m()),
            Self::Application { code: 1000, message: m(), temporary: false },
        ]
    }

    /// Its code on the wire.
    pub fn code(&self) -> u16 {
        match self {
            Self::Unavailable(_) => 100,
            Self::Unauthorized(_) => 101,
            Self::UnknownChannel(_) => 102,
            Self::PermissionDenied(_) => 103,
            Self::NotFound(_) => 104,
            Self::AlreadySubscribed => 105,
            Self::LimitExceeded(_) | Self::HeadTooLarge | Self::ServerFull => 106,
            Self::BadRequest(_) | Self::MethodNotAllowed | Self::RequestTimeout => 107,
            Self::NotConnected => 108,
            Self::NotSubscribed(_) => 109,
            Self::TooManyRequests(_) => 110,
            Self::Backend(_) => 111,
            Self::Application { code, .. } => *code,
        }
    }

    /// Whether the same request may succeed later, unchanged.
    pub fn temporary(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::ServerFull | Self::TooManyRequests(_) | Self::Backend(_) => true,
            Self::Application { temporary, .. } => *temporary,
            _ => false,
        }
    }

    /// The HTTP status of an HTTP route answering with it.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Unavailable(_) | Self::ServerFull => 503,
            Self::Unauthorized(_) => 401,
            Self::UnknownChannel(_) | Self::BadRequest(_) | Self::NotConnected | Self::NotSubscribed(_) => 400,
            Self::PermissionDenied(_) => 403,
            Self::NotFound(_) => 404,
            Self::AlreadySubscribed => 409,
            Self::LimitExceeded(_) => 413,
            Self::HeadTooLarge => 431,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::TooManyRequests(_) => 429,
            Self::Backend(_) => 502,
            Self::Application { temporary: true, .. } => 503,
            Self::Application { temporary: false, .. } => 403,
        }
    }

    /// The close code of a WebSocket this error ends (where the server
    /// ends it for this error: an unusable message, a rejected token, a
    /// command flood).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::BadRequest(_) => Some(close::BAD_REQUEST),
            Self::Unauthorized(_) => Some(close::UNAUTHORIZED),
            Self::TooManyRequests(_) => Some(close::COMMAND_FLOOD),
            _ => None,
        }
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        match self {
            Self::Unavailable(m)
            | Self::Unauthorized(m)
            | Self::UnknownChannel(m)
            | Self::PermissionDenied(m)
            | Self::NotFound(m)
            | Self::LimitExceeded(m)
            | Self::BadRequest(m)
            | Self::NotSubscribed(m)
            | Self::TooManyRequests(m)
            | Self::Backend(m)
            | Self::Application { message: m, .. } => m,
            Self::AlreadySubscribed => "already subscribed",
            Self::HeadTooLarge => "request head too large",
            Self::ServerFull => "too many connections",
            Self::MethodNotAllowed => "method not allowed",
            Self::RequestTimeout => "the request did not arrive in time",
            Self::NotConnected => "send connect first",
        }
    }

    /// Its body on the wire.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code(), message: self.message().to_owned(), temporary: self.temporary() }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Error {}

/// An error as it travels: `{"code", "message", "temporary"}` (`temporary`
/// only when true).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error's code (see [`Error::code`]).
    pub code: u16,
    /// What went wrong.
    pub message: String,
    /// Whether the same request may succeed later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

/// The close codes the server ends a WebSocket with (besides RFC 6455's
/// own: 1001 going away, 1009 too big).
pub mod close {
    /// A message that is not a command of the connection's encoding.
    pub const BAD_REQUEST: u16 = 4000;
    /// The `connect` token was rejected.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The client's send queue overflowed: it does not read fast enough.
    pub const SLOW_CONSUMER: u16 = 4004;
    /// No `connect` in time.
    pub const CONNECT_TIMEOUT: u16 = 4005;
    /// Another `command_burst` commands while refused with error 110.
    pub const COMMAND_FLOOD: u16 = 4006;
    /// The connection's credentials expired and were not refreshed in
    /// time (a `refresh` with a new token, or the refresh proxy).
    pub const EXPIRED: u16 = 4007;
    /// The application disconnected the user (the server API's
    /// `disconnect`, without a code of its own).
    pub const DISCONNECTED: u16 = 4008;

    /// The close codes an application's backend may close a connection
    /// with (its answer's `disconnect`), passed on as it gives them.
    pub const APPLICATION: std::ops::RangeInclusive<u16> = 4500..=4999;

    /// Every one, with what it means (the table of `docs/protocol.md`).
    pub const ALL: [(u16, &str); 7] = [
        (BAD_REQUEST, "bad request"),
        (UNAUTHORIZED, "unauthorized"),
        (SLOW_CONSUMER, "slow consumer"),
        (CONNECT_TIMEOUT, "connect timeout"),
        (COMMAND_FLOOD, "command flood"),
        (EXPIRED, "credentials expired"),
        (DISCONNECTED, "disconnected by the application"),
    ];
}
