//! The node-local hub: channels, their subscribers and history, fan-out.
//!
//! A publication is appended to its channel's history, framed once as a
//! WebSocket message ([`PreparedMessage`]) and pushed to every subscriber's
//! bounded queue, all under the channel's lock so every subscriber sees the
//! channel's publications in offset order. Subscribing with recovery reads
//! the history and registers the subscriber under that same lock, so no
//! publication can fall between "what you missed" and "what comes next".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrows_proto::PreparedMessage;

use crate::history::{ChannelHistory, HistoryLimits, Publication, Recovery, StreamPosition};
use crate::protocol::publication_push;
use crate::queue::ClientQueue;

/// Identifies a client connection within this node.
pub type ClientId = u64;

#[derive(Debug)]
struct Subscriber {
    queue: ClientQueue,
}

#[derive(Debug)]
struct Channel {
    history: ChannelHistory,
    subscribers: HashMap<ClientId, Subscriber>,
}

/// Channels and their subscribers on this node.
#[derive(Debug)]
pub struct Hub {
    channels: Mutex<HashMap<String, Arc<Mutex<Channel>>>>,
    limits: HistoryLimits,
    epoch_seed: u64,
    next_epoch: AtomicU64,
}

/// What a publication reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The publication's position.
    pub position: StreamPosition,
    /// Subscribers whose queue took it.
    pub delivered: usize,
    /// Subscribers whose queue overflowed: they must be disconnected.
    pub slow: Vec<ClientId>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// An empty hub whose channels keep history within `limits`. Epochs are
    /// derived from the start time, so a restarted node never reuses one.
    pub fn new(limits: HistoryLimits) -> Self {
        Self { channels: Mutex::new(HashMap::new()), limits, epoch_seed: now_ms(), next_epoch: AtomicU64::new(0) }
    }

    fn channel(&self, name: &str) -> Arc<Mutex<Channel>> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(name) {
            return channel.clone();
        }
        let n = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        let epoch = format!("{:x}{:x}", self.epoch_seed, n);
        let channel = Arc::new(Mutex::new(Channel {
            history: ChannelHistory::new(epoch, self.limits),
            subscribers: HashMap::new(),
        }));
        channels.insert(name.to_owned(), channel.clone());
        channel
    }

    /// Subscribes `client`; with `since`, also returns what it missed.
    /// Returns the recovery answer (if asked) and the current position.
    pub fn subscribe(
        &self,
        name: &str,
        client: ClientId,
        queue: ClientQueue,
        since: Option<&StreamPosition>,
        recover_limit: usize,
    ) -> (Option<Recovery>, StreamPosition) {
        let channel = self.channel(name);
        let mut channel = lock(&channel);
        let recovery = since.map(|since| channel.history.recover(since, recover_limit, now_ms()));
        channel.subscribers.insert(client, Subscriber { queue });
        (recovery, channel.history.position())
    }

    /// Whether `client` is subscribed to `name`.
    pub fn is_subscribed(&self, name: &str, client: ClientId) -> bool {
        let channel = lock(&self.channels).get(name).cloned();
        channel.is_some_and(|c| lock(&c).subscribers.contains_key(&client))
    }

    /// Unsubscribes `client` from `name`; empty channels without history
    /// are forgotten.
    pub fn unsubscribe(&self, name: &str, client: ClientId) {
        let mut channels = lock(&self.channels);
        let Some(channel) = channels.get(name).cloned() else { return };
        let forget = {
            let mut channel = lock(&channel);
            channel.subscribers.remove(&client);
            channel.subscribers.is_empty() && channel.history.is_empty()
        };
        if forget {
            channels.remove(name);
        }
    }

    /// Publishes raw JSON `data` (and optional raw JSON `info`) into `name`.
    pub fn publish(&self, name: &str, data: &str, info: Option<&str>) -> Delivery {
        let channel = self.channel(name);
        let mut channel = lock(&channel);
        let publication = channel.history.append(Bytes::copy_from_slice(data.as_bytes()), None, now_ms());
        let push = publication_push(name, publication.offset, data, info);
        let message = Arc::new(PreparedMessage::text(push.into()));
        let mut delivered = 0;
        let mut slow = Vec::new();
        for (client, subscriber) in &channel.subscribers {
            match subscriber.queue.push(message.clone()) {
                Ok(()) => delivered += 1,
                Err(_) => slow.push(*client),
            }
        }
        Delivery {
            position: StreamPosition { offset: publication.offset, epoch: channel.history.epoch().to_owned() },
            delivered,
            slow,
        }
    }

    /// The latest publications of `name` (oldest first).
    pub fn history(&self, name: &str, limit: usize) -> (Vec<Publication>, StreamPosition) {
        let channel = self.channel(name);
        let mut channel = lock(&channel);
        (channel.history.latest(limit, now_ms()), channel.history.position())
    }

    /// Subscribers of `name` on this node.
    pub fn subscriber_count(&self, name: &str) -> usize {
        let channel = lock(&self.channels).get(name).cloned();
        channel.map_or(0, |c| lock(&c).subscribers.len())
    }

    /// Channels known now.
    pub fn channel_count(&self) -> usize {
        lock(&self.channels).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ClientQueue;

    fn queue() -> ClientQueue {
        ClientQueue::new(16, 1 << 20)
    }

    async fn texts(queue: &ClientQueue) -> Vec<String> {
        let mut out = Vec::new();
        queue.pop_all(&mut out).await.unwrap();
        out.iter().map(|m| String::from_utf8(m.payload().to_vec()).unwrap()).collect()
    }

    #[tokio::test]
    async fn publications_reach_every_subscriber_in_order_framed_once() {
        let hub = Hub::new(HistoryLimits::default());
        let queues: Vec<ClientQueue> = (0..3).map(|_| queue()).collect();
        for (i, q) in queues.iter().enumerate() {
            hub.subscribe("chat", i as u64, q.clone(), None, 100);
        }
        let first = hub.publish("chat", r#"{"n":1}"#, None);
        let second = hub.publish("chat", r#"{"n":2}"#, Some(r#"{"name":"al"}"#));
        assert_eq!((first.position.offset, second.position.offset), (1, 2));
        assert_eq!(second.delivered, 3);
        for q in &queues {
            let got = texts(q).await;
            assert_eq!(got.len(), 2);
            assert!(got[0].contains(r#""offset":1,"data":{"n":1}"#), "{}", got[0]);
            assert!(got[1].contains(r#""info":{"name":"al"}"#), "{}", got[1]);
        }
    }

    #[tokio::test]
    async fn subscribe_with_recovery_misses_nothing() {
        let hub = Hub::new(HistoryLimits::default());
        let early = queue();
        hub.subscribe("c", 1, early.clone(), None, 100);
        hub.publish("c", "0", None);
        assert_eq!(texts(&early).await.len(), 1);
        // The client saw offset 1, then lost its connection.
        let seen = StreamPosition { offset: 1, epoch: hub.history("c", 0).1.epoch };
        hub.unsubscribe("c", 1);
        for n in 1..4 {
            hub.publish("c", &n.to_string(), None);
        }
        let late = queue();
        let (recovery, position) = hub.subscribe("c", 2, late.clone(), Some(&seen), 100);
        match recovery {
            Some(Recovery::Recovered(missed)) => {
                assert_eq!(missed.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![2, 3, 4])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(position.offset, 4);
        hub.publish("c", "4", None);
        assert_eq!(texts(&late).await.len(), 1);
        let stale = StreamPosition { offset: 1, epoch: "gone".into() };
        let (recovery, _) = hub.subscribe("c", 3, queue(), Some(&stale), 100);
        assert_eq!(recovery, Some(Recovery::NotRecoverable));
    }

    #[tokio::test]
    async fn slow_subscribers_are_reported_not_buffered() {
        let hub = Hub::new(HistoryLimits::default());
        let slow = ClientQueue::new(2, 1 << 20);
        let fast = queue();
        hub.subscribe("c", 1, slow.clone(), None, 100);
        hub.subscribe("c", 2, fast.clone(), None, 100);
        let mut reported = Vec::new();
        for n in 0..5 {
            reported.extend(hub.publish("c", &n.to_string(), None).slow);
            texts(&fast).await;
        }
        assert_eq!(reported, vec![1, 1, 1]);
        assert!(slow.overflowed());
        assert_eq!(slow.len(), 2, "the slow queue stays at its bound");
    }

    #[test]
    fn epochs_differ_per_channel_and_channels_are_forgotten() {
        let hub = Hub::new(HistoryLimits::default());
        let (_, a) = hub.subscribe("a", 1, queue(), None, 10);
        let (_, b) = hub.subscribe("b", 1, queue(), None, 10);
        assert_ne!(a.epoch, b.epoch);
        hub.unsubscribe("a", 1);
        assert_eq!(hub.channel_count(), 1);
        assert!(hub.is_subscribed("b", 1));
        assert_eq!(hub.subscriber_count("b"), 1);
    }
}
