//! Server side of the opening handshake (RFC 6455 section 4.2).

use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};

use super::{Extension, accept_key, format_extensions, header_has_token, header_list, is_valid_key, parse_extensions};
use crate::config::Negotiated;
use crate::deflate::{self, DeflateOptions};
use crate::error::HandshakeError;

/// What the server supports and prefers.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Subprotocols this server speaks. The first one in the *client's*
    /// order that is also listed here is selected.
    pub subprotocols: Vec<String>,
    /// permessage-deflate policy; `None` declines compression.
    pub deflate: Option<DeflateOptions>,
}

/// A request that passed every check of section 4.2.1.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Key`.
    pub key: String,
    /// Subprotocols the client offered, in its order of preference.
    pub subprotocols: Vec<String>,
    /// Extensions the client offered, in order.
    pub extensions: Vec<Extension>,
}

/// The accepted handshake: the `101` response to send and what it agreed.
#[derive(Debug, Clone)]
pub struct ServerOutcome {
    /// The `101 Switching Protocols` response.
    pub response: Response<()>,
    /// Extensions in force.
    pub negotiated: Negotiated,
    /// The selected subprotocol.
    pub subprotocol: Option<String>,
}

/// Checks a client's opening handshake (section 4.2.1): `GET`, HTTP/1.1,
/// `Host`, `Upgrade: websocket`, `Connection: Upgrade` (tokens
/// case-insensitive, in lists), a 16-byte base64 key and version 13.
pub fn validate_request<B>(request: &Request<B>) -> Result<UpgradeRequest, HandshakeError> {
    if request.method() != Method::GET {
        return Err(HandshakeError::MethodNotGet);
    }
    if request.version() != Version::HTTP_11 {
        return Err(HandshakeError::WrongHttpVersion);
    }
    let headers = request.headers();
    if !headers.contains_key(header::HOST) {
        return Err(HandshakeError::MissingHeader("Host"));
    }
    let upgrade = headers.get(header::UPGRADE).ok_or(HandshakeError::MissingHeader("Upgrade"))?;
    if !header_has_token(upgrade.as_bytes(), "websocket") {
        return Err(HandshakeError::InvalidHeader("Upgrade"));
    }
    let connection_ok = headers.get_all(header::CONNECTION).iter().any(|v| header_has_token(v.as_bytes(), "upgrade"));
    if !connection_ok {
        return Err(HandshakeError::InvalidHeader("Connection"));
    }
    let version = headers.get(header::SEC_WEBSOCKET_VERSION).ok_or(HandshakeError::UnsupportedVersion)?;
    if version.as_bytes().trim_ascii() != b"13" {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next().ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Key"))?;
    let key = key.as_bytes().trim_ascii();
    if keys.next().is_some() || !is_valid_key(key) {
        return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Key"));
    }
    let subprotocols = header_list(headers, &header::SEC_WEBSOCKET_PROTOCOL).map(str::to_owned).collect();
    let mut extensions = Vec::new();
    for value in headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS) {
        let text = value.to_str().map_err(|_| HandshakeError::InvalidHeader("Sec-WebSocket-Extensions"))?;
        extensions.extend(parse_extensions(text).map_err(|e| HandshakeError::Extension(e.0))?);
    }
    Ok(UpgradeRequest {
        key: String::from_utf8(key.to_vec()).expect("validated base64 is ASCII"),
        subprotocols,
        extensions,
    })
}

/// Builds the `101` response for a validated request and negotiates the
/// subprotocol and permessage-deflate.
pub fn accept_response(request: &UpgradeRequest, options: &ServerOptions) -> ServerOutcome {
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key(request.key.as_bytes()))
        .body(())
        .expect("static response is valid");
    let subprotocol = request.subprotocols.iter().find(|p| options.subprotocols.contains(p)).cloned();
    if let Some(value) = subprotocol.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
        response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let mut negotiated = Negotiated::default();
    let accepted = options.deflate.as_ref().and_then(|o| deflate::accept_offers(&request.extensions, o));
    if let Some((config, ext)) = accepted {
        let value = HeaderValue::from_str(&format_extensions(&[ext])).expect("formatted tokens are valid");
        response.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
        negotiated.deflate = Some(config);
    }
    ServerOutcome { response, negotiated, subprotocol }
}

/// The HTTP response that refuses a handshake: the status of the error
/// (400, 405, 426 with `Sec-WebSocket-Version: 13`, 431), `Connection:
/// close` and a one-line plain-text body that says why.
pub fn reject_response(error: &HandshakeError) -> Response<String> {
    let body = format!("{error}\n");
    let mut builder = Response::builder()
        .status(error.http_status())
        .header(header::CONNECTION, "close")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, body.len());
    if matches!(error, HandshakeError::UnsupportedVersion) {
        builder = builder.header(header::SEC_WEBSOCKET_VERSION, "13");
    }
    if matches!(error, HandshakeError::MethodNotGet) {
        builder = builder.header(header::ALLOW, "GET");
    }
    builder.body(body).expect("static response is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HandshakeLimits;
    use crate::handshake::parse_request;

    const GOOD: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

    fn check(text: &str) -> Result<UpgradeRequest, HandshakeError> {
        let (req, _) = parse_request(text.as_bytes(), &HandshakeLimits::default())?.expect("complete");
        validate_request(&req)
    }

    #[test]
    fn section_4_2_1_valid_request() {
        let up = check(GOOD).unwrap();
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(up.subprotocols, ["chat", "superchat"]);
        let options = ServerOptions { subprotocols: vec!["superchat".into()], deflate: Some(Default::default()) };
        let outcome = accept_response(&up, &options);
        let h = outcome.response.headers();
        assert_eq!(outcome.response.status(), 101);
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["sec-websocket-protocol"], "superchat");
        assert_eq!(h["sec-websocket-extensions"], "permessage-deflate");
        assert!(outcome.negotiated.deflate.is_some());
    }

    #[test]
    fn section_4_2_1_each_requirement() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET /chat?room=1", "POST /chat", 405),
            ("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost", 400),
            ("Host: example.com\r\n", "", 400),
            ("Upgrade: WebSocket", "Upgrade: h2c", 400),
            ("Connection: keep-alive, Upgrade", "Connection: keep-alive", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ", 400),
            ("Version: 13", "Version: 8", 426),
        ];
        for (from, to, status) in cases {
            let err = check(&GOOD.replacen(from, to, 1)).unwrap_err();
            assert_eq!(err.http_status(), *status, "{to}: {err}");
        }
        let rejection = reject_response(&HandshakeError::UnsupportedVersion);
        assert_eq!(rejection.headers()["sec-websocket-version"], "13");
    }

    #[test]
    fn section_4_2_2_no_subprotocol_or_compression_unless_both_agree() {
        let up = check(GOOD).unwrap();
        let outcome = accept_response(&up, &ServerOptions::default());
        assert!(outcome.response.headers().get("sec-websocket-protocol").is_none());
        assert!(outcome.response.headers().get("sec-websocket-extensions").is_none());
        assert!(outcome.subprotocol.is_none());
    }

    #[test]
    fn oversized_heads_get_431() {
        let limits = HandshakeLimits::default();
        // One header line of 1 MiB.
        let mut huge = String::from("GET / HTTP/1.1\r\nX-Big: ");
        huge.push_str(&"a".repeat(1 << 20));
        let err = parse_request(huge.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.http_status(), 431);
        // Ten thousand header lines.
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..10_000 {
            many.push_str(&format!("X-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        let err = parse_request(many.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.http_status(), 431);
        // A partial head under the limit asks for more.
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost: a", &limits).unwrap().is_none());
    }
}
