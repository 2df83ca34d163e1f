//! The opening handshake (RFC 6455 section 4): an HTTP/1.1 `GET` with
//! `Upgrade: websocket`, answered by `101 Switching Protocols`.
//!
//! Parsing uses `httparse` into `http` types, so a server built on hyper can
//! reuse [`validate_request`] and [`accept_response`] on its own requests.

mod client;
mod extensions;
mod head;
mod server;

pub use client::{ClientHandshake, ClientOptions, ClientOutcome};
pub use extensions::{Extension, MalformedExtensions, format_extensions, parse_extensions};
pub use head::{parse_request, parse_response, write_request, write_response};
pub use server::{ServerOptions, ServerOutcome, UpgradeRequest, accept_response, reject_response, validate_request};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 section 1.3, appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    BASE64.encode(sha.finalize())
}

/// A fresh random `Sec-WebSocket-Key`: 16 random bytes, base64 encoded.
pub fn generate_key() -> String {
    BASE64.encode(rand::random::<[u8; 16]>())
}

/// Whether a `Sec-WebSocket-Key` is base64 of exactly 16 bytes.
pub fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24 && BASE64.decode(key).is_ok_and(|raw| raw.len() == 16)
}

/// Whether a comma-separated header value contains `token`
/// (case-insensitive), as `Connection: keep-alive, Upgrade` does.
pub(crate) fn header_has_token(value: &[u8], token: &str) -> bool {
    value.split(|b| *b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Every value of a header across repeated lines, split at commas.
pub(crate) fn header_list<'a>(headers: &'a http::HeaderMap, name: &http::HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_1_3_accept_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn section_4_1_key_is_16_bytes() {
        assert!(is_valid_key(generate_key().as_bytes()));
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZSE="));
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!=="));
    }

    #[test]
    fn connection_header_tokens() {
        assert!(header_has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(header_has_token(b"UPGRADE", "upgrade"));
        assert!(!header_has_token(b"upgrader", "upgrade"));
    }
}
