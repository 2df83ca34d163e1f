//! Sending into a parked connection from another thread.
//!
//! A fan-out that reaches a parked subscriber through its tenant costs a
//! wake-up of the lot's task, a second look at the subscriber's queue
//! there, and the write. An [`Outlet`] lets the fan-out write itself: it
//! is the connection's socket and how the connection frames a prepared
//! message, so a delivery to an idle subscriber is one non-blocking `send`
//! in the fan-out and nothing else.
//!
//! The tenant that hands one out keeps two promises (which is why
//! [`Outlet::send`] is `unsafe`): the outlet is used only while the
//! connection is in the lot (it is taken back in [`Tenant::leaving`],
//! before the socket leaves or closes), and its writes never overlap the
//! connection's own (the tenant's sends and the keepalive Ping it sends in
//! [`Tenant::send_due_ping`]), for example by one lock around all of them.
//!
//! [`Tenant::leaving`]: super::Tenant::leaving
//! [`Tenant::send_due_ping`]: super::Tenant::send_due_ping

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use bytes::Bytes;
use ferrows_proto::PreparedMessage;

use super::LotStream;
use crate::ParkedWebSocket;
use crate::parked::Framing;

/// A parked connection's socket and framing: see the
/// [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct Outlet {
    fd: RawFd,
    framing: Framing,
}

impl Outlet {
    /// The outlet of `ws`, if what it sends can be framed from outside: a
    /// server's connection with nothing pending, compressing (if at all)
    /// each message on its own, without an idle timeout (which counts what
    /// the connection sends).
    pub fn of(ws: &ParkedWebSocket<LotStream>) -> Option<Self> {
        let framing = ws.outside_framing()?;
        Some(Self { fd: ws.get_ref().as_raw_fd(), framing })
    }

    /// The frame the connection sends for `message`.
    pub fn frame<'m>(&self, message: &'m PreparedMessage) -> &'m Bytes {
        self.framing.frame(message)
    }

    /// Writes as much of `bytes` as the socket takes now, without
    /// blocking, and says how much that was: 0 when it would block, and
    /// on an error (which the connection's own next write meets). The rest
    /// of a frame begun here goes to the connection
    /// ([`ParkedWebSocket::finish_frame`]) before it sends anything else.
    ///
    /// # Safety
    /// The connection this outlet came from must be in its lot for the
    /// whole call: its socket open and the same one (see the
    /// [module documentation](self) for how a tenant ensures it).
    #[allow(unsafe_code)]
    pub unsafe fn send(&self, bytes: &[u8]) -> usize {
        // SAFETY: the caller keeps the descriptor open for the call, and it
        // is only borrowed for it.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let socket = socket2::SockRef::from(&fd);
        loop {
            // The lot's sockets are non-blocking; `send` does not raise
            // SIGPIPE (socket2 passes MSG_NOSIGNAL where there is one).
            match socket.send(bytes) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return 0,
            }
        }
    }
}
