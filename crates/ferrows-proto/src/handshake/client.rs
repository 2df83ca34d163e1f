//! Client side of the opening handshake (RFC 6455 sections 4.1 and 4.2.2).

use http::{HeaderMap, Request, Response, StatusCode, Uri, header};

use super::{accept_key, format_extensions, generate_key, header_has_token, parse_extensions};
use crate::config::Negotiated;
use crate::deflate::{self, DeflateOptions};
use crate::error::HandshakeError;

/// What the client asks for.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Subprotocols to offer, in order of preference.
    pub subprotocols: Vec<String>,
    /// permessage-deflate to offer; `None` offers no compression.
    pub deflate: Option<DeflateOptions>,
    /// Extra headers (for example `Origin`, `Authorization`, cookies).
    pub headers: HeaderMap,
}

/// The result of a successful handshake.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    /// The server's `101` response.
    pub response: Response<()>,
    /// Extensions in force.
    pub negotiated: Negotiated,
    /// The subprotocol the server selected.
    pub subprotocol: Option<String>,
}

/// One client handshake: the request to send and what the answer must match.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    request: Request<()>,
    options: ClientOptions,
}

impl ClientHandshake {
    /// Builds the request for `uri` (`ws://` or `wss://`, or a plain path
    /// with a `Host` given in `options.headers`).
    pub fn new(uri: &Uri, options: ClientOptions) -> Result<Self, HandshakeError> {
        let key = generate_key();
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut builder = Request::builder()
            .method("GET")
            .uri(target)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_KEY, key.as_str())
            .header(header::SEC_WEBSOCKET_VERSION, "13");
        if !options.headers.contains_key(header::HOST) {
            let host = uri.host().ok_or(HandshakeError::MissingHeader("Host"))?;
            let default_port = match uri.scheme_str() {
                Some("wss" | "https") => 443,
                _ => 80,
            };
            let host = match uri.port_u16() {
                Some(port) if port != default_port => format!("{host}:{port}"),
                _ => host.to_owned(),
            };
            builder = builder.header(header::HOST, host);
        }
        if !options.subprotocols.is_empty() {
            builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, options.subprotocols.join(", "));
        }
        if let Some(deflate_options) = &options.deflate {
            builder =
                builder.header(header::SEC_WEBSOCKET_EXTENSIONS, format_extensions(&[deflate::offer(deflate_options)]));
        }
        let mut request = builder.body(()).map_err(|_| HandshakeError::InvalidHeader("request"))?;
        for (name, value) in &options.headers {
            request.headers_mut().append(name, value.clone());
        }
        Ok(Self { key, request, options })
    }

    /// The request to send.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// Checks the server's response (section 4.2.2 and 4.1 step 5-6).
    pub fn validate(&self, response: Response<()>) -> Result<ClientOutcome, HandshakeError> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(HandshakeError::UnexpectedStatus(response.status().as_u16()));
        }
        let headers = response.headers();
        let upgrade = headers.get(header::UPGRADE).ok_or(HandshakeError::MissingHeader("Upgrade"))?;
        if !header_has_token(upgrade.as_bytes(), "websocket") {
            return Err(HandshakeError::InvalidHeader("Upgrade"));
        }
        if !headers.get_all(header::CONNECTION).iter().any(|v| header_has_token(v.as_bytes(), "upgrade")) {
            return Err(HandshakeError::InvalidHeader("Connection"));
        }
        let accept =
            headers.get(header::SEC_WEBSOCKET_ACCEPT).ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Accept"))?;
        if accept.as_bytes().trim_ascii() != accept_key(self.key.as_bytes()).as_bytes() {
            return Err(HandshakeError::AcceptMismatch);
        }
        let subprotocol = match headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
            None => None,
            Some(value) => {
                let value = value.to_str().map_err(|_| HandshakeError::UnofferedSubprotocol)?.trim();
                if !self.options.subprotocols.iter().any(|p| p == value) {
                    return Err(HandshakeError::UnofferedSubprotocol);
                }
                Some(value.to_owned())
            }
        };
        let mut extensions = Vec::new();
        for value in headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS) {
            let text = value.to_str().map_err(|_| HandshakeError::InvalidHeader("Sec-WebSocket-Extensions"))?;
            extensions.extend(parse_extensions(text).map_err(|e| HandshakeError::Extension(e.0))?);
        }
        let deflate = match &self.options.deflate {
            Some(options) => deflate::validate_response(&extensions, options).map_err(HandshakeError::Extension)?,
            None if extensions.is_empty() => None,
            None => return Err(HandshakeError::Extension("server accepted an unoffered extension".into())),
        };
        Ok(ClientOutcome { response, negotiated: Negotiated { deflate }, subprotocol })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HandshakeLimits;
    use crate::handshake::{
        ServerOptions, accept_response, parse_request, parse_response, validate_request, write_request, write_response,
    };
    use http::HeaderValue;

    fn round_trip(client: ClientOptions, server: ServerOptions) -> Result<ClientOutcome, HandshakeError> {
        let uri: Uri = "ws://example.com:8080/chat?x=1".parse().unwrap();
        let hs = ClientHandshake::new(&uri, client)?;
        let mut wire = Vec::new();
        write_request(hs.request(), &mut wire);
        let (req, len) = parse_request(&wire, &HandshakeLimits::default())?.unwrap();
        assert_eq!(len, wire.len());
        assert_eq!(req.uri(), "/chat?x=1");
        assert_eq!(req.headers()["host"], "example.com:8080");
        let outcome = accept_response(&validate_request(&req)?, &server);
        let mut wire = Vec::new();
        write_response(&outcome.response, &mut wire);
        let (res, _) = parse_response(&wire, &HandshakeLimits::default())?.unwrap();
        hs.validate(res)
    }

    #[test]
    fn section_4_1_full_round_trip() {
        let client = ClientOptions {
            subprotocols: vec!["a".into(), "b".into()],
            deflate: Some(Default::default()),
            ..Default::default()
        };
        let server = ServerOptions { subprotocols: vec!["b".into()], deflate: Some(Default::default()) };
        let outcome = round_trip(client, server).unwrap();
        assert_eq!(outcome.subprotocol.as_deref(), Some("b"));
        assert!(outcome.negotiated.deflate.is_some());
    }

    #[test]
    fn section_4_1_client_fails_bad_responses() {
        let hs = ClientHandshake::new(&"ws://h/".parse().unwrap(), ClientOptions::default()).unwrap();
        let good = |f: &dyn Fn(&mut Response<()>)| {
            let mut res = Response::builder()
                .status(101)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-accept", accept_key(hs.key.as_bytes()))
                .body(())
                .unwrap();
            f(&mut res);
            hs.validate(res)
        };
        assert!(good(&|_| {}).is_ok());
        assert_eq!(good(&|r| *r.status_mut() = StatusCode::OK).unwrap_err(), HandshakeError::UnexpectedStatus(200));
        assert_eq!(
            good(&|r| {
                r.headers_mut().insert("sec-websocket-accept", HeaderValue::from_static("x"));
            })
            .unwrap_err(),
            HandshakeError::AcceptMismatch
        );
        assert_eq!(
            good(&|r| {
                r.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
            })
            .unwrap_err(),
            HandshakeError::UnofferedSubprotocol
        );
        assert!(matches!(
            good(&|r| {
                r.headers_mut().insert("sec-websocket-extensions", HeaderValue::from_static("permessage-deflate"));
            }),
            Err(HandshakeError::Extension(_))
        ));
        assert!(
            good(&|r| {
                r.headers_mut().remove("upgrade");
            })
            .is_err()
        );
    }
}
