//! The bounded send queue of one client.
//!
//! Fan-out pushes shared, already framed messages; a client that does not
//! drain its queue fast enough overflows it and is marked a slow consumer,
//! so one stalled reader can never make the server hold more than its
//! queue's bound.
//!
//! A queue has one consumer (its connection), which waits on it by polling
//! ([`ClientQueue::poll_pop_all`], [`ClientQueue::poll_ended`]): the queue
//! keeps that consumer's one waker, so an idle connection holds no waiter
//! of its own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use ferrows_proto::PreparedMessage;

/// Default bound of one client's queue: 1024 messages.
pub const DEFAULT_QUEUE_MESSAGES: usize = 1024;

/// Default bound of one client's queued payload bytes: 4 MiB, so 10 000
/// stalled clients can hold at most 40 GiB in the worst case, and in
/// practice far less: the frames are shared between clients.
pub const DEFAULT_QUEUE_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
struct State {
    /// The oldest message queued: a fan-out's usual delivery to a consumer
    /// that keeps up is one message, queued and taken with no allocation.
    first: Option<Arc<PreparedMessage>>,
    /// The messages after `first`, in order.
    rest: VecDeque<Arc<PreparedMessage>>,
    bytes: usize,
    /// The consumer, waiting for a message or the end.
    waker: Option<Waker>,
}

impl State {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn clear(&mut self) {
        self.first = None;
        self.rest = VecDeque::new();
        self.bytes = 0;
    }
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

/// A client's queue; cloned handles share it.
#[derive(Debug, Clone)]
pub struct ClientQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    overflowed: AtomicBool,
    closed: AtomicBool,
    max_messages: usize,
    max_bytes: usize,
}

/// The queue did not take the message: the client is too slow (or gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl ClientQueue {
    /// A queue bounded by `max_messages` and `max_bytes`.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                overflowed: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                max_messages,
                max_bytes,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_consumer(&self) {
        let waker = self.state().waker.take();
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
        if self.inner.overflowed.load(Ordering::Relaxed) || self.inner.closed.load(Ordering::Relaxed) {
            return Err(Overflow);
        }
        let size = message.plain_frame().len();
        let waker = {
            let mut state = self.state();
            if state.len() >= self.inner.max_messages || state.bytes + size > self.inner.max_bytes {
                self.inner.overflowed.store(true, Ordering::Relaxed);
                state.clear();
                let waker = state.waker.take();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return Err(Overflow);
            }
            state.bytes += size;
            // (`rest` is empty whenever `first` is.)
            if state.first.is_none() {
                state.first = Some(message);
            } else {
                state.rest.push_back(message);
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Takes everything queued (in order), or registers the consumer's
    /// waker while the queue is empty. `Ready(None)` once the queue
    /// overflowed, or was closed and everything queued before was taken.
    ///
    /// The queue's buffer goes with the messages, so an idle queue holds no
    /// memory beyond its handle.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        if self.inner.overflowed.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        let mut state = self.state();
        if let Some(first) = state.first.take() {
            state.bytes = 0;
            if state.rest.is_empty() {
                return Poll::Ready(Some(Batch::One(first)));
            }
            let mut messages = std::mem::take(&mut state.rest);
            messages.push_front(first);
            return Poll::Ready(Some(Batch::Many(messages)));
        }
        if self.inner.closed.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        register(&mut state.waker, cx);
        Poll::Pending
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
        let mut state = self.state();
        if self.is_ended() {
            return Poll::Ready(());
        }
        register(&mut state.waker, cx);
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
        self.state().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
