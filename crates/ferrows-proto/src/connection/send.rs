//! The sending half: messages and control frames -> bytes.

use bytes::{Bytes, BytesMut};

use super::output::Output;
use super::output::ZERO_COPY_MIN;
use super::{DataKind, Reply, Sender};
use crate::config::Config;
use crate::config::Role;
use crate::deflate::Deflater;
use crate::error::UsageError;
use crate::frame::{CloseCode, FrameHeader, OpCode, apply_mask};
use crate::utf8::Utf8Bytes;

/// Appends one complete frame to `out`, masking the payload when `mask` is
/// given. Useful to prepare a frame once and send it to many connections.
pub fn encode_frame(opcode: OpCode, fin: bool, rsv1: bool, mask: Option<[u8; 4]>, payload: &[u8], out: &mut BytesMut) {
    let header = FrameHeader { fin, rsv1, rsv2: false, rsv3: false, opcode, mask, payload_len: payload.len() as u64 };
    out.extend_from_slice(header.encode().as_ref());
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

impl Sender {
    pub(super) fn new(role: Role, config: Config, deflater: Option<Deflater>) -> Self {
        Self { role, config, deflater, output: Output::default(), sending_fragmented: None, close_sent: false }
    }

    /// The limits and settings it was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sends what the receiving half owes the peer: a Pong for a Ping, the
    /// echo of a Close, or the Close that reports a protocol error. Nothing
    /// is sent once our Close is out.
    pub fn apply_reply(&mut self, reply: Reply) {
        if self.close_sent {
            return;
        }
        match reply {
            Reply::Pong(payload) => self.write_control(OpCode::Pong, &payload),
            Reply::Close { code, reason } => self.write_close(code, &reason),
        }
    }

    /// Whether permessage-deflate is in force.
    pub fn is_compressed(&self) -> bool {
        self.deflater.is_some()
    }

    /// Whether nothing is waiting or in progress: no output, no fragmented
    /// message half sent, no Close sent. An idle sender without
    /// compression is the same as a new one.
    pub fn is_idle(&self) -> bool {
        self.output.len() == 0 && self.sending_fragmented.is_none() && !self.close_sent
    }

    /// Whether we have sent a Close frame.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// The waiting output as a list of slices, for one vectored write.
    pub fn output_chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.output.chunks()
    }

    /// Marks `n` bytes of output as written.
    ///
    /// # Panics
    /// If `n` is more than [`pending_output`](Self::pending_output).
    pub fn advance_output(&mut self, n: usize) {
        self.output.advance(n);
    }

    /// Takes the next chunk of output.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.output.take()
    }

    /// Gives up the output buffer's memory while nothing is queued, and
    /// returns the buffer (empty) so a driver can recycle it; an empty
    /// buffer without capacity when there was none or output is pending.
    pub fn release_buffers(&mut self) -> BytesMut {
        self.output.release()
    }

    /// Whether the sender holds no output buffer, so that
    /// [`provide_output_buffer`](Self::provide_output_buffer) would be used.
    pub fn wants_output_buffer(&self) -> bool {
        self.output.wants_buffer()
    }

    /// Hands the sender an empty buffer (a recycled one) to encode frames
    /// into, when it holds none; otherwise the buffer is dropped.
    pub fn provide_output_buffer(&mut self, buffer: BytesMut) {
        self.output.provide(buffer);
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: Utf8Bytes) -> Result<(), UsageError> {
        self.send_message(DataKind::Text, text.into_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: Bytes) -> Result<(), UsageError> {
        self.send_message(DataKind::Binary, data)
    }

    /// Queues a message, compressed when permessage-deflate is in force and
    /// the message reaches the configured threshold, split into frames of at
    /// most `max_send_frame_size` bytes. For a server, large payloads are
    /// queued without a copy.
    pub fn send_message(&mut self, kind: DataKind, payload: Bytes) -> Result<(), UsageError> {
        if self.close_sent {
            return Err(UsageError::AlreadyClosing);
        }
        if self.sending_fragmented.is_some() {
            return Err(UsageError::FragmentOrder);
        }
        let opcode = match kind {
            DataKind::Text => OpCode::Text,
            DataKind::Binary => OpCode::Binary,
        };
        let (payload, rsv1) = match self.compressor_for(payload.len()) {
            Some(deflater) => {
                let mut compressed = BytesMut::with_capacity(payload.len() / 2 + 16);
                deflater.compress(&payload, &mut compressed, true);
                // Incompressible data grows when compressed: send it as it
                // is (allowed per message) and restart our compressor. The
                // peer's window then holds data our later messages never
                // refer to, which is harmless: back-references only reach
                // what the restarted compressor itself produced.
                if compressed.len() >= payload.len() {
                    deflater.reset();
                    (payload, false)
                } else {
                    (compressed.freeze(), true)
                }
            }
            None => (payload, false),
        };
        let max = self.config.max_send_frame_size.max(1);
        if payload.len() <= max {
            self.write_data_frame(opcode, true, rsv1, payload);
            return Ok(());
        }
        let mut rest = payload;
        let mut first = true;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(max));
            let op = if first { opcode } else { OpCode::Continuation };
            self.write_data_frame(op, rest.is_empty(), rsv1 && first, piece);
            first = false;
        }
        Ok(())
    }

    /// Queues one fragment of a message sent piece by piece: the first
    /// call picks the kind, later calls continue it, `fin` ends it. The
    /// message is compressed if permessage-deflate is in force (the
    /// threshold does not apply: the length is not known in advance).
    pub fn send_fragment(&mut self, kind: DataKind, payload: &[u8], fin: bool) -> Result<(), UsageError> {
        if self.close_sent {
            return Err(UsageError::AlreadyClosing);
        }
        let (opcode, compressed) = match self.sending_fragmented {
            Some(compressed) => (OpCode::Continuation, compressed),
            None => {
                let compressed = self.deflater.as_ref().is_some_and(|d| d.can_compress());
                let opcode = if kind == DataKind::Text { OpCode::Text } else { OpCode::Binary };
                (opcode, compressed)
            }
        };
        self.sending_fragmented = if fin { None } else { Some(compressed) };
        let payload = if compressed {
            let mut out = BytesMut::with_capacity(payload.len() / 2 + 16);
            self.deflater.as_mut().expect("checked above").compress(payload, &mut out, fin);
            out.freeze()
        } else {
            Bytes::copy_from_slice(payload)
        };
        let rsv1 = compressed && opcode != OpCode::Continuation;
        self.write_data_frame(opcode, fin, rsv1, payload);
        Ok(())
    }

    /// Queues a message prepared once for many connections. A server
    /// queues the shared frame without copying it: the compressed one when
    /// this connection compresses without context takeover (and the
    /// message reaches the threshold), the plain one otherwise. A client
    /// must mask, so it frames the payload itself.
    pub fn send_prepared(&mut self, message: &super::PreparedMessage) -> Result<(), UsageError> {
        if self.role == Role::Client && !self.close_sent && self.sending_fragmented.is_none() {
            return self.send_message(message.kind(), message.payload().clone());
        }
        let frame = self.prepared_frame(message)?;
        if frame.len() >= ZERO_COPY_MIN {
            self.output.push(frame.clone());
        } else {
            self.output.extend(frame);
        }
        Ok(())
    }

    /// The shared frame [`send_prepared`](Self::send_prepared) sends for
    /// `message` (compressed when this sender compresses without context
    /// takeover and the message is over the threshold, plain otherwise),
    /// for a caller that writes it itself. A client masks every frame of
    /// its own, so it has none to share: `MaskedRole`.
    pub fn prepared_frame<'m>(&self, message: &'m super::PreparedMessage) -> Result<&'m Bytes, UsageError> {
        if self.close_sent {
            return Err(UsageError::AlreadyClosing);
        }
        if self.sending_fragmented.is_some() {
            return Err(UsageError::FragmentOrder);
        }
        if self.role == Role::Client {
            return Err(UsageError::MaskedRole);
        }
        let threshold = self.config.deflate_threshold;
        let window = self.deflater.as_ref().and_then(|d| d.prepared_window(message.payload().len(), threshold));
        Ok(match window {
            Some(bits) => message.compressed_frame(bits),
            None => message.plain_frame(),
        })
    }

    /// Queues bytes of frames that this sender made (through
    /// [`prepared_frame`](Self::prepared_frame)) and its caller could not
    /// finish writing, ahead of anything queued later.
    pub fn queue_unwritten(&mut self, bytes: Bytes) {
        if bytes.len() >= ZERO_COPY_MIN {
            self.output.push(bytes);
        } else {
            self.output.extend(&bytes);
        }
    }

    /// Queues a Ping with up to 125 bytes of payload.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.check_control(payload)?;
        self.write_control(OpCode::Ping, payload);
        Ok(())
    }

    /// Queues an unsolicited Pong (a heartbeat that expects no answer).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.check_control(payload)?;
        self.write_control(OpCode::Pong, payload);
        Ok(())
    }

    /// Starts the closing handshake: queues a Close frame with `code` (or
    /// none) and `reason` (at most 123 bytes). Data still arrives until the
    /// peer's Close.
    pub fn send_close(&mut self, code: Option<CloseCode>, reason: &str) -> Result<(), UsageError> {
        if self.close_sent {
            return Err(UsageError::AlreadyClosing);
        }
        match code {
            Some(code) if !code.is_allowed_on_wire() => return Err(UsageError::InvalidCloseCode(code.0)),
            None if !reason.is_empty() => return Err(UsageError::InvalidCloseCode(CloseCode::NO_STATUS.0)),
            _ => {}
        }
        if reason.len() > 123 {
            return Err(UsageError::ControlPayloadTooLarge);
        }
        self.write_close(code, reason);
        Ok(())
    }

    fn check_control(&self, payload: &[u8]) -> Result<(), UsageError> {
        if self.close_sent {
            return Err(UsageError::AlreadyClosing);
        }
        if payload.len() > 125 {
            return Err(UsageError::ControlPayloadTooLarge);
        }
        Ok(())
    }

    fn compressor_for(&mut self, len: usize) -> Option<&mut crate::deflate::Deflater> {
        let threshold = self.config.deflate_threshold;
        self.deflater.as_mut().filter(|d| d.can_compress() && len >= threshold)
    }

    fn write_close(&mut self, code: Option<CloseCode>, reason: &str) {
        let mut payload = [0u8; 125];
        let len = match code {
            Some(code) => {
                payload[..2].copy_from_slice(&code.0.to_be_bytes());
                payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
            None => 0,
        };
        self.write_control(OpCode::Close, &payload[..len]);
        self.close_sent = true;
    }

    fn write_control(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = self.next_mask();
        self.output.write_with(|out| encode_frame(opcode, true, false, mask, payload, out));
    }

    fn write_data_frame(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Bytes) {
        let mask = self.next_mask();
        if mask.is_none() && payload.len() >= ZERO_COPY_MIN {
            let header =
                FrameHeader { fin, rsv1, rsv2: false, rsv3: false, opcode, mask, payload_len: payload.len() as u64 };
            self.output.extend(header.encode().as_ref());
            self.output.push(payload);
        } else {
            self.output.write_with(|out| encode_frame(opcode, fin, rsv1, mask, &payload, out));
        }
    }

    fn next_mask(&self) -> Option<[u8; 4]> {
        // Section 5.3: the key must be unpredictable, from a strong source.
        (self.role == Role::Client).then(rand::random::<[u8; 4]>)
    }
}
