//! Close frame payloads and status codes (RFC 6455 sections 5.5.1 and 7.4).

use std::fmt;

use crate::error::ProtocolError;
use crate::utf8::validate_complete;

/// A close status code (RFC 6455 section 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no code was present (never sent on the wire).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a Close frame (never sent).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: data inconsistent with the message type (invalid UTF-8).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message is too big to process.
    pub const TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not accept.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);

    /// Whether this code may appear in a Close frame on the wire.
    ///
    /// Allowed: 1000-1003, 1007-1014 (the RFC's codes plus the IANA
    /// registrations 1012-1014) and 3000-4999 (libraries, frameworks and
    /// applications). Everything else, including 1004-1006, 1015 and the
    /// unassigned 1016-2999, is a protocol error.
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(value: u16) -> Self {
        Self(value)
    }
}

impl From<CloseCode> for u16 {
    fn from(value: CloseCode) -> Self {
        value.0
    }
}

/// The content of a Close frame: a code and a UTF-8 reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: String,
}

/// Parses a Close payload: empty (no code), or a two-byte code followed by a
/// UTF-8 reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseFrameTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_allowed_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            validate_complete(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            let reason = String::from_utf8(reason.to_vec()).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_7_4_codes() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(ok).is_allowed_on_wire(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(bad).is_allowed_on_wire(), "{bad}");
        }
    }

    #[test]
    fn section_5_5_1_payloads() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[3]), Err(ProtocolError::CloseFrameTooShort));
        assert_eq!(parse_close_payload(&[0x03, 0xEC]), Err(ProtocolError::InvalidCloseCode(1004)));
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8, b'o', b'k']),
            Ok(Some(CloseFrame { code: CloseCode::NORMAL, reason: "ok".into() }))
        );
        assert_eq!(parse_close_payload(&[0x03, 0xE8, 0xFF]), Err(ProtocolError::InvalidUtf8));
    }
}
