//! The answers of the server's HTTP routes: their body type and their
//! shape (one place for both, whichever route answers).

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

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
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

/// The JSON body of an error: `{"error": {"code", "message"}}`.
pub(crate) fn error_body(code: u16, message: &str) -> String {
    json!({"error": {"code": code, "message": message}}).to_string()
}

/// An error answer (see [`error_body`]).
pub(crate) fn error_response(status: StatusCode, code: u16, message: &str) -> Response<Body> {
    respond(status, "application/json", error_body(code, message))
}
