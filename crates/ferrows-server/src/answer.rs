//! The answers of the server's HTTP routes: their body type and their
//! shape (one place for both, whichever route answers). Bodies are
//! protocol types ([`ferrows_hub::protocol`]) in JSON.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use ferrows_hub::protocol::{Encoding, Error, Failure};
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use serde::Serialize;

use crate::sse::EventStream;

/// The body of answers: whole, or an event stream (boxed: answers are
/// moved around, and whole ones are the most).
pub(crate) enum Body {
    Full(Full<Bytes>),
    Stream(Box<EventStream>),
}

impl Default for Body {
    fn default() -> Self {
        Self::Full(Full::default())
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::Full(Full::from(text))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(full) => Pin::new(full).poll_frame(cx),
            Self::Stream(stream) => Pin::new(&mut **stream).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) => full.is_end_stream(),
            Self::Stream(stream) => stream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(full) => full.size_hint(),
            Self::Stream(stream) => stream.size_hint(),
        }
    }
}

/// An answer with a body of `content_type`, never cached.
pub(crate) fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Full(Full::new(body.into())))
        .expect("static parts are valid")
}

/// An answer with a JSON body.
pub(crate) fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    respond(status, "application/json", Encoding::Json.encode(value))
}

/// The JSON body of an error: `{"error": {"code", "message", "temporary"}}`.
pub(crate) fn error_body(error: &Error) -> Bytes {
    Encoding::Json.encode(&Failure::from(error))
}

/// An error answer, with the error's status (see [`error_body`]).
pub(crate) fn error_response(error: &Error) -> Response<Body> {
    let status = StatusCode::from_u16(error.http_status()).expect("error statuses are valid");
    respond(status, "application/json", error_body(error))
}
