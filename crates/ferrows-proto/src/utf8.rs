//! UTF-8 validation: whole buffers, and an incremental validator that fails
//! at the first invalid byte even when a message arrives in pieces (RFC 6455
//! section 8.1: an endpoint *must* fail on invalid UTF-8 as soon as it is
//! seen, not only when the message is complete).

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Invalid UTF-8 was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Validates a complete buffer (SIMD-accelerated).
pub fn validate_complete(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(bytes).map(|_| ()).map_err(|_| InvalidUtf8)
}

/// Validates a byte stream fed in arbitrary pieces.
///
/// Carries at most three bytes of an unfinished code point between calls,
/// and rejects a piece as soon as it holds a byte that no valid
/// continuation could make right (for example `0xF5`, or `0xED 0xA0`).
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let need = sequence_len(self.carry[0]);
            let take = (need - have).min(data.len());
            self.carry[have..have + take].copy_from_slice(&data[..take]);
            let filled = have + take;
            match simdutf8::compat::from_utf8(&self.carry[..filled]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    // Still an unfinished but valid prefix: `data` is used up.
                    self.carry_len = filled as u8;
                    return Ok(());
                }
            }
            data = &data[take..];
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let rest = &data[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carry_len = rest.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the stream: fails if it stopped inside a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.carry_len != 0;
        self.carry_len = 0;
        if unfinished { Err(InvalidUtf8) } else { Ok(()) }
    }
}

/// Length of the sequence a leading byte starts; the carry only ever holds
/// valid prefixes, so the byte is a valid leading byte of 2 to 4.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Bytes known to hold valid UTF-8: the payload of a text message, shared
/// without a copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps `bytes` after validating them.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        validate_complete(&bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps bytes that a validator already accepted. Crate-private so the
    /// invariant cannot be broken from outside.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// A static string, without a copy.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of `Utf8Bytes` either validates the bytes
        // (`try_from_bytes`, the `From<String>`/`From<&str>` impls take a
        // `str`), or is crate-private and given bytes that passed
        // `Utf8Validator` (`from_validated`, checked again in debug builds).
        // `Bytes` is immutable, so the bytes stay valid UTF-8.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(value: String) -> Self {
        Self(Bytes::from(value))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(value: &str) -> Self {
        Self(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(value: Utf8Bytes) -> Self {
        value.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(value: Bytes) -> Result<Self, InvalidUtf8> {
        Self::try_from_bytes(value)
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn split_code_points_at_every_position() {
        let text = "κόσμε€𝄞 ascii ü".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                assert_eq!(feed_all(&[&text[..a], &text[a..b], &text[b..]]), Ok(()), "{a} {b}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let text = "€𝄞κ".as_bytes();
        let pieces: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(feed_all(&pieces), Ok(()));
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        let mut v = Utf8Validator::new();
        // 0xED 0xA0 starts a UTF-16 surrogate: invalid whatever follows.
        assert_eq!(v.feed(&[b'a', 0xED]), Ok(()));
        assert_eq!(v.feed(&[0xA0]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF5]), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_at_end_fails() {
        assert_eq!(feed_all(&[&[0xE2, 0x82]]), Err(InvalidUtf8));
    }

    #[test]
    fn utf8_bytes_checks() {
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(b"\xff")).is_err());
        let t = Utf8Bytes::try_from_bytes(Bytes::from_static("héllo".as_bytes())).unwrap();
        assert_eq!(t.as_str(), "héllo");
        assert_eq!(&*t, "héllo");
    }
}
