//! The connection state machine: bytes in, events out; commands in, bytes
//! out. See the crate documentation for the driving contract.

mod output;
mod receive;
mod send;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::config::{Config, Negotiated, Role};
use crate::deflate::{Deflater, Inflater};
use crate::error::ProtocolError;
use crate::frame::{CloseFrame, FrameHeader};
use crate::utf8::{Utf8Bytes, Utf8Validator};
use output::Output;

pub use send::encode_frame;

/// Something the peer sent, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text message.
    Text(Utf8Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A Ping (already answered with a Pong).
    Ping(Bytes),
    /// A Pong.
    Pong(Bytes),
    /// The peer's Close frame (already answered if we had not closed).
    Close(Option<CloseFrame>),
}

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    header: FrameHeader,
    /// Payload bytes already unmasked and checked.
    done: u64,
    /// The payload stays in the read buffer until complete (a whole
    /// uncompressed message in one frame: zero copies).
    in_place: bool,
}

#[derive(Debug)]
struct MessageInProgress {
    kind: DataKind,
    compressed: bool,
    /// Reassembled (or inflated) payload, when not in place.
    buf: BytesMut,
    utf8: Utf8Validator,
    /// Bytes received so far for uncompressed messages (wire size).
    size: usize,
}

/// One WebSocket connection after the handshake, in either role.
///
/// The core does no I/O: feed it what arrives with [`receive`], take what
/// to send with [`output_chunks`]/[`advance_output`] (or [`take_output`]),
/// and read what happened with [`poll_event`].
///
/// [`receive`]: Connection::receive
/// [`output_chunks`]: Connection::output_chunks
/// [`advance_output`]: Connection::advance_output
/// [`take_output`]: Connection::take_output
/// [`poll_event`]: Connection::poll_event
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    events: VecDeque<Event>,
    output: Output,
    /// A fragmented message we are sending: whether it is compressed.
    sending_fragmented: Option<bool>,
    close_sent: bool,
    close_received: bool,
    error: Option<ProtocolError>,
}

impl Connection {
    /// A connection in `role` with the limits of `config` and the
    /// extensions agreed in the handshake.
    pub fn new(role: Role, config: Config, negotiated: &Negotiated) -> Self {
        let (deflater, inflater) = match negotiated.deflate {
            None => (None, None),
            Some(d) => {
                let (send_bits, send_reset, recv_bits, recv_reset) = match role {
                    Role::Server => (
                        d.server_max_window_bits,
                        d.server_no_context_takeover,
                        d.client_max_window_bits,
                        d.client_no_context_takeover,
                    ),
                    Role::Client => (
                        d.client_max_window_bits,
                        d.client_no_context_takeover,
                        d.server_max_window_bits,
                        d.server_no_context_takeover,
                    ),
                };
                (
                    Some(Deflater::new(send_bits, send_reset, config.deflate_level)),
                    Some(Inflater::new(recv_bits, recv_reset)),
                )
            }
        };
        Self {
            role,
            config,
            deflater,
            inflater,
            frame: None,
            message: None,
            events: VecDeque::new(),
            output: Output::default(),
            sending_fragmented: None,
            close_sent: false,
            close_received: false,
            error: None,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether permessage-deflate is in force.
    pub fn is_compressed(&self) -> bool {
        self.deflater.is_some()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
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

    /// Takes the next chunk of output (for drivers that write chunk by
    /// chunk, and for tests).
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.output.take()
    }

    /// Frees buffers kept for reuse while no output is waiting; drivers call
    /// it when the connection goes idle so it holds as little as possible.
    pub fn release_buffers(&mut self) {
        self.output.shrink();
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// Whether we have sent a Close frame.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Whether the peer's Close frame has arrived.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// The protocol error that failed the connection, if one did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
    }

    /// Whether the closing handshake is complete or the connection failed:
    /// nothing more will be received or sent, beyond flushing the output.
    pub fn is_closed(&self) -> bool {
        (self.close_sent && self.close_received) || self.error.is_some()
    }

    /// Whether the driver should close the transport once the output is
    /// flushed. The server closes the TCP connection first (RFC 6455
    /// section 7.1.1) so the client does not hold the TIME_WAIT state; a
    /// client waits for the server to do so (with a timeout of the
    /// driver's choice), except after a failure.
    pub fn should_close_transport(&self) -> bool {
        match self.role {
            Role::Server => self.is_closed(),
            Role::Client => self.error.is_some(),
        }
    }

    /// The single place where a protocol error fails the connection: it
    /// records the error, queues a Close frame with the error's close code
    /// (unless one was sent already or the transport is gone) and stops all
    /// further reading.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        if self.error.is_none() {
            self.error = Some(error.clone());
            if !self.close_sent && error != ProtocolError::AbnormalClosure {
                let code = error.close_code();
                let mut reason = error.to_string();
                reason.truncate(123);
                self.write_close(Some(code), &reason);
            }
            self.frame = None;
            self.message = None;
        }
        error
    }
}
