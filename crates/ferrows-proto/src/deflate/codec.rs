//! One direction of permessage-deflate: a compressor or a decompressor,
//! taken on first use and given back between messages when the context is
//! not taken over (so idle connections hold no zlib state; the thread keeps
//! a few streams for the next messages, see [`super::cache`]).

use bytes::BytesMut;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use super::{MIN_ZLIB_WINDOW_BITS, cache};
use crate::error::ProtocolError;

const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Compresses messages for one sending direction.
#[derive(Debug)]
pub struct Deflater {
    /// Boxed: zlib's stream handle is 150 bytes, which every connection
    /// that negotiated compression would carry inline even while idle.
    state: Option<Box<Compress>>,
    window_bits: u8,
    no_context_takeover: bool,
    level: u32,
}

impl Deflater {
    /// A compressor for a direction limited to `window_bits`.
    pub fn new(window_bits: u8, no_context_takeover: bool, level: u32) -> Self {
        Self { state: None, window_bits, no_context_takeover, level: level.min(9) }
    }

    /// Whether messages can be compressed at all (zlib cannot honour an
    /// 8-bit window; such a direction sends uncompressed messages).
    pub fn can_compress(&self) -> bool {
        self.window_bits >= MIN_ZLIB_WINDOW_BITS
    }

    /// Drops the compression context: the next message starts afresh.
    pub fn reset(&mut self) {
        if let Some(state) = self.state.take() {
            cache::recycle_compressor(self.level, self.window_bits, state);
        }
    }

    /// The window size (base-2 log) this direction compresses with.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether each message is compressed independently of the others.
    pub fn is_context_free(&self) -> bool {
        self.no_context_takeover
    }

    /// Whether it holds a compression context now (between messages only
    /// with context takeover).
    pub fn holds_context(&self) -> bool {
        self.state.is_some()
    }

    /// The window a prepared message with a payload of `len` bytes is sent
    /// compressed with in this direction: only where each message is
    /// compressed on its own (so the compressed frame is the same for every
    /// connection) and the payload reaches `threshold`. `None`: its plain
    /// frame is sent.
    pub fn prepared_window(&self, len: usize, threshold: usize) -> Option<u8> {
        (self.can_compress() && self.is_context_free() && len >= threshold).then_some(self.window_bits)
    }

    /// Compresses `input` and appends the result to `out`. With `last`
    /// (the final piece of a message) the trailing `00 00 ff ff` is removed
    /// and, without context takeover, the context is dropped.
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut, last: bool) {
        let bits = self.window_bits;
        let level = self.level;
        let state = self.state.get_or_insert_with(|| cache::compressor(level, bits));
        let start = out.len();
        out.reserve(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            let before_in = state.total_in();
            let before_out = state.total_out();
            let spare = out.capacity() - out.len();
            let mut buf = std::mem::take(out);
            let len = buf.len();
            buf.resize(len + spare, 0);
            let status = state
                .compress(&input[consumed..], &mut buf[len..], FlushCompress::Sync)
                .expect("deflate of an in-memory buffer cannot fail");
            let produced = (state.total_out() - before_out) as usize;
            buf.truncate(len + produced);
            *out = buf;
            consumed += (state.total_in() - before_in) as usize;
            debug_assert!(matches!(status, Status::Ok | Status::BufError));
            // Done once all input is in and the flush fit in the space given.
            if consumed == input.len() && produced < spare {
                break;
            }
            out.reserve(out.capacity().max(1024));
        }
        if last {
            if out[start..].ends_with(&SYNC_TAIL) {
                out.truncate(out.len() - SYNC_TAIL.len());
            }
            if out.len() == start {
                // An empty message still needs one empty block.
                out.extend_from_slice(&[0x00]);
            }
            if self.no_context_takeover {
                self.reset();
            }
        }
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        self.reset();
    }
}

/// Inflates messages for one receiving direction, with a bound on output.
#[derive(Debug)]
pub struct Inflater {
    /// Boxed for the same reason as [`Deflater`]'s state.
    state: Option<Box<Decompress>>,
    window_bits: u8,
    no_context_takeover: bool,
}

impl Inflater {
    /// A decompressor for a peer limited to `window_bits`. A larger window
    /// than the peer's is always safe, so 8 is inflated with 9.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self { state: None, window_bits: window_bits.max(MIN_ZLIB_WINDOW_BITS), no_context_takeover }
    }

    /// The peer's window size (base-2 log) this direction inflates with.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether each message is inflated independently of the others.
    pub fn is_context_free(&self) -> bool {
        self.no_context_takeover
    }

    /// Whether it holds a decompression context now.
    pub fn holds_context(&self) -> bool {
        self.state.is_some()
    }

    /// Drops the decompression context (given back to the thread's cache).
    fn reset(&mut self) {
        if let Some(state) = self.state.take() {
            cache::recycle_decompressor(self.window_bits, state);
        }
    }

    /// Inflates the next piece of a compressed message into `out`; `last`
    /// marks the end of the message (the sync tail is added). Fails with
    /// [`ProtocolError::MessageTooLarge`] as soon as `out` would exceed
    /// `limit` bytes: memory never grows past the limit, whatever the ratio.
    pub fn inflate(&mut self, input: &[u8], out: &mut BytesMut, limit: usize, last: bool) -> Result<(), ProtocolError> {
        self.feed(input, out, limit)?;
        if last {
            self.feed(&SYNC_TAIL, out, limit)?;
            if self.no_context_takeover {
                self.reset();
            }
        }
        Ok(())
    }

    fn feed(&mut self, input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), ProtocolError> {
        let bits = self.window_bits;
        let mut consumed = 0;
        loop {
            let state = self.state.get_or_insert_with(|| cache::decompressor(bits));
            if out.len() > limit {
                return Err(ProtocolError::MessageTooLarge { limit });
            }
            // Room in proportion to the input left, never past limit + 1
            // (one byte over proves the limit is exceeded). `resize` zeroes
            // the room on every pass, so it must not scale with what `out`
            // already holds: that made each small piece of a large message
            // cost O(message), quadratic over many short reads or tiny
            // fragments. The capacity still grows geometrically (BytesMut).
            let want = (input.len() - consumed).saturating_mul(4).max(4096);
            let room = want.min(limit.saturating_add(1) - out.len());
            let len = out.len();
            out.resize(len + room, 0);
            let before_in = state.total_in();
            let before_out = state.total_out();
            let status = state.decompress(&input[consumed..], &mut out[len..], FlushDecompress::None);
            let produced = (state.total_out() - before_out) as usize;
            out.truncate(len + produced);
            consumed += (state.total_in() - before_in) as usize;
            match status {
                Err(_) => return Err(ProtocolError::InflateFailed),
                Ok(Status::StreamEnd) => {
                    // The peer ended the DEFLATE stream (a BFINAL block):
                    // later data starts a new stream. The stream may end
                    // exactly as the output reaches limit + 1.
                    self.reset();
                    if consumed == input.len() && out.len() <= limit {
                        return Ok(());
                    }
                }
                Ok(_) => {
                    if consumed == input.len() && produced < room {
                        return Ok(());
                    }
                    if produced == 0 && consumed < input.len() && room > 0 && state.total_in() == before_in {
                        return Err(ProtocolError::InflateFailed);
                    }
                }
            }
            if out.len() > limit {
                return Err(ProtocolError::MessageTooLarge { limit });
            }
        }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(deflater: &mut Deflater, inflater: &mut Inflater, msg: &[u8]) -> Vec<u8> {
        let mut wire = BytesMut::new();
        deflater.compress(msg, &mut wire, true);
        let mut out = BytesMut::new();
        inflater.inflate(&wire, &mut out, usize::MAX - 1, true).unwrap();
        out.to_vec()
    }

    #[test]
    fn round_trips_with_and_without_context() {
        for bits in 9..=15 {
            for no_ctx in [false, true] {
                let mut d = Deflater::new(bits, no_ctx, 6);
                let mut i = Inflater::new(bits, no_ctx);
                for msg in [&b""[..], b"a", b"hello hello hello hello", &vec![7u8; 100_000]] {
                    assert_eq!(round_trip(&mut d, &mut i, msg), msg);
                }
            }
        }
    }

    #[test]
    fn rfc7692_section_7_2_3_1_hello() {
        // "Hello" compressed, from the RFC's example.
        let mut i = Inflater::new(15, false);
        let mut out = BytesMut::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100, true).unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn bomb_is_cut_at_the_limit() {
        let mut d = Deflater::new(15, false, 9);
        let mut wire = BytesMut::new();
        d.compress(&vec![0u8; 20 << 20], &mut wire, true);
        assert!(wire.len() < 100 << 10, "20 MiB of zeros compress to {} bytes", wire.len());
        let mut i = Inflater::new(15, false);
        let mut out = BytesMut::new();
        let limit = 1 << 20;
        assert_eq!(i.inflate(&wire, &mut out, limit, true), Err(ProtocolError::MessageTooLarge { limit }));
        assert!(out.len() <= limit + 1);
        assert!(out.capacity() <= 2 * limit + 8192, "capacity {}", out.capacity());
    }

    #[test]
    fn final_block_over_the_limit_fails() {
        // A stored block with BFINAL set holding 5 bytes, for a limit of 4:
        // the stream ends exactly when the output is one byte over.
        let block = [0x01, 0x05, 0x00, 0xFA, 0xFF, b'h', b'e', b'l', b'l', b'o'];
        for last in [false, true] {
            let mut i = Inflater::new(15, false);
            let mut out = BytesMut::new();
            assert_eq!(i.inflate(&block, &mut out, 4, last), Err(ProtocolError::MessageTooLarge { limit: 4 }));
            assert!(out.len() <= 5);
        }
        let mut out = BytesMut::new();
        Inflater::new(15, false).inflate(&block, &mut out, 5, false).unwrap();
        assert_eq!(&out[..], b"hello");
    }

    #[test]
    fn garbage_fails() {
        let mut i = Inflater::new(15, false);
        let mut out = BytesMut::new();
        assert_eq!(i.inflate(&[0xff; 16], &mut out, 1000, true), Err(ProtocolError::InflateFailed));
    }
}
