//! Parked WebSockets: an idle connection held in a fraction of the memory.
//!
//! A [`WebSocket`] carries its whole driver inline (the receiving and
//! sending halves of the core with their queues, the read and write state),
//! about 640 bytes over a `TcpStream`, though an idle connection uses none
//! of it. A server holding many idle connections can [`park`] each one: the
//! [`ParkedWebSocket`] keeps only the stream, the timers and, when
//! permessage-deflate is in force, the compression contexts (whose state
//! must survive). [`poll_activity`] waits for what needs the WebSocket again
//! (bytes from the peer, its end of file, a keepalive or timeout deadline),
//! and [`unpark`] makes the WebSocket again, with the bytes that arrived.
//!
//! [`park`]: WebSocket::park
//! [`poll_activity`]: ParkedWebSocket::poll_activity
//! [`unpark`]: ParkedWebSocket::unpark

use std::task::{Context, Poll};

use bytes::BytesMut;
use ferrows_proto::config::Negotiated;
use ferrows_proto::{Connection, Receiver, Role, Sender};
use tokio::io::AsyncRead;

use crate::buffer_pool;
use crate::config::WebSocketConfig;
use crate::read_side::ReadSide;
use crate::timers::Timers;
use crate::websocket::WebSocket;
use crate::write_side::WriteSide;

/// An idle WebSocket that keeps only what it needs to resume: see the
/// [module documentation](self).
#[derive(Debug)]
pub struct ParkedWebSocket<S> {
    io: S,
    role: Role,
    /// The read size of the WebSocket (`read_chunk`), for the first read.
    read_chunk: u32,
    timers: Timers,
    last_data_sent: Option<tokio::time::Instant>,
    subprotocol: Option<Box<str>>,
    /// The halves of the core, kept only when they hold compression
    /// contexts (an idle uncompressed half is the same as a new one).
    halves: Option<Box<(Receiver, Sender)>>,
    /// Bytes read while parked, parsed first once unparked.
    arrived: BytesMut,
    /// The peer's end of file or a read error was seen.
    ended: bool,
}

impl<S> WebSocket<S> {
    /// Whether [`park`](Self::park) would park it now.
    pub fn can_park(&self) -> bool {
        self.read.is_idle() && self.write.is_idle()
    }

    /// Parks the connection if it is idle: nothing buffered or in progress
    /// either way (no partial message, nothing unread or unwritten), not
    /// closing. Gives the WebSocket back otherwise.
    ///
    /// ```no_run
    /// # async fn run(ws: ferrows::WebSocket<tokio::net::TcpStream>, config: ferrows::WebSocketConfig) {
    /// match ws.park() {
    ///     Ok(mut parked) => {
    ///         std::future::poll_fn(|cx| parked.poll_activity(cx)).await;
    ///         let ws = parked.unpark(&config);
    ///     }
    ///     Err(ws) => { /* busy: keep using it */ }
    /// }
    /// # }
    /// ```
    #[allow(clippy::result_large_err)] // the WebSocket itself, given back
    pub fn park(self) -> Result<ParkedWebSocket<S>, Self> {
        if !self.can_park() {
            return Err(self);
        }
        let WebSocket { read, write, subprotocol } = self;
        let compressed = write.tx.is_compressed();
        let (rx, role, timers, read_chunk) = read.into_parked();
        let WriteSide { io, tx, last_data_sent, .. } = write;
        Ok(ParkedWebSocket {
            io,
            role,
            read_chunk: read_chunk.min(u32::MAX as usize) as u32,
            timers,
            last_data_sent,
            subprotocol,
            halves: compressed.then(|| Box::new((rx, tx))),
            arrived: BytesMut::new(),
            ended: false,
        })
    }
}

impl<S> ParkedWebSocket<S> {
    /// The WebSocket again, to use as before; `config` must be the one it
    /// was made with.
    pub fn unpark(self, config: &WebSocketConfig) -> WebSocket<S> {
        let (rx, tx) = match self.halves {
            Some(halves) => *halves,
            None => Connection::new(self.role, config.protocol.clone(), &Negotiated::default()).split(),
        };
        let mut write = WriteSide::new(self.io, tx, config);
        write.last_data_sent = self.last_data_sent;
        let read = ReadSide::resume(rx, self.role, config, self.arrived, self.timers);
        WebSocket { read, write, subprotocol: self.subprotocol }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> ParkedWebSocket<S> {
    /// Ready once the connection needs its WebSocket: bytes arrived (kept
    /// for it), the peer's end of file or a read error, or a keepalive,
    /// idle or close deadline passed. Registers `cx` for all of them
    /// otherwise. Stays ready until [`unpark`](Self::unpark)ed.
    pub fn poll_activity(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.ended || !self.arrived.is_empty() {
            return Poll::Ready(());
        }
        // The WebSocket's first read, into a buffer from the thread's
        // cache: what arrives becomes its read buffer, and while nothing
        // does the buffer goes straight back (a stream that knows it is not
        // readable, such as tokio's TCP, does not even touch it).
        let mut buf = buffer_pool::take(self.read_chunk as usize);
        match tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut buf) {
            Poll::Ready(Ok(n)) if n > 0 => {
                // The peer is alive (as a read of the WebSocket would note).
                self.timers.on_receive();
                self.arrived = buf;
                return Poll::Ready(());
            }
            // The end of file or an error: the WebSocket reads it again.
            Poll::Ready(_) => {
                buffer_pool::give(buf);
                self.ended = true;
                return Poll::Ready(());
            }
            Poll::Pending => buffer_pool::give(buf),
        }
        // A deadline stays due until the WebSocket acts on it.
        self.timers.poll(cx).map(|_| ())
    }
}

/// A connection that parks its [`WebSocket`] whenever it waits with nothing
/// in progress, and makes it again when needed: what a server task holds
/// for each of many mostly idle connections.
///
/// ```no_run
/// # use std::task::{Poll, ready};
/// # async fn run(ws: ferrows::WebSocket<tokio::net::TcpStream>, config: ferrows::WebSocketConfig) {
/// let mut conn = ferrows::ParkingWebSocket::new(Box::new(ws));
/// std::future::poll_fn(|cx| loop {
///     ready!(conn.poll_activity(cx));
///     match conn.active(&config).poll_recv(cx) {
///         Poll::Ready(Some(Ok(message))) => { /* handle it */ }
///         Poll::Ready(_) => return Poll::Ready(()),
///         // Waiting: park if nothing is in progress (then wait parked).
///         Poll::Pending if conn.park_if_idle() => continue,
///         Poll::Pending => return Poll::Pending,
///     }
/// })
/// .await;
/// # }
/// ```
#[derive(Debug)]
pub struct ParkingWebSocket<S> {
    state: Parking<S>,
}

#[derive(Debug)]
enum Parking<S> {
    Active(Box<WebSocket<S>>),
    Parked(ParkedWebSocket<S>),
    /// Only while changing from one state to the other.
    Moving,
}

impl<S> ParkingWebSocket<S> {
    /// Starts active. (Boxed, so that it moves in and out of its parked
    /// form without copying, and the caller's future has no room for it.)
    pub fn new(ws: Box<WebSocket<S>>) -> Self {
        Self { state: Parking::Active(ws) }
    }

    /// Whether it is parked now.
    pub fn is_parked(&self) -> bool {
        matches!(self.state, Parking::Parked(_))
    }

    /// The WebSocket, unparked first if it was parked; `config` must be the
    /// one it was made with.
    pub fn active(&mut self, config: &WebSocketConfig) -> &mut WebSocket<S> {
        if let Parking::Parked(_) = self.state {
            let Parking::Parked(parked) = std::mem::replace(&mut self.state, Parking::Moving) else {
                unreachable!("checked")
            };
            self.state = Parking::Active(Box::new(parked.unpark(config)));
        }
        match &mut self.state {
            Parking::Active(ws) => ws,
            _ => unreachable!("made active above"),
        }
    }

    /// Parks the WebSocket if it is idle (see [`WebSocket::park`]); whether
    /// it is parked now. Call it when the WebSocket returned `Pending`, and
    /// poll [`poll_activity`](Self::poll_activity) next: the parked form
    /// registers its own wake-ups.
    pub fn park_if_idle(&mut self) -> bool {
        match &self.state {
            Parking::Active(ws) if ws.can_park() => {}
            Parking::Parked(_) => return true,
            _ => return false,
        }
        let Parking::Active(ws) = std::mem::replace(&mut self.state, Parking::Moving) else { unreachable!("checked") };
        match (*ws).park() {
            Ok(parked) => {
                self.state = Parking::Parked(parked);
                true
            }
            Err(ws) => {
                self.state = Parking::Active(Box::new(ws));
                false
            }
        }
    }

    /// The WebSocket back, unparked.
    pub fn into_websocket(mut self, config: &WebSocketConfig) -> Box<WebSocket<S>> {
        self.active(config);
        match self.state {
            Parking::Active(ws) => ws,
            _ => unreachable!("made active above"),
        }
    }
}

impl<S: AsyncRead + Unpin> ParkingWebSocket<S> {
    /// Ready at once while active; while parked, ready once the connection
    /// needs its WebSocket (see [`ParkedWebSocket::poll_activity`]), which
    /// [`active`](Self::active) then makes.
    pub fn poll_activity(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.state {
            Parking::Parked(parked) => parked.poll_activity(cx),
            _ => Poll::Ready(()),
        }
    }
}
