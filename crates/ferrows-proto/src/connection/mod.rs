//! The connection state machine: bytes in, events out; commands in, bytes
//! out. See the crate documentation for the driving contract.

mod output;
mod prepared;
mod receive;
mod send;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::config::{Config, Negotiated, Role};
use crate::deflate::{Deflater, Inflater};
use crate::error::{ProtocolError, UsageError};
use crate::frame::{CloseCode, CloseFrame, FrameHeader};
use crate::utf8::{Utf8Bytes, Utf8Validator};
use output::Output;

pub use prepared::PreparedMessage;
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

/// A frame the receiving half owes the peer; the sending half writes it
/// (see [`Sender::apply_reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer a Ping with this payload.
    Pong(Bytes),
    /// Send Close: the echo of the peer's Close, or the report of an error.
    Close {
        /// The status code (none for an empty Close).
        code: Option<CloseCode>,
        /// The reason.
        reason: String,
    },
}

/// The receiving half of a connection: bytes in, events out.
///
/// Obtained from [`Connection::split`] by drivers that read and write from
/// different tasks; it owes the peer frames ([`Receiver::take_reply`]) that
/// the [`Sender`] must write.
#[derive(Debug)]
pub struct Receiver {
    role: Role,
    config: Config,
    inflater: Option<Inflater>,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    events: VecDeque<Event>,
    replies: VecDeque<Reply>,
    close_received: bool,
    error: Option<ProtocolError>,
}

/// The sending half of a connection: commands in, bytes out.
#[derive(Debug)]
pub struct Sender {
    role: Role,
    config: Config,
    deflater: Option<Deflater>,
    output: Output,
    /// A fragmented message we are sending: whether it is compressed.
    sending_fragmented: Option<bool>,
    close_sent: bool,
}

/// One WebSocket connection after the handshake, in either role.
///
/// The core does no I/O: feed it what arrives with [`receive`], take what
/// to send with [`output_chunks`]/[`advance_output`] (or [`take_output`]),
/// and read what happened with [`poll_event`]. It is a [`Receiver`] and a
/// [`Sender`] joined: whatever the receiving side owes the peer (Pongs,
/// Close echoes, error Closes) is queued for sending at once.
///
/// [`receive`]: Connection::receive
/// [`output_chunks`]: Connection::output_chunks
/// [`advance_output`]: Connection::advance_output
/// [`take_output`]: Connection::take_output
/// [`poll_event`]: Connection::poll_event
#[derive(Debug)]
pub struct Connection {
    rx: Receiver,
    tx: Sender,
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
        Self { rx: Receiver::new(role, config.clone(), inflater), tx: Sender::new(role, config, deflater) }
    }

    /// What a pair of idle halves in `role` can be made again from with
    /// [`Connection::new`]: the agreed extensions, when neither half keeps
    /// anything between messages that a new pair would not have (no
    /// compression context taken over in either direction). `None` when
    /// one does, or a half is not idle: keep the halves then.
    pub fn renewal(rx: &Receiver, tx: &Sender) -> Option<Negotiated> {
        if !rx.is_idle() || !tx.is_idle() || rx.role != tx.role {
            return None;
        }
        let deflate = match (&rx.inflater, &tx.deflater) {
            (None, None) => None,
            (Some(inflater), Some(deflater))
                if inflater.is_context_free()
                    && deflater.is_context_free()
                    && !inflater.holds_context()
                    && !deflater.holds_context() =>
            {
                let (send_bits, receive_bits) = (deflater.window_bits(), inflater.window_bits());
                let (server_max_window_bits, client_max_window_bits) = match rx.role {
                    Role::Server => (send_bits, receive_bits),
                    Role::Client => (receive_bits, send_bits),
                };
                Some(crate::deflate::DeflateConfig {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    server_max_window_bits,
                    client_max_window_bits,
                })
            }
            _ => return None,
        };
        Some(Negotiated { deflate })
    }

    /// Splits into the receiving and the sending half, for drivers that
    /// read and write from different tasks.
    pub fn split(self) -> (Receiver, Sender) {
        (self.rx, self.tx)
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.tx.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.tx.config
    }

    /// Whether permessage-deflate is in force.
    pub fn is_compressed(&self) -> bool {
        self.tx.is_compressed()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.rx.poll_event()
    }

    /// Bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.tx.pending_output()
    }

    /// The waiting output as a list of slices, for one vectored write.
    pub fn output_chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.tx.output_chunks()
    }

    /// Marks `n` bytes of output as written.
    ///
    /// # Panics
    /// If `n` is more than [`pending_output`](Self::pending_output).
    pub fn advance_output(&mut self, n: usize) {
        self.tx.advance_output(n);
    }

    /// Takes the next chunk of output (for drivers that write chunk by
    /// chunk, and for tests).
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.tx.take_output()
    }

    /// Frees buffers kept for reuse while no output is waiting; drivers call
    /// it when the connection goes idle so it holds as little as possible.
    pub fn release_buffers(&mut self) {
        drop(self.tx.release_buffers());
        self.rx.release_buffers();
    }

    /// Whether we have sent a Close frame.
    pub fn close_sent(&self) -> bool {
        self.tx.close_sent()
    }

    /// Whether the peer's Close frame has arrived.
    pub fn close_received(&self) -> bool {
        self.rx.close_received()
    }

    /// The protocol error that failed the connection, if one did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.rx.error()
    }

    /// Whether the closing handshake is complete or the connection failed:
    /// nothing more will be received or sent, beyond flushing the output.
    pub fn is_closed(&self) -> bool {
        (self.close_sent() && self.close_received()) || self.error().is_some()
    }

    /// Whether the driver should close the transport once the output is
    /// flushed. The server closes the TCP connection first (RFC 6455
    /// section 7.1.1) so the client does not hold the TIME_WAIT state; a
    /// client waits for the server to do so (with a timeout of the
    /// driver's choice), except after a failure.
    pub fn should_close_transport(&self) -> bool {
        match self.role() {
            Role::Server => self.is_closed(),
            Role::Client => self.error().is_some(),
        }
    }

    /// See [`Receiver::receive`]; replies owed to the peer are queued.
    pub fn receive(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        let result = self.rx.receive(buf);
        self.forward_replies();
        result
    }

    /// See [`Receiver::receive_next`]; replies owed to the peer are queued.
    pub fn receive_next(&mut self, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        let result = self.rx.receive_next(buf);
        self.forward_replies();
        result
    }

    /// See [`Receiver::receive_eof`].
    pub fn receive_eof(&mut self) -> Result<(), ProtocolError> {
        self.rx.receive_eof()
    }

    /// See [`Receiver::read_hint`].
    pub fn read_hint(&self, buffered: usize) -> usize {
        self.rx.read_hint(buffered)
    }

    /// See [`Sender::send_text`].
    pub fn send_text(&mut self, text: Utf8Bytes) -> Result<(), UsageError> {
        self.tx.send_text(text)
    }

    /// See [`Sender::send_binary`].
    pub fn send_binary(&mut self, data: Bytes) -> Result<(), UsageError> {
        self.tx.send_binary(data)
    }

    /// See [`Sender::send_message`].
    pub fn send_message(&mut self, kind: DataKind, payload: Bytes) -> Result<(), UsageError> {
        self.tx.send_message(kind, payload)
    }

    /// See [`Sender::send_fragment`].
    pub fn send_fragment(&mut self, kind: DataKind, payload: &[u8], fin: bool) -> Result<(), UsageError> {
        self.tx.send_fragment(kind, payload, fin)
    }

    /// See [`Sender::send_prepared`].
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), UsageError> {
        self.tx.send_prepared(message)
    }

    /// See [`Sender::send_ping`].
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.tx.send_ping(payload)
    }

    /// See [`Sender::send_pong`].
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.tx.send_pong(payload)
    }

    /// See [`Sender::send_close`].
    pub fn send_close(&mut self, code: Option<CloseCode>, reason: &str) -> Result<(), UsageError> {
        self.tx.send_close(code, reason)
    }

    fn forward_replies(&mut self) {
        while let Some(reply) = self.rx.take_reply() {
            self.tx.apply_reply(reply);
        }
    }
}
