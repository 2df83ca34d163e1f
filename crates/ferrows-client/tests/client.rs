//! The client against real servers in this process, once per encoding:
//! commands, errors, recovery across dropped connections, failover
//! between nodes, and clients of both encodings on one channel.

mod common;

use std::time::Duration;

use common::{Proxy, WAIT, client, next_event, next_publication, node, server, state_until, url};
use ferrows_client::{Client, Encoding, Error, Event, State};
use serde_json::{Value, json};

per_encoding!(
    connects_and_answers_pings,
    publications_arrive_in_order_with_who_made_them,
    presence_and_join_leave,
    history_gives_the_latest_publications,
    refusals_carry_the_servers_codes,
    a_rejected_token_stops_the_client,
    a_dropped_connection_loses_and_repeats_nothing,
    publications_during_repeated_drops_arrive_once_in_order,
    a_client_fails_over_to_another_node,
    unsubscribe_stops_the_events,
);

async fn connects_and_answers_pings(encoding: Encoding) {
    let server = server().await;
    let client = client(encoding, &[url(&server)], "alice").await;
    let connection = client.connection().expect("connected");
    assert_eq!(connection.user, "", "anonymous");
    assert!(!connection.client.is_empty());
    assert_eq!(connection.url, url(&server));
    assert_eq!(client.encoding(), encoding);
    client.ping().await.unwrap();
    client.close().await;
    assert!(client.state().is_stopped());
    assert!(matches!(client.ping().await, Err(Error::Closed { code: 1000, .. })));
}

async fn publications_arrive_in_order_with_who_made_them(encoding: Encoding) {
    let server = server().await;
    let client = client(encoding, &[url(&server)], "alice").await;
    let mut subscription = client.subscribe("news").await.unwrap();
    assert_eq!(subscription.channel(), "news");
    let start = subscription.position().offset;
    for n in 1..=5u64 {
        let position = client.publish_json("news", &json!({"n": n})).await.unwrap();
        assert_eq!(position.offset, start + n);
    }
    let me = client.connection().unwrap().client;
    for n in 1..=5u64 {
        let publication = next_publication(&mut subscription).await;
        assert_eq!(publication.offset, start + n);
        assert_eq!(publication.json::<Value>().unwrap(), json!({"n": n}));
        let info = publication.info.expect("a client's publication says who made it");
        assert_eq!((info.client.as_str(), info.name.as_str()), (me.as_str(), "alice"));
    }
    assert_eq!(subscription.position().offset, start + 5);
    // JSON carries JSON text only; MessagePack any bytes.
    let binary = client.publish("news", vec![0xff, 0x00]).await;
    match encoding {
        Encoding::Json => assert!(matches!(binary, Err(Error::InvalidData(_)))),
        Encoding::Msgpack => {
            binary.unwrap();
            assert_eq!(&next_publication(&mut subscription).await.data[..], [0xff, 0x00]);
        }
    }
}

async fn presence_and_join_leave(encoding: Encoding) {
    let server = server().await;
    let alice = client(encoding, &[url(&server)], "alice").await;
    let bob = client(encoding, &[url(&server)], "bob").await;
    let mut watching = alice.subscribe("room:1").await.unwrap();
    let bobs = bob.subscribe("room:1").await.unwrap();
    let bob_id = bob.connection().unwrap().client;
    // Subscribers see every join to the channel, their own included.
    let alice_id = alice.connection().unwrap().client;
    let mut joined = Vec::new();
    while joined.len() < 2 {
        match next_event(&mut watching).await {
            Event::Join(info) => joined.push((info.client, info.name)),
            other => panic!("expected joins, got {other:?}"),
        }
    }
    joined.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(joined, [(alice_id, "alice".to_owned()), (bob_id.clone(), "bob".to_owned())]);
    let present = alice.presence("room:1").await.unwrap();
    let mut names: Vec<_> = present.values().map(|info| info.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(present[&bob_id].client, bob_id);
    bobs.unsubscribe().await.unwrap();
    match next_event(&mut watching).await {
        Event::Leave(info) => assert_eq!(info.client, bob_id),
        other => panic!("expected bob's leave, got {other:?}"),
    }
    assert_eq!(alice.presence("room:1").await.unwrap().len(), 1);
}

async fn history_gives_the_latest_publications(encoding: Encoding) {
    let server = server().await;
    let client = client(encoding, &[url(&server)], "alice").await;
    for n in 1..=3 {
        client.publish_json("log", &n).await.unwrap();
    }
    let (position, publications) = client.history("log", Some(2)).await.unwrap();
    assert_eq!(position.offset, 3);
    let seen: Vec<_> = publications.iter().map(|p| (p.offset, p.json::<u32>().unwrap())).collect();
    assert_eq!(seen, [(2, 2), (3, 3)]);
    let (_, all) = client.history("log", None).await.unwrap();
    assert_eq!(all.len(), 3);
}

async fn refusals_carry_the_servers_codes(encoding: Encoding) {
    let server = server().await;
    let client = client(encoding, &[url(&server)], "alice").await;
    fn code<T>(result: Result<T, Error>) -> Option<u16> {
        result.err().expect("refused").code()
    }
    assert_eq!(code(client.subscribe("unknown:x").await), Some(102));
    assert_eq!(code(client.publish_json("unknown:x", &1).await), Some(102));
    assert_eq!(code(client.subscribe("private:x").await), Some(103));
    assert_eq!(code(client.publish_json("readonly:x", &1).await), Some(103));
    let error = client.publish_json("readonly:x", &1).await.unwrap_err();
    assert!(!error.is_temporary());
    assert!(matches!(&error, Error::Server(body) if !body.message.is_empty()));
    // One subscription per channel.
    let _first = client.subscribe("news").await.unwrap();
    assert_eq!(code(client.subscribe("news").await), Some(105));
    // Refusals leave the connection as it was.
    client.ping().await.unwrap();
}

async fn a_rejected_token_stops_the_client(encoding: Encoding) {
    let mut config = common::config();
    config.auth.token_hmac_secret = Some("secret".into());
    let server = ferrows_server::Server::start(config).await.unwrap();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = counter.clone();
    let refused = Client::builder([url(&server)])
        .encoding(encoding)
        .timeout(WAIT)
        .token_provider(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>("not a JWT".to_owned()) }
        })
        .connect()
        .await;
    let calls = counter.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 1, "the provider is asked before the attempt, and a refusal is not retried");
    match refused {
        Err(Error::Closed { code, .. }) => assert_eq!(code, 4001),
        other => panic!("expected the client to stop with 4001, got {other:?}"),
    }
}

/// Publications made while a subscriber is away are recovered when it
/// comes back, each once, in order.
async fn a_dropped_connection_loses_and_repeats_nothing(encoding: Encoding) {
    let server = server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let subscriber = client(encoding, &[proxy.url()], "sub").await;
    let publisher = client(encoding, &[url(&server)], "pub").await;
    let mut subscription = subscriber.subscribe("news").await.unwrap();
    let first = subscriber.connection().unwrap().client;
    for n in 1..=3 {
        publisher.publish_json("news", &n).await.unwrap();
    }
    for n in 1..=3 {
        assert_eq!(next_publication(&mut subscription).await.offset, n);
    }

    proxy.set_open(false);
    proxy.cut();
    state_until(&subscriber, "the subscriber notices", |s| matches!(s, State::Disconnected(_))).await;
    for n in 4..=6 {
        publisher.publish_json("news", &n).await.unwrap();
    }
    proxy.set_open(true);
    match next_event(&mut subscription).await {
        Event::Resubscribed(recovery) => {
            assert!(recovery.recovered);
            assert_eq!((recovery.missed, recovery.position.offset), (3, 6));
        }
        other => panic!("expected the resubscription, got {other:?}"),
    }
    for n in 4..=6 {
        let publication = next_publication(&mut subscription).await;
        assert_eq!((publication.offset, publication.json::<u64>().unwrap()), (n, n));
    }
    assert_ne!(subscriber.connection().unwrap().client, first, "a new connection");
    publisher.publish_json("news", &7).await.unwrap();
    assert_eq!(next_publication(&mut subscription).await.offset, 7);
}

/// Connections cut while publications keep coming, some during the
/// resubscribe: every publication arrives once, in order.
async fn publications_during_repeated_drops_arrive_once_in_order(encoding: Encoding) {
    const COUNT: u64 = 120;
    let server = server().await;
    let proxy = Proxy::start(server.local_addr()).await;
    let subscriber = client(encoding, &[proxy.url()], "sub").await;
    let publisher = client(encoding, &[url(&server)], "pub").await;
    let mut subscription = subscriber.subscribe("busy").await.unwrap();
    let publishing = tokio::spawn(async move {
        for n in 1..=COUNT {
            publisher.publish_json("busy", &n).await.unwrap();
            if n % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        publisher
    });
    let mut seen = Vec::new();
    let mut resubscribed = 0;
    while seen.len() < COUNT as usize {
        match next_event(&mut subscription).await {
            Event::Publication(publication) => {
                assert_eq!(publication.json::<u64>().unwrap(), publication.offset);
                seen.push(publication.offset);
                if [20, 50, 80].contains(&publication.offset) {
                    proxy.cut();
                }
            }
            Event::Resubscribed(recovery) => {
                assert!(recovery.recovered, "{recovery:?}");
                resubscribed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, (1..=COUNT).collect::<Vec<_>>());
    assert!(resubscribed >= 1, "the connection was cut");
    tokio::time::timeout(WAIT, publishing).await.unwrap().unwrap();
}

/// Two nodes over one broker: when the client's node shuts down (Close
/// 1001), it moves to the other and recovers what it missed.
async fn a_client_fails_over_to_another_node(encoding: Encoding) {
    let broker = std::sync::Arc::new(ferrows_hub::broker::MemoryBroker::new());
    let (a, b) = (node(&broker).await, node(&broker).await);
    let (url_a, url_b) = (url(&a), url(&b));
    let subscriber = client(encoding, &[url_a.clone(), url_b.clone()], "sub").await;
    assert_eq!(subscriber.connection().unwrap().url, url_a);
    let publisher = client(encoding, std::slice::from_ref(&url_b), "pub").await;
    let mut subscription = subscriber.subscribe("feed").await.unwrap();
    for n in 1..=2 {
        publisher.publish_json("feed", &n).await.unwrap();
        assert_eq!(next_publication(&mut subscription).await.offset, n);
    }

    let mut state = subscriber.watch_state();
    let shutting_down = tokio::spawn(a.shut_down());
    let closed = tokio::time::timeout(WAIT, state.wait_for(|s| matches!(s, State::Disconnected(_))))
        .await
        .expect("disconnected in time")
        .unwrap()
        .clone();
    match closed {
        State::Disconnected(disconnect) => {
            assert_eq!(disconnect.code, 1001, "{disconnect:?}");
            assert!(disconnect.reconnect_in.is_some());
        }
        _ => unreachable!(),
    }
    for n in 3..=4 {
        publisher.publish_json("feed", &n).await.unwrap();
    }
    let mut offsets = Vec::new();
    while offsets.len() < 2 {
        match next_event(&mut subscription).await {
            Event::Publication(publication) => offsets.push(publication.offset),
            Event::Resubscribed(recovery) => assert!(recovery.recovered, "{recovery:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(offsets, [3, 4]);
    assert_eq!(subscriber.connection().unwrap().url, url_b);
    publisher.publish_json("feed", &5).await.unwrap();
    assert_eq!(next_publication(&mut subscription).await.offset, 5);
    tokio::time::timeout(WAIT, shutting_down).await.unwrap().unwrap();
}

async fn unsubscribe_stops_the_events(encoding: Encoding) {
    let server = server().await;
    let client = client(encoding, &[url(&server)], "alice").await;
    let subscription = client.subscribe("news").await.unwrap();
    subscription.unsubscribe().await.unwrap();
    // Subscribing again works: the server forgot the first one.
    let mut again = client.subscribe("news").await.unwrap();
    // A dropped subscription unsubscribes too.
    drop(client.subscribe("other").await.unwrap());
    let _other = tokio::time::timeout(WAIT, async {
        loop {
            match client.subscribe("other").await {
                Ok(subscription) => break subscription,
                Err(error) if error.code() == Some(105) => tokio::task::yield_now().await,
                Err(error) => panic!("{error}"),
            }
        }
    })
    .await
    .expect("the dropped subscription is gone in time");
    client.publish_json("news", &1).await.unwrap();
    assert_eq!(next_publication(&mut again).await.json::<u32>().unwrap(), 1);
}

/// A JSON and a MessagePack client on one channel see each other's
/// publications: JSON text both ways, other bytes from MessagePack to
/// JSON as `data_base64`.
#[tokio::test]
async fn json_and_msgpack_clients_share_a_channel() {
    let server = server().await;
    let json_client = client(Encoding::Json, &[url(&server)], "j").await;
    let msgpack_client = client(Encoding::Msgpack, &[url(&server)], "m").await;
    let mut json_sub = json_client.subscribe("mixed").await.unwrap();
    let mut msgpack_sub = msgpack_client.subscribe("mixed").await.unwrap();

    json_client.publish("mixed", r#"{"from":"json"}"#).await.unwrap();
    msgpack_client.publish_json("mixed", &json!({"from": "msgpack"})).await.unwrap();
    msgpack_client.publish("mixed", vec![0u8, 0xc1, 0xff]).await.unwrap();
    for subscription in [&mut json_sub, &mut msgpack_sub] {
        let first = next_publication(subscription).await;
        assert_eq!(first.json::<Value>().unwrap(), json!({"from": "json"}));
        assert_eq!(first.info.unwrap().name, "j");
        let second = next_publication(subscription).await;
        assert_eq!(second.json::<Value>().unwrap(), json!({"from": "msgpack"}));
        assert_eq!(second.info.unwrap().name, "m");
        assert_eq!(&next_publication(subscription).await.data[..], [0u8, 0xc1, 0xff]);
    }
    // History reads the same in both.
    let (_, from_json) = json_client.history("mixed", None).await.unwrap();
    let (_, from_msgpack) = msgpack_client.history("mixed", None).await.unwrap();
    assert_eq!(from_json, from_msgpack);
}

/// A client started before its server comes up connects when it does,
/// and commands made meanwhile wait for the connection.
#[tokio::test]
async fn commands_wait_for_the_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder([format!("ws://{addr}/ws")])
        .timeout(WAIT)
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(50))
        .start()
        .unwrap();
    state_until(&client, "a failed attempt", |s| matches!(s, State::Disconnected(d) if d.reconnect_in.is_some())).await;
    let ping = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    let mut config = common::config();
    (config.server.host, config.server.port) = (addr.ip(), addr.port());
    let _server = ferrows_server::Server::start(config).await.unwrap();
    tokio::time::timeout(WAIT, ping).await.unwrap().unwrap().unwrap();
    assert!(client.connection().is_some());
}
