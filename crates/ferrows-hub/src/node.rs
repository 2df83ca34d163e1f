//! The node: this process's subscribers, fed by the broker.
//!
//! Publications come back from the broker (see [`crate::broker`]) and are
//! framed once per node ([`PreparedMessage`]) and pushed to the bounded
//! queue of every local subscriber of the channel. A subscriber that asks
//! to recover is first registered as *joining*: publications that arrive
//! while its history is read are held back, then everything is put in its
//! queue in order (the reply with the missed publications, then what
//! arrived meanwhile and was not in the reply), so nothing is lost or
//! repeated between "what you missed" and "what comes next".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrows_proto::PreparedMessage;

use crate::broker::{Broker, BrokerError, BrokerEvent, BrokerHandler, HistoryAnswer, HistoryQuery};
use crate::history::{Publication, StreamPosition};
use crate::protocol::{Encoded, Event, Info, Pub, Push};
use crate::queue::ClientQueue;

/// Identifies a client connection within this node.
pub type ClientId = u64;

enum Subscriber {
    Live(ClientQueue),
    /// Reading its history: publications wait here (offset, epoch, push).
    Joining(Vec<(u64, String, Arc<Encoded>)>),
}

#[derive(Default)]
struct ChannelState {
    subscribers: HashMap<ClientId, Subscriber>,
    /// The last publication delivered here (drops duplicates after a
    /// broker reconnect or a recovery race).
    last: Option<StreamPosition>,
    /// When that publication was made (ms; 0: not known, the position came
    /// from a history read): with its offset, it identifies it.
    last_time_ms: u64,
    /// Subscribers whose subscribe reply went further than `last` (their
    /// history read saw publications whose live copies had not reached
    /// this node yet): the offset up to which they have them. Their own,
    /// not the channel's: the others have not had those yet. Rare and
    /// short-lived: an entry goes once a live publication passes it.
    floors: HashMap<ClientId, u64>,
    /// While the broker reconnects and until this channel's history was
    /// read again: the events that arrive meanwhile, in order (delivered
    /// after what the history read gives, so that a live publication of
    /// a new primary cannot pass for the continuation of the old stream).
    held: Option<Vec<BrokerEvent>>,
    /// [`Watch`]es of the channel (long polls): they keep the broker
    /// subscription like subscribers, and are woken by its events.
    watchers: u32,
    broker_subscribed: bool,
    pace: Pace,
}

/// Whether a channel's fan-out sends straight into its subscribers'
/// outlets ([`ClientQueue::deliver`]: one write each, in the fan-out,
/// no consumer woken) or queues for them (their connections write, later,
/// everything queued meanwhile at once). Direct costs one write per
/// delivery, the least a delivery costs while publications come further
/// apart than a fan-out takes; queuing batches, which wins once they come
/// closer. So a fan-out is direct when a direct one would take (the last
/// direct write's cost times the subscribers) no longer than the channel's
/// publications are apart, on average (an exponential average: bursts and
/// lulls do not switch it) and since the last one ended (the rest of a
/// burst is queued), and queues otherwise.
#[derive(Default)]
struct Pace {
    /// When the last fan-out began and ended.
    last: Option<(Instant, Instant)>,
    /// The average time between two fan-outs' beginnings (none yet: zero).
    apart: Duration,
    /// What one write of the last direct fan-out cost, on average.
    per_write: Duration,
}

impl Pace {
    /// Whether a fan-out to `subscribers` beginning `now` is direct.
    fn direct(&self, now: Instant, subscribers: usize) -> bool {
        let Some((start, end)) = self.last else { return true };
        let takes = self.per_write.saturating_mul(u32::try_from(subscribers).unwrap_or(u32::MAX));
        let apart = if self.apart.is_zero() { now.saturating_duration_since(start) } else { self.apart };
        apart >= takes && now.saturating_duration_since(end) >= takes
    }

    /// A fan-out from `started` to `ended` made `writes` direct writes,
    /// and spent `encoding` of that time encoding the push (done once per
    /// publication, not per write).
    fn done(&mut self, started: Instant, ended: Instant, writes: u32, encoding: Duration) {
        if writes > 0 {
            self.per_write = ended.saturating_duration_since(started).saturating_sub(encoding) / writes;
        }
        if let Some((start, _)) = self.last {
            let since = started.saturating_duration_since(start);
            self.apart = if self.apart.is_zero() { since } else { (self.apart * 7 + since) / 8 };
        }
        self.last = Some((started, ended));
    }
}

#[derive(Default)]
struct LocalChannel {
    /// Serializes the broker subscribe/unsubscribe of this channel (in an
    /// `Arc` so that [`Node::controlled`] can hand out its guard).
    control: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<ChannelState>,
    /// Wakes the channel's watchers on each of its events.
    wake: tokio::sync::Notify,
}

impl ChannelState {
    /// Whether nothing here needs the channel any more.
    fn unused(&self) -> bool {
        self.subscribers.is_empty() && self.watchers == 0
    }
}

/// Interest in a channel's next event without a queue (what a long poll
/// waits on): the node stays subscribed to the channel at the broker while
/// it lives, and [`changed`](Self::changed) completes on the channel's next
/// event. Made by [`Node::watch`].
pub struct Watch {
    node: Arc<Node>,
    channel: String,
    local: Arc<LocalChannel>,
    /// Where its release runs (the drop may happen off the runtime).
    runtime: tokio::runtime::Handle,
}

impl Watch {
    /// Completes on the channel's next event after this call (enable the
    /// future before reading what is there, so that nothing between the
    /// two is missed).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.local.wake.notified()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        lock(&self.local.state).watchers -= 1;
        self.node.release_later(&self.runtime, std::mem::take(&mut self.channel), self.local.clone());
    }
}

/// A subscribe under way: when its caller gives up on it (drops the
/// future while it waits on the broker), the client stops joining, and the
/// channel is released if nothing else here needs it, as a watch is.
struct Joining<'a> {
    node: &'a Arc<Node>,
    channel: &'a str,
    local: &'a Arc<LocalChannel>,
    client: ClientId,
    /// Where its release runs (the drop may happen off the runtime).
    runtime: tokio::runtime::Handle,
    /// Set once the subscribe no longer needs undoing here.
    done: bool,
}

impl Drop for Joining<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        {
            let mut state = lock(&self.local.state);
            if matches!(state.subscribers.get(&self.client), Some(Subscriber::Joining(_))) {
                state.subscribers.remove(&self.client);
            }
        }
        self.node.release_later(&self.runtime, self.channel.to_owned(), self.local.clone());
    }
}

/// What one fan-out did, for an observer's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fanout {
    /// Seconds a publication took from its `publish` to its last local
    /// subscriber (none for join and leave events).
    pub seconds: Option<f64>,
    /// Messages written straight into subscribers' outlets
    /// ([`ClientQueue::deliver`]), which their connections never see.
    pub direct: u64,
    /// Their payload bytes.
    pub direct_bytes: u64,
}

/// What a node reports, for its server's metrics (the node keeps no
/// counters of its own: one registry, the server's).
pub trait NodeObserver: Send + Sync {
    /// After each fan-out (counting there, once per fan-out, what no
    /// connection sees: the direct writes).
    fn fanout(&self, fanout: &Fanout);
    /// The broker reconnected (the node reads its channels' history again).
    fn broker_reconnected(&self) {}
}

/// Why a subscribe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// The client is already subscribed to the channel.
    AlreadySubscribed,
    /// The broker failed.
    Broker(BrokerError),
}

/// This node's channels and subscribers.
pub struct Node {
    broker: Arc<dyn Broker>,
    channels: Mutex<HashMap<String, Arc<LocalChannel>>>,
    observer: Option<Box<dyn NodeObserver>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("channels", &lock(&self.channels).len()).finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forwards the broker's events to a node without keeping it alive.
struct Handler(Weak<Node>);

impl BrokerHandler for Handler {
    fn is_gone(&self) -> bool {
        self.0.strong_count() == 0
    }

    fn channels(&self) -> Vec<String> {
        self.0.upgrade().map_or_else(Vec::new, |node| lock(&node.channels).keys().cloned().collect())
    }

    fn on_event(&self, event: BrokerEvent) {
        if let Some(node) = self.0.upgrade() {
            node.on_event(event);
        }
    }

    fn on_connection_change(&self, connected: bool) {
        let Some(node) = self.0.upgrade() else { return };
        if !connected {
            // Until each channel's history was read again.
            for local in lock(&node.channels).values() {
                lock(&local.state).held.get_or_insert_with(Vec::new);
            }
            return;
        }
        {
            if let Some(observer) = &node.observer {
                observer.broker_reconnected();
            }
            tokio::spawn(async move { node.resync().await });
        }
    }
}

impl Node {
    /// A node on `broker`; starts the broker's delivery to it.
    pub async fn start(
        broker: Arc<dyn Broker>,
        observer: Option<Box<dyn NodeObserver>>,
    ) -> Result<Arc<Self>, BrokerError> {
        let node = Arc::new(Self { broker: broker.clone(), channels: Mutex::new(HashMap::new()), observer });
        broker.start(Arc::new(Handler(Arc::downgrade(&node)))).await?;
        Ok(node)
    }

    /// The broker behind this node.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Channels with local subscribers.
    pub fn channel_count(&self) -> usize {
        lock(&self.channels).len()
    }

    /// Local subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        let local = lock(&self.channels).get(channel).cloned();
        local.map_or(0, |c| lock(&c.state).subscribers.len())
    }

    /// Pushes `data` to this node's subscribers of `channel` only, without
    /// the broker or history (server-made channels such as statistics).
    /// Offsets count on from the channel's position on this node.
    pub fn deliver_local(&self, channel: &str, data: Bytes) {
        let Some(local) = lock(&self.channels).get(channel).cloned() else { return };
        let (epoch, offset) = match &lock(&local.state).last {
            Some(last) => (last.epoch.clone(), last.offset + 1),
            None => ("local".to_owned(), 1),
        };
        let publication = Publication { offset, data, info: None, time_ms: crate::history::now_ms() };
        self.on_event(BrokerEvent::Publication { channel: channel.to_owned(), epoch, publication });
    }

    fn on_event(&self, event: BrokerEvent) {
        let channel = match &event {
            BrokerEvent::Publication { channel, .. }
            | BrokerEvent::Join { channel, .. }
            | BrokerEvent::Leave { channel, .. } => channel,
        };
        // The memory broker delivers every publication: most channels may
        // have no subscriber here.
        let Some(local) = lock(&self.channels).get(channel).cloned() else { return };
        if let Some(held) = &mut lock(&local.state).held {
            held.push(event);
            return;
        }
        self.process(&local, event);
    }

    /// Delivers one event to the channel's subscribers.
    fn process(&self, local: &LocalChannel, event: BrokerEvent) {
        let (channel, epoch, offset, event, published_ms) = match event {
            BrokerEvent::Publication { channel, epoch, publication } => {
                let offset = publication.offset;
                (channel, Some(epoch), offset, Event::Pub(Pub::from(&publication)), Some(publication.time_ms))
            }
            BrokerEvent::Join { channel, info } => (channel, None, 0, Event::Join(Info(info)), None),
            BrokerEvent::Leave { channel, info } => (channel, None, 0, Event::Leave(Info(info)), None),
        };
        let push = Encoded::new(Push { channel, event });
        let channel = &push.push().channel;
        // One lock from the duplicate check to the last queue: concurrent
        // deliveries into one channel cannot overtake each other.
        let mut state = lock(&local.state);
        let hold = match &epoch {
            Some(epoch) => {
                if state.last.as_ref().is_some_and(|last| &last.epoch == epoch && offset <= last.offset) {
                    // Delivered already (a subscriber's history read had
                    // it first), but a watcher may have read before that.
                    let watched = state.watchers > 0;
                    drop(state);
                    if watched {
                        local.wake.notify_waiters();
                    }
                    return;
                }
                if state.last.as_ref().is_some_and(|last| &last.epoch != epoch) {
                    // The broker lost the stream (a new epoch): subscribers
                    // hold positions of the old one and must hear of it first.
                    let restart = StreamPosition { offset: offset.saturating_sub(1), epoch: epoch.clone() };
                    self.reset_locked(&mut state, channel, restart);
                }
                state.last = Some(StreamPosition { offset, epoch: epoch.clone() });
                state.last_time_ms = published_ms.unwrap_or(0);
                Some((offset, epoch.as_str()))
            }
            // Join and leave events are not part of the stream: a joining
            // subscriber simply starts with the next one.
            None => None,
        };
        let (direct, direct_bytes) = self.fan_out(&mut state, &push, hold);
        let watched = state.watchers > 0;
        drop(state);
        if watched {
            local.wake.notify_waiters();
        }
        if let Some(observer) = &self.observer {
            let now_ms = crate::history::now_ms();
            let seconds = published_ms.map(|published| now_ms.saturating_sub(published) as f64 / 1000.0);
            observer.fanout(&Fanout { seconds, direct, direct_bytes });
        }
    }

    /// The entry of `channel` (made if need be) with its control lock held:
    /// taken on the entry that is still the map's, since an unsubscribe
    /// may drop it while this waits for the lock.
    async fn controlled(&self, channel: &str) -> (Arc<LocalChannel>, tokio::sync::OwnedMutexGuard<()>) {
        loop {
            let local = lock(&self.channels).entry(channel.to_owned()).or_default().clone();
            let control = local.control.clone().lock_owned().await;
            if lock(&self.channels).get(channel).is_some_and(|c| Arc::ptr_eq(c, &local)) {
                return (local, control);
            }
        }
    }

    /// Subscribes `client` (whose queue is `queue`) to `channel`. With
    /// `since`, the answer holds what it missed (at most `recover_limit`).
    /// `reply` turns the answer into the message to queue first (the
    /// command's reply), before any publication that follows it.
    pub async fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        client: ClientId,
        queue: &ClientQueue,
        since: Option<StreamPosition>,
        recover_limit: usize,
        reply: impl FnOnce(&HistoryAnswer) -> PreparedMessage,
    ) -> Result<HistoryAnswer, SubscribeError> {
        let (local, control) = self.controlled(channel).await;
        let need_broker = {
            let mut state = lock(&local.state);
            if state.subscribers.contains_key(&client) {
                return Err(SubscribeError::AlreadySubscribed);
            }
            state.subscribers.insert(client, Subscriber::Joining(Vec::new()));
            !state.broker_subscribed
        };
        let runtime = tokio::runtime::Handle::current();
        let mut joining = Joining { node: self, channel, local: &local, client, runtime, done: false };
        if need_broker {
            if let Err(e) = self.broker.subscribe(channel).await {
                joining.done = true;
                lock(&local.state).subscribers.remove(&client);
                drop(control);
                self.forget_if_empty(channel, &local);
                return Err(SubscribeError::Broker(e));
            }
            lock(&local.state).broker_subscribed = true;
        }
        drop(control);
        let query = match since {
            Some(since) => HistoryQuery::Since(since, recover_limit),
            None => HistoryQuery::Position,
        };
        let answer = self.broker.history(channel, query).await;
        joining.done = true;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.unsubscribe(channel, client).await;
                return Err(SubscribeError::Broker(e));
            }
        };
        let mut state = lock(&local.state);
        // The stream restarted since this node last saw it (its broker lost
        // the history): the other subscribers must hear of it first.
        if state.last.as_ref().is_some_and(|last| last.epoch != answer.position.epoch) {
            self.reset_locked(&mut state, channel, answer.position.clone());
        }
        let Some(Subscriber::Joining(held)) = state.subscribers.remove(&client) else {
            // Dropped meanwhile (its queue overflowed, or it left).
            return Ok(answer);
        };
        let position = &answer.position;
        let mut overflow = queue.push(Arc::new(reply(&answer))).is_err();
        for (offset, epoch, push) in held {
            if !overflow && epoch == position.epoch && offset > position.offset {
                overflow = queue.push(push.message(queue.encoding()).clone()).is_err();
            }
        }
        // The channel's own position only when it had none: publications
        // the others have not had yet may be on their way.
        match &state.last {
            // The channel's first position, unless another first subscriber
            // is still reading (its reply may end before this one's). (Looked
            // for only while the channel has no position: not once per
            // subscribe of a storm.)
            None if !state.subscribers.values().any(|s| matches!(s, Subscriber::Joining(_))) => {
                state.last = Some(position.clone());
                state.last_time_ms = 0;
            }
            None => {
                state.floors.insert(client, position.offset);
            }
            Some(last) if last.epoch == position.epoch && last.offset < position.offset => {
                state.floors.insert(client, position.offset);
            }
            Some(_) => {}
        }
        // An overflow ends the session, which counts it.
        if overflow {
            state.floors.remove(&client);
        } else {
            state.subscribers.insert(client, Subscriber::Live(queue.clone()));
        }
        Ok(answer)
    }

    /// Puts `push` in the queue of every live subscriber, in its encoding
    /// (or straight into its outlet, as the channel's [`Pace`] says), and
    /// holds it (with its stream position `hold`, if it has one) for those
    /// still joining. Subscribers whose queue overflows are dropped as slow
    /// (and those whose queue was closed, as gone). Returns how many
    /// subscribers took it by a direct write, and their payload bytes.
    fn fan_out(&self, state: &mut ChannelState, push: &Arc<Encoded>, hold: Option<(u64, &str)>) -> (u64, u64) {
        let mut slow = Vec::new();
        let started = Instant::now();
        let direct = state.pace.direct(started, state.subscribers.len());
        let (mut writes, mut bytes) = (0u32, 0u64);
        // What encoding took, which the pace of writes leaves out.
        let mut encoding = Duration::ZERO;
        let ChannelState { subscribers, floors, .. } = state;
        for (client, subscriber) in subscribers.iter_mut() {
            match subscriber {
                Subscriber::Live(queue) => {
                    if let (false, Some((offset, _))) = (floors.is_empty(), hold)
                        && let Some(&floor) = floors.get(client)
                    {
                        if offset <= floor {
                            // Its subscribe reply had this one.
                            continue;
                        }
                        floors.remove(client);
                    }
                    if !push.is_encoded(queue.encoding()) {
                        let began = Instant::now();
                        push.message(queue.encoding());
                        encoding += began.elapsed();
                    }
                    let message = push.message(queue.encoding());
                    let taken =
                        if direct { queue.deliver(message) } else { queue.push(message.clone()).map(|_| false) };
                    match taken {
                        Ok(wrote) => {
                            writes += u32::from(wrote);
                            bytes += if wrote { message.payload().len() as u64 } else { 0 };
                        }
                        // The session ends on the overflow, and counts it.
                        Err(_) => slow.push(*client),
                    }
                }
                Subscriber::Joining(held) => {
                    if let Some((offset, epoch)) = hold {
                        held.push((offset, epoch.to_owned(), push.clone()));
                    }
                }
            }
        }
        state.pace.done(started, Instant::now(), writes, encoding);
        for client in &slow {
            state.subscribers.remove(client);
            state.floors.remove(client);
        }
        (u64::from(writes), bytes)
    }

    /// Tells the live subscribers of a channel that its stream restarted
    /// at `position`; one whose queue is full is dropped as slow.
    fn reset(&self, channel: &str, local: &LocalChannel, position: StreamPosition) {
        self.reset_locked(&mut lock(&local.state), channel, position);
    }

    fn reset_locked(&self, state: &mut ChannelState, channel: &str, position: StreamPosition) {
        let event = Event::Reset { position: position.clone().into() };
        let push = Encoded::new(Push { channel: channel.to_owned(), event });
        state.last = Some(position);
        state.last_time_ms = 0;
        self.fan_out(state, &push, None);
        // Floors were offsets of the old stream.
        state.floors.clear();
    }

    /// Drops `local` from the map if nobody subscribed to or watches it
    /// since.
    fn forget_if_empty(&self, channel: &str, local: &Arc<LocalChannel>) {
        let mut channels = lock(&self.channels);
        if lock(&local.state).unused() && channels.get(channel).is_some_and(|c| Arc::ptr_eq(c, local)) {
            channels.remove(channel);
        }
    }

    /// Unsubscribes `client` from `channel`; the last local subscriber
    /// (or watcher) unsubscribes the node from the broker.
    pub async fn unsubscribe(&self, channel: &str, client: ClientId) {
        let Some(local) = lock(&self.channels).get(channel).cloned() else { return };
        {
            let mut state = lock(&local.state);
            state.subscribers.remove(&client);
            state.floors.remove(&client);
        }
        self.release(channel, &local).await;
    }

    /// [`release`](Self::release) from a drop, which cannot wait: in a
    /// task on `runtime` (on a runtime that shut down, not at all: its
    /// broker is gone too).
    fn release_later(self: &Arc<Self>, runtime: &tokio::runtime::Handle, channel: String, local: Arc<LocalChannel>) {
        let node = self.clone();
        drop(runtime.spawn(async move { node.release(&channel, &local).await }));
    }

    /// Leaves the broker's channel and forgets it if nothing here needs it.
    async fn release(&self, channel: &str, local: &Arc<LocalChannel>) {
        let _control = local.control.lock().await;
        let (unused, subscribed) = {
            let state = lock(&local.state);
            (state.unused(), state.broker_subscribed)
        };
        if !unused {
            return;
        }
        if subscribed {
            // Best effort: a broker that is down has no subscription left.
            let _ = self.broker.unsubscribe(channel).await;
            lock(&local.state).broker_subscribed = false;
        }
        self.forget_if_empty(channel, local);
    }

    /// Watches `channel` (see [`Watch`]): subscribes the node to it at the
    /// broker unless it is already.
    pub async fn watch(self: &Arc<Self>, channel: &str) -> Result<Watch, BrokerError> {
        let (local, control) = self.controlled(channel).await;
        let need_broker = {
            let mut state = lock(&local.state);
            state.watchers += 1;
            !state.broker_subscribed
        };
        // Counted from here: however this ends (an error, or the caller
        // giving up during the broker subscribe), dropping the watch undoes
        // the count and lets the channel go.
        let runtime = tokio::runtime::Handle::current();
        let watch = Watch { node: self.clone(), channel: channel.to_owned(), local: local.clone(), runtime };
        if need_broker {
            self.broker.subscribe(channel).await?;
            lock(&local.state).broker_subscribed = true;
        }
        drop(control);
        Ok(watch)
    }

    /// After a broker reconnect: publications made while it was away were
    /// not delivered. Each channel reads what it missed from the history
    /// and delivers it; where the history cannot fill the gap (the broker
    /// lost it), subscribers stay and get a `reset` push with the stream's
    /// new position, so they know to reload their state.
    async fn resync(self: Arc<Self>) {
        let channels: Vec<(String, Arc<LocalChannel>)> =
            lock(&self.channels).iter().map(|(name, local)| (name.clone(), local.clone())).collect();
        for (name, local) in channels {
            let (last, time_ms) = {
                let state = lock(&local.state);
                (state.last.clone(), state.last_time_ms)
            };
            let query = match &last {
                Some(last) => HistoryQuery::Resync { last: last.clone(), time_ms, limit: 1000 },
                None => HistoryQuery::Position,
            };
            // A failed read leaves the stream as it was (the live events
            // held meanwhile go out below, as they would have).
            if let Ok(answer) = self.broker.history(&name, query).await {
                if last.is_some() && !answer.recovered {
                    // Lost: the subscribers restart, then get what the
                    // answer holds (what was made since the loss, after a
                    // failover).
                    self.reset(&name, &local, answer.position.clone());
                }
                for publication in answer.publications {
                    let epoch = answer.position.epoch.clone();
                    self.process(&local, BrokerEvent::Publication { channel: name.clone(), epoch, publication });
                }
            }
            self.release_held(&local);
        }
    }

    /// Delivers the events held while the broker reconnected, in order,
    /// until none is left (those arriving meanwhile are held behind them).
    fn release_held(&self, local: &LocalChannel) {
        loop {
            let events = {
                let mut state = lock(&local.state);
                match state.held.as_mut() {
                    Some(held) if !held.is_empty() => std::mem::take(held),
                    _ => {
                        state.held = None;
                        return;
                    }
                }
            };
            for event in events {
                self.process(local, event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    use crate::broker::MemoryBroker;
    use crate::history::HistoryLimits;

    fn queue() -> ClientQueue {
        ClientQueue::new(64, 1 << 20)
    }

    /// Waits (5 s at most) until the node holds no channel: releases run
    /// in tasks of their own.
    async fn until_no_channels(node: &Node) {
        for _ in 0..500 {
            if node.channel_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn texts(queue: &ClientQueue) -> Vec<String> {
        let mut out = Vec::new();
        queue.pop_all(&mut out).await.unwrap();
        out.iter().map(|m| String::from_utf8(m.payload().to_vec()).unwrap()).collect()
    }

    fn reply(answer: &HistoryAnswer) -> PreparedMessage {
        PreparedMessage::text(format!("reply {} {}", answer.position.offset, answer.publications.len()).into())
    }

    async fn publish(node: &Node, channel: &str, data: &str) -> StreamPosition {
        let data = Bytes::copy_from_slice(data.as_bytes());
        node.broker().publish(channel, data, None, HistoryLimits::default()).await.unwrap()
    }

    #[tokio::test]
    async fn a_watch_wakes_on_the_next_event_and_lets_the_channel_go() {
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        let watch = node.watch("w").await.unwrap();
        let other = node.watch("w").await.unwrap();
        assert_eq!(node.channel_count(), 1, "watched, with no subscriber");
        {
            let mut changed = std::pin::pin!(watch.changed());
            changed.as_mut().enable();
            publish(&node, "w", "1").await;
            tokio::time::timeout(Duration::from_secs(5), changed).await.expect("woken by the publication");
        }
        drop(watch);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(node.channel_count(), 1, "another watch keeps it");
        drop(other);
        until_no_channels(&node).await;
        assert_eq!(node.channel_count(), 0, "the last watch let the channel go");
    }

    #[tokio::test]
    async fn a_watch_given_up_during_its_broker_subscribe_lets_the_channel_go() {
        let delaying = Arc::new(Delaying::default());
        let node = Node::start(Arc::new(Shared(delaying.clone())), None).await.unwrap();
        delaying.stuck.store(true, std::sync::atomic::Ordering::Relaxed);
        let gave_up = tokio::time::timeout(Duration::from_millis(20), node.watch("hung")).await;
        assert!(gave_up.is_err(), "the broker never answers");
        until_no_channels(&node).await;
        assert_eq!(node.channel_count(), 0, "the count was undone and the channel forgotten");
        delaying.stuck.store(false, std::sync::atomic::Ordering::Relaxed);
        let watch = node.watch("hung").await.unwrap();
        assert_eq!(lock(&lock(&node.channels)["hung"].state).watchers, 1);
        drop(watch);
    }

    #[tokio::test]
    async fn a_shared_memory_broker_forgets_nodes_that_were_dropped() {
        let broker = Arc::new(MemoryBroker::new());
        let kept = Node::start(broker.clone(), None).await.unwrap();
        let dropped = Node::start(broker.clone(), None).await.unwrap();
        assert_eq!(broker.handler_count(), 2);
        drop(dropped);
        let q = queue();
        kept.subscribe("c", 1, &q, None, 100, reply).await.unwrap();
        publish(&kept, "c", "1").await;
        assert_eq!(broker.handler_count(), 1, "the dropped node's handler went with the next event");
        assert_eq!(texts(&q).await.len(), 2, "the reply and the publication still reach the node kept");
    }

    #[tokio::test]
    async fn a_subscribe_given_up_during_its_broker_subscribe_lets_the_channel_go() {
        let delaying = Arc::new(Delaying::default());
        let node = Node::start(Arc::new(Shared(delaying.clone())), None).await.unwrap();
        delaying.stuck.store(true, std::sync::atomic::Ordering::Relaxed);
        let q = queue();
        let gave_up = tokio::time::timeout(Duration::from_millis(20), node.subscribe("hung", 1, &q, None, 100, reply));
        assert!(gave_up.await.is_err(), "the broker never answers");
        until_no_channels(&node).await;
        assert_eq!(node.channel_count(), 0, "the joining client was removed and the channel forgotten");
        delaying.stuck.store(false, std::sync::atomic::Ordering::Relaxed);
        node.subscribe("hung", 1, &q, None, 100, reply).await.expect("the same client subscribes again");
        publish(&node, "hung", "1").await;
        assert_eq!(node.subscriber_count("hung"), 1);
    }

    #[test]
    fn a_channel_fans_out_directly_while_quiet_and_queues_while_busy() {
        let ms = Duration::from_millis;
        let mut pace = Pace::default();
        let t0 = Instant::now();
        assert!(pace.direct(t0, 10_000), "a new channel is quiet");
        // A direct fan-out to 10 000 of 40 ms (4 µs a write).
        pace.done(t0, t0 + ms(40), 10_000, Duration::ZERO);
        assert!(!pace.direct(t0 + ms(50), 10_000), "quiet for 10 ms only");
        assert!(pace.direct(t0 + ms(50), 1_000), "enough for a tenth of them");
        // Every 100 ms: direct.
        let mut t = t0;
        for _ in 0..20 {
            t += ms(100);
            assert!(pace.direct(t, 10_000));
            pace.done(t, t + ms(40), 10_000, Duration::ZERO);
        }
        // Every 3 ms (queued, short), then a lull of 60 ms: still busy,
        // on average.
        for _ in 0..30 {
            t += ms(3);
            let direct = pace.direct(t, 10_000);
            pace.done(t, t + ms(1), if direct { 10_000 } else { 0 }, Duration::ZERO);
        }
        assert!(!pace.direct(t + ms(3), 10_000));
        t += ms(60);
        assert!(!pace.direct(t, 10_000), "one lull does not make it quiet");
        // Rare again: direct once the average is back above 40 ms.
        let mut turned = None;
        for i in 0..40 {
            t += ms(100);
            let direct = pace.direct(t, 10_000);
            if direct && turned.is_none() {
                turned = Some(i);
            }
            pace.done(t, t + if direct { ms(40) } else { ms(1) }, if direct { 10_000 } else { 0 }, Duration::ZERO);
        }
        assert!(turned.is_some_and(|i| i < 20), "direct again after {turned:?}");
    }

    #[tokio::test]
    async fn a_quiet_channel_delivers_through_the_outlet() {
        use crate::queue::{Outlet, Sent};
        #[derive(Default)]
        struct Counting(usize);
        impl Outlet for Counting {
            fn send(&mut self, _: &PreparedMessage) -> Sent {
                self.0 += 1;
                Sent::All
            }
        }
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        let outlet = ClientQueue::with_outlet(64, 1 << 20, crate::protocol::Encoding::Json, Counting::default());
        node.subscribe("chat", 1, &outlet.erased(), None, 100, reply).await.unwrap();
        assert_eq!(texts(&outlet.erased()).await, vec!["reply 0 0"], "the reply is queued");
        publish(&node, "chat", r#"{"n":1}"#).await;
        assert_eq!(outlet.lock().outlet().0, 1);
        assert!(outlet.is_empty());
    }

    #[tokio::test]
    async fn publications_reach_local_subscribers_in_order_after_the_reply() {
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        let (a, b) = (queue(), queue());
        node.subscribe("chat", 1, &a, None, 100, reply).await.unwrap();
        node.subscribe("chat", 2, &b, None, 100, reply).await.unwrap();
        publish(&node, "chat", r#"{"n":1}"#).await;
        publish(&node, "chat", r#"{"n":2}"#).await;
        for q in [&a, &b] {
            let got = texts(q).await;
            assert_eq!(got.len(), 3, "{got:?}");
            assert_eq!(got[0], "reply 0 0");
            assert!(got[1].contains(r#""offset":1,"data":{"n":1}"#), "{}", got[1]);
            assert!(got[2].contains(r#""offset":2,"data":{"n":2}"#), "{}", got[2]);
        }
        let again = node.subscribe("chat", 1, &a, None, 100, reply).await;
        assert_eq!(again.unwrap_err(), SubscribeError::AlreadySubscribed);
    }

    #[tokio::test]
    async fn recovery_returns_the_gap_then_live_publications() {
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        let seen = publish(&node, "c", "1").await;
        publish(&node, "c", "2").await;
        publish(&node, "c", "3").await;
        let q = queue();
        let answer = node.subscribe("c", 7, &q, Some(seen), 100, reply).await.unwrap();
        assert!(answer.recovered);
        assert_eq!(answer.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![2, 3]);
        publish(&node, "c", "4").await;
        let got = texts(&q).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "reply 3 2");
        assert!(got[1].contains(r#""offset":4"#));
    }

    #[tokio::test]
    async fn last_unsubscribe_forgets_the_channel() {
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        node.subscribe("c", 1, &queue(), None, 100, reply).await.unwrap();
        node.subscribe("c", 2, &queue(), None, 100, reply).await.unwrap();
        node.unsubscribe("c", 1).await;
        assert_eq!(node.subscriber_count("c"), 1);
        node.unsubscribe("c", 2).await;
        assert_eq!(node.channel_count(), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_others_keep_receiving() {
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        let slow = ClientQueue::new(3, 1 << 20);
        let fast = queue();
        node.subscribe("c", 1, &slow, None, 100, reply).await.unwrap();
        node.subscribe("c", 2, &fast, None, 100, reply).await.unwrap();
        for n in 0..5 {
            publish(&node, "c", &n.to_string()).await;
        }
        assert!(slow.overflowed());
        assert_eq!(node.subscriber_count("c"), 1);
        assert_eq!(texts(&fast).await.len(), 6);
    }

    #[tokio::test]
    async fn a_new_epoch_is_announced_before_its_publications() {
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        let q = queue();
        node.subscribe("c", 1, &q, None, 100, reply).await.unwrap();
        publish(&node, "c", "1").await;
        texts(&q).await;
        // As a broker that lost its history would deliver: offset 1 again,
        // in another epoch.
        let publication = Publication { offset: 1, data: Bytes::from_static(b"2"), info: None, time_ms: 0 };
        node.on_event(BrokerEvent::Publication { channel: "c".into(), epoch: "new".into(), publication });
        let got = texts(&q).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains(r#""reset":{"position":{"offset":0,"epoch":"new"}}"#), "{}", got[0]);
        assert!(got[1].contains(r#""offset":1,"data":2"#), "{}", got[1]);
    }

    /// A memory broker whose deliveries to the node can be held back, as a
    /// remote broker's are in flight while its history already has them.
    #[derive(Default)]
    struct Delaying {
        inner: MemoryBroker,
        node: OnceLock<Arc<dyn BrokerHandler>>,
        held: Mutex<Option<Vec<BrokerEvent>>>,
        /// Broker subscribes never complete (a broker that hangs).
        stuck: std::sync::atomic::AtomicBool,
    }

    struct Forward(Arc<Delaying>);

    impl BrokerHandler for Forward {
        fn on_event(&self, event: BrokerEvent) {
            if let Some(held) = lock(&self.0.held).as_mut() {
                return held.push(event);
            }
            self.0.node.get().expect("started").on_event(event);
        }
        fn on_connection_change(&self, _: bool) {}
        fn channels(&self) -> Vec<String> {
            self.0.node.get().expect("started").channels()
        }
    }

    impl Delaying {
        fn hold(&self) {
            *lock(&self.held) = Some(Vec::new());
        }
        fn release(&self) {
            let held = lock(&self.held).take().unwrap_or_default();
            for event in held {
                self.node.get().expect("started").on_event(event);
            }
        }
    }

    struct Shared(Arc<Delaying>);

    impl Broker for Shared {
        fn start(&self, handler: Arc<dyn BrokerHandler>) -> crate::broker::BoxFuture<'_, Result<(), BrokerError>> {
            let _ = self.0.node.set(handler);
            self.0.inner.start(Arc::new(Forward(self.0.clone())))
        }
        fn publish<'a>(
            &'a self,
            channel: &'a str,
            data: Bytes,
            info: Option<Bytes>,
            limits: HistoryLimits,
        ) -> crate::broker::BoxFuture<'a, Result<StreamPosition, BrokerError>> {
            self.0.inner.publish(channel, data, info, limits)
        }
        fn publish_event(&self, event: BrokerEvent) -> crate::broker::BoxFuture<'_, Result<(), BrokerError>> {
            self.0.inner.publish_event(event)
        }
        fn publish_once<'a>(
            &'a self,
            channel: &'a str,
            data: Bytes,
            info: Option<Bytes>,
            limits: HistoryLimits,
            once: crate::broker::Once<'a>,
        ) -> crate::broker::BoxFuture<'a, Result<StreamPosition, BrokerError>> {
            self.0.inner.publish_once(channel, data, info, limits, once)
        }
        fn subscribe<'a>(&'a self, channel: &'a str) -> crate::broker::BoxFuture<'a, Result<(), BrokerError>> {
            if self.0.stuck.load(std::sync::atomic::Ordering::Relaxed) {
                return Box::pin(std::future::pending());
            }
            self.0.inner.subscribe(channel)
        }
        fn unsubscribe<'a>(&'a self, channel: &'a str) -> crate::broker::BoxFuture<'a, Result<(), BrokerError>> {
            self.0.inner.unsubscribe(channel)
        }
        fn history<'a>(
            &'a self,
            channel: &'a str,
            query: HistoryQuery,
        ) -> crate::broker::BoxFuture<'a, Result<HistoryAnswer, BrokerError>> {
            self.0.inner.history(channel, query)
        }
        fn presence_add<'a>(
            &'a self,
            channel: &'a str,
            client: &'a str,
            info: Bytes,
        ) -> crate::broker::BoxFuture<'a, Result<(), BrokerError>> {
            self.0.inner.presence_add(channel, client, info)
        }
        fn presence_remove<'a>(
            &'a self,
            channel: &'a str,
            client: &'a str,
        ) -> crate::broker::BoxFuture<'a, Result<(), BrokerError>> {
            self.0.inner.presence_remove(channel, client)
        }
        fn presence<'a>(
            &'a self,
            channel: &'a str,
        ) -> crate::broker::BoxFuture<'a, Result<HashMap<String, Bytes>, BrokerError>> {
            self.0.inner.presence(channel)
        }
        fn health(&self) -> crate::broker::BrokerHealth {
            self.0.inner.health()
        }
        fn channels(&self) -> crate::broker::BoxFuture<'_, Result<Vec<String>, BrokerError>> {
            self.0.inner.channels()
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_recovered_further_does_not_take_the_others_live_publications() {
        let delaying = Arc::new(Delaying::default());
        let node = Node::start(Arc::new(Shared(delaying.clone())), None).await.unwrap();
        let early = queue();
        node.subscribe("c", 1, &early, None, 100, reply).await.unwrap();
        let seen = publish(&node, "c", "1").await;
        // Publication 2 is in the history, its live copy still on the way
        // to this node, when a second subscriber recovers from 1.
        delaying.hold();
        publish(&node, "c", "2").await;
        let late = queue();
        let answer = node.subscribe("c", 2, &late, Some(seen), 100, reply).await.unwrap();
        assert_eq!(answer.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![2]);
        delaying.release();
        publish(&node, "c", "3").await;
        let early = texts(&early).await;
        assert_eq!(early.len(), 4, "the early one gets 1, 2 and 3 live: {early:?}");
        assert!(early[2].contains(r#""offset":2"#), "{}", early[2]);
        let late = texts(&late).await;
        assert_eq!(late.len(), 2, "the late one got 2 in its reply, then 3 once: {late:?}");
        assert!(late[1].contains(r#""offset":3"#), "{}", late[1]);
    }

    #[tokio::test]
    async fn live_events_wait_while_the_broker_reconnects_until_the_history_was_read_again() {
        let delaying = Arc::new(Delaying::default());
        let node = Node::start(Arc::new(Shared(delaying.clone())), None).await.unwrap();
        let q = queue();
        node.subscribe("c", 1, &q, None, 100, reply).await.unwrap();
        publish(&node, "c", "1").await;
        assert_eq!(texts(&q).await.len(), 2);
        let handler = Handler(Arc::downgrade(&node));
        handler.on_connection_change(false);
        // Published while the node was away; their live copies come in
        // after the reconnect, before the node read the history again.
        delaying.hold();
        publish(&node, "c", "2").await;
        publish(&node, "c", "3").await;
        delaying.release();
        assert!(q.is_empty(), "held until the history was read again");
        handler.on_connection_change(true);
        let got = tokio::time::timeout(Duration::from_secs(10), texts(&q)).await.unwrap();
        assert_eq!(got.len(), 2, "2 and 3 once each: {got:?}");
        assert!(got[0].contains(r#""offset":2"#) && got[1].contains(r#""offset":3"#), "{got:?}");
        publish(&node, "c", "4").await;
        assert!(texts(&q).await[0].contains(r#""offset":4"#), "live again");
    }

    #[tokio::test]
    async fn join_and_leave_events_reach_live_subscribers() {
        let node = Node::start(Arc::new(MemoryBroker::new()), None).await.unwrap();
        let q = queue();
        node.subscribe("room", 1, &q, None, 100, reply).await.unwrap();
        let info = Bytes::from_static(br#"{"user":"al"}"#);
        node.broker().publish_event(BrokerEvent::Join { channel: "room".into(), info: info.clone() }).await.unwrap();
        node.broker().publish_event(BrokerEvent::Leave { channel: "room".into(), info }).await.unwrap();
        let got = texts(&q).await;
        assert_eq!(got.len(), 3);
        assert!(got[1].contains(r#""join":{"user":"al"}"#), "{}", got[1]);
        assert!(got[2].contains(r#""leave":{"user":"al"}"#), "{}", got[2]);
    }
}
