//! The answers of the server's HTTP routes: their body type and their
//! shape (one place for both, whichever route answers). Bodies are
//! protocol types ([`ferrows_hub::protocol`]) in JSON.

use bytes::Bytes;
use ferrows_hub::protocol::{Encoding, Error, Failure};
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// The body of answers.
pub(crate) type Body = Full<Bytes>;

/// An answer with a body of `content_type`, never cached.
pub(crate) fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
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
