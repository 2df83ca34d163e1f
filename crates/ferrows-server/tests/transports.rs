//! The four transports (WebSocket, Server-Sent Events, long polling,
//! polling) deliver the same publications, in order, none lost or
//! repeated: across a dropped connection with either broker, across a
//! server restart on Redis; and each hears of a stream that restarted (a
//! memory broker's server restarted, a Redis that lost its data).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, EventStream, WAIT, api_publish, eventually, http, server};
use ferrows_hub::testing::RedisServer;
use ferrows_server::{BrokerKind, Server};
use serde_json::{Value, json};

const CHANNEL: &str = "feed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    WebSocket,
    Stream,
    LongPoll,
    Poll,
}

const ALL: [Transport; 4] = [Transport::WebSocket, Transport::Stream, Transport::LongPoll, Transport::Poll];

/// An open connection, for the transports that keep one.
enum Open {
    WebSocket(Box<Client>),
    Stream(Box<EventStream>),
    None,
}

/// A subscriber of [`CHANNEL`] over one transport, which reconnects by
/// hand from where it was, as the JavaScript client does.
struct Subscriber {
    transport: Transport,
    open: Open,
    /// Where it is: `(offset, epoch)`.
    position: Option<(u64, String)>,
    /// What a stream sends back as `Last-Event-ID`.
    last_event_id: Option<String>,
    /// The data of every publication, in the order received.
    received: Vec<Value>,
    /// Times the server said publications were lost (a `reset`, or a
    /// resubscription that did not recover).
    resets: usize,
}

impl Subscriber {
    /// Subscribes from the channel's position now.
    async fn open(transport: Transport, addr: SocketAddr) -> Self {
        let mut subscriber =
            Self { transport, open: Open::None, position: None, last_event_id: None, received: Vec::new(), resets: 0 };
        subscriber.connect(addr).await;
        subscriber
    }

    /// (Re)connects to `addr` from its position.
    async fn connect(&mut self, addr: SocketAddr) {
        let since = self.position.clone();
        match self.transport {
            Transport::WebSocket => {
                let mut ws = Client::connect(addr, None).await;
                let mut subscribe = json!({"channel": CHANNEL});
                if let Some((offset, epoch)) = &since {
                    subscribe["since"] = json!({"offset": offset, "epoch": epoch});
                }
                let reply = ws.call(json!({"subscribe": subscribe})).await;
                let result = reply.get("result").unwrap_or_else(|| panic!("{reply}")).clone();
                self.resubscribed(&result, since.is_some());
                self.open = Open::WebSocket(Box::new(ws));
            }
            Transport::Stream => {
                let path = format!("/api/stream?channel={CHANNEL}");
                let id = self.last_event_id.clone();
                let headers: Vec<(&str, &str)> = id.iter().map(|id| ("last-event-id", id.as_str())).collect();
                let mut stream = EventStream::open(addr, &path, &headers).await;
                assert_eq!(stream.status, 200, "{}", stream.error);
                assert_eq!(stream.next_json().await.0, "connected");
                let (kind, _, subscribed) = stream.next_json().await;
                assert_eq!(kind, "subscribed");
                // Recovered publications follow as pushes: the position
                // moves with them. Otherwise it is the channel's now.
                if subscribed["recovered"] != true {
                    if subscribed["recovered"] == false {
                        self.resets += 1;
                    }
                    let position = &subscribed["position"];
                    self.position =
                        Some((position["offset"].as_u64().unwrap(), position["epoch"].as_str().unwrap().to_owned()));
                }
                self.last_event_id = stream.last_id();
                self.open = Open::Stream(Box::new(stream));
            }
            Transport::LongPoll | Transport::Poll => {
                self.open = Open::None;
                if since.is_none() {
                    let (status, answer) = http(addr, "GET", &format!("/api/poll?channel={CHANNEL}"), &[], "").await;
                    assert_eq!(status, 200, "{answer}");
                    self.resubscribed(&answer["result"]["channels"][0], false);
                }
            }
        }
    }

    /// A subscribe result (or a poll's part): where the channel is, and
    /// what was recovered.
    fn resubscribed(&mut self, result: &Value, recovering: bool) {
        if recovering && result["recovered"] != true {
            self.resets += 1;
        } else {
            for publication in result["publications"].as_array().into_iter().flatten() {
                self.publication(publication);
            }
        }
        let position = &result["position"];
        self.position = Some((position["offset"].as_u64().unwrap(), position["epoch"].as_str().unwrap().to_owned()));
    }

    fn publication(&mut self, publication: &Value) {
        let offset = publication["offset"].as_u64().unwrap();
        if let Some((last, _)) = &mut self.position {
            assert!(offset > *last, "{:?}: offset {offset} after {last}: a repeat", self.transport);
            *last = offset;
        }
        self.received.push(publication["data"].clone());
    }

    /// Reads until `total` publications were received in all.
    async fn until(&mut self, addr: SocketAddr, total: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.received.len() < total {
            assert!(tokio::time::Instant::now() < deadline, "{:?}: {} of {total}", self.transport, self.received.len());
            self.step(addr).await;
        }
    }

    /// Reads one push (a poll, for the polling transports).
    async fn step(&mut self, addr: SocketAddr) {
        let push = match &mut self.open {
            Open::WebSocket(ws) => ws.next_push().await,
            Open::Stream(stream) => {
                let (kind, _, push) = stream.next_json().await;
                assert_eq!(kind, "message", "{push}");
                self.last_event_id = stream.last_id();
                push
            }
            Open::None => return self.poll(addr).await,
        };
        self.push(&push["push"]);
    }

    /// One poll (a long one waits up to 5 s).
    async fn poll(&mut self, addr: SocketAddr) {
        let (offset, epoch) = self.position.clone().expect("a position");
        let timeout = if self.transport == Transport::LongPoll { 5 } else { 0 };
        let path = format!("/api/poll?channel={CHANNEL}&since={CHANNEL}:{offset}:{epoch}&timeout={timeout}");
        let (status, answer) = http(addr, "GET", &path, &[], "").await;
        assert_eq!(status, 200, "{answer}");
        self.resubscribed(&answer["result"]["channels"][0], true);
        if timeout == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn push(&mut self, push: &Value) {
        if let Some(publication) = push.get("pub") {
            self.publication(publication);
        } else if let Some(reset) = push.get("reset") {
            self.resets += 1;
            let position = &reset["position"];
            self.position =
                Some((position["offset"].as_u64().unwrap(), position["epoch"].as_str().unwrap().to_owned()));
        }
    }

    /// Waits for a `reset` push (connections) or a poll that finds the
    /// stream restarted.
    async fn until_reset(&mut self, addr: SocketAddr) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.resets == 0 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}: no reset", self.transport);
            self.step(addr).await;
        }
    }

    /// Drops its connection without a goodbye.
    fn drop_connection(&mut self) {
        self.open = Open::None;
    }
}

async fn publish(addr: SocketAddr, range: std::ops::Range<u32>) {
    for n in range {
        api_publish(addr, CHANNEL, json!(n)).await;
    }
}

fn numbers(range: std::ops::Range<u32>) -> Vec<Value> {
    range.map(|n| json!(n)).collect()
}

async fn on_redis(redis: &RedisServer, port: u16) -> Server {
    let url = redis.url();
    server(move |config| {
        config.broker.kind = BrokerKind::Redis;
        config.broker.redis_url = url;
        config.server.port = port;
    })
    .await
}

/// A subscriber of every transport, from the channel's position now.
async fn every_transport(addr: SocketAddr) -> Vec<Subscriber> {
    let mut subscribers = Vec::new();
    for transport in ALL {
        subscribers.push(Subscriber::open(transport, addr).await);
    }
    subscribers
}

/// Reads until every subscriber received `total` publications.
async fn all_until(subscribers: &mut [Subscriber], addr: SocketAddr, total: usize) {
    for subscriber in subscribers {
        subscriber.until(addr, total).await;
    }
}

/// Every subscriber received exactly `expected`, and heard of no reset.
fn all_received(subscribers: &[Subscriber], expected: &[Value]) {
    for subscriber in subscribers {
        assert_eq!((subscriber.transport, subscriber.received.as_slice()), (subscriber.transport, expected));
        assert_eq!(subscriber.resets, 0, "{:?}", subscriber.transport);
    }
}

/// Subscribers that had publications 0 to 9 and are away: 10 to 19 are
/// published, they come back to `addr`, 20 to 29 follow, and each gets all
/// 30, in order, once.
async fn missed_then_live(subscribers: &mut [Subscriber], addr: SocketAddr) {
    publish(addr, 10..20).await;
    for subscriber in subscribers.iter_mut() {
        subscriber.connect(addr).await;
    }
    publish(addr, 20..30).await;
    all_until(subscribers, addr, 30).await;
    all_received(subscribers, &numbers(0..30));
}

/// Publications before, while away and after a dropped connection reach
/// every transport, in order, once each.
async fn across_a_dropped_connection(server: Server) {
    let addr = server.local_addr();
    let mut subscribers = every_transport(addr).await;
    publish(addr, 0..10).await;
    all_until(&mut subscribers, addr, 10).await;
    for subscriber in &mut subscribers {
        subscriber.drop_connection();
    }
    missed_then_live(&mut subscribers, addr).await;
}

#[tokio::test]
async fn every_transport_gets_every_publication_across_a_dropped_connection_on_the_memory_broker() {
    across_a_dropped_connection(server(|_| {}).await).await;
}

#[tokio::test]
async fn every_transport_gets_every_publication_across_a_dropped_connection_on_redis() {
    let redis = RedisServer::start();
    across_a_dropped_connection(on_redis(&redis, 0).await).await;
}

#[tokio::test]
async fn every_transport_gets_every_publication_across_a_server_restart_on_redis() {
    let redis = RedisServer::start();
    let first = on_redis(&redis, 0).await;
    let addr = first.local_addr();
    let mut subscribers = every_transport(addr).await;
    publish(addr, 0..10).await;
    all_until(&mut subscribers, addr, 10).await;
    // A graceful restart: the WebSocket gets its Close (and answers it),
    // the stream its end.
    let shutdown = tokio::spawn(first.shut_down());
    for subscriber in &mut subscribers {
        match &mut subscriber.open {
            Open::WebSocket(ws) => assert!(ws.closed().await.is_some()),
            Open::Stream(stream) => assert!(stream.next().await.is_none()),
            Open::None => {}
        }
        subscriber.drop_connection();
    }
    tokio::time::timeout(WAIT, shutdown).await.expect("shut down in time").unwrap();
    let second = on_redis(&redis, addr.port()).await;
    missed_then_live(&mut subscribers, addr).await;
    drop(second);
}

#[tokio::test]
async fn after_a_memory_broker_restart_every_transport_hears_of_the_reset() {
    let first = server(|_| {}).await;
    let addr = first.local_addr();
    let mut subscribers = every_transport(addr).await;
    publish(addr, 0..5).await;
    all_until(&mut subscribers, addr, 5).await;
    for subscriber in &mut subscribers {
        subscriber.drop_connection();
    }
    tokio::time::timeout(WAIT, first.shut_down()).await.expect("shut down in time");
    // The new process has a new stream (its history is gone).
    let second = server(move |config| config.server.port = addr.port()).await;
    publish(addr, 5..8).await;
    for subscriber in &mut subscribers {
        subscriber.connect(addr).await;
        subscriber.until_reset(addr).await;
        assert_eq!(subscriber.resets, 1, "{:?}", subscriber.transport);
    }
    // From where the new stream is, publications flow again.
    publish(addr, 8..10).await;
    for subscriber in &mut subscribers {
        subscriber.until(addr, 7).await;
        assert_eq!(&subscriber.received[5..], &numbers(8..10), "{:?}", subscriber.transport);
    }
    drop(second);
}

#[tokio::test]
async fn when_redis_loses_its_data_every_transport_gets_the_reset() {
    let mut redis = RedisServer::start();
    let server = on_redis(&redis, 0).await;
    let addr = server.local_addr();
    let mut subscribers = every_transport(addr).await;
    publish(addr, 0..3).await;
    all_until(&mut subscribers, addr, 3).await;
    redis.kill();
    redis.restart();
    eventually("health to recover", || async { http(addr, "GET", "/healthz", &[], "").await.0 == 200 }).await;
    for subscriber in &mut subscribers {
        subscriber.until_reset(addr).await;
        assert_eq!(subscriber.resets, 1, "{:?}", subscriber.transport);
    }
    publish(addr, 3..5).await;
    all_until(&mut subscribers, addr, 5).await;
    for subscriber in &subscribers {
        assert_eq!(subscriber.received, numbers(0..5), "{:?}", subscriber.transport);
    }
}
