//! The receiving half: bytes -> frames -> messages and control events.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use super::{DataKind, Event, FrameInProgress, MessageInProgress, Receiver, Reply};
use crate::config::{Config, Role};
use crate::deflate::Inflater;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, apply_mask, parse_close_payload};
use crate::utf8::{Utf8Bytes, Utf8Validator};

impl Receiver {
    pub(super) fn new(role: Role, config: Config, inflater: Option<Inflater>) -> Self {
        Self {
            role,
            config,
            inflater,
            frame: None,
            message: None,
            events: VecDeque::new(),
            replies: VecDeque::new(),
            close_received: false,
            error: None,
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next frame the peer is owed (a Pong, a Close), for the sending
    /// half: give it to [`Sender::apply_reply`](super::Sender::apply_reply).
    pub fn take_reply(&mut self) -> Option<Reply> {
        self.replies.pop_front()
    }

    /// Whether the peer's Close frame has arrived.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// The protocol error that failed the connection, if one did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
    }

    /// Whether nothing is in progress or waiting: no partial frame or
    /// message, no event or reply not taken, no Close or error. An idle
    /// receiver without compression is the same as a new one, so a driver
    /// may drop it and make a new one later (see `ferrows`' parked
    /// WebSockets).
    pub fn is_idle(&self) -> bool {
        self.frame.is_none()
            && self.message.is_none()
            && self.events.is_empty()
            && self.replies.is_empty()
            && !self.close_received
            && self.error.is_none()
    }

    /// Frees the event queue's memory while it is empty.
    pub fn release_buffers(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.replies.is_empty() {
            self.replies = VecDeque::new();
        }
    }

    /// The single place where a protocol error fails the connection: it
    /// records the error, owes the peer a Close frame with the error's
    /// close code (unless the transport is gone) and stops all further
    /// reading.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        if self.error.is_none() {
            self.error = Some(error.clone());
            if error != ProtocolError::AbnormalClosure {
                let mut reason = error.to_string();
                reason.truncate(123);
                self.replies.push_back(Reply::Close { code: Some(error.close_code()), reason });
            }
            self.frame = None;
            self.message = None;
        }
        error
    }

    /// Processes all the bytes in `buf`, consuming what it can.
    ///
    /// Complete frames are removed from `buf`; a partial frame is either
    /// left in `buf` (processed in place as it grows, so a single-frame
    /// message becomes an event without a copy) or consumed into the
    /// message being assembled. Call again when more bytes arrive.
    ///
    /// On a protocol error the connection fails: a Close frame with the
    /// matching code is queued, the error is returned once, and later input
    /// is discarded. After the peer's Close, later input is discarded too.
    ///
    /// Events produced before an error stay queued. A driver that wants the
    /// application's answers to go out *before* the reaction to a later bad
    /// frame uses [`receive_next`](Self::receive_next) instead.
    pub fn receive(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        while self.receive_next(buf)? {}
        Ok(())
    }

    /// Like [`receive`](Self::receive), but stops as soon as one event was
    /// queued: returns `Ok(true)` then (call again after handling it), and
    /// `Ok(false)` when `buf` holds no complete frame any more.
    ///
    /// This keeps a strict order: the application handles (and answers)
    /// each message before the next frame is even parsed, as a peer that
    /// pipelines a valid message and then an invalid frame expects.
    pub fn receive_next(&mut self, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        let events_before = self.events.len();
        loop {
            if self.error.is_some() || self.close_received {
                buf.clear();
                return Ok(self.events.len() > events_before);
            }
            match self.receive_step(buf) {
                Ok(true) if self.events.len() == events_before => continue,
                Ok(progress) => return Ok(progress || self.events.len() > events_before),
                Err(error) => return Err(self.fail(error)),
            }
        }
    }

    /// The transport reached end of file. Unless the closing handshake
    /// finished (or the connection already failed), this is an abnormal
    /// closure (1006).
    pub fn receive_eof(&mut self) -> Result<(), ProtocolError> {
        if self.close_received || self.error.is_some() {
            return Ok(());
        }
        Err(self.fail(ProtocolError::AbnormalClosure))
    }

    /// How many more bytes the frame in progress needs before the next
    /// step can be taken (at least 1): drivers can size their reads.
    pub fn read_hint(&self, buffered: usize) -> usize {
        match &self.frame {
            Some(f) if f.in_place || f.header.opcode.is_control() => {
                (f.header.payload_len as usize).saturating_sub(buffered).max(1)
            }
            Some(f) => (f.header.payload_len - f.done) as usize,
            None => 2usize.saturating_sub(buffered).max(1),
        }
    }

    /// One step: a header, or some payload. `Ok(true)` to go on.
    fn receive_step(&mut self, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        let frame = match self.frame {
            Some(frame) => frame,
            None => {
                let Some(parsed) = FrameHeader::parse(buf)? else { return Ok(false) };
                let frame = self.start_frame(parsed.header)?;
                buf.advance(parsed.len);
                self.frame = Some(frame);
                frame
            }
        };
        if frame.header.opcode.is_control() {
            self.control_frame(frame, buf)
        } else if frame.in_place {
            self.in_place_frame(frame, buf)
        } else {
            self.streamed_frame(frame, buf)
        }
    }

    /// Checks what depends on the connection (RSV bits, masking, limits,
    /// fragmentation order) before any payload is buffered.
    fn start_frame(&mut self, header: FrameHeader) -> Result<FrameInProgress, ProtocolError> {
        let starts_message = matches!(header.opcode, OpCode::Text | OpCode::Binary);
        if header.rsv2 || header.rsv3 || (header.rsv1 && (self.inflater.is_none() || !starts_message)) {
            return Err(ProtocolError::ReservedBitSet);
        }
        let must_be_masked = self.role == Role::Server;
        if header.mask.is_some() != must_be_masked && !self.config.accept_unmasked_frames {
            return Err(ProtocolError::BadMasking);
        }
        // Compressed frames are inflated as they arrive, never buffered
        // whole; their output is bounded by the message limit. They may
        // still exceed the frame limit by a little, because compressing
        // incompressible data makes it larger: allow an eighth more.
        let compressed = header.rsv1
            || (header.opcode == OpCode::Continuation && self.message.as_ref().is_some_and(|m| m.compressed));
        let frame_limit = if compressed {
            self.config.max_frame_size.saturating_add(self.config.max_frame_size / 8)
        } else {
            self.config.max_frame_size
        };
        if header.payload_len > frame_limit as u64 {
            return Err(ProtocolError::FrameTooLarge { size: header.payload_len, limit: frame_limit });
        }
        let mut in_place = false;
        match header.opcode {
            OpCode::Continuation => {
                let message = self.message.as_mut().ok_or(ProtocolError::UnexpectedContinuation)?;
                if !message.compressed {
                    message.size = check_size(message.size, header.payload_len, self.config.max_message_size)?;
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                let compressed = header.rsv1;
                let size =
                    if compressed { 0 } else { check_size(0, header.payload_len, self.config.max_message_size)? };
                in_place = header.fin && !compressed;
                let kind = if header.opcode == OpCode::Text { DataKind::Text } else { DataKind::Binary };
                self.message = Some(MessageInProgress {
                    kind,
                    compressed,
                    buf: BytesMut::new(),
                    utf8: Utf8Validator::new(),
                    size,
                });
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        Ok(FrameInProgress { header, done: 0, in_place })
    }

    fn control_frame(&mut self, frame: FrameInProgress, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        let len = frame.header.payload_len as usize;
        if buf.len() < len {
            return Ok(false);
        }
        let mut payload = buf.split_to(len);
        if let Some(key) = frame.header.mask {
            apply_mask(&mut payload, key, 0);
        }
        self.frame = None;
        let payload = payload.freeze();
        match frame.header.opcode {
            OpCode::Ping => {
                self.replies.push_back(Reply::Pong(payload.clone()));
                self.events.push_back(Event::Ping(payload));
            }
            OpCode::Pong => self.events.push_back(Event::Pong(payload)),
            _ => {
                let close = parse_close_payload(&payload)?;
                self.close_received = true;
                // Echo the status code (section 5.5.1).
                self.replies.push_back(Reply::Close { code: close.as_ref().map(|c| c.code), reason: String::new() });
                self.message = None;
                self.events.push_back(Event::Close(close));
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A whole uncompressed message in one frame: unmask and validate what
    /// has arrived, leave it in `buf`, split it off when complete.
    fn in_place_frame(&mut self, mut frame: FrameInProgress, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        let len = frame.header.payload_len;
        let available = (buf.len() as u64).min(len);
        if available > frame.done {
            let fresh = &mut buf[frame.done as usize..available as usize];
            if let Some(key) = frame.header.mask {
                apply_mask(fresh, key, frame.done as usize);
            }
            let message = self.message.as_mut().expect("a data frame has a message");
            if message.kind == DataKind::Text {
                message.utf8.feed(fresh).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            frame.done = available;
        }
        if frame.done < len {
            self.frame = Some(frame);
            return Ok(false);
        }
        self.frame = None;
        let message = self.message.take().expect("a data frame has a message");
        self.deliver(message, buf.split_to(len as usize).freeze())?;
        Ok(true)
    }

    /// Ends a message: the last UTF-8 check for text, then the event.
    fn deliver(&mut self, mut message: MessageInProgress, payload: bytes::Bytes) -> Result<(), ProtocolError> {
        let event = match message.kind {
            DataKind::Text => {
                message.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Event::Text(Utf8Bytes::from_validated(payload))
            }
            DataKind::Binary => Event::Binary(payload),
        };
        self.events.push_back(event);
        Ok(())
    }

    /// A fragment or a compressed frame: move (and inflate) what has
    /// arrived into the message buffer.
    fn streamed_frame(&mut self, mut frame: FrameInProgress, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        let remaining = frame.header.payload_len - frame.done;
        let take = (buf.len() as u64).min(remaining) as usize;
        if take == 0 && remaining > 0 {
            return Ok(false);
        }
        let mut chunk = buf.split_to(take);
        if let Some(key) = frame.header.mask {
            apply_mask(&mut chunk, key, frame.done as usize);
        }
        frame.done += take as u64;
        let frame_complete = frame.done == frame.header.payload_len;
        let message_complete = frame_complete && frame.header.fin;
        let limit = self.config.max_message_size;
        let message = self.message.as_mut().expect("a data frame has a message");
        let start = message.buf.len();
        if message.compressed {
            let inflater = self.inflater.as_mut().expect("compressed messages need a negotiated inflater");
            inflater.inflate(&chunk, &mut message.buf, limit, message_complete)?;
        } else {
            message.buf.extend_from_slice(&chunk);
        }
        if message.kind == DataKind::Text {
            message.utf8.feed(&message.buf[start..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !frame_complete {
            self.frame = Some(frame);
            return Ok(false);
        }
        self.frame = None;
        if message_complete {
            let mut message = self.message.take().expect("checked above");
            let payload = message.buf.split().freeze();
            self.deliver(message, payload)?;
        }
        Ok(true)
    }
}

fn check_size(so_far: usize, more: u64, limit: usize) -> Result<usize, ProtocolError> {
    let total = (so_far as u64).saturating_add(more);
    if total > limit as u64 {
        return Err(ProtocolError::MessageTooLarge { limit });
    }
    Ok(total as usize)
}
