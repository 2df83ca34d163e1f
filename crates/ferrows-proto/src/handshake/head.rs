//! Parsing and writing HTTP/1.1 heads with limits on size and header count.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

use crate::config::HandshakeLimits;
use crate::error::HandshakeError;

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the request and the
/// length of its head (bytes after it belong to the WebSocket). A head that
/// is not complete within `limits.max_size` bytes, or has more than
/// `limits.max_headers` lines, is refused (HTTP 431), so a client that
/// trickles headers cannot make us buffer without bound.
pub fn parse_request(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<(Request<()>, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let window = &buf[..buf.len().min(limits.max_size)];
    let len = match req.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_size => return Err(HandshakeError::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(e) => return Err(HandshakeError::MalformedHttp(e.to_string())),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HandshakeError::MalformedHttp("method".into()))?;
    let uri: Uri =
        req.path.unwrap_or_default().parse().map_err(|_| HandshakeError::MalformedHttp("request target".into()))?;
    let version = if req.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let mut builder = Request::builder().method(method).uri(uri).version(version);
    *builder.headers_mut().expect("builder is valid") = to_header_map(req.headers)?;
    let request = builder.body(()).map_err(|e| HandshakeError::MalformedHttp(e.to_string()))?;
    Ok(Some((request, len)))
}

/// Parses a response head from the start of `buf` (see [`parse_request`]).
pub fn parse_response(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<(Response<()>, usize)>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut res = httparse::Response::new(&mut headers);
    let window = &buf[..buf.len().min(limits.max_size)];
    let len = match res.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_size => return Err(HandshakeError::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(e) => return Err(HandshakeError::MalformedHttp(e.to_string())),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or_default())
        .map_err(|_| HandshakeError::MalformedHttp("status".into()))?;
    let version = if res.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let mut builder = Response::builder().status(status).version(version);
    *builder.headers_mut().expect("builder is valid") = to_header_map(res.headers)?;
    let response = builder.body(()).map_err(|e| HandshakeError::MalformedHttp(e.to_string()))?;
    Ok(Some((response, len)))
}

fn to_header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::MalformedHttp("header name".into()))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| HandshakeError::MalformedHttp("header value".into()))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Writes a request head (request line, headers, blank line) to `out`.
pub fn write_request(request: &Request<()>, out: &mut Vec<u8>) {
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(request.headers(), out);
}

/// Writes a response head (status line, headers, blank line) to `out`.
pub fn write_response(response: &Response<()>, out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(response.headers(), out);
}

fn write_headers(headers: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
