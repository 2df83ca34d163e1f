//! `WebSocket<S>`: the protocol core driven over an async byte stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use ferrows_proto::config::Negotiated;
use ferrows_proto::{CloseCode, Connection, Role};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::read_side::{ReadSide, Transport};
use crate::write_side::WriteSide;

/// A WebSocket over any async byte stream (TCP, TLS, a test duplex).
///
/// Reading drives the connection: received Pings are answered and Close
/// frames echoed while you read, keepalive and timeouts run (see
/// [`WebSocketConfig`]). Sending queues bytes in a bounded buffer (see
/// [`WebSocketConfig::max_write_buffer`]) that is written with vectored
/// writes; [`send`](Self::send) flushes, [`feed`](Self::feed) only queues
/// so a burst of messages goes out in few system calls.
///
/// It is also a [`Stream`] of messages and a [`Sink`] of messages, and
/// [`split`](Self::split)s into halves for two tasks.
#[derive(Debug)]
pub struct WebSocket<S> {
    pub(crate) read: ReadSide,
    pub(crate) write: WriteSide<S>,
    pub(crate) subprotocol: Option<Box<str>>,
}

/// The whole stream: reads and writes go to the same `S`.
struct Whole<'a, S>(&'a mut WriteSide<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for Whole<'_, S> {
    type W = S;

    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(self.0.io_mut()), cx, buf)
    }

    fn with_writer<T>(&mut self, f: impl FnOnce(&mut WriteSide<S>) -> T) -> T {
        f(self.0)
    }
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
        let (rx, tx) = Connection::new(role, config.protocol.clone(), negotiated).split();
        let subprotocol = subprotocol.map(String::into_boxed_str);
        Self { read: ReadSide::new(rx, role, config, leftover), write: WriteSide::new(io, tx, config), subprotocol }
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Whether permessage-deflate is in force.
    pub fn is_compressed(&self) -> bool {
        self.write.is_compressed()
    }

    /// Bytes queued and not yet written to the transport.
    pub fn buffered_amount(&self) -> usize {
        self.write.pending_output()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        self.write.io()
    }

    /// The underlying stream, mutably (careful: bytes written or read
    /// behind the WebSocket's back break the protocol).
    pub fn get_mut(&mut self) -> &mut S {
        self.write.io_mut()
    }

    /// Whether the peer's Close frame has arrived.
    pub fn close_received(&self) -> bool {
        self.read.rx.close_received()
    }

    /// Whether we have sent a Close frame.
    pub fn close_sent(&self) -> bool {
        self.write.close_sent()
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
        std::future::poll_fn(|cx| self.write.poll_ready(cx)).await?;
        self.write.queue(message)
    }

    /// Queues a message framed once for many connections (see
    /// [`PreparedMessage`](ferrows_proto::PreparedMessage)) without flushing.
    pub async fn feed_prepared(&mut self, message: &ferrows_proto::PreparedMessage) -> Result<()> {
        std::future::poll_fn(|cx| self.write.poll_ready(cx)).await?;
        self.write.queue_prepared(message)
    }

    /// Queues a prepared message and writes everything queued.
    pub async fn send_prepared(&mut self, message: &ferrows_proto::PreparedMessage) -> Result<()> {
        self.feed_prepared(message).await?;
        self.flush().await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.write.poll_write_out(cx)).await.map_err(Error::Io)
    }

    /// Starts the closing handshake and reads until it completes or the
    /// close timeout passes (messages that arrive meanwhile are dropped).
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.write.start_close(code, reason)?;
        self.flush().await?;
        while let Some(item) = self.recv().await {
            item?;
        }
        Ok(())
    }

    /// [`recv`](Self::recv) as a poll, for drivers that wait on several
    /// things in one hand-written future (the task then stores no
    /// `recv` future of its own).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        self.read.poll_recv(cx, &mut Whole(&mut self.write))
    }

    /// Ready once the outgoing buffer is under its bound, writing to make
    /// room: [`queue_prepared`](Self::queue_prepared) may then be called
    /// (the waiting part of [`feed_prepared`](Self::feed_prepared)).
    pub fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.write.poll_ready(cx)
    }

    /// Queues a prepared message without waiting or writing; bound the
    /// buffer with [`poll_write_ready`](Self::poll_write_ready) first.
    pub fn queue_prepared(&mut self, message: &ferrows_proto::PreparedMessage) -> Result<()> {
        self.write.queue_prepared(message)
    }

    /// [`flush`](Self::flush) as a poll: writes everything queued.
    pub fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.write.poll_write_out(cx).map_err(Error::Io)
    }

    /// Shuts the transport down without a closing handshake (for drivers
    /// that give up on a peer).
    pub async fn abort(mut self) -> io::Result<()> {
        self.write.io_mut().shutdown().await
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
        self.get_mut().write.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().write.queue(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().write.poll_write_out(cx).map_err(Error::Io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().write.poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_websocket_stays_small() {
        // Every connection of a server holds one; the idle memory target
        // (under 2 KiB per connection, task included) depends on it.
        let size = std::mem::size_of::<super::WebSocket<tokio::net::TcpStream>>();
        assert!(size <= 640, "WebSocket<TcpStream> grew to {size} bytes");
    }
}
