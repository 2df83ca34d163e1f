//! The Redis broker against a real `redis-server` (one per test, on a free
//! port of 127.0.0.1). Install it with `scripts/install-redis.sh`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrows_hub::broker::redis::RedisOptions;
use ferrows_hub::broker::{
    Broker, BrokerError, BrokerEvent, BrokerHandler, HistoryAnswer, HistoryQuery, MemoryBroker, RedisBroker,
};
use ferrows_hub::testing::{RedisServer, free_port};
use ferrows_hub::{HistoryLimits, StreamPosition};

/// Bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<BrokerEvent>>,
    changes: Mutex<Vec<bool>>,
}

impl BrokerHandler for Recorder {
    fn on_event(&self, event: BrokerEvent) {
        self.events.lock().unwrap().push(event);
    }
    fn on_connection_change(&self, connected: bool) {
        self.changes.lock().unwrap().push(connected);
    }
    fn channels(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Recorder {
    /// (channel, offset, data) of the publications received so far.
    fn publications(&self) -> Vec<(String, u64, String)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                BrokerEvent::Publication { channel, publication, .. } => {
                    Some((channel.clone(), publication.offset, String::from_utf8_lossy(&publication.data).into_owned()))
                }
                _ => None,
            })
            .collect()
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn options() -> RedisOptions {
    RedisOptions {
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..Default::default()
    }
}

async fn node(server: &RedisServer, options: RedisOptions) -> (RedisBroker, Arc<Recorder>) {
    let broker = RedisBroker::connect(&server.url(), options).await.expect("connect to redis-server");
    let recorder = Arc::new(Recorder::default());
    broker.start(recorder.clone()).await.unwrap();
    (broker, recorder)
}

fn data(text: &str) -> Bytes {
    Bytes::from(text.to_owned())
}

fn offsets(answer: &HistoryAnswer) -> Vec<u64> {
    answer.publications.iter().map(|p| p.offset).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_reaches_every_node_with_the_same_offsets_in_order() {
    let server = RedisServer::start();
    let (a, seen_a) = node(&server, options()).await;
    let (b, seen_b) = node(&server, options()).await;
    for broker in [&a, &b] {
        broker.subscribe("chat:lobby").await.unwrap();
    }
    a.subscribe("other").await.unwrap();
    let limits = HistoryLimits::default();
    let info = Bytes::from_static(b"{\"client\":\"c1\",\"user\":\"\xc3\xa9\\n\"}");
    let first = a.publish("chat:lobby", data("{\"n\":1}"), Some(info.clone()), limits).await.unwrap();
    let second = b.publish("chat:lobby", data("\"two\\n\""), None, limits).await.unwrap();
    let third = a.publish("chat:lobby", data("3"), None, limits).await.unwrap();
    b.publish("other", data("only a"), None, limits).await.unwrap();
    assert_eq!((first.offset, second.offset, third.offset), (1, 2, 3));
    assert!(first.epoch == second.epoch && second.epoch == third.epoch);

    let expected = vec![
        ("chat:lobby".to_owned(), 1, "{\"n\":1}".to_owned()),
        ("chat:lobby".to_owned(), 2, "\"two\\n\"".to_owned()),
        ("chat:lobby".to_owned(), 3, "3".to_owned()),
    ];
    wait_for("node b's publications", || seen_b.publications().len() >= 3).await;
    wait_for("node a's publications", || seen_a.publications().len() >= 4).await;
    assert_eq!(seen_b.publications(), expected);
    let mut with_other = expected.clone();
    with_other.push(("other".to_owned(), 1, "only a".to_owned()));
    assert_eq!(seen_a.publications(), with_other);
    // Data, info, epoch and time arrive byte for byte.
    let events = seen_b.events.lock().unwrap().clone();
    let BrokerEvent::Publication { epoch, publication, .. } = &events[0] else { panic!("{events:?}") };
    assert_eq!(epoch, &first.epoch);
    assert_eq!(publication.info.as_ref(), Some(&info));
    assert!(publication.time_ms > 1_600_000_000_000);
    let BrokerEvent::Publication { publication, .. } = &events[1] else { panic!("{events:?}") };
    assert_eq!(publication.info, None);

    // Concurrent publishers on both nodes: both see one order.
    async fn publish_many(broker: &RedisBroker, tag: &str) -> Vec<Result<StreamPosition, BrokerError>> {
        let limits = HistoryLimits::default();
        let futures: Vec<_> =
            (0..20).map(|n| broker.publish("chat:lobby", data(&format!("{tag}{n}")), None, limits)).collect();
        futures_util::future::join_all(futures).await
    }
    let (from_a, from_b) = tokio::join!(publish_many(&a, "a"), publish_many(&b, "b"));
    assert!(from_a.iter().chain(&from_b).all(Result::is_ok));
    wait_for("43 publications on both nodes", || {
        seen_a.publications().len() >= 44 && seen_b.publications().len() >= 43
    })
    .await;
    let lobby = |seen: &Recorder| -> Vec<(u64, String)> {
        seen.publications().into_iter().filter(|p| p.0 == "chat:lobby").map(|p| (p.1, p.2)).collect()
    };
    assert_eq!(lobby(&seen_a), lobby(&seen_b));
    assert_eq!(lobby(&seen_a).iter().map(|p| p.0).collect::<Vec<_>>(), (1..=43).collect::<Vec<_>>());

    // Join and leave events travel too, not kept in history.
    b.publish_event(BrokerEvent::Join { channel: "chat:lobby".into(), info: info.clone() }).await.unwrap();
    b.publish_event(BrokerEvent::Leave { channel: "chat:lobby".into(), info: info.clone() }).await.unwrap();
    wait_for("join and leave", || seen_a.events.lock().unwrap().len() >= 46).await;
    let events = seen_a.events.lock().unwrap().clone();
    assert_eq!(events[44], BrokerEvent::Join { channel: "chat:lobby".into(), info: info.clone() });
    assert_eq!(events[45], BrokerEvent::Leave { channel: "chat:lobby".into(), info });
    assert_eq!(a.history("chat:lobby", HistoryQuery::Position).await.unwrap().position.offset, 43);

    // After unsubscribe, nothing more arrives for the channel.
    b.unsubscribe("chat:lobby").await.unwrap();
    a.publish("chat:lobby", data("late"), None, limits).await.unwrap();
    wait_for("a's copy", || seen_a.publications().len() >= 45).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen_b.publications().len(), 43);

    // The connections' keepalive pings (every second) do not disturb a
    // healthy connection.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(seen_a.changes.lock().unwrap().is_empty() && seen_b.changes.lock().unwrap().is_empty());
    assert!(a.health().connected && b.health().connected);
    a.publish("chat:lobby", data("still"), None, limits).await.unwrap();
    wait_for("a publication after the pings", || seen_a.publications().len() >= 46).await;
}

/// Runs the same history scenario on a broker, returning what it saw in a
/// comparable form (epochs replaced by whether they match the channel's).
async fn history_scenario(broker: &dyn Broker) -> Vec<String> {
    let mut seen = Vec::new();
    let limits = HistoryLimits { max_count: 3, ..HistoryLimits::default() };
    // A never-used channel gets an epoch that stays until the first publish.
    let before = broker.history("c", HistoryQuery::Position).await.unwrap();
    seen.push(format!("fresh: offset {} recovered {}", before.position.offset, before.recovered));
    for n in 0..5u8 {
        broker.publish("c", Bytes::from(vec![b'0' + n]), None, limits).await.unwrap();
    }
    let now = broker.history("c", HistoryQuery::Position).await.unwrap();
    assert_eq!(now.position.epoch, before.position.epoch, "the epoch survives the first publish");
    seen.push(format!("position: {} {:?}", now.position.offset, offsets(&now)));
    for n in [0, 1, 2, 3, 10] {
        let latest = broker.history("c", HistoryQuery::Latest(n)).await.unwrap();
        seen.push(format!("latest({n}): {:?} top {}", offsets(&latest), latest.position.offset));
    }
    let since =
        |offset, limit| HistoryQuery::Since(StreamPosition { offset, epoch: now.position.epoch.clone() }, limit);
    for (offset, limit) in
        [(5, 100), (4, 100), (3, 100), (2, 100), (1, 100), (0, 100), (3, 1), (3, 2), (6, 100), (4, 0)]
    {
        let answer = broker.history("c", since(offset, limit)).await.unwrap();
        let data: Vec<_> = answer.publications.iter().map(|p| String::from_utf8_lossy(&p.data).into_owned()).collect();
        seen.push(format!(
            "since({offset}, {limit}): recovered {} {:?} {data:?} top {}",
            answer.recovered,
            offsets(&answer),
            answer.position.offset
        ));
    }
    let other = StreamPosition { offset: 4, epoch: "another".into() };
    let answer = broker.history("c", HistoryQuery::Since(other, 100)).await.unwrap();
    seen.push(format!("other epoch: recovered {} {:?}", answer.recovered, offsets(&answer)));
    assert_eq!(answer.position, now.position);
    // Info round-trips through history too.
    let info = Bytes::from_static(b"{\"client\":\"x\"}");
    broker.publish("d", data("[1,2]"), Some(info.clone()), limits).await.unwrap();
    let latest = broker.history("d", HistoryQuery::Latest(1)).await.unwrap();
    assert_eq!(latest.publications[0].info.as_ref(), Some(&info));
    assert_eq!(&latest.publications[0].data[..], b"[1,2]");
    assert_ne!(latest.position.epoch, now.position.epoch, "each channel has its own epoch");
    // The byte limit.
    let small = HistoryLimits { max_bytes: 10, ..HistoryLimits::default() };
    for _ in 0..10 {
        broker.publish("bytes", data("abcd"), None, small).await.unwrap();
    }
    let latest = broker.history("bytes", HistoryQuery::Latest(100)).await.unwrap();
    seen.push(format!("max_bytes 10: {:?}", offsets(&latest)));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_recovery_answer_like_the_memory_broker() {
    let server = RedisServer::start();
    let (redis, _) = node(&server, options()).await;
    let memory = MemoryBroker::new();
    let expected = history_scenario(&memory).await;
    let got = history_scenario(&redis).await;
    assert_eq!(got, expected);
    // Spot checks that the scenario means what it should.
    assert!(expected.contains(&"since(2, 100): recovered true [3, 4, 5] [\"2\", \"3\", \"4\"] top 5".to_owned()));
    assert!(expected.contains(&"since(1, 100): recovered false [] [] top 5".to_owned()));
    assert!(expected.contains(&"since(3, 1): recovered false [] [] top 5".to_owned()));
    assert!(expected.contains(&"other epoch: recovered false []".to_owned()));
    assert!(expected.contains(&"max_bytes 10: [9, 10]".to_owned()));

    // A second node reads the same history.
    let (other, _) = node(&server, options()).await;
    let a = redis.history("c", HistoryQuery::Latest(10)).await.unwrap();
    let b = other.history("c", HistoryQuery::Latest(10)).await.unwrap();
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_ages_out_like_the_memory_broker() {
    let server = RedisServer::start();
    let (redis, _) = node(&server, options()).await;
    let memory = MemoryBroker::new();
    let limits = HistoryLimits { max_age: Duration::from_millis(2000), ..HistoryLimits::default() };
    let brokers: [&dyn Broker; 2] = [&memory, &redis];
    let mut epochs = Vec::new();
    for broker in brokers {
        epochs.push(broker.publish("aging", data("old"), None, limits).await.unwrap().epoch);
    }
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for (broker, epoch) in brokers.into_iter().zip(epochs) {
        let new = broker.publish("aging", data("new"), None, limits).await.unwrap();
        assert_eq!((new.offset, &new.epoch), (2, &epoch), "the epoch outlives the history");
        let since = |offset| HistoryQuery::Since(StreamPosition { offset, epoch: epoch.clone() }, 100);
        let gap = broker.history("aging", since(0)).await.unwrap();
        assert!(!gap.recovered, "offset 1 aged out");
        let recent = broker.history("aging", since(1)).await.unwrap();
        assert!(recent.recovered);
        assert_eq!(offsets(&recent), vec![2]);
        assert_eq!(offsets(&broker.history("aging", HistoryQuery::Latest(10)).await.unwrap()), vec![2]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_and_expires() {
    let server = RedisServer::start();
    let short = RedisOptions { presence_ttl: Duration::from_millis(1000), ..options() };
    let (a, _) = node(&server, options()).await;
    let (b, _) = node(&server, short).await;
    let alice = Bytes::from_static(b"{\"user\":\"alice\",\"name\":\"\xc3\xa0\"}");
    a.presence_add("room", "c1", alice.clone()).await.unwrap();
    b.presence_add("room", "c2", data("{}")).await.unwrap();
    b.presence_add("room", "c3", data("{\"user\":\"x\"}")).await.unwrap();
    b.presence_remove("room", "c3").await.unwrap();
    let present = a.presence("room").await.unwrap();
    let expected: HashMap<String, Bytes> = [("c1".to_owned(), alice.clone()), ("c2".to_owned(), data("{}"))].into();
    assert_eq!(present, expected);
    assert_eq!(b.presence("room").await.unwrap(), expected);
    assert!(a.presence("nobody-here").await.unwrap().is_empty());
    // b's entries (TTL 1 s) outlive their TTL while b runs: b refreshes them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.presence("room").await.unwrap(), expected);
    // A vanished node's entries expire; a's (60 s) stay.
    drop(b);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let present = a.presence("room").await.unwrap();
    assert_eq!(present.keys().collect::<Vec<_>>(), vec!["c1"]);
    a.presence_remove("room", "c1").await.unwrap();
    assert!(a.presence("room").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_list_is_every_nodes_subscribed_channels() {
    let server = RedisServer::start();
    let (a, _) = node(&server, options()).await;
    let (b, _) = node(&server, options()).await;
    // Another service's prefix, with a glob character, stays apart.
    let (other, _) = node(&server, RedisOptions { prefix: "fer*".into(), ..options() }).await;
    a.subscribe("chat:lobby").await.unwrap();
    b.subscribe("news").await.unwrap();
    b.subscribe("chat:lobby").await.unwrap();
    other.subscribe("elsewhere").await.unwrap();
    let mut channels = a.channels().await.unwrap();
    channels.sort();
    assert_eq!(channels, ["chat:lobby", "news"]);
    assert_eq!(other.channels().await.unwrap(), ["elsewhere"]);
    b.unsubscribe("news").await.unwrap();
    assert_eq!(b.channels().await.unwrap(), ["chat:lobby"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_with_a_key_is_made_once_across_nodes_within_the_window() {
    let server = RedisServer::start();
    let (a, seen_a) = node(&server, options()).await;
    let (b, _) = node(&server, options()).await;
    a.subscribe("news").await.unwrap();
    let limits = HistoryLimits::default();
    let once = |key| ferrows_hub::broker::Once { key, window: Duration::from_millis(700) };
    let first = a.publish_once("news", data("1"), None, limits, once("k1")).await.unwrap();
    let again = b.publish_once("news", data("1 again"), None, limits, once("k1")).await.unwrap();
    assert_eq!(again, first, "the same key: the first publication's position");
    let other = b.publish_once("news", data("2"), None, limits, once("k2")).await.unwrap();
    assert_eq!(other.offset, first.offset + 1);
    // Another channel's key is another key.
    let elsewhere = b.publish_once("other", data("x"), None, limits, once("k1")).await.unwrap();
    assert_eq!(elsewhere.offset, 1);
    // After the window, the key is free again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let later = a.publish_once("news", data("1 later"), None, limits, once("k1")).await.unwrap();
    assert_eq!(later.offset, other.offset + 1);
    wait_for("three publications", || seen_a.publications().len() == 3).await;
    let texts: Vec<String> = seen_a.publications().into_iter().map(|(_, _, text)| text).collect();
    assert_eq!(texts, ["1", "2", "1 later"]);
}

/// Asserts that `op` fails with `Unavailable` within 3 s.
async fn fails_fast<T: std::fmt::Debug>(what: &str, op: impl Future<Output = Result<T, BrokerError>>) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), op).await.unwrap_or_else(|_| panic!("{what} hangs"));
    assert!(matches!(result, Err(BrokerError::Unavailable(_))), "{what}: {result:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{what} took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_survive_a_redis_restart() {
    let mut server = RedisServer::start();
    let (a, seen_a) = node(&server, options()).await;
    let (b, seen_b) = node(&server, options()).await;
    for broker in [&a, &b] {
        broker.subscribe("news").await.unwrap();
    }
    let limits = HistoryLimits::default();
    let before = a.publish("news", data("1"), None, limits).await.unwrap();
    wait_for("the first publication", || seen_a.publications().len() == 1 && seen_b.publications().len() == 1).await;
    assert!(a.health().connected && b.health().connected);

    server.kill();
    fails_fast("publish right after the kill", b.publish("news", data("lost"), None, limits)).await;
    wait_for("both brokers to notice", || !a.health().connected && !b.health().connected).await;
    let health = a.health();
    assert_eq!(health.kind, "redis");
    assert!(health.detail.is_some(), "{health:?}");
    wait_for("on_connection_change(false)", || {
        seen_a.changes.lock().unwrap().first() == Some(&false) && seen_b.changes.lock().unwrap().first() == Some(&false)
    })
    .await;
    fails_fast("publish", a.publish("news", data("lost"), None, limits)).await;
    fails_fast("history", b.history("news", HistoryQuery::Position)).await;
    fails_fast("presence", a.presence("news")).await;
    fails_fast("presence_add", a.presence_add("news", "c1", data("{}"))).await;
    fails_fast("publish_event", b.publish_event(BrokerEvent::Join { channel: "news".into(), info: data("{}") })).await;
    fails_fast("subscribe", a.subscribe("sports")).await;

    server.restart();
    wait_for("both brokers to reconnect", || a.health().connected && b.health().connected).await;
    wait_for("on_connection_change(true)", || {
        seen_a.changes.lock().unwrap().last() == Some(&true) && seen_b.changes.lock().unwrap().last() == Some(&true)
    })
    .await;
    assert_eq!(a.health().detail, None);
    // Subscriptions were restored: a new publication reaches both nodes.
    let after = b.publish("news", data("2"), None, limits).await.unwrap();
    assert_eq!(after.offset, 1, "Redis lost the history");
    assert_ne!(after.epoch, before.epoch, "a new epoch tells clients their positions are void");
    wait_for("the publication after the restart", || {
        seen_a.publications().len() == 2 && seen_b.publications().len() == 2
    })
    .await;
    assert_eq!(seen_a.publications()[1], ("news".to_owned(), 1, "2".to_owned()));
    let since = HistoryQuery::Since(before.clone(), 100);
    assert!(!a.history("news", since).await.unwrap().recovered);
    // A channel whose subscribe failed while Redis was down is not subscribed.
    a.publish("sports", data("x"), None, limits).await.unwrap();
    a.subscribe("sports").await.unwrap();
    a.publish("sports", data("y"), None, limits).await.unwrap();
    wait_for("sports", || seen_a.publications().len() == 3).await;
    assert_eq!(seen_a.publications()[2], ("sports".to_owned(), 2, "y".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_times_out_instead_of_hanging() {
    let server = RedisServer::start();
    let (a, seen) = node(&server, options()).await;
    a.subscribe("news").await.unwrap();
    let limits = HistoryLimits::default();
    a.publish("news", data("1"), None, limits).await.unwrap();

    // The process is there (connections stay open) but answers nothing.
    server.signal("STOP");
    let stalled = Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(6), async {
        tokio::join!(
            a.publish("news", data("2"), None, limits),
            a.history("news", HistoryQuery::Latest(10)),
            a.subscribe("sports"),
            a.subscribe("weather"),
        )
    })
    .await
    .expect("operations against a stalled Redis hang");
    assert!(matches!(results.0, Err(BrokerError::Unavailable(_))), "{:?}", results.0);
    assert!(matches!(results.1, Err(BrokerError::Unavailable(_))), "{:?}", results.1);
    assert!(matches!(results.2, Err(BrokerError::Unavailable(_))), "{:?}", results.2);
    assert!(matches!(results.3, Err(BrokerError::Unavailable(_))), "{:?}", results.3);
    wait_for("the broker to notice", || !a.health().connected).await;
    assert!(stalled.elapsed() < Duration::from_secs(8), "noticed after {:?}", stalled.elapsed());
    fails_fast("publish while marked down", a.publish("news", data("3"), None, limits)).await;

    server.signal("CONT");
    wait_for("the broker to reconnect", || a.health().connected).await;
    wait_for("on_connection_change(true)", || *seen.changes.lock().unwrap() == [false, true]).await;
    // The data survived (same process): same epoch, offsets go on.
    let next = a.publish("news", data("4"), None, limits).await.unwrap();
    let offsets: Vec<u64> = seen.publications().iter().map(|p| p.1).collect();
    assert!(next.offset >= 2, "{next:?}");
    wait_for("the publication after the stall", || seen.publications().last().map(|p| p.2.as_str()) == Some("4")).await;
    assert!(offsets.first() == Some(&1), "{offsets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_no_redis_fails_with_unavailable() {
    let port = free_port();
    let started = Instant::now();
    let result = RedisBroker::connect(&format!("redis://127.0.0.1:{port}/"), options()).await;
    assert!(matches!(result, Err(BrokerError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(RedisBroker::connect("nonsense://", options()).await, Err(BrokerError::Backend(_))));
}

/// A command to one server, outside any broker.
async fn redis_cmd(server: &RedisServer, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut connection).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_given_a_primary_and_a_replica_follows_a_failover() {
    let (primary, replica) = (RedisServer::start(), RedisServer::start());
    let primary_port = primary.port.to_string();
    redis_cmd(&replica, &["REPLICAOF", "127.0.0.1", &primary_port]).await;
    // The replica first in the list: the broker must pick the primary.
    let urls = format!("{},{}", replica.url(), primary.url());
    let broker = RedisBroker::connect(&urls, options()).await.expect("connects to the primary");
    let recorder = Arc::new(Recorder::default());
    broker.start(recorder.clone()).await.unwrap();
    broker.subscribe("f").await.unwrap();
    let first = broker.publish("f", data("one"), None, HistoryLimits::default()).await.unwrap();
    assert_eq!(first.offset, 1);
    wait_for("the first publication", || recorder.publications().len() == 1).await;
    // A failover: the replica is promoted, the old primary follows it.
    let deadline = Instant::now() + WAIT;
    while redis_cmd(&replica, &["HGET", "ferrows.meta.f", "top"]).await != redis::Value::BulkString(b"1".to_vec()) {
        assert!(Instant::now() < deadline, "the replica never got the publication");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis_cmd(&replica, &["REPLICAOF", "NO", "ONE"]).await;
    let replica_port = replica.port.to_string();
    redis_cmd(&primary, &["REPLICAOF", "127.0.0.1", &replica_port]).await;
    // The broker notices (its check runs every second) and moves.
    let deadline = Instant::now() + WAIT;
    let second = loop {
        match broker.publish("f", data("two"), None, HistoryLimits::default()).await {
            Ok(position) => break position,
            Err(e) => assert!(Instant::now() < deadline, "never published after the failover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((second.offset, &second.epoch), (2, &first.epoch), "the history went over with the replica");
    wait_for("the second publication, from the new primary", || recorder.publications().len() == 2).await;
    assert_eq!(recorder.publications()[1].2, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_went_back_gets_a_new_epoch_when_a_node_resyncs() {
    let server = RedisServer::start();
    let (broker, _recorder) = node(&server, options()).await;
    let mut last = None;
    for text in ["a", "b", "c"] {
        last = Some(broker.publish("h", data(text), None, HistoryLimits::default()).await.unwrap());
    }
    let seen = last.unwrap();
    // A failover to a replica that had only the first publication.
    redis_cmd(&server, &["HSET", "ferrows.meta.h", "top", "1"]).await;
    redis_cmd(&server, &["DEL", "ferrows.history.h"]).await;
    redis_cmd(&server, &["XADD", "ferrows.history.h", "1-0", "t", "1", "d", "a"]).await;
    // A client's position does not change the epoch (anybody can name an
    // offset) ...
    let client = broker.history("h", HistoryQuery::Since(seen.clone(), 100)).await.unwrap();
    assert!(!client.recovered);
    assert_eq!(client.position.epoch, seen.epoch);
    // ... a node's resync does: nobody recovers across the loss.
    let resync =
        broker.history("h", HistoryQuery::Resync { last: seen.clone(), time_ms: 0, limit: 100 }).await.unwrap();
    assert!(!resync.recovered);
    assert_ne!(resync.position.epoch, seen.epoch);
    assert_eq!(resync.position.offset, 1);
    let later = broker.publish("h", data("d"), None, HistoryLimits::default()).await.unwrap();
    assert_eq!((later.offset, &later.epoch), (2, &resync.position.epoch));
    let old = StreamPosition { offset: 1, epoch: seen.epoch.clone() };
    assert!(!broker.history("h", HistoryQuery::Since(old, 100)).await.unwrap().recovered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_replaced_at_the_same_offset_gets_a_new_epoch_when_a_node_resyncs() {
    let server = RedisServer::start();
    let (broker, recorder) = node(&server, options()).await;
    broker.subscribe("r").await.unwrap();
    for text in ["a", "b"] {
        broker.publish("r", data(text), None, HistoryLimits::default()).await.unwrap();
    }
    wait_for("both publications", || recorder.publications().len() == 2).await;
    let (epoch, time_ms) = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find_map(|e| match e {
            BrokerEvent::Publication { epoch, publication, .. } => Some((epoch.clone(), publication.time_ms)),
            _ => None,
        })
        .unwrap();
    let seen = StreamPosition { offset: 2, epoch };
    let same = HistoryQuery::Resync { last: seen.clone(), time_ms, limit: 100 };
    assert!(broker.history("r", same.clone()).await.unwrap().recovered, "nothing lost");
    // The promoted replica had only "a", and took another publication as
    // offset 2 before this node came back.
    redis_cmd(&server, &["DEL", "ferrows.history.r"]).await;
    redis_cmd(&server, &["XADD", "ferrows.history.r", "1-0", "t", "1", "d", "a"]).await;
    let other_time = (time_ms + 7).to_string();
    redis_cmd(&server, &["XADD", "ferrows.history.r", "2-0", "t", &other_time, "d", "c"]).await;
    let resync = broker.history("r", same).await.unwrap();
    assert!(!resync.recovered);
    assert_ne!(resync.position.epoch, seen.epoch, "a new epoch: the offset now names another publication");
    // The node restarts its subscribers at 1 and replays what the new
    // primary took since: "c" at 2.
    assert_eq!(resync.position.offset, 1);
    assert_eq!(offsets(&resync), vec![2]);
    assert_eq!(&resync.publications[0].data[..], b"c");
    // Another node that had delivered "b" too comes second: the same fork
    // and replay in the new epoch. One that had only "a" replays from
    // there.
    let second = broker.history("r", HistoryQuery::Resync { last: seen.clone(), time_ms, limit: 100 }).await.unwrap();
    assert_eq!((second.position.clone(), offsets(&second)), (resync.position.clone(), vec![2]));
    let behind = StreamPosition { offset: 1, epoch: seen.epoch.clone() };
    let third = broker.history("r", HistoryQuery::Resync { last: behind, time_ms: 0, limit: 100 }).await.unwrap();
    assert_eq!((third.position.offset, offsets(&third)), (1, vec![2]));
    // A trimmed entry cannot be checked: not recoverable, no new epoch.
    let later = broker.publish("r", data("d"), None, HistoryLimits::default()).await.unwrap();
    redis_cmd(&server, &["XDEL", "ferrows.history.r", "3-0"]).await;
    let at = StreamPosition { offset: 3, epoch: later.epoch.clone() };
    let trimmed = broker.history("r", HistoryQuery::Resync { last: at, time_ms: 5, limit: 100 }).await.unwrap();
    assert!(!trimmed.recovered);
    assert_eq!(trimmed.position, later);
}
