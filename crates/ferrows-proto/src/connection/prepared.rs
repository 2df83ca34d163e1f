//! Messages encoded once and sent to many connections (fan-out).
//!
//! A server frame is not masked, so the same bytes serve every receiver.
//! With permessage-deflate, a frame compressed without context (the
//! receiver agreed `server_no_context_takeover`) is also the same for every
//! receiver with the same window size: it is compressed once per window
//! size, on first use. Receivers whose context is taken over get the
//! uncompressed frame (RFC 7692 lets any message go uncompressed), since
//! their compressed bytes would depend on each one's history.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};

use super::DataKind;
use super::send::encode_frame;
use crate::deflate::Deflater;
use crate::frame::OpCode;

/// A data message framed once for many server connections.
#[derive(Debug)]
pub struct PreparedMessage {
    kind: DataKind,
    payload: Bytes,
    plain_frame: Bytes,
    /// Compressed frames, by window bits 9 to 15.
    compressed: [OnceLock<Bytes>; 7],
    level: u32,
    compressions: AtomicUsize,
}

impl PreparedMessage {
    /// Prepares `payload` (which must be valid UTF-8 for `DataKind::Text`;
    /// see [`PreparedMessage::text`]) with compression level `level`.
    pub fn new(kind: DataKind, payload: Bytes, level: u32) -> Self {
        let mut frame = BytesMut::with_capacity(payload.len() + 10);
        encode_frame(opcode(kind), true, false, None, &payload, &mut frame);
        Self {
            kind,
            payload,
            plain_frame: frame.freeze(),
            compressed: Default::default(),
            level,
            compressions: AtomicUsize::new(0),
        }
    }

    /// A prepared text message (level 1 compression when used).
    pub fn text(text: crate::Utf8Bytes) -> Self {
        Self::new(DataKind::Text, text.into_bytes(), 1)
    }

    /// A prepared binary message (level 1 compression when used).
    pub fn binary(data: Bytes) -> Self {
        Self::new(DataKind::Binary, data, 1)
    }

    /// The message kind.
    pub fn kind(&self) -> DataKind {
        self.kind
    }

    /// The uncompressed payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The uncompressed, unmasked frame.
    pub fn plain_frame(&self) -> &Bytes {
        &self.plain_frame
    }

    /// How many times the payload was compressed so far (once per window
    /// size in use, whatever the number of receivers).
    pub fn compressions(&self) -> usize {
        self.compressions.load(Ordering::Relaxed)
    }

    /// The frame compressed without context for a `window_bits` window
    /// (9 to 15), made on first use.
    pub fn compressed_frame(&self, window_bits: u8) -> &Bytes {
        let bits = window_bits.clamp(9, 15);
        self.compressed[usize::from(bits - 9)].get_or_init(|| {
            self.compressions.fetch_add(1, Ordering::Relaxed);
            let mut deflater = Deflater::new(bits, true, self.level);
            let mut body = BytesMut::with_capacity(self.payload.len() / 2 + 16);
            deflater.compress(&self.payload, &mut body, true);
            if body.len() >= self.payload.len() {
                // Incompressible: the plain frame is smaller.
                return self.plain_frame.clone();
            }
            let mut frame = BytesMut::with_capacity(body.len() + 10);
            encode_frame(opcode(self.kind), true, true, None, &body, &mut frame);
            frame.freeze()
        })
    }
}

fn opcode(kind: DataKind) -> OpCode {
    match kind {
        DataKind::Text => OpCode::Text,
        DataKind::Binary => OpCode::Binary,
    }
}
