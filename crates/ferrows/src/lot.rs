//! The lot: idle server connections held without a task each.
//!
//! A task per connection is the natural shape of a tokio server, and its
//! floor: the task (its header and the connection's future), tokio's
//! registration of the socket and a timer cost about a kilobyte per
//! connection even when the connection does nothing, which is what most
//! connections of a real-time server do most of the time. A [`Lot`] holds
//! [`ParkedWebSocket`]s over plain TCP in one table, each with a small value
//! of its owner's (a [`Tenant`]), and waits for all of them at once: one
//! epoll set registered with tokio, one timer for the earliest keepalive or
//! timeout deadline, one task. What an idle connection costs there is its
//! parked WebSocket, its tenant and a waker.
//!
//! A parked connection leaves the lot ([`Tenant::resume`], which usually
//! spawns a task to serve it again) when it needs its WebSocket: bytes or
//! the end of file arrived, a deadline passed, or its tenant says so. While
//! parked, its tenant may still send through it
//! ([`ParkedWebSocket::send_prepared`]): a fan-out reaches idle subscribers
//! with one write each and no task woken. A tenant may also hand out an
//! [`Outlet`] of its connection, through which another thread (a fan-out)
//! writes into the socket itself: then not even the lot's task is woken.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

use crate::ParkedWebSocket;

pub mod outlet;
pub use outlet::Outlet;

/// The standard library's socket: what a parked connection holds in the lot
/// (not registered with tokio).
pub type LotStream = std::net::TcpStream;

/// Readiness events taken from the lot's epoll set at a time.
const EVENTS: usize = 256;

/// Connections handled in one turn of the lot's task before it lets the
/// runtime run others: a fan-out to 10 000 parked subscribers is 10 000
/// writes, which would otherwise hold a worker thread for tens of
/// milliseconds.
const TURN: usize = 1024;

/// Stale entries the deadline heap may hold beyond twice the parked
/// connections before it is rebuilt.
const STALE_DEADLINES: usize = 1024;

/// What the owner of a parked connection keeps in the lot with it, and how
/// the connection leaves.
pub trait Tenant: Send + Sized + 'static {
    /// Polls what the tenant waits on besides its connection (a queue of
    /// messages to send, say); `cx` wakes the lot for this tenant alone.
    /// Called when the connection is parked and whenever `cx` is woken.
    /// It may send through `ws` ([`ParkedWebSocket::send_prepared`]).
    ///
    /// `Ready` when the connection needs its WebSocket: the lot then
    /// [resumes](Self::resume) it. The lot does so by itself when
    /// [`ParkedWebSocket::needs_websocket`] says so, when bytes or the end
    /// of file arrive, and when a deadline of the WebSocket passes.
    fn poll_parked(&mut self, ws: &mut ParkedWebSocket<LotStream>, cx: &mut Context<'_>) -> Poll<()>;

    /// Sends the keepalive Ping that fell due
    /// ([`ParkedWebSocket::send_due_ping`]); whether it did. A tenant that
    /// lets others write to the socket ([`Outlet`]) keeps this write apart
    /// from theirs.
    fn send_due_ping(&mut self, ws: &mut ParkedWebSocket<LotStream>) -> bool {
        ws.send_due_ping()
    }

    /// The connection is about to leave the lot (to be
    /// [resumed](Self::resume), or closed with the lot): a tenant that
    /// handed out its [`Outlet`] takes it back here, before the socket
    /// leaves.
    fn leaving(&mut self, ws: &mut ParkedWebSocket<LotStream>) {
        let _ = ws;
    }

    /// Takes the connection back, over tokio's socket again (usually to
    /// spawn a task that unparks and serves it). An error means the socket
    /// could not be registered with tokio again, and the connection is
    /// lost: the tenant only cleans up.
    fn resume(self, ws: io::Result<ParkedWebSocket<tokio::net::TcpStream>>);
}

/// Idle connections held together, waited on by one task; see the
/// [module documentation](self). Cloned handles share it; the lot stops
/// when the last handle is dropped, closing the connections still in it
/// (without a Close frame: resume them first for a graceful shutdown).
pub struct Lot<T: Tenant> {
    handle: Arc<Handle<T>>,
}

impl<T: Tenant> Clone for Lot<T> {
    fn clone(&self) -> Self {
        Self { handle: Arc::clone(&self.handle) }
    }
}

impl<T: Tenant> std::fmt::Debug for Lot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lot").field("parked", &self.len()).finish()
    }
}

/// The last handle's drop stops the lot's task.
struct Handle<T: Tenant> {
    shared: Arc<Shared<T>>,
}

impl<T: Tenant> Drop for Handle<T> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// What the handles, the wakers and the lot's task share.
struct Shared<T> {
    registry: mio::Registry,
    inbox: Mutex<Inbox<T>>,
    parked: AtomicUsize,
}

/// What waits for the lot's task: connections to park, tenants woken.
struct Inbox<T> {
    arrivals: Vec<(T, ParkedWebSocket<LotStream>)>,
    woken: Vec<usize>,
    driver: Option<Waker>,
    closed: bool,
}

impl<T> Shared<T> {
    fn inbox(&self) -> MutexGuard<'_, Inbox<T>> {
        self.inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells the lot's task to stop.
    fn close(&self) {
        self.post(|inbox| inbox.closed = true);
    }

    /// Adds to the inbox; wakes the lot's task when it was waiting.
    fn post(&self, add: impl FnOnce(&mut Inbox<T>)) {
        let waker = {
            let mut inbox = self.inbox();
            add(&mut inbox);
            inbox.driver.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The waker a tenant's [`poll_parked`](Tenant::poll_parked) gets: it
/// names the tenant's slot. (A slot freed and taken again meanwhile only
/// costs its new tenant a needless poll.)
struct SlotWaker<T> {
    shared: Arc<Shared<T>>,
    key: usize,
}

impl<T: Tenant> Wake for SlotWaker<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.post(|inbox| inbox.woken.push(self.key));
    }
}

impl<T: Tenant> Lot<T> {
    /// A new lot, its task spawned on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn new() -> io::Result<Self> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let shared = Arc::new(Shared {
            registry,
            inbox: Mutex::new(Inbox { arrivals: Vec::new(), woken: Vec::new(), driver: None, closed: false }),
            parked: AtomicUsize::new(0),
        });
        let driver = Driver {
            shared: Arc::clone(&shared),
            poll: watch(poll)?,
            events: Events::with_capacity(EVENTS),
            slots: Slab::new(),
            deadlines: BinaryHeap::new(),
            sleep: None,
            woken: VecDeque::new(),
            ready: Vec::new(),
        };
        tokio::spawn(driver);
        Ok(Self { handle: Arc::new(Handle { shared }) })
    }

    /// Parks `ws` here with its tenant: the socket leaves tokio for the
    /// lot's epoll set, and the calling task may end. Should the socket not
    /// leave tokio, the tenant is [resumed](Tenant::resume) at once with
    /// the error.
    pub fn park(&self, tenant: T, ws: ParkedWebSocket<tokio::net::TcpStream>) {
        match ws.try_map_io(tokio::net::TcpStream::into_std) {
            Ok(ws) => {
                let shared = &self.handle.shared;
                let mut refused = None;
                shared.post(|inbox| {
                    if inbox.closed {
                        refused = Some((tenant, ws));
                    } else {
                        shared.parked.fetch_add(1, Ordering::Relaxed);
                        inbox.arrivals.push((tenant, ws));
                    }
                });
                // Dropped outside the inbox's lock (a tenant's drop may
                // drop a handle of this lot).
                drop(refused);
            }
            Err(e) => tenant.resume(Err(e)),
        }
    }

    /// Stops the lot now, as dropping its last handle does: the
    /// connections still in it are closed with their tenants dropped, and
    /// later [`park`](Self::park)s drop theirs. (A tenant that holds a
    /// handle of its lot keeps it from stopping by itself.)
    pub fn close(&self) {
        self.handle.shared.close();
    }

    /// Connections parked here now (those on their way in included).
    pub fn len(&self) -> usize {
        self.handle.shared.parked.load(Ordering::Relaxed)
    }

    /// Whether no connection is parked here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parked connection in the lot's table.
struct Slot<T> {
    tenant: T,
    ws: ParkedWebSocket<LotStream>,
    waker: Waker,
    /// The deadline this slot has in the heap (others there are stale).
    scheduled: Option<Instant>,
}

/// The lot's task.
struct Driver<T: Tenant> {
    shared: Arc<Shared<T>>,
    poll: AsyncFd<mio::Poll>,
    events: Events,
    slots: Slab<Slot<T>>,
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Tenants woken and not yet polled (carried over between turns).
    woken: VecDeque<usize>,
    /// Slots made ready by the epoll set, taken out of `events`.
    ready: Vec<usize>,
}

impl<T: Tenant> Future for Driver<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut done = 0;
        loop {
            let arrivals = {
                let mut inbox = this.shared.inbox();
                if inbox.closed {
                    drop(inbox);
                    this.close();
                    return Poll::Ready(());
                }
                this.woken.extend(inbox.woken.drain(..));
                let arrivals = std::mem::take(&mut inbox.arrivals);
                if arrivals.is_empty() && this.woken.is_empty() {
                    match &inbox.driver {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => inbox.driver = Some(cx.waker().clone()),
                    }
                }
                arrivals
            };
            let mut progressed = !arrivals.is_empty();
            for (tenant, ws) in arrivals {
                this.insert(tenant, ws);
                done += 1;
            }
            while done < TURN
                && let Some(key) = this.woken.pop_front()
            {
                this.poll_tenant(key);
                progressed = true;
                done += 1;
            }
            progressed |= this.poll_events(cx, &mut done);
            progressed |= this.poll_deadlines(cx, &mut done);
            if done >= TURN {
                // Let the runtime run other tasks, and come back.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }
}

impl<T: Tenant> Driver<T> {
    /// Takes a connection in: registers its socket, polls its tenant.
    fn insert(&mut self, tenant: T, ws: ParkedWebSocket<LotStream>) {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        let fd = ws.get_ref().as_raw_fd();
        if let Err(e) = self.shared.registry.register(&mut SourceFd(&fd), Token(key), Interest::READABLE) {
            tracing::debug!("lot: cannot watch a socket: {e}");
            self.shared.parked.fetch_sub(1, Ordering::Relaxed);
            return resume(tenant, ws.try_map_io(tokio::net::TcpStream::from_std));
        }
        let waker = Waker::from(Arc::new(SlotWaker { shared: Arc::clone(&self.shared), key }));
        entry.insert(Slot { tenant, ws, waker, scheduled: None });
        self.poll_tenant(key);
    }

    /// Polls the tenant of `key` (if the slot is taken); resumes it when
    /// it needs its WebSocket, or schedules its deadline.
    fn poll_tenant(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        let mut cx = Context::from_waker(&slot.waker);
        let needed = slot.ws.needs_websocket()
            || catch_unwind(AssertUnwindSafe(|| slot.tenant.poll_parked(&mut slot.ws, &mut cx)))
                .unwrap_or_else(|_| {
                    // One tenant's bug must not take the others down: it
                    // leaves, and its own code meets the bug again there.
                    tracing::error!("lot: a tenant panicked while parked; it is resumed");
                    Poll::Ready(())
                })
                .is_ready()
            || slot.ws.needs_websocket();
        if needed {
            return self.resume(key);
        }
        // A deadline already in the heap stays there: a parked connection's
        // deadline only moves later (what its tenant does, such as sending,
        // never brings it closer), and one that passes early is scheduled
        // again when it comes up. A fan-out delivery costs no deadline
        // arithmetic.
        if self.slots[key].scheduled.is_none() {
            self.schedule(key);
        }
    }

    /// Puts the deadline of `key`'s connection in the heap if it moved
    /// (the entry it had, if any, goes stale).
    fn schedule(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        let deadline = slot.ws.deadline();
        if deadline != slot.scheduled {
            slot.scheduled = deadline;
            if let Some(at) = deadline {
                self.deadlines.push(Reverse((at, key)));
                self.compact_deadlines();
            }
        }
    }

    /// Drops the heap's stale entries (deadlines of slots that left or
    /// moved on) once they outnumber the live ones: a chatty connection
    /// leaves and comes back many times per keepalive interval.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() > 2 * self.slots.len() + STALE_DEADLINES {
            self.deadlines =
                self.slots.iter().filter_map(|(key, slot)| slot.scheduled.map(|at| Reverse((at, key)))).collect();
        }
    }

    /// Gives the connection of `key` back to its tenant.
    fn resume(&mut self, key: usize) {
        let Slot { mut tenant, mut ws, .. } = self.slots.remove(key);
        let left = leaving(&mut tenant, &mut ws);
        let fd = ws.get_ref().as_raw_fd();
        // Fails only if it was not registered, which cannot be.
        let _ = self.shared.registry.deregister(&mut SourceFd(&fd));
        self.shared.parked.fetch_sub(1, Ordering::Relaxed);
        match left {
            Ok(()) => resume(tenant, ws.try_map_io(tokio::net::TcpStream::from_std)),
            Err(Stranded) => std::mem::forget(ws),
        }
    }

    /// Resumes the connections whose sockets became readable (or hung up,
    /// or failed); whether there were any.
    fn poll_events(&mut self, cx: &mut Context<'_>, done: &mut usize) -> bool {
        let mut progressed = false;
        while *done < TURN {
            let mut guard = match self.poll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => {
                    tracing::warn!("lot: epoll set failed: {e}");
                    return progressed;
                }
                Poll::Pending => return progressed,
            };
            match guard.get_inner_mut().poll(&mut self.events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Waits for tokio to see the set readable again.
                    tracing::warn!("lot: epoll_wait failed: {e}");
                    guard.clear_ready();
                    return progressed;
                }
            }
            if self.events.is_empty() {
                guard.clear_ready();
                continue;
            }
            self.ready.extend(self.events.iter().map(|event| event.token().0));
            for key in std::mem::take(&mut self.ready) {
                // Read here what woke it: the WebSocket starts from those
                // bytes (or the end), and a spurious wake-up costs nothing.
                if self.slots.get_mut(key).is_some_and(|slot| slot.ws.read_arrived()) {
                    self.resume(key);
                }
                *done += 1;
            }
            progressed = true;
        }
        progressed
    }

    /// Resumes the connections whose deadline passed and arms the timer
    /// for the next one; whether any passed.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>, done: &mut usize) -> bool {
        let mut progressed = false;
        loop {
            let now = Instant::now();
            while let Some(&Reverse((at, key))) = self.deadlines.peek() {
                if at > now {
                    break;
                }
                if *done >= TURN {
                    // The rest in the next turn (the task comes back).
                    return progressed;
                }
                self.deadlines.pop();
                let Some(slot) = self.slots.get_mut(key).filter(|slot| slot.scheduled == Some(at)) else {
                    continue;
                };
                if !slot.ws.is_due() {
                    // The deadline moved on since it was scheduled.
                    self.schedule(key);
                    continue;
                }
                // A keepalive Ping goes out from here; anything else (and
                // the Pong) needs the WebSocket.
                if slot.tenant.send_due_ping(&mut slot.ws) && !slot.ws.needs_websocket() {
                    self.schedule(key);
                } else {
                    self.resume(key);
                }
                progressed = true;
                *done += 1;
            }
            let Some(&Reverse((next, _))) = self.deadlines.peek() else {
                self.sleep = None;
                return progressed;
            };
            if crate::timers::poll_sleep_until(&mut self.sleep, next, cx).is_pending() {
                return progressed;
            }
        }
    }

    /// The last handle is gone: closes what is parked.
    fn close(&mut self) {
        for Slot { mut tenant, mut ws, .. } in self.slots.drain() {
            let left = leaving(&mut tenant, &mut ws);
            let fd = ws.get_ref().as_raw_fd();
            let _ = self.shared.registry.deregister(&mut SourceFd(&fd));
            drop(tenant);
            match left {
                Ok(()) => drop(ws),
                Err(Stranded) => std::mem::forget(ws),
            }
        }
        // Dropped outside the inbox's lock (a tenant's drop may drop a
        // handle of this lot).
        let arrivals = std::mem::take(&mut self.shared.inbox().arrivals);
        drop(arrivals);
        self.shared.parked.store(0, Ordering::Relaxed);
    }
}

/// A tenant panicked in [`Tenant::leaving`]: it may not have taken its
/// [`Outlet`] back, so the socket is never closed (its descriptor must not
/// be reused while an outlet may write to it). A bug's cost: one
/// descriptor, and a connection that hangs.
struct Stranded;

/// Tells a tenant its connection leaves; a panic there is the tenant's
/// alone (the lot goes on), and strands the socket.
fn leaving<T: Tenant>(tenant: &mut T, ws: &mut ParkedWebSocket<LotStream>) -> Result<(), Stranded> {
    catch_unwind(AssertUnwindSafe(|| tenant.leaving(ws))).map_err(|_| {
        tracing::error!("lot: a tenant panicked as its connection left; its socket stays open, unused");
        Stranded
    })
}

/// Hands a connection back to its tenant; a panic there is the tenant's
/// alone (the lot goes on).
fn resume<T: Tenant>(tenant: T, ws: io::Result<ParkedWebSocket<tokio::net::TcpStream>>) {
    if catch_unwind(AssertUnwindSafe(|| tenant.resume(ws))).is_err() {
        tracing::error!("lot: a tenant panicked while resumed");
    }
}

/// Nothing in the lot's task is pinned in place (the tenants are moved in
/// and out of the table).
impl<T: Tenant> Unpin for Driver<T> {}

/// Registers the lot's epoll set with tokio's reactor, read interest only:
/// the set is readable when a socket in it has an event.
#[allow(unsafe_code)]
fn watch(poll: mio::Poll) -> io::Result<AsyncFd<mio::Poll>> {
    // SAFETY: `AsyncFd` needs the descriptor to stay open and the same for
    // as long as it holds it. `mio::Poll` owns its epoll descriptor, closes
    // it only when dropped (which the `AsyncFd` does, after deregistering),
    // and always reports that one; the lot only calls `poll` on it, which
    // does not change it. (Tested by every test of the lot: the driver
    // waits on this registration.)
    let registered = unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) };
    registered.map_err(|e| e.into())
}
