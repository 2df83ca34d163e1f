//! Frame header parsing and encoding (RFC 6455 section 5.2).

use super::OpCode;
use crate::error::ProtocolError;

/// The longest possible frame header: 2 bytes, 8 bytes of extended length
/// and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this is the last frame of its message.
    pub fin: bool,
    /// The RSV1 bit (permessage-deflate: "this message is compressed").
    pub rsv1: bool,
    /// The RSV2 bit (no extension we know defines it).
    pub rsv2: bool,
    /// The RSV3 bit (no extension we know defines it).
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// Result of a successful parse: the header and how many bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedHeader {
    /// The header.
    pub header: FrameHeader,
    /// Encoded length of the header in bytes (2 to 14).
    pub len: usize,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not hold the whole header yet: that
    /// is the normal answer for a partial read, not an error. Checks what the
    /// header alone can tell: reserved opcodes, control frames that are
    /// fragmented or longer than 125 bytes, and length encodings that are
    /// not minimal or have the most significant bit set. RSV bits, masking
    /// and size limits depend on the connection and are checked there.
    pub fn parse(buf: &[u8]) -> Result<Option<ParsedHeader>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() && (!fin || len7 > 125) {
            return Err(ProtocolError::BadControlFrame);
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(bytes) = buf.get(2..4) else { return Ok(None) };
                let len = u16::from_be_bytes([bytes[0], bytes[1]]) as u64;
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else { return Ok(None) };
                let len = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
                if len >> 63 != 0 || len <= u16::MAX as u64 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4) else { return Ok(None) };
            pos += 4;
            Some(key.try_into().expect("4 bytes"))
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some(ParsedHeader { header, len: pos }))
    }

    /// Encodes this header with the shortest length form.
    pub fn encode(&self) -> HeaderBytes {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (self.fin as u8) << 7
            | (self.rsv1 as u8) << 6
            | (self.rsv2 as u8) << 5
            | (self.rsv3 as u8) << 4
            | self.opcode.as_u8();
        let mask_bit = (self.mask.is_some() as u8) << 7;
        let mut len = 2;
        if self.payload_len < 126 {
            bytes[1] = mask_bit | self.payload_len as u8;
        } else if self.payload_len <= u16::MAX as u64 {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            len = 4;
        } else {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            len = 10;
        }
        if let Some(key) = self.mask {
            bytes[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        HeaderBytes { bytes, len: len as u8 }
    }
}

/// An encoded frame header held inline (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct HeaderBytes {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl AsRef<[u8]> for HeaderBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader { fin: true, rsv1: false, rsv2: false, rsv3: false, opcode, mask, payload_len: len }
    }

    #[test]
    fn section_5_2_length_forms_round_trip() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 1 << 40, (1 << 63) - 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = header(OpCode::Binary, len, mask);
                let enc = h.encode();
                let parsed = FrameHeader::parse(enc.as_ref()).unwrap().unwrap();
                assert_eq!(parsed.header, h);
                assert_eq!(parsed.len, enc.as_ref().len());
                // Every strict prefix is "need more".
                for cut in 0..enc.as_ref().len() {
                    assert_eq!(FrameHeader::parse(&enc.as_ref()[..cut]).unwrap(), None);
                }
            }
        }
    }

    #[test]
    fn section_5_2_non_minimal_lengths_rejected() {
        assert_eq!(FrameHeader::parse(&[0x82, 126, 0, 125]), Err(ProtocolError::NonMinimalLength));
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&65535u64.to_be_bytes());
        assert_eq!(FrameHeader::parse(&long), Err(ProtocolError::NonMinimalLength));
    }

    #[test]
    fn section_5_2_most_significant_bit_rejected() {
        // A frame that announces a 2^63-byte payload.
        let mut buf = vec![0x82, 127];
        buf.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(FrameHeader::parse(&buf), Err(ProtocolError::NonMinimalLength));
    }

    #[test]
    fn section_5_5_control_frames() {
        assert_eq!(FrameHeader::parse(&[0x09, 0]), Err(ProtocolError::BadControlFrame));
        assert_eq!(FrameHeader::parse(&[0x89, 126, 0, 126]), Err(ProtocolError::BadControlFrame));
        assert!(FrameHeader::parse(&[0x89, 125]).unwrap().is_some());
    }

    #[test]
    fn section_5_2_reserved_opcodes() {
        for op in (3..=7).chain(11..=15) {
            assert_eq!(FrameHeader::parse(&[0x80 | op, 0]), Err(ProtocolError::ReservedOpcode(op)));
        }
    }
}
