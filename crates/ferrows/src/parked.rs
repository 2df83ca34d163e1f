//! Parked WebSockets: an idle connection held in a fraction of the memory.
//!
//! A [`WebSocket`] carries its whole driver inline (the receiving and
//! sending halves of the core with their queues, the read and write state),
//! about 580 bytes over a `TcpStream`, though an idle connection uses none
//! of it. A server holding many idle connections can [`park`] each one: the
//! [`ParkedWebSocket`] keeps only the stream, the timers and what the
//! halves were made of, or the halves themselves when a direction of
//! permessage-deflate takes its compression context over (that state must
//! survive). [`poll_activity`] waits for what needs the WebSocket again
//! (bytes from the peer, its end of file, a keepalive or timeout deadline),
//! and [`unpark`] makes the WebSocket again, with the bytes that arrived. A
//! [`Lot`](crate::lot::Lot) holds parked connections without a task each.
//!
//! [`park`]: WebSocket::park
//! [`poll_activity`]: ParkedWebSocket::poll_activity
//! [`unpark`]: ParkedWebSocket::unpark

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrows_proto::config::Negotiated;
use ferrows_proto::deflate::Deflater;
use ferrows_proto::{Connection, PreparedMessage, Receiver, Role, Sender, UsageError};
use tokio::io::AsyncRead;
use tokio::time::Sleep;

use crate::buffer_pool;
use crate::config::WebSocketConfig;
use crate::error::Error;
use crate::read_side::ReadSide;
use crate::timers::{Due, Timers};
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
    /// When data was last sent, kept only with an idle timeout (boxed,
    /// like the subprotocol: rarely there, and every parked connection
    /// would pay 8 bytes more for each inline).
    last_data_sent: Option<Box<tokio::time::Instant>>,
    subprotocol: Option<Box<Box<str>>>,
    /// The halves of the core: made again when unparked from what they
    /// were made of, unless they keep compression contexts.
    /// contexts (an idle uncompressed half is the same as a new one).
    halves: Halves,
    /// What came or waits while parked; nothing, mostly (boxed: a parked
    /// connection with any of it soon leaves its parked form).
    pending: Option<Box<Pending>>,
}

/// The halves of the core of a parked connection.
#[derive(Debug)]
enum Halves {
    /// Idle halves that keep nothing between messages (no compression, or
    /// compression without context takeover either way) are the same as
    /// new ones: made again from the agreed extensions. `threshold` is the
    /// sender's `deflate_threshold`, for the prepared frames sent while
    /// parked.
    Renew { negotiated: Negotiated, threshold: u32 },
    /// Halves that keep compression contexts between messages.
    Kept(Box<(Receiver, Sender)>),
}

/// What a parked connection read or could not write.
#[derive(Debug, Default)]
struct Pending {
    /// Bytes read while parked, parsed first once unparked.
    arrived: BytesMut,
    /// Frame bytes sent while parked that the stream did not take, written
    /// first once unparked.
    unsent: BytesMut,
    /// The peer's end of file or a read error, read while parked.
    ended: Option<PeerEnd>,
}

/// How the peer's direction ended while a connection was parked.
#[derive(Debug)]
pub(crate) enum PeerEnd {
    /// Its end of file.
    Eof,
    /// A read error.
    Failed(io::Error),
}

/// Bytes read by [`ParkedWebSocket::read_arrived`] at once.
const READ_PROBE: usize = 4096;

/// Most frames handed to one vectored write by
/// [`ParkedWebSocket::send_prepared`].
const MAX_IOVECS: usize = 64;

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
        let (rx, role, timers, read_chunk) = read.into_parked();
        let (io, tx, last_data_sent) = write.into_parked();
        let halves = match Connection::renewal(&rx, &tx) {
            Some(negotiated) => {
                let threshold = tx.config().deflate_threshold.min(u32::MAX as usize) as u32;
                Halves::Renew { negotiated, threshold }
            }
            None => Halves::Kept(Box::new((rx, tx))),
        };
        Ok(ParkedWebSocket {
            io,
            role,
            read_chunk: read_chunk.min(u32::MAX as usize) as u32,
            timers,
            last_data_sent: last_data_sent.map(Box::new),
            subprotocol: subprotocol.map(Box::new),
            halves,
            pending: None,
        })
    }
}

impl<S> ParkedWebSocket<S> {
    /// The WebSocket again, to use as before; `config` must be the one it
    /// was made with.
    pub fn unpark(self, config: &WebSocketConfig) -> WebSocket<S> {
        let (rx, tx) = match self.halves {
            Halves::Kept(halves) => *halves,
            Halves::Renew { negotiated, .. } => {
                Connection::new(self.role, config.protocol.clone(), &negotiated).split()
            }
        };
        let mut tx = tx;
        let Pending { arrived, unsent, ended } = self.pending.map(|pending| *pending).unwrap_or_default();
        if !unsent.is_empty() {
            tx.queue_unwritten(unsent.freeze());
        }
        let write = WriteSide::resume(self.io, tx, config, self.last_data_sent.map(|at| *at));
        let read = ReadSide::resume(rx, self.role, config, arrived, self.timers, ended);
        WebSocket { read, write, subprotocol: self.subprotocol.map(|name| *name) }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The same parked connection over the stream `f` makes of this one
    /// (tokio's `TcpStream` into the standard one and back, say, for a
    /// holder that waits on the socket by its own means). An error of `f`
    /// loses the connection.
    pub fn try_map_io<T, E>(self, f: impl FnOnce(S) -> Result<T, E>) -> Result<ParkedWebSocket<T>, E> {
        Ok(ParkedWebSocket {
            io: f(self.io)?,
            role: self.role,
            read_chunk: self.read_chunk,
            timers: self.timers,
            last_data_sent: self.last_data_sent,
            subprotocol: self.subprotocol,
            halves: self.halves,
            pending: self.pending,
        })
    }

    /// When a keepalive, idle or close deadline next passes, for a holder
    /// that watches the deadline itself instead of calling
    /// [`poll_activity`](Self::poll_activity): frees the timer that call
    /// arms. The deadline moves only when the connection is used.
    pub fn deadline(&mut self) -> Option<tokio::time::Instant> {
        self.timers.disarm();
        self.timers.deadline()
    }

    /// Whether a keepalive, idle or close deadline has passed (the
    /// WebSocket acts on it once unparked).
    pub fn is_due(&self) -> bool {
        self.timers.deadline().is_some_and(|at| at <= tokio::time::Instant::now())
    }

    /// Whether the connection needs its WebSocket before anything else
    /// happens: bytes arrived or wait to be written, or the peer's end of
    /// file or a read error was seen.
    pub fn needs_websocket(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether [`send_prepared`](Self::send_prepared) works here: a
    /// server's connection (a client masks each frame of its own).
    pub fn can_send_prepared(&self) -> bool {
        self.role == Role::Server
    }

    /// The frame the WebSocket would send for `message`
    /// ([`Sender::prepared_frame`]; halves made again frame it as
    /// [`Framing`] says).
    fn prepared_frame<'m>(&self, message: &'m PreparedMessage) -> Result<&'m Bytes, UsageError> {
        match &self.halves {
            Halves::Kept(halves) => halves.1.prepared_frame(message),
            Halves::Renew { .. } if self.role == Role::Client => Err(UsageError::MaskedRole),
            Halves::Renew { negotiated, threshold } => Ok(Framing::new(negotiated, *threshold).frame(message)),
        }
    }

    /// How prepared messages can be framed from outside the connection
    /// while it stays parked, without the connection's knowing: on a
    /// server's connection whose halves keep nothing between messages,
    /// nothing pending, and no idle timeout (which counts what is sent).
    #[cfg(unix)]
    pub(crate) fn outside_framing(&self) -> Option<Framing> {
        match &self.halves {
            Halves::Renew { negotiated, threshold }
                if self.role == Role::Server && self.pending.is_none() && !self.timers.tracks_idle() =>
            {
                Some(Framing::new(negotiated, *threshold))
            }
            _ => None,
        }
    }

    /// Takes the rest of a frame that was begun on the socket from outside
    /// (by an [`Outlet`](crate::lot::Outlet)): it goes out before anything
    /// else, and the connection [needs its WebSocket](Self::needs_websocket)
    /// from now on.
    pub fn finish_frame(&mut self, rest: &[u8]) {
        let pending = self.pending.get_or_insert_default();
        let unsent = std::mem::take(&mut pending.unsent);
        pending.unsent.extend_from_slice(rest);
        pending.unsent.extend_from_slice(&unsent);
    }
}

/// How a connection with renewable halves frames a prepared message: its
/// plain frame, or the frame compressed with the agreed window from
/// `threshold` bytes of payload on, where every message is compressed on
/// its own (as a new [`Deflater`] with that window would).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framing {
    window: Option<u8>,
    threshold: u32,
}

impl Framing {
    fn new(negotiated: &Negotiated, threshold: u32) -> Self {
        let window = negotiated.deflate.and_then(|d| {
            // The level does not change the choice of frame.
            Deflater::new(d.server_max_window_bits, d.server_no_context_takeover, 0)
                .prepared_window(threshold as usize, threshold as usize)
        });
        Self { window, threshold }
    }

    /// The frame for `message`.
    pub(crate) fn frame<'m>(&self, message: &'m PreparedMessage) -> &'m Bytes {
        match self.window {
            Some(bits) if message.payload().len() >= self.threshold as usize => message.compressed_frame(bits),
            _ => message.plain_frame(),
        }
    }
}

impl<S> ParkedWebSocket<S> {
    /// Keeps what a read while parked gave: bytes (in `buf`, which becomes
    /// the WebSocket's read buffer), the end of file or an error.
    fn arrived(&mut self, buf: BytesMut, read: io::Result<usize>) {
        match read {
            Ok(n) if n > 0 => {
                // The peer is alive (as a read of the WebSocket would note).
                self.timers.on_receive();
                self.pending.get_or_insert_default().arrived = buf;
                return;
            }
            Ok(_) => self.pending.get_or_insert_default().ended = Some(PeerEnd::Eof),
            Err(e) => self.pending.get_or_insert_default().ended = Some(PeerEnd::Failed(e)),
        }
        buffer_pool::give(buf);
    }
}

impl<S: io::Read> ParkedWebSocket<S> {
    /// Reads what the peer sent while parked, for a holder that learns by
    /// its own means that the socket is readable: one non-blocking read,
    /// into a buffer that becomes the WebSocket's. Whether anything came
    /// (bytes, the end of file or an error, which the WebSocket reports
    /// once unparked): [`needs_websocket`](Self::needs_websocket) then.
    pub fn read_arrived(&mut self) -> bool {
        if self.needs_websocket() {
            return true;
        }
        // Into a probe on the stack (`Read` takes initialized memory, and
        // zeroing a whole read buffer at every wake-up would cost more than
        // the read): commands and Pongs fit, and a longer burst is read on
        // by the WebSocket.
        let mut probe = [0u8; READ_PROBE];
        let read = loop {
            match self.io.read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            read => {
                let mut buf = BytesMut::new();
                if let Ok(n) = read
                    && n > 0
                {
                    buf = buffer_pool::take(self.read_chunk as usize);
                    buf.extend_from_slice(&probe[..n]);
                }
                self.arrived(buf, read);
                true
            }
        }
    }
}

impl<S: io::Write> ParkedWebSocket<S> {
    /// Sends prepared messages without making the WebSocket again, by
    /// non-blocking vectored writes of the frames it would send (a fan-out
    /// to idle subscribers costs one `writev` each). What the stream does
    /// not take now is kept, with everything sent after it, and written
    /// first once unparked: [`needs_websocket`](Self::needs_websocket)
    /// says so, and the caller should unpark it then.
    ///
    /// Fails without sending anything on a client's connection (see
    /// [`can_send_prepared`](Self::can_send_prepared)). A write error is
    /// returned, and the unparked WebSocket meets it again.
    pub fn send_prepared<'m>(&mut self, messages: impl IntoIterator<Item = &'m PreparedMessage>) -> Result<(), Error> {
        if !self.can_send_prepared() {
            return Err(Error::Usage(UsageError::MaskedRole));
        }
        let mut result = Ok(());
        let mut messages = messages.into_iter().peekable();
        let mut sent_any = false;
        // Fails only on a client (refused above) or a sender that is
        // closing or amid a fragmented message, which a parked connection
        // never is: nothing is half sent.
        while let Some(first) = messages.next() {
            let first = self.prepared_frame(first)?;
            sent_any = true;
            if messages.peek().is_none() {
                // One frame, a fan-out's usual delivery: nothing to gather.
                self.write_frames(&[first], &mut result);
                break;
            }
            let mut frames = Vec::with_capacity(MAX_IOVECS.min(1 + messages.size_hint().0));
            frames.push(&first[..]);
            for message in messages.by_ref().take(MAX_IOVECS - 1) {
                frames.push(self.prepared_frame(message)?);
            }
            self.write_frames(&frames, &mut result);
        }
        if sent_any {
            self.timers.on_data();
            if let Some(at) = &mut self.last_data_sent {
                **at = tokio::time::Instant::now();
            }
        }
        result
    }

    /// Sends the keepalive Ping that fell due, as the WebSocket would,
    /// without unparking; whether it did. The Pong then needs the
    /// WebSocket, but one wake-up per keepalive round is saved. Does
    /// nothing when another deadline passed, when something is pending, or
    /// on a client's connection (its frames are masked each its own way).
    pub fn send_due_ping(&mut self) -> bool {
        if !self.can_send_prepared() || self.pending.is_some() || self.timers.due_now() != Some(Due::Ping) {
            return false;
        }
        let ping = self.ping_frame();
        let written = loop {
            match self.io.write(&ping) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Kept: the WebSocket writes it, or meets the error.
                Err(_) => break 0,
            }
        };
        self.keep_unsent(&[&ping], written);
        self.timers.on_ping_sent();
        true
    }

    /// A Ping with no payload, made by the core's sender.
    fn ping_frame(&mut self) -> Bytes {
        let mut made;
        let tx = match &mut self.halves {
            Halves::Kept(halves) => &mut halves.1,
            Halves::Renew { negotiated, .. } => {
                made = Connection::new(self.role, ferrows_proto::Config::default(), negotiated).split().1;
                &mut made
            }
        };
        tx.send_ping(&[]).expect("an empty Ping is valid on an idle connection");
        let mut frame = BytesMut::new();
        while let Some(chunk) = tx.take_output() {
            frame.extend_from_slice(&chunk);
        }
        frame.freeze()
    }

    /// Writes `frames` (by one `send`, or one `writev` for several), or
    /// queues them behind what waits already; keeps what the socket did
    /// not take. A write error goes to `result`.
    fn write_frames(&mut self, frames: &[&[u8]], result: &mut Result<(), Error>) {
        if let Some(pending) = &mut self.pending {
            frames.iter().for_each(|frame| pending.unsent.extend_from_slice(frame));
            return;
        }
        let attempt = match frames {
            [frame] => self.io.write(frame),
            _ => {
                let slices: Vec<IoSlice<'_>> = frames.iter().map(|frame| IoSlice::new(frame)).collect();
                self.io.write_vectored(&slices)
            }
        };
        let written = match attempt {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => 0,
            Err(e) => {
                *result = Err(Error::Io(e));
                0
            }
        };
        self.keep_unsent(frames, written);
    }

    /// Keeps what follows the first `written` bytes of `frames`.
    fn keep_unsent(&mut self, frames: &[&[u8]], mut written: usize) {
        for frame in frames {
            if written >= frame.len() {
                written -= frame.len();
                continue;
            }
            let pending = self.pending.get_or_insert_default();
            pending.unsent.extend_from_slice(&frame[written..]);
            written = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> ParkedWebSocket<S> {
    /// Ready once the connection needs its WebSocket: bytes arrived (kept
    /// for it), the peer's end of file or a read error, or a keepalive,
    /// idle or close deadline passed. Registers `cx` for all of them
    /// otherwise. Stays ready until [`unpark`](Self::unpark)ed.
    pub fn poll_activity(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.needs_websocket() {
            return Poll::Ready(());
        }
        // The WebSocket's first read, into a buffer from the thread's
        // cache: what arrives becomes its read buffer, and while nothing
        // does the buffer goes straight back (a stream that knows it is not
        // readable, such as tokio's TCP, does not even touch it).
        let mut buf = buffer_pool::take(self.read_chunk as usize);
        let read = tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut buf);
        if let Poll::Ready(read) = read {
            self.arrived(buf, read);
            return Poll::Ready(());
        }
        buffer_pool::give(buf);
        // A deadline stays due until the WebSocket acts on it.
        self.timers.poll(cx).map(|_| ())
    }
}

/// A connection that parks its [`WebSocket`] once it has waited a while
/// with nothing in progress, and makes it again when needed: what a server
/// task holds for each of many mostly idle connections.
///
/// A connection that talks often stays whole between its messages: it
/// parks only after a quiet spell of [`WebSocketConfig::park_after`] (one
/// to two times that long after its last activity), since parking and
/// making the WebSocket again cost about as much as handling a small
/// message.
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
///         // Waiting: park once quiet long enough (then wait parked).
///         Poll::Pending if conn.park_if_idle(cx, &config) => continue,
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
    /// In use, counting its quiet spell.
    Active(Box<WebSocket<S>>, Linger),
    Parked(ParkedWebSocket<S>),
    /// Only while changing from one state to the other.
    Moving,
}

/// The quiet spell of an active connection before it parks: a timer armed
/// when it first waits with nothing in progress, and whether it was woken
/// for anything since. (No clock is read per message: a connection that
/// stirred when the timer fires gets another spell.)
#[derive(Debug, Default)]
struct Linger {
    timer: Option<Pin<Box<Sleep>>>,
    /// The waker the timer has (its data and vtable addresses): polled by
    /// the same one, whether the timer fired is all there is to learn.
    waker: (usize, usize),
    stirred: bool,
}

impl Linger {
    /// Ready once the connection has been quiet for `after`: called each
    /// time it waits with nothing in progress (the timer wakes `cx` at the
    /// end of the spell).
    fn poll_quiet(&mut self, after: Duration, cx: &mut Context<'_>) -> Poll<()> {
        let waker = (cx.waker().data() as usize, cx.waker().vtable() as *const _ as usize);
        let fired = match &mut self.timer {
            // The first wait of a spell.
            None => {
                self.stirred = false;
                true
            }
            Some(timer) if waker == self.waker => timer.is_elapsed(),
            // Another task: the timer must wake this one.
            Some(timer) => timer.as_mut().poll(cx).is_ready(),
        };
        self.waker = waker;
        if !fired {
            // Woken before the spell ended: something happened.
            self.stirred = true;
            return Poll::Pending;
        }
        if self.timer.is_some() && !std::mem::take(&mut self.stirred) {
            return Poll::Ready(());
        }
        // A spell starts (or starts again): the timer is made or moved.
        crate::timers::poll_sleep_until(&mut self.timer, tokio::time::Instant::now() + after, cx)
    }
}

impl<S> ParkingWebSocket<S> {
    /// Starts active. (Boxed, so that it moves in and out of its parked
    /// form without copying, and the caller's future has no room for it.)
    pub fn new(ws: Box<WebSocket<S>>) -> Self {
        Self { state: Parking::Active(ws, Linger::default()) }
    }

    /// Whether it is parked now.
    pub fn is_parked(&self) -> bool {
        matches!(self.state, Parking::Parked(_))
    }

    /// Whether it is parked with a deadline passed (see
    /// [`ParkedWebSocket::is_due`]).
    pub fn is_due(&self) -> bool {
        matches!(&self.state, Parking::Parked(parked) if parked.is_due())
    }

    /// The WebSocket, unparked first if it was parked; `config` must be the
    /// one it was made with.
    pub fn active(&mut self, config: &WebSocketConfig) -> &mut WebSocket<S> {
        if let Parking::Parked(_) = self.state {
            let Parking::Parked(parked) = std::mem::replace(&mut self.state, Parking::Moving) else {
                unreachable!("checked")
            };
            self.state = Parking::Active(Box::new(parked.unpark(config)), Linger::default());
        }
        match &mut self.state {
            Parking::Active(ws, _) => ws,
            _ => unreachable!("made active above"),
        }
    }

    /// Parks the WebSocket if it is idle (see [`WebSocket::park`]) and has
    /// been quiet for `config.park_after`; whether it is parked now. Call
    /// it when the WebSocket returned `Pending`: until the quiet spell
    /// ends it registers `cx` for its end, and once parked poll
    /// [`poll_activity`](Self::poll_activity) next (the parked form
    /// registers its own wake-ups). `config` must be the one it was made
    /// with.
    pub fn park_if_idle(&mut self, cx: &mut Context<'_>, config: &WebSocketConfig) -> bool {
        match &mut self.state {
            Parking::Active(ws, linger) if ws.can_park() => {
                if !config.park_after.is_zero() && linger.poll_quiet(config.park_after, cx).is_pending() {
                    if linger.stirred {
                        // A busy spell: the buffers stay until it parks.
                        ws.read.hold_buffers();
                    }
                    return false;
                }
            }
            Parking::Parked(_) => return true,
            _ => return false,
        }
        let Parking::Active(ws, _) = std::mem::replace(&mut self.state, Parking::Moving) else {
            unreachable!("checked")
        };
        match (*ws).park() {
            Ok(parked) => {
                self.state = Parking::Parked(parked);
                true
            }
            Err(ws) => {
                self.state = Parking::Active(Box::new(ws), Linger::default());
                false
            }
        }
    }

    /// The parked WebSocket, if it is parked now (to hold it elsewhere,
    /// such as in a [`Lot`](crate::lot::Lot)); itself otherwise.
    #[allow(clippy::result_large_err)] // itself, given back
    pub fn into_parked(self) -> Result<ParkedWebSocket<S>, Self> {
        match self.state {
            Parking::Parked(parked) => Ok(parked),
            state => Err(Self { state }),
        }
    }

    /// The WebSocket back, unparked.
    pub fn into_websocket(mut self, config: &WebSocketConfig) -> Box<WebSocket<S>> {
        self.active(config);
        match self.state {
            Parking::Active(ws, _) => ws,
            _ => unreachable!("made active above"),
        }
    }
}

impl<S> From<ParkedWebSocket<S>> for ParkingWebSocket<S> {
    /// Starts parked.
    fn from(parked: ParkedWebSocket<S>) -> Self {
        Self { state: Parking::Parked(parked) }
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
