//! `WebSocket<S>`: the protocol core driven over an async byte stream.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use ferrows_proto::config::Negotiated;
use ferrows_proto::{CloseCode, Connection, Role};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::timers::{Due, Timers};

/// Most slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

/// A WebSocket over any async byte stream (TCP, TLS, a test duplex).
///
/// Reading drives the connection: received Pings are answered and Close
/// frames echoed while you read. Sending queues bytes in a bounded buffer
/// (see [`WebSocketConfig::max_write_buffer`]) that is written with
/// vectored writes; [`send`](Self::send) flushes, [`feed`](Self::feed)
/// only queues so a burst of messages goes out in few system calls.
///
/// It is also a [`Stream`] of messages and a [`Sink`] of messages.
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    read_buf: BytesMut,
    max_write_buffer: usize,
    read_chunk: usize,
    subprotocol: Option<String>,
    /// An error to report once the Close frame it caused is flushed.
    pending_error: Option<Error>,
    /// `read_buf` may hold frames not parsed yet.
    parse_more: bool,
    eof: bool,
    transport_closed: bool,
    finished: bool,
    timers: Timers,
}

impl<S> WebSocket<S> {
    /// Wraps a stream on which the opening handshake is already done.
    /// `leftover` holds bytes read past the handshake head.
    pub fn from_raw(
        io: S,
        role: Role,
        config: &WebSocketConfig,
        negotiated: &Negotiated,
        subprotocol: Option<String>,
        leftover: BytesMut,
    ) -> Self {
        Self {
            io,
            conn: Connection::new(role, config.protocol.clone(), negotiated),
            parse_more: !leftover.is_empty(),
            read_buf: leftover,
            max_write_buffer: config.max_write_buffer,
            read_chunk: config.read_chunk.max(1024),
            subprotocol,
            pending_error: None,
            eof: false,
            transport_closed: false,
            finished: false,
            timers: Timers::new(config),
        }
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Whether permessage-deflate is in force.
    pub fn is_compressed(&self) -> bool {
        self.conn.is_compressed()
    }

    /// Bytes queued and not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.conn.pending_output()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The protocol core (for inspection).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// The next message, `None` once the connection is closed (after the
    /// closing handshake, or after an error was returned).
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Queues a message and writes everything queued.
    pub async fn send(&mut self, message: Message) -> Result<()> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues a message without flushing; waits only while the outgoing
    /// buffer is over its bound. Reading (or [`flush`](Self::flush)) writes
    /// the queue.
    pub async fn feed(&mut self, message: Message) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_ready_to_send(cx)).await?;
        self.queue(message)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_write_out(cx)).await.map_err(Error::Io)
    }

    /// Starts the closing handshake and reads until it completes (messages
    /// that arrive meanwhile are discarded).
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if !self.conn.close_sent() {
            self.conn.send_close(Some(code), reason)?;
        }
        self.flush().await?;
        while let Some(item) = self.recv().await {
            item?;
        }
        Ok(())
    }

    fn queue(&mut self, message: Message) -> Result<()> {
        if self.finished || self.conn.error().is_some() {
            return Err(Error::Closed);
        }
        if message.is_data() {
            self.timers.on_data();
        }
        match message {
            Message::Text(text) => self.conn.send_text(text)?,
            Message::Binary(data) => self.conn.send_binary(data)?,
            Message::Ping(data) => self.conn.send_ping(&data)?,
            Message::Pong(data) => self.conn.send_pong(&data)?,
            Message::Close(frame) => match frame {
                Some(frame) => self.conn.send_close(Some(frame.code), &frame.reason)?,
                None => self.conn.send_close(None, "")?,
            },
        }
        Ok(())
    }

    fn poll_ready_to_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while self.conn.pending_output() >= self.max_write_buffer {
            ready!(self.poll_write_some(cx)).map_err(Error::Io)?;
        }
        Poll::Ready(Ok(()))
    }

    /// One vectored write of the queued output.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(self.conn.output_chunks()) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.conn.advance_output(written);
        Poll::Ready(Ok(()))
    }

    /// Writes all queued output and flushes the transport.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.pending_output() > 0 {
            ready!(self.poll_write_some(cx))?;
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            if let Some(event) = self.conn.poll_event() {
                let message = Message::from(event);
                if message.is_data() {
                    self.timers.on_data();
                }
                return Poll::Ready(Some(Ok(message)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            // Parse one more message from what was read: the application
            // answers each message before the next frame is looked at.
            if self.parse_more {
                match self.conn.receive_next(&mut self.read_buf) {
                    Ok(true) => continue,
                    Ok(false) => self.parse_more = false,
                    Err(e) => {
                        self.parse_more = false;
                        self.pending_error = Some(Error::Protocol(e));
                    }
                }
            }
            // Write what the core queued (Pongs, Close echoes, sent data).
            let flushed = match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(e)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(self.pending_error.take().unwrap_or(Error::Io(e)))));
                }
                Poll::Pending => false,
            };
            // Do not read (and answer) more while the peer does not read.
            if !flushed && self.conn.pending_output() >= self.max_write_buffer {
                match self.poll_timers(cx) {
                    Some(poll) => return poll,
                    None => continue,
                }
            }
            if self.conn.should_close_transport() || self.eof || self.pending_error.is_some() {
                if !flushed {
                    match self.poll_timers(cx) {
                        Some(poll) => return poll,
                        None => continue,
                    }
                }
                if !self.transport_closed && !self.eof {
                    // A failed shutdown changes nothing for us: the
                    // connection is over either way.
                    let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    self.transport_closed = true;
                }
                self.finished = true;
                return Poll::Ready(self.pending_error.take().map(Err));
            }
            // Read more.
            let want = self.conn.read_hint(self.read_buf.len()).clamp(1, self.read_chunk);
            self.read_buf.reserve(want.max(self.read_chunk.min(4096)));
            let read = match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => {
                    self.finished = true;
                    // After a completed closing handshake, a reset instead
                    // of a FIN loses nothing.
                    if self.conn.close_received() && self.conn.close_sent() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
                Poll::Pending => {
                    if self.read_buf.is_empty() && flushed {
                        // Idle: hold no buffers while waiting.
                        self.read_buf = BytesMut::new();
                        self.conn.release_buffers();
                    }
                    match self.poll_timers(cx) {
                        Some(poll) => return poll,
                        None => continue,
                    }
                }
            };
            self.timers.on_receive();
            if read == 0 {
                self.eof = true;
                if let Err(e) = self.conn.receive_eof() {
                    self.pending_error = Some(Error::Protocol(e));
                }
                continue;
            }
            self.parse_more = true;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Called where the receive loop would wait: acts on a passed deadline
    /// (`None`: go round the loop again) or returns `Pending` with the
    /// timer armed.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Option<Poll<Option<Result<Message>>>> {
        if self.conn.close_sent() || self.conn.close_received() {
            self.timers.on_close_started();
        }
        let due = match self.timers.poll(cx) {
            Poll::Ready(due) => due,
            Poll::Pending => return Some(Poll::Pending),
        };
        match due {
            Due::Ping => {
                if self.conn.send_ping(&[]).is_ok() {
                    self.timers.on_ping_sent();
                }
                None
            }
            Due::Idle => {
                let _ = self.conn.send_close(Some(CloseCode::NORMAL), "idle timeout");
                None
            }
            Due::PongMissing => Some(self.give_up(cx, "no answer to keepalive ping")),
            Due::CloseTimeout if self.conn.close_sent() && self.conn.close_received() => {
                // Handshake done; the peer just did not close the transport.
                self.finished = true;
                Some(Poll::Ready(None))
            }
            Due::CloseTimeout => Some(self.give_up(cx, "closing handshake")),
        }
    }

    /// Ends the connection without waiting for the peer any longer.
    fn give_up(&mut self, cx: &mut Context<'_>, what: &'static str) -> Poll<Option<Result<Message>>> {
        self.finished = true;
        if !self.transport_closed {
            self.transport_closed = true;
            // Best effort: the peer is unresponsive, do not wait for it.
            let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        }
        Poll::Ready(Some(Err(Error::Timeout(what))))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_to_send(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().queue(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_write_out(cx).map_err(Error::Io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if !this.conn.close_sent() && this.conn.error().is_none() {
            this.conn.send_close(Some(CloseCode::NORMAL), "")?;
        }
        this.poll_write_out(cx).map_err(Error::Io)
    }
}

impl<S: AsyncWrite + Unpin> WebSocket<S> {
    /// Shuts the transport down without a closing handshake (for drivers
    /// that give up on a peer).
    pub async fn abort(mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}
