//! Read and write halves of a `WebSocket` for two tasks.
//!
//! The read half owns the receiving half of the protocol core and the
//! stream's read half: reading takes no lock. The write half sits behind a
//! mutex that the read half takes only to send what it owes the peer (a
//! Pong, a Close echo) or a keepalive Ping, so the writer's lock is
//! uncontended on the hot path.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BytesMut;
use ferrows_proto::CloseCode;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::read_side::{ReadSide, Transport};
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;
use crate::write_side::WriteSide;

/// A stream that can be split into independent read and write halves.
///
/// TCP splits without a lock. A TLS session is one state machine for both
/// directions, so TLS streams split with tokio's `split` (a short lock per
/// I/O call).
pub trait SplitIo: AsyncRead + AsyncWrite + Unpin + Sized {
    /// The read half.
    type Read: AsyncRead + Unpin;
    /// The write half.
    type Write: AsyncWrite + Unpin;
    /// Splits the stream.
    fn split_io(self) -> (Self::Read, Self::Write);
}

impl SplitIo for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn split_io(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

macro_rules! split_with_tokio {
    ($($ty:ty),*) => {$(
        impl SplitIo for $ty {
            type Read = ReadHalf<$ty>;
            type Write = WriteHalf<$ty>;
            fn split_io(self) -> (Self::Read, Self::Write) {
                tokio::io::split(self)
            }
        }
    )*};
}

split_with_tokio!(
    MaybeTlsStream<TcpStream>,
    tokio_rustls::server::TlsStream<TcpStream>,
    tokio_rustls::client::TlsStream<TcpStream>,
    DuplexStream
);

type Shared<W> = Arc<Mutex<WriteSide<W>>>;

fn lock<W>(shared: &Mutex<WriteSide<W>>) -> MutexGuard<'_, WriteSide<W>> {
    // A panic while holding the lock leaves the queue consistent (every
    // operation completes its bookkeeping before it can panic), so poisoning
    // is ignored.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The read half of a split [`WebSocket`]: a [`Stream`] of messages.
#[derive(Debug)]
pub struct WsReader<S: SplitIo> {
    io: S::Read,
    read: ReadSide,
    shared: Shared<S::Write>,
}

/// The write half of a split [`WebSocket`]: a [`Sink`] of messages.
#[derive(Debug)]
pub struct WsWriter<S: SplitIo> {
    shared: Shared<S::Write>,
}

impl<S: SplitIo> Clone for WsWriter<S> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

struct Halves<'a, R, W> {
    io: &'a mut R,
    shared: &'a Mutex<WriteSide<W>>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Transport for Halves<'_, R, W> {
    type W = W;

    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(&mut *self.io), cx, buf)
    }

    fn with_writer<T>(&mut self, f: impl FnOnce(&mut WriteSide<W>) -> T) -> T {
        f(&mut lock(self.shared))
    }
}

impl<S: SplitIo> WebSocket<S> {
    /// Splits into a read half and a write half that can live in different
    /// tasks. Keep reading: the read half answers Pings and Closes and runs
    /// the timers.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let WebSocket { read, write, .. } = self;
        let (read_io, write) = write.split_io(SplitIo::split_io);
        let shared = Arc::new(Mutex::new(write));
        (WsReader { io: read_io, read, shared: shared.clone() }, WsWriter { shared })
    }
}

impl<S: SplitIo> WsReader<S> {
    /// The next message (see [`WebSocket::recv`]).
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let mut transport = Halves { io: &mut self.io, shared: &self.shared };
        self.read.poll_recv(cx, &mut transport)
    }
}

impl<S: SplitIo> Stream for WsReader<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: SplitIo> WsWriter<S> {
    /// Queues a message and writes everything queued.
    pub async fn send(&mut self, message: Message) -> Result<()> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues a message; waits only while the outgoing buffer is full.
    pub async fn feed(&mut self, message: Message) -> Result<()> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_ready(cx)).await?;
        lock(&self.shared).queue(message)
    }

    /// Queues a prepared message (see [`WebSocket::feed_prepared`]).
    pub async fn feed_prepared(&mut self, message: &ferrows_proto::PreparedMessage) -> Result<()> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_ready(cx)).await?;
        lock(&self.shared).queue_prepared(message)
    }

    /// Queues a prepared message and writes everything queued.
    pub async fn send_prepared(&mut self, message: &ferrows_proto::PreparedMessage) -> Result<()> {
        self.feed_prepared(message).await?;
        self.flush().await
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_write_out(cx)).await.map_err(Error::Io)
    }

    /// Sends Close; the read half then sees the peer's answer and ends.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        lock(&self.shared).start_close(code, reason)?;
        self.flush().await
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        lock(&self.shared).pending_output()
    }
}

impl<S: SplitIo> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        lock(&self.shared).queue(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_write_out(cx).map_err(Error::Io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_close(cx)
    }
}
