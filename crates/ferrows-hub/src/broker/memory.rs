//! The embedded broker: history and presence in this process, delivery by
//! a direct call. One node only; its epochs change when the process
//! restarts (the history is gone, and clients are told so).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use bytes::Bytes;

use super::{BoxFuture, Broker, BrokerError, BrokerEvent, BrokerHandler, BrokerHealth, HistoryAnswer, HistoryQuery};
use crate::history::{ChannelHistory, HistoryLimits, Recovery, StreamPosition, now_ms};

/// Operations between two sweeps of channels left with nothing in them.
const SWEEP_EVERY: u64 = 4096;

/// How long an empty channel (no history, no presence) keeps its epoch
/// after its last use: 10 minutes, so a subscriber of a quiet channel can
/// still recover across a reconnect instead of finding a new epoch.
const EMPTY_CHANNEL_TTL_MS: u64 = 10 * 60 * 1000;

#[derive(Debug)]
struct Channel {
    history: ChannelHistory,
    presence: HashMap<String, Bytes>,
    last_used_ms: u64,
    /// The idempotency keys of its recent publications: the position
    /// each made, and when the key is forgotten (ms).
    once: HashMap<String, (StreamPosition, u64)>,
}

/// The in-process broker (the default). Several nodes of one process (the
/// servers of a test, say) may share one: each gets every event.
#[derive(Default)]
pub struct MemoryBroker {
    channels: Mutex<HashMap<String, Channel>>,
    handlers: RwLock<Vec<Arc<dyn BrokerHandler>>>,
    epoch_seed: OnceLock<u64>,
    next_epoch: AtomicU64,
    operations: AtomicU64,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").field("channels", &self.lock().len()).finish()
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new epoch: the start time and a counter, so a restarted process
    /// never reuses one.
    fn new_epoch(&self) -> String {
        let seed = *self.epoch_seed.get_or_init(now_ms);
        format!("{seed:x}{:x}", self.next_epoch.fetch_add(1, Ordering::Relaxed))
    }

    fn channel<'a>(&self, channels: &'a mut HashMap<String, Channel>, name: &str) -> &'a mut Channel {
        let now = now_ms();
        if !channels.contains_key(name) {
            let history = ChannelHistory::new(self.new_epoch(), HistoryLimits::default());
            let channel = Channel { history, presence: HashMap::new(), last_used_ms: now, once: HashMap::new() };
            channels.insert(name.to_owned(), channel);
        }
        let channel = channels.get_mut(name).expect("inserted above");
        channel.last_used_ms = now;
        channel
    }

    /// Forgets channels with no history and no presence left, now and then,
    /// so publishing into many channels does not grow memory for ever.
    fn maybe_sweep(&self, channels: &mut HashMap<String, Channel>) {
        if self.operations.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            sweep(channels, now_ms());
        }
    }

    /// Publishes into `channel` with the channels held: appends to its
    /// history and delivers, under the lock, so that concurrent
    /// publishers into one channel reach every subscriber in offset order.
    fn publish_locked(
        &self,
        channels: &mut HashMap<String, Channel>,
        channel: &str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
    ) -> StreamPosition {
        self.maybe_sweep(channels);
        let entry = self.channel(channels, channel);
        entry.history.set_limits(limits);
        let publication = entry.history.append(data, info, now_ms());
        let epoch = entry.history.epoch().to_owned();
        let position = StreamPosition { offset: publication.offset, epoch: epoch.clone() };
        self.deliver(BrokerEvent::Publication { channel: channel.to_owned(), epoch, publication });
        position
    }

    /// Channels held now (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.lock().len()
    }

    fn deliver(&self, event: BrokerEvent) {
        let gone = {
            let handlers = self.handlers.read().unwrap_or_else(|p| p.into_inner());
            if let Some((last, others)) = handlers.split_last() {
                for handler in others {
                    handler.on_event(event.clone());
                }
                last.on_event(event);
            }
            handlers.iter().any(|handler| handler.is_gone())
        };
        // The handlers of nodes that were dropped go on the next event.
        if gone {
            self.handlers.write().unwrap_or_else(|p| p.into_inner()).retain(|handler| !handler.is_gone());
        }
    }

    /// Nodes this broker delivers to (for tests).
    pub fn handler_count(&self) -> usize {
        self.handlers.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn sweep(channels: &mut HashMap<String, Channel>, now: u64) {
    channels.retain(|_, channel| {
        channel.history.trim(now);
        channel.once.retain(|_, (_, until)| *until > now);
        let empty = channel.history.is_empty() && channel.presence.is_empty() && channel.once.is_empty();
        !empty || now.saturating_sub(channel.last_used_ms) < EMPTY_CHANNEL_TTL_MS
    });
}

impl Broker for MemoryBroker {
    fn start(&self, handler: Arc<dyn BrokerHandler>) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).push(handler);
        Box::pin(async { Ok(()) })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, BrokerError>> {
        let mut channels = self.lock();
        let position = self.publish_locked(&mut channels, channel, data, info, limits);
        drop(channels);
        Box::pin(async move { Ok(position) })
    }

    fn publish_event(&self, event: BrokerEvent) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.deliver(event);
        Box::pin(async { Ok(()) })
    }

    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
        once: super::Once<'a>,
    ) -> BoxFuture<'a, Result<StreamPosition, BrokerError>> {
        let now = now_ms();
        // One lock for the check and the publication: two publishers of
        // one key cannot both publish.
        let mut channels = self.lock();
        let entry = self.channel(&mut channels, channel);
        entry.once.retain(|_, (_, until)| *until > now);
        if let Some((position, _)) = entry.once.get(once.key) {
            let position = position.clone();
            return Box::pin(async move { Ok(position) });
        }
        let position = self.publish_locked(&mut channels, channel, data, info, limits);
        let until = now.saturating_add(u64::try_from(once.window.as_millis()).unwrap_or(u64::MAX));
        let entry = channels.get_mut(channel).expect("published into");
        entry.once.insert(once.key.to_owned(), (position.clone(), until));
        Box::pin(async move { Ok(position) })
    }

    fn subscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        // Every publication is delivered to the one node anyway.
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryAnswer, BrokerError>> {
        let mut channels = self.lock();
        self.maybe_sweep(&mut channels);
        let entry = self.channel(&mut channels, channel);
        let now = now_ms();
        let (publications, recovered) = match query {
            HistoryQuery::Position => (Vec::new(), true),
            HistoryQuery::Latest(limit) => (entry.history.latest(limit, now), true),
            // One process: its history cannot go back behind what it
            // delivered.
            HistoryQuery::Since(since, limit) | HistoryQuery::Resync { last: since, limit, .. } => {
                match entry.history.recover(&since, limit, now) {
                    Recovery::Recovered(missed) => (missed, true),
                    Recovery::NotRecoverable => (Vec::new(), false),
                }
            }
        };
        let answer = HistoryAnswer { position: entry.history.position(), publications, recovered };
        Box::pin(async move { Ok(answer) })
    }

    fn presence_add<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
        info: Bytes,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let mut channels = self.lock();
        self.channel(&mut channels, channel).presence.insert(client.to_owned(), info);
        Box::pin(async { Ok(()) })
    }

    fn presence_remove<'a>(&'a self, channel: &'a str, client: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        if let Some(entry) = self.lock().get_mut(channel) {
            entry.presence.remove(client);
        }
        Box::pin(async { Ok(()) })
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<HashMap<String, Bytes>, BrokerError>> {
        let present = self.lock().get(channel).map(|c| c.presence.clone()).unwrap_or_default();
        Box::pin(async move { Ok(present) })
    }

    fn health(&self) -> BrokerHealth {
        BrokerHealth { kind: "memory", connected: true, detail: None }
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>> {
        let handlers = self.handlers.read().unwrap_or_else(|p| p.into_inner());
        let mut channels: Vec<String> = handlers.iter().flat_map(|handler| handler.channels()).collect();
        channels.sort_unstable();
        channels.dedup();
        Box::pin(async move { Ok(channels) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<BrokerEvent>>);

    impl BrokerHandler for Recorder {
        fn on_event(&self, event: BrokerEvent) {
            self.0.lock().unwrap().push(event);
        }
        fn on_connection_change(&self, _: bool) {}
        fn channels(&self) -> Vec<String> {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn a_publication_with_a_key_is_made_once_within_the_window() {
        let broker = MemoryBroker::new();
        let recorder = Arc::new(Recorder::default());
        broker.start(recorder.clone()).await.unwrap();
        let limits = HistoryLimits::default();
        let once = |key| super::super::Once { key, window: std::time::Duration::from_millis(200) };
        let first = broker.publish_once("a", Bytes::from_static(b"1"), None, limits, once("k")).await.unwrap();
        let again = broker.publish_once("a", Bytes::from_static(b"1"), None, limits, once("k")).await.unwrap();
        assert_eq!(again, first);
        let other = broker.publish_once("b", Bytes::from_static(b"1"), None, limits, once("k")).await.unwrap();
        assert_eq!(other.offset, 1, "keys are per channel");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let later = broker.publish_once("a", Bytes::from_static(b"2"), None, limits, once("k")).await.unwrap();
        assert_eq!(later.offset, 2);
        assert_eq!(recorder.0.lock().unwrap().len(), 3, "three publications delivered");
    }

    #[tokio::test]
    async fn publications_get_positions_and_reach_the_handler_in_order() {
        let broker = MemoryBroker::new();
        let recorder = Arc::new(Recorder::default());
        broker.start(recorder.clone()).await.unwrap();
        let limits = HistoryLimits::default();
        let first = broker.publish("a", Bytes::from_static(b"1"), None, limits).await.unwrap();
        let second =
            broker.publish("a", Bytes::from_static(b"2"), Some(Bytes::from_static(b"{}")), limits).await.unwrap();
        assert_eq!((first.offset, second.offset), (1, 2));
        assert_eq!(first.epoch, second.epoch);
        let other = broker.publish("b", Bytes::from_static(b"3"), None, limits).await.unwrap();
        assert_ne!(other.epoch, first.epoch, "each channel has its own epoch");
        let events = recorder.0.lock().unwrap();
        let offsets: Vec<(String, u64)> = events
            .iter()
            .map(|e| match e {
                BrokerEvent::Publication { channel, publication, .. } => (channel.clone(), publication.offset),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(offsets, vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
    }

    #[tokio::test]
    async fn history_answers_position_latest_and_since() {
        let broker = MemoryBroker::new();
        let limits = HistoryLimits { max_count: 3, ..HistoryLimits::default() };
        for n in 0..5u8 {
            broker.publish("c", Bytes::from(vec![b'0' + n]), None, limits).await.unwrap();
        }
        let now = broker.history("c", HistoryQuery::Position).await.unwrap();
        assert_eq!(now.position.offset, 5);
        let latest = broker.history("c", HistoryQuery::Latest(2)).await.unwrap();
        assert_eq!(latest.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![4, 5]);
        let since = |offset| HistoryQuery::Since(StreamPosition { offset, epoch: now.position.epoch.clone() }, 100);
        let recent = broker.history("c", since(3)).await.unwrap();
        assert!(recent.recovered);
        assert_eq!(recent.publications.len(), 2);
        let trimmed = broker.history("c", since(1)).await.unwrap();
        assert!(!trimmed.recovered, "offsets 2 was trimmed away (max_count 3)");
        let other_epoch =
            broker.history("c", HistoryQuery::Since(StreamPosition { offset: 4, epoch: "x".into() }, 100));
        assert!(!other_epoch.await.unwrap().recovered);
    }

    #[tokio::test]
    async fn presence_tracks_clients_and_empty_channels_are_swept() {
        let broker = MemoryBroker::new();
        broker.presence_add("p", "c1", Bytes::from_static(b"{\"user\":\"al\"}")).await.unwrap();
        broker.presence_add("p", "c2", Bytes::from_static(b"{}")).await.unwrap();
        broker.presence_remove("p", "c2").await.unwrap();
        let present = broker.presence("p").await.unwrap();
        assert_eq!(present.keys().collect::<Vec<_>>(), vec!["c1"]);
        broker.presence_remove("p", "c1").await.unwrap();
        let hour = HistoryLimits { max_age: std::time::Duration::from_secs(3600), ..HistoryLimits::default() };
        broker.publish("kept", Bytes::from_static(b"1"), None, hour).await.unwrap();
        let epoch = broker.history("p", HistoryQuery::Position).await.unwrap().position.epoch;
        sweep(&mut broker.lock(), now_ms());
        let again = broker.history("p", HistoryQuery::Position).await.unwrap().position.epoch;
        assert_eq!(epoch, again, "a recently used empty channel keeps its epoch");
        sweep(&mut broker.lock(), now_ms() + EMPTY_CHANNEL_TTL_MS);
        assert_eq!(broker.channel_count(), 1, "only the channel with history is left");
    }
}
