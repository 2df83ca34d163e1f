//! The bounded send queue of one client.
//!
//! Fan-out pushes shared, already framed messages; a client that does not
//! drain its queue fast enough overflows it and is marked a slow consumer,
//! so one stalled reader can never make the server hold more than its
//! queue's bound.
//!
//! A queue has one consumer (its connection), which waits on it by polling
//! ([`ClientQueue::poll_take`], [`ClientQueue::poll_ended`]): the queue
//! keeps that consumer's one waker, so an idle connection holds no waiter
//! of its own.
//!
//! The consumer may also give the queue an [`Outlet`]: a way to send a
//! message at once, such as a parked connection's socket. A fan-out
//! ([`ClientQueue::deliver`]) then sends into it when nothing waits in the
//! queue, and the consumer is not woken at all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::protocol::Encoding;
use ferrows_proto::PreparedMessage;

/// Default bound of one client's queue: 1024 messages.
pub const DEFAULT_QUEUE_MESSAGES: usize = 1024;

/// Default bound of one client's queued payload bytes: 4 MiB, so 10 000
/// stalled clients can hold at most 40 GiB in the worst case, and in
/// practice far less: the frames are shared between clients.
pub const DEFAULT_QUEUE_BYTES: usize = 4 << 20;

/// Where a queue's messages can go at once, past the queue (a parked
/// connection's socket, say). A queue offers a message to its outlet only
/// when nothing waits in it, and while it holds its lock: the consumer
/// keeps its own writes apart from the outlet's by holding the queue
/// ([`ClientQueue::lock`]).
pub trait Outlet: Send + 'static {
    /// Sends `message` now if it can; how much of it went.
    fn send(&mut self, message: &PreparedMessage) -> Sent;
}

/// What an [`Outlet`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// None of it (the outlet is shut, or would block): it is queued.
    Nothing,
    /// All of it.
    All,
    /// The first bytes of its frame, this many: the message stays first
    /// in the queue, and the consumer sends the rest of it before anything
    /// else ([`QueueGuard::take_started`]).
    Part(usize),
}

/// The outlet of a queue that has none: everything is queued.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOutlet;

impl Outlet for NoOutlet {
    fn send(&mut self, _: &PreparedMessage) -> Sent {
        Sent::Nothing
    }
}

/// What a queue holds, sized for the many that hold nothing: every idle
/// connection has one.
#[derive(Debug, Default)]
struct State {
    /// The oldest message queued: a fan-out's usual delivery to a consumer
    /// that keeps up is one message, queued and taken with no allocation.
    first: Option<Arc<PreparedMessage>>,
    /// The messages after `first`, in order (boxed: rarely any, and the
    /// box keeps an idle queue 24 bytes smaller).
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Arc<PreparedMessage>>>>,
    /// Frame bytes queued (a queue holds at most `u32::MAX`).
    bytes: u32,
    /// Bytes of `first`'s frame its outlet already sent (0: none; a frame
    /// too large to count here never goes to the outlet).
    started: u32,
    /// The consumer, waiting for a message or the end.
    waker: Option<Waker>,
}

impl State {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |rest| rest.len())
    }

    fn clear(&mut self) {
        self.first = None;
        self.started = 0;
        self.rest = None;
        self.bytes = 0;
    }

    /// Takes everything queued, oldest first.
    fn take(&mut self) -> Option<Batch> {
        let first = self.first.take()?;
        self.bytes = 0;
        self.started = 0;
        Some(match self.rest.take() {
            Some(mut rest) if !rest.is_empty() => {
                rest.push_front(first);
                Batch::Many(*rest)
            }
            _ => Batch::One(first),
        })
    }
}

/// The queue's state and its outlet, under one lock.
struct Locked<O: ?Sized> {
    state: State,
    outlet: O,
}

/// Messages taken from a queue at once, oldest first.
#[derive(Debug)]
pub enum Batch {
    /// One message (no allocation).
    One(Arc<PreparedMessage>),
    /// Several, in order.
    Many(VecDeque<Arc<PreparedMessage>>),
}

impl Batch {
    /// The messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<PreparedMessage>> {
        let (one, many) = match self {
            Batch::One(message) => (Some(message), None),
            Batch::Many(messages) => (None, Some(messages.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// How many messages there are.
    pub fn len(&self) -> usize {
        match self {
            Batch::One(_) => 1,
            Batch::Many(messages) => messages.len(),
        }
    }

    /// Whether there are none (never, for a batch a queue handed over).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IntoIterator for Batch {
    type Item = Arc<PreparedMessage>;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<Arc<PreparedMessage>>,
        std::collections::vec_deque::IntoIter<Arc<PreparedMessage>>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let (one, many) = match self {
            Batch::One(message) => (Some(message), VecDeque::new()),
            Batch::Many(messages) => (None, messages),
        };
        one.into_iter().chain(many)
    }
}

/// A client's queue; cloned handles share it. `O` is its outlet: the
/// consumer that made it knows its type, the fan-out sees any
/// ([`erased`](Self::erased)).
pub struct ClientQueue<O: ?Sized + Outlet = dyn Outlet> {
    inner: Arc<Inner<O>>,
}

impl<O: ?Sized + Outlet> Clone for ClientQueue<O> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<O: ?Sized + Outlet> std::fmt::Debug for ClientQueue<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQueue").field("len", &self.len()).field("overflowed", &self.overflowed()).finish()
    }
}

struct Inner<O: ?Sized> {
    /// What its client speaks: the fan-out hands it pushes in that
    /// encoding (a byte in what was padding).
    encoding: Encoding,
    overflowed: AtomicBool,
    closed: AtomicBool,
    /// Something besides messages waits for the consumer ([`ClientQueue::signal`]).
    signaled: AtomicBool,
    max_messages: u32,
    max_bytes: u32,
    locked: Mutex<Locked<O>>,
}

/// The queue did not take the message: the client is too slow (or gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl ClientQueue {
    /// A queue bounded by `max_messages` and `max_bytes`, without an
    /// outlet, for a client that speaks JSON.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        ClientQueue::with_outlet(max_messages, max_bytes, Encoding::Json, NoOutlet).erased()
    }
}

impl<O: Outlet> ClientQueue<O> {
    /// A queue bounded by `max_messages` and `max_bytes` (each at most
    /// `u32::MAX`: larger bounds are that), with `outlet`, for a client
    /// that speaks `encoding`.
    pub fn with_outlet(max_messages: usize, max_bytes: usize, encoding: Encoding, outlet: O) -> Self {
        Self {
            inner: Arc::new(Inner {
                encoding,
                overflowed: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                signaled: AtomicBool::new(false),
                max_messages: u32::try_from(max_messages).unwrap_or(u32::MAX),
                max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
                locked: Mutex::new(Locked { state: State::default(), outlet }),
            }),
        }
    }

    /// The same queue, its outlet's type forgotten (what a fan-out holds).
    pub fn erased(&self) -> ClientQueue {
        ClientQueue { inner: self.inner.clone() }
    }
}

impl<O: ?Sized + Outlet> ClientQueue<O> {
    /// What its client speaks.
    pub fn encoding(&self) -> Encoding {
        self.inner.encoding
    }

    /// Holds the queue: the outlet gets nothing while the guard lives.
    pub fn lock(&self) -> QueueGuard<'_, O> {
        QueueGuard { inner: &self.inner, locked: self.inner.locked.lock().unwrap_or_else(|p| p.into_inner()) }
    }

    fn wake_consumer(&self) {
        let waker = self.lock().locked.state.waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the queue refuses messages from now on.
    fn is_ended(&self) -> bool {
        self.inner.overflowed.load(Ordering::Relaxed) || self.inner.closed.load(Ordering::Relaxed)
    }

    /// Queues a message. On overflow the queue is marked and refuses
    /// everything from then on: the connection must be closed.
    pub fn push(&self, message: Arc<PreparedMessage>) -> Result<(), Overflow> {
        let (guard, size) = self.room_for(&message)?;
        Self::enqueue(guard, message, size);
        Ok(())
    }

    /// Sends a message through the outlet when nothing waits in the queue
    /// (the consumer is not woken then), queues it otherwise; see
    /// [`push`](Self::push). Whether the outlet sent (some of) it.
    pub fn deliver(&self, message: &Arc<PreparedMessage>) -> Result<bool, Overflow> {
        let (mut guard, size) = self.room_for(message)?;
        let locked = &mut *guard.locked;
        let mut sent_some = false;
        if locked.state.first.is_none() && size < u32::MAX {
            match locked.outlet.send(message) {
                Sent::All => return Ok(true),
                Sent::Part(sent) => {
                    // Below the frame's length, which fits (checked above).
                    locked.state.started = sent as u32;
                    sent_some = true;
                }
                Sent::Nothing => {}
            }
        }
        Self::enqueue(guard, message.clone(), size);
        Ok(sent_some)
    }

    /// The queue, held, if it has room for `message` (and its frame's size
    /// in bytes). On overflow it is marked, emptied and its consumer woken.
    fn room_for(&self, message: &PreparedMessage) -> Result<(QueueGuard<'_, O>, u32), Overflow> {
        if self.is_ended() {
            return Err(Overflow);
        }
        let size = u32::try_from(message.plain_frame().len()).unwrap_or(u32::MAX);
        let mut guard = self.lock();
        let state = &mut guard.locked.state;
        if state.len() >= self.inner.max_messages as usize || state.bytes.saturating_add(size) > self.inner.max_bytes {
            self.inner.overflowed.store(true, Ordering::Relaxed);
            state.clear();
            let waker = state.waker.take();
            drop(guard);
            if let Some(waker) = waker {
                waker.wake();
            }
            return Err(Overflow);
        }
        Ok((guard, size))
    }

    /// Queues `message` (of `size` frame bytes, room checked) in the held
    /// queue and wakes its consumer once released.
    fn enqueue(mut guard: QueueGuard<'_, O>, message: Arc<PreparedMessage>, size: u32) {
        let state = &mut guard.locked.state;
        state.bytes += size;
        // (`rest` is empty whenever `first` is.)
        if state.first.is_none() {
            state.first = Some(message);
        } else {
            state.rest.get_or_insert_default().push_back(message);
        }
        let waker = state.waker.take();
        drop(guard);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Takes everything queued (in order), or registers the consumer's
    /// waker while the queue is empty. `Ready(None)` once the queue
    /// overflowed, or was closed and everything queued before was taken.
    ///
    /// The queue's buffer goes with the messages, so an idle queue holds no
    /// memory beyond its handle. (A consumer whose outlet may send part of
    /// a message takes that one first: [`QueueGuard::take_started`].)
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        self.lock().poll_take(cx)
    }

    /// Moves everything queued (in order) to `out`, waiting while the queue
    /// is empty; see [`poll_take`](Self::poll_take).
    pub async fn pop_all(&self, out: &mut Vec<Arc<PreparedMessage>>) -> Option<()> {
        out.extend(std::future::poll_fn(|cx| self.poll_take(cx)).await?);
        Some(())
    }

    /// Ready once the queue overflowed or was closed: a consumer blocked
    /// writing to a peer that does not read polls this beside its write.
    pub fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut guard = self.lock();
        if self.is_ended() {
            return Poll::Ready(());
        }
        register(&mut guard.locked.state.waker, cx);
        Poll::Pending
    }

    /// Whether the client fell behind.
    pub fn overflowed(&self) -> bool {
        self.inner.overflowed.load(Ordering::Relaxed)
    }

    /// Stops the queue: it takes nothing more, and its consumer gets what
    /// was queued before, then the end (a graceful shutdown).
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.wake_consumer();
    }

    /// Wakes the consumer for something besides messages (what it keeps
    /// elsewhere: the server's orders for a session);
    /// [`take_signal`](Self::take_signal) then says so, once.
    pub fn signal(&self) {
        self.inner.signaled.store(true, Ordering::Release);
        self.wake_consumer();
    }

    /// Whether [`signal`](Self::signal) was called since the last time
    /// this said so (the consumer's question).
    pub fn take_signal(&self) -> bool {
        self.inner.signaled.swap(false, Ordering::AcqRel)
    }

    /// Whether a signal waits (without taking it).
    pub fn signaled(&self) -> bool {
        self.inner.signaled.load(Ordering::Acquire)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Waits until the queue overflows or is closed; see
    /// [`poll_ended`](Self::poll_ended).
    pub async fn ended(&self) {
        std::future::poll_fn(|cx| self.poll_ended(cx)).await
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.lock().locked.state.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A queue held by its consumer ([`ClientQueue::lock`]): nothing goes
/// into its outlet meanwhile.
pub struct QueueGuard<'a, O: ?Sized> {
    inner: &'a Inner<O>,
    locked: MutexGuard<'a, Locked<O>>,
}

impl<O: ?Sized + Outlet> QueueGuard<'_, O> {
    /// The queue's outlet.
    pub fn outlet(&mut self) -> &mut O {
        &mut self.locked.outlet
    }

    /// Whether its outlet sent part of a message
    /// ([`take_started`](Self::take_started)).
    pub fn has_started(&self) -> bool {
        self.locked.state.started > 0
    }

    /// The message its outlet sent only part of, with how many bytes of
    /// its frame went: the consumer sends the rest before anything else.
    pub fn take_started(&mut self) -> Option<(Arc<PreparedMessage>, usize)> {
        let state = &mut self.locked.state;
        if state.started == 0 {
            return None;
        }
        let sent = std::mem::take(&mut state.started) as usize;
        let message = state.first.take().expect("a started message is first");
        state.bytes = state.bytes.saturating_sub(message.plain_frame().len() as u32);
        state.first = state.rest.as_mut().and_then(|rest| rest.pop_front());
        Some((message, sent))
    }

    /// [`ClientQueue::poll_take`], while held.
    pub fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        if self.inner.overflowed.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        let state = &mut self.locked.state;
        debug_assert_eq!(state.started, 0, "the consumer takes a started message first");
        if let Some(batch) = state.take() {
            return Poll::Ready(Some(batch));
        }
        if self.inner.closed.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        register(&mut state.waker, cx);
        Poll::Pending
    }
}

/// Keeps `cx`'s waker in `slot` (cloned only when it changed).
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Arc<PreparedMessage> {
        Arc::new(PreparedMessage::binary(vec![0u8; n].into()))
    }

    #[tokio::test]
    async fn delivers_in_order_and_waits_when_empty() {
        let queue = ClientQueue::new(10, 1 << 20);
        let consumer = queue.clone();
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 3 {
                consumer.pop_all(&mut got).await.unwrap();
            }
            got.iter().map(|m| m.payload().len()).collect::<Vec<_>>()
        });
        for n in [1, 2, 3] {
            queue.push(message(n)).unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(task.await.unwrap(), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn overflow_by_count_or_bytes_marks_the_slow_consumer() {
        let queue = ClientQueue::new(2, 1 << 20);
        queue.push(message(1)).unwrap();
        queue.push(message(1)).unwrap();
        assert_eq!(queue.push(message(1)), Err(Overflow));
        assert!(queue.overflowed());
        assert_eq!(queue.pop_all(&mut Vec::new()).await, None);
        // Nothing is accepted after an overflow, even once drained.
        assert_eq!(queue.push(message(1)), Err(Overflow));

        let queue = ClientQueue::new(100, 1000);
        queue.push(message(600)).unwrap();
        assert_eq!(queue.push(message(600)), Err(Overflow));
    }

    #[tokio::test]
    async fn ended_wakes_on_overflow() {
        let queue = ClientQueue::new(1, 100);
        let watcher = queue.clone();
        let task = tokio::spawn(async move { watcher.ended().await });
        tokio::task::yield_now().await;
        queue.push(message(1)).unwrap();
        assert!(!task.is_finished());
        assert_eq!(queue.push(message(1)), Err(Overflow));
        tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn close_wakes_the_consumer() {
        let queue = ClientQueue::new(2, 100);
        let consumer = queue.clone();
        let task = tokio::spawn(async move { consumer.pop_all(&mut Vec::new()).await });
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(task.await.unwrap(), None);
    }

    /// An outlet that answers as told and records what it was offered.
    #[derive(Default)]
    struct Recorder {
        answer: Option<Sent>,
        offered: Vec<usize>,
    }

    impl Outlet for Recorder {
        fn send(&mut self, message: &PreparedMessage) -> Sent {
            self.offered.push(message.payload().len());
            self.answer.unwrap_or(Sent::Nothing)
        }
    }

    fn set_answer(queue: &ClientQueue<Recorder>, answer: Sent) {
        queue.lock().outlet().answer = Some(answer);
    }

    #[test]
    fn the_outlet_takes_what_is_delivered_while_nothing_waits() {
        let queue = ClientQueue::with_outlet(10, 1 << 20, Encoding::Json, Recorder::default());
        let erased = queue.erased();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(queue.poll_take(&mut cx).is_pending());
        set_answer(&queue, Sent::All);
        erased.deliver(&message(1)).unwrap();
        erased.deliver(&message(2)).unwrap();
        assert!(queue.is_empty(), "sent, not queued");
        // `push` never uses the outlet.
        erased.push(message(3)).unwrap();
        // Nor does `deliver` while something waits: order is kept.
        erased.deliver(&message(4)).unwrap();
        assert_eq!(queue.lock().outlet().offered, vec![1, 2]);
        let Poll::Ready(Some(batch)) = queue.poll_take(&mut cx) else { panic!("two queued") };
        assert_eq!(batch.iter().map(|m| m.payload().len()).collect::<Vec<_>>(), vec![3, 4]);
        // An outlet that would block: queued.
        set_answer(&queue, Sent::Nothing);
        erased.deliver(&message(5)).unwrap();
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_message_the_outlet_began_is_taken_first_with_what_went() {
        let queue = ClientQueue::with_outlet(10, 1 << 20, Encoding::Json, Recorder::default());
        set_answer(&queue, Sent::Part(3));
        queue.deliver(&message(10)).unwrap();
        queue.deliver(&message(11)).unwrap();
        let mut guard = queue.lock();
        assert!(guard.has_started());
        let (started, sent) = guard.take_started().unwrap();
        assert_eq!((started.payload().len(), sent), (10, 3));
        assert!(!guard.has_started());
        assert!(guard.take_started().is_none());
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Some(batch)) = guard.poll_take(&mut cx) else { panic!("one queued") };
        assert_eq!(batch.iter().map(|m| m.payload().len()).collect::<Vec<_>>(), vec![11]);
    }

    #[test]
    fn a_message_over_the_bound_overflows_before_the_outlet_sees_it() {
        let queue = ClientQueue::with_outlet(10, 100, Encoding::Json, Recorder::default());
        set_answer(&queue, Sent::All);
        assert_eq!(queue.deliver(&message(200)), Err(Overflow));
        assert!(queue.lock().outlet().offered.is_empty());
    }

    #[tokio::test]
    async fn a_closed_queue_hands_over_what_it_holds_first() {
        let queue = ClientQueue::new(10, 1000);
        queue.push(message(1)).unwrap();
        queue.push(message(2)).unwrap();
        queue.close();
        assert_eq!(queue.push(message(3)), Err(Overflow));
        assert!(!queue.overflowed());
        let mut got = Vec::new();
        assert_eq!(queue.pop_all(&mut got).await, Some(()));
        assert_eq!(got.len(), 2);
        assert_eq!(queue.pop_all(&mut got).await, None);
    }
}
