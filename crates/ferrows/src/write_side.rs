//! The writing side of a driver: the sending half of the core and the
//! stream it writes to, with the bounded, vectored output queue.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ferrows_proto::{CloseCode, Reply, Sender, UsageError};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use crate::buffer_pool;
use crate::error::{Error, Result};
use crate::message::Message;

/// Most slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

#[derive(Debug)]
pub(crate) struct WriteSide<W> {
    io: W,
    tx: Sender,
    max_write_buffer: usize,
    /// Set once the connection is over (error, timeout, closed transport).
    finished: bool,
    transport_closed: bool,
    /// When a data message was last queued, if the idle timeout needs it.
    last_data_sent: Option<Instant>,
}

impl<W> WriteSide<W> {
    pub(crate) fn new(io: W, tx: Sender, config: &crate::WebSocketConfig) -> Self {
        Self::resume(io, tx, config, config.idle_timeout.map(|_| Instant::now()))
    }

    /// A writing side that goes on from a parked connection: its sender
    /// and when it last sent data (see [`into_parked`](Self::into_parked)).
    pub(crate) fn resume(io: W, tx: Sender, config: &crate::WebSocketConfig, last_data_sent: Option<Instant>) -> Self {
        Self {
            io,
            tx,
            max_write_buffer: config.max_write_buffer,
            finished: false,
            transport_closed: false,
            last_data_sent,
        }
    }

    /// What a parked connection keeps: the stream, the sender (its buffers
    /// back in the thread's cache) and when data was last sent.
    pub(crate) fn into_parked(mut self) -> (W, Sender, Option<Instant>) {
        self.release_buffers();
        (self.io, self.tx, self.last_data_sent)
    }

    /// The same writing side over the write half of its stream; `split`
    /// cuts the stream in two and the other half is returned beside it.
    pub(crate) fn split_io<R, H>(self, split: impl FnOnce(W) -> (R, H)) -> (R, WriteSide<H>) {
        let Self { io, tx, max_write_buffer, finished, transport_closed, last_data_sent } = self;
        let (read_io, write_io) = split(io);
        (read_io, WriteSide { io: write_io, tx, max_write_buffer, finished, transport_closed, last_data_sent })
    }

    /// The stream written to.
    #[inline]
    pub(crate) fn io(&self) -> &W {
        &self.io
    }

    /// The stream written to, mutably (the whole `WebSocket` reads from it
    /// too).
    #[inline]
    pub(crate) fn io_mut(&mut self) -> &mut W {
        &mut self.io
    }

    /// Whether nothing waits to be written and the connection goes on.
    pub(crate) fn is_idle(&self) -> bool {
        self.tx.is_idle() && !self.finished && !self.transport_closed
    }

    /// Records that the connection is over: nothing more may be queued.
    #[inline]
    pub(crate) fn mark_finished(&mut self) {
        self.finished = true;
    }

    /// Bytes queued and not yet written.
    #[inline]
    pub(crate) fn pending_output(&self) -> usize {
        self.tx.pending_output()
    }

    /// Whether our Close frame is queued or sent.
    #[inline]
    pub(crate) fn close_sent(&self) -> bool {
        self.tx.close_sent()
    }

    /// Whether permessage-deflate is in force.
    #[inline]
    pub(crate) fn is_compressed(&self) -> bool {
        self.tx.is_compressed()
    }

    /// When a data message was last queued (`None` unless the idle
    /// timeout is on).
    #[inline]
    pub(crate) fn last_data_sent(&self) -> Option<Instant> {
        self.last_data_sent
    }

    /// Queues what the receiver owes the peer (a Pong, a Close echo).
    #[inline]
    pub(crate) fn apply_reply(&mut self, reply: Reply) {
        self.tx.apply_reply(reply);
    }

    /// Queues an empty keepalive Ping; false when it cannot go out (we are
    /// closing).
    pub(crate) fn queue_keepalive_ping(&mut self) -> bool {
        self.tx.send_ping(&[]).is_ok()
    }

    /// Queues our Close frame unless one is already out.
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> std::result::Result<(), UsageError> {
        if self.tx.close_sent() {
            return Ok(());
        }
        self.tx.send_close(Some(code), reason)
    }

    /// Gives the sender's buffers to the thread's cache (an idle
    /// connection holds none).
    pub(crate) fn release_buffers(&mut self) {
        buffer_pool::give(self.tx.release_buffers());
    }
}

impl<W: AsyncWrite + Unpin> WriteSide<W> {
    pub(crate) fn queue(&mut self, message: Message) -> Result<()> {
        if self.finished {
            return Err(Error::Closed);
        }
        if self.last_data_sent.is_some() && message.is_data() {
            self.last_data_sent = Some(Instant::now());
        }
        self.reuse_cached_buffer();
        match message {
            Message::Text(text) => self.tx.send_text(text)?,
            Message::Binary(data) => self.tx.send_binary(data)?,
            Message::Ping(data) => self.tx.send_ping(&data)?,
            Message::Pong(data) => self.tx.send_pong(&data)?,
            Message::Close(Some(frame)) => self.tx.send_close(Some(frame.code), &frame.reason)?,
            Message::Close(None) => self.tx.send_close(None, "")?,
        }
        Ok(())
    }

    pub(crate) fn queue_prepared(&mut self, message: &ferrows_proto::PreparedMessage) -> Result<()> {
        if self.finished {
            return Err(Error::Closed);
        }
        if self.last_data_sent.is_some() {
            self.last_data_sent = Some(Instant::now());
        }
        self.reuse_cached_buffer();
        Ok(self.tx.send_prepared(message)?)
    }

    /// After an idle spell the sender has no output buffer: give it a warm
    /// one from the thread's cache rather than growing a new one.
    fn reuse_cached_buffer(&mut self) {
        if self.tx.wants_output_buffer()
            && let Some(buffer) = buffer_pool::take_cached()
        {
            self.tx.provide_output_buffer(buffer);
        }
    }

    /// Waits while the queue is over its bound.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while self.tx.pending_output() >= self.max_write_buffer {
            ready!(self.poll_write_some(cx)).map_err(Error::Io)?;
        }
        Poll::Ready(Ok(()))
    }

    /// One vectored write of the queued output.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(self.tx.output_chunks()) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        // One slice: a plain write (cheaper than writev in the kernel).
        let written = if count == 1 {
            ready!(Pin::new(&mut self.io).poll_write(cx, &slices[0]))?
        } else {
            ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?
        };
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.tx.advance_output(written);
        Poll::Ready(Ok(()))
    }

    /// Writes all queued output and flushes the stream.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tx.pending_output() > 0 {
            ready!(self.poll_write_some(cx))?;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Sink::poll_close: send Close 1000 unless one is out, then flush.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.tx.close_sent() && !self.finished {
            self.tx.send_close(Some(CloseCode::NORMAL), "")?;
        }
        self.poll_write_out(cx).map_err(Error::Io)
    }

    /// Shuts the stream down once (best effort: the connection is over).
    pub(crate) fn poll_shutdown_once(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.transport_closed {
            let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
            self.transport_closed = true;
        }
        Poll::Ready(())
    }
}
