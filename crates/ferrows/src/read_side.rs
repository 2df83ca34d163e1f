//! The reading side of a driver: the receiving half of the core, the read
//! buffer and the timers. Written once for both the whole `WebSocket` and
//! its split read half, over a [`Transport`] that gives access to the
//! stream and to the writing side.

use std::io;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use ferrows_proto::{CloseCode, Receiver, Role};
use tokio::io::AsyncWrite;

use crate::buffer_pool;
use crate::config::WebSocketConfig;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::timers::{Due, Timers};
use crate::write_side::WriteSide;

/// Where the reading side reads from and how it reaches the writing side.
pub(crate) trait Transport {
    type W: AsyncWrite + Unpin;
    fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
    fn with_writer<T>(&mut self, f: impl FnOnce(&mut WriteSide<Self::W>) -> T) -> T;
}

#[derive(Debug)]
pub(crate) struct ReadSide {
    pub(crate) rx: Receiver,
    role: Role,
    read_buf: BytesMut,
    read_chunk: usize,
    /// Size of the next read: grows (up to 8 chunks) while reads come back
    /// full, so a sustained stream costs few system calls; back to one
    /// chunk when the connection goes idle.
    read_size: usize,
    max_write_buffer: usize,
    /// `read_buf` may hold frames not parsed yet.
    parse_more: bool,
    /// An error to report once the Close frame it caused is flushed.
    pending_error: Option<Error>,
    eof: bool,
    done: bool,
    /// Keep the buffers while waiting with nothing in progress (a
    /// connection between two messages of a busy spell, which its holder
    /// parks once it goes quiet): no release and take again per message.
    hold_buffers: bool,
    timers: Timers,
}

impl ReadSide {
    pub(crate) fn new(rx: Receiver, role: Role, config: &WebSocketConfig, leftover: BytesMut) -> Self {
        Self::resume(rx, role, config, leftover, Timers::new(config), None)
    }

    /// A reading side with these timers: new ones, or those it kept while
    /// parked ([`into_parked`](Self::into_parked)).
    pub(crate) fn resume(
        rx: Receiver,
        role: Role,
        config: &WebSocketConfig,
        leftover: BytesMut,
        timers: Timers,
        ended: Option<crate::parked::PeerEnd>,
    ) -> Self {
        let mut read = Self {
            rx,
            role,
            parse_more: !leftover.is_empty(),
            read_buf: leftover,
            read_chunk: config.read_chunk.max(1024),
            read_size: config.read_chunk.max(1024),
            max_write_buffer: config.max_write_buffer,
            pending_error: None,
            eof: false,
            done: false,
            hold_buffers: false,
            timers,
        };
        // The peer's end, read while parked: as if read now, after the
        // bytes that came before it.
        match ended {
            Some(crate::parked::PeerEnd::Eof) => {
                read.eof = true;
                if let Err(e) = read.rx.receive_eof() {
                    read.pending_error = Some(Error::Protocol(e));
                }
            }
            Some(crate::parked::PeerEnd::Failed(e)) => read.pending_error = Some(Error::Io(e)),
            None => {}
        }
        read
    }

    /// Whether nothing is in progress or buffered (see [`WebSocket::park`](crate::WebSocket::park)).
    pub(crate) fn is_idle(&self) -> bool {
        self.read_buf.is_empty()
            && !self.parse_more
            && self.pending_error.is_none()
            && !self.eof
            && !self.done
            && self.rx.is_idle()
    }

    /// What an idle reading side keeps while parked: the receiver (holding
    /// no buffer) and the timers; the read buffer goes back to the thread's
    /// cache.
    pub(crate) fn into_parked(mut self) -> (Receiver, Role, Timers, usize) {
        buffer_pool::give(self.read_buf);
        self.rx.release_buffers();
        (self.rx, self.role, self.timers, self.read_chunk)
    }

    /// Keeps the buffers from now on while waiting with nothing in
    /// progress, until parked (a busy spell of a parking connection).
    pub(crate) fn hold_buffers(&mut self) {
        self.hold_buffers = true;
    }

    /// Moves what the receiver owes the peer (Pongs, Close) to the writer.
    fn forward_replies<T: Transport>(&mut self, t: &mut T) {
        let rx = &mut self.rx;
        if let Some(first) = rx.take_reply() {
            t.with_writer(|w| {
                w.apply_reply(first);
                while let Some(reply) = rx.take_reply() {
                    w.apply_reply(reply);
                }
            });
        }
    }

    pub(crate) fn poll_recv<T: Transport>(&mut self, cx: &mut Context<'_>, t: &mut T) -> Poll<Option<Result<Message>>> {
        loop {
            if let Some(event) = self.rx.poll_event() {
                let message = Message::from(event);
                if message.is_data() {
                    self.timers.on_data();
                } else if matches!(message, Message::Close(_)) {
                    // Our echo goes out now, not at the next read: many
                    // applications stop reading at the peer's Close. (A
                    // write that cannot finish now, or fails, is taken up
                    // by the next read.)
                    let _ = t.with_writer(|w| w.poll_write_out(cx));
                }
                return Poll::Ready(Some(Ok(message)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            // Parse one more message from what was read: the application
            // answers each message before the next frame is looked at.
            if self.parse_more {
                let parsed = self.rx.receive_next(&mut self.read_buf);
                self.forward_replies(t);
                match parsed {
                    Ok(true) => continue,
                    Ok(false) => self.parse_more = false,
                    Err(e) => {
                        self.parse_more = false;
                        self.pending_error = Some(Error::Protocol(e));
                    }
                }
            }
            // Write what is queued (Pongs, Close echoes, sent data).
            let (flushed, pending, close_sent) = t.with_writer(|w| {
                let flushed = match w.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => Ok(true),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Ok(false),
                };
                (flushed, w.pending_output(), w.close_sent())
            });
            let flushed = match flushed {
                Ok(flushed) => flushed,
                Err(e) => {
                    self.finish(t);
                    return Poll::Ready(Some(Err(self.pending_error.take().unwrap_or(Error::Io(e)))));
                }
            };
            // Do not read (and answer) more while the peer does not read.
            if !flushed && pending >= self.max_write_buffer {
                match self.poll_timers(cx, t) {
                    Some(poll) => return poll,
                    None => continue,
                }
            }
            let failed = self.rx.error().is_some();
            let handshake_done = close_sent && self.rx.close_received();
            let close_transport = match self.role {
                Role::Server => handshake_done || failed,
                Role::Client => failed,
            };
            if close_transport || self.eof || self.pending_error.is_some() {
                if !flushed {
                    match self.poll_timers(cx, t) {
                        Some(poll) => return poll,
                        None => continue,
                    }
                }
                // After the peer's end of file too: its FIN only closed its
                // direction, and a peer waits for ours (Python websockets
                // holds the connection until then) even though we return
                // `None` now.
                ready!(t.with_writer(|w| w.poll_shutdown_once(cx)));
                if !self.eof {
                    ready!(self.poll_linger(cx, t));
                }
                self.finish(t);
                return Poll::Ready(self.pending_error.take().map(Err));
            }
            // Read more.
            // Room for a whole read chunk (more when the last read filled
            // the buffer: a burst is waiting), whatever the frame needs.
            let want = self.rx.read_hint(self.read_buf.len()).max(self.read_size).min(self.read_chunk * 8);
            if self.read_buf.capacity() == 0 {
                self.read_buf = buffer_pool::take(want);
            } else {
                self.read_buf.reserve(want);
            }
            let room = self.read_buf.capacity() - self.read_buf.len();
            let read = match t.poll_read_buf(cx, &mut self.read_buf) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => {
                    self.finish(t);
                    // After a completed closing handshake, a reset instead
                    // of a FIN loses nothing.
                    if handshake_done {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
                Poll::Pending => {
                    if self.read_buf.is_empty() && flushed && !self.hold_buffers {
                        // Idle: hold no buffers while waiting (they go to
                        // the thread's cache for the next busy connection).
                        buffer_pool::give(std::mem::take(&mut self.read_buf));
                        self.read_size = self.read_chunk;
                        self.rx.release_buffers();
                        t.with_writer(|w| w.release_buffers());
                    }
                    match self.poll_timers(cx, t) {
                        Some(poll) => return poll,
                        None => continue,
                    }
                }
            };
            self.timers.on_receive();
            if read == room {
                self.read_size = (self.read_size * 2).min(self.read_chunk * 8);
            }
            if read == 0 {
                self.eof = true;
                if let Err(e) = self.rx.receive_eof() {
                    self.pending_error = Some(Error::Protocol(e));
                }
                continue;
            }
            self.parse_more = true;
        }
    }

    /// The lingering close. Our Close and FIN are on their way, but the
    /// peer may still be sending (the rest of a message, a Ping, its own
    /// Close). Closing the socket with bytes unread, or receiving bytes
    /// after it is closed, makes the kernel answer with a reset, and a
    /// peer that gets the reset before it has read our last frames may lose
    /// them (its kernel drops what it had not read yet, or it gives up on a
    /// failed write before reading). So read and discard until the peer's
    /// end of file, a transport error, or the close timeout, whichever
    /// comes first. Memory stays bounded: one read buffer, cleared after
    /// each read.
    fn poll_linger<T: Transport>(&mut self, cx: &mut Context<'_>, t: &mut T) -> Poll<()> {
        self.parse_more = false;
        self.timers.on_close_started();
        loop {
            self.read_buf.clear();
            if self.read_buf.capacity() == 0 {
                self.read_buf = buffer_pool::take(self.read_chunk);
            }
            match t.poll_read_buf(cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.eof = true;
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => {
                    // While closing, the only deadline is the close timeout.
                    return match self.timers.poll(cx) {
                        Poll::Ready(_) => Poll::Ready(()),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn finish<T: Transport>(&mut self, t: &mut T) {
        self.done = true;
        t.with_writer(|w| w.mark_finished());
    }

    /// Called where the receive loop would wait: acts on a passed deadline
    /// (`None`: go round the loop again) or returns `Pending` with the
    /// timer armed.
    fn poll_timers<T: Transport>(&mut self, cx: &mut Context<'_>, t: &mut T) -> Option<Poll<Option<Result<Message>>>> {
        let (close_sent, last_sent) = t.with_writer(|w| (w.close_sent(), w.last_data_sent()));
        if close_sent || self.rx.close_received() {
            self.timers.on_close_started();
        }
        if self.timers.tracks_idle() {
            self.timers.on_data_sent(last_sent);
        }
        let due = match self.timers.poll(cx) {
            Poll::Ready(due) => due,
            Poll::Pending => return Some(Poll::Pending),
        };
        match due {
            Due::Ping => {
                if t.with_writer(|w| w.queue_keepalive_ping()) {
                    self.timers.on_ping_sent();
                }
                None
            }
            Due::Idle => {
                let _ = t.with_writer(|w| w.start_close(CloseCode::NORMAL, "idle timeout"));
                None
            }
            Due::PongMissing => Some(self.give_up(cx, t, "no answer to keepalive ping")),
            Due::CloseTimeout if close_sent && self.rx.close_received() => {
                // Handshake done; the peer just did not close the transport.
                self.finish(t);
                Some(Poll::Ready(None))
            }
            Due::CloseTimeout => Some(self.give_up(cx, t, "closing handshake")),
        }
    }

    /// Ends the connection without waiting for the peer any longer.
    fn give_up<T: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        t: &mut T,
        what: &'static str,
    ) -> Poll<Option<Result<Message>>> {
        // Best effort: the peer is unresponsive, do not wait for it.
        let _ = t.with_writer(|w| w.poll_shutdown_once(cx));
        self.finish(t);
        Poll::Ready(Some(Err(Error::Timeout(what))))
    }
}
