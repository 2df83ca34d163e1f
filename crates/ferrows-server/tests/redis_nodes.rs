//! Two `serve` nodes on one real `redis-server` form one service, seen
//! through the Rust client (`ferrows-client`) in each encoding: cross-node
//! fan-out, a client that fails over to the other node and recovers what
//! it missed, and a Redis that is killed and restarted while clients stay
//! connected (they get a `reset`).

mod common;

use common::{api_publish, eventually, http, metric, server};
use ferrows_client::{Client, Event, Publication, Subscription};
use ferrows_hub::testing::RedisServer;
use ferrows_server::{BrokerKind, Server};
use serde_json::json;

async fn node(redis: &RedisServer) -> Server {
    let url = redis.url();
    server(move |config| {
        config.broker.kind = BrokerKind::Redis;
        config.broker.redis_url = url;
    })
    .await
}

fn url(server: &Server) -> String {
    format!("ws://{}/ws", server.local_addr())
}

/// A client of the running test's encoding, connected to the first of
/// `servers` it can reach.
async fn client(servers: &[&Server]) -> Client {
    let urls: Vec<String> = servers.iter().map(|s| url(s)).collect();
    let builder = Client::builder(urls).encoding(common::encoding()).name("tester").timeout(common::WAIT);
    let builder = builder.reconnect_delay(std::time::Duration::from_millis(20), std::time::Duration::from_millis(200));
    tokio::time::timeout(common::WAIT, builder.connect()).await.expect("connected in time").expect("connects")
}

/// The next event of `subscription` (bounded).
async fn next_event(subscription: &mut Subscription) -> Event {
    let event = tokio::time::timeout(common::WAIT, subscription.recv()).await.expect("an event in time");
    event.expect("the subscription goes on")
}

/// The next publication (other events skipped).
async fn next_publication(subscription: &mut Subscription) -> Publication {
    loop {
        if let Event::Publication(publication) = next_event(subscription).await {
            return publication;
        }
    }
}

fn data(publication: &Publication) -> serde_json::Value {
    publication.json().expect("JSON data")
}

per_encoding! {
async fn a_publication_on_either_node_reaches_subscribers_on_both() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (on_a, on_b) = (client(&[&a]).await, client(&[&b]).await);
    let mut subscriptions = [on_a.subscribe("chat:shared").await.unwrap(), on_b.subscribe("chat:shared").await.unwrap()];
    api_publish(b.local_addr(), "chat:shared", json!("from b")).await;
    let position = on_a.publish_json("chat:shared", &"from a").await.unwrap();
    assert_eq!(position.offset, 2);
    for subscription in &mut subscriptions {
        let (first, second) = (next_publication(subscription).await, next_publication(subscription).await);
        assert_eq!((first.offset, data(&first)), (1, json!("from b")));
        assert_eq!((second.offset, data(&second)), (2, json!("from a")));
        assert_eq!(second.info.as_ref().map(|info| info.name.as_str()), Some("tester"));
    }
    // Presence is shared too.
    assert_eq!(on_b.presence("chat:shared").await.unwrap().len(), 2);
}

async fn a_client_fails_over_to_the_other_node_and_recovers_what_it_missed() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let roaming = client(&[&a, &b]).await;
    assert_eq!(roaming.connection().unwrap().url, url(&a));
    let mut news = roaming.subscribe("news").await.unwrap();
    api_publish(a.local_addr(), "news", json!(1)).await;
    assert_eq!(data(&next_publication(&mut news).await), json!(1));
    // Node a goes away; what is published meanwhile on b is recovered.
    a.shut_down().await;
    for n in 2..=3 {
        api_publish(b.local_addr(), "news", json!(n)).await;
    }
    let recovery = loop {
        if let Event::Resubscribed(recovery) = next_event(&mut news).await {
            break recovery;
        }
    };
    assert!(recovery.recovered, "{recovery:?}");
    assert_eq!(roaming.connection().unwrap().url, url(&b));
    api_publish(b.local_addr(), "news", json!(4)).await;
    for n in 2..=4 {
        let publication = next_publication(&mut news).await;
        assert_eq!((publication.offset, data(&publication)), (n, json!(n)), "each once, in order");
    }
}

async fn redis_killed_and_restarted_while_clients_stay_connected() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (on_a, on_b) = (client(&[&a]).await, client(&[&b]).await);
    let mut live_a = on_a.subscribe("live").await.unwrap();
    let mut live_b = on_b.subscribe("live").await.unwrap();
    api_publish(b.local_addr(), "live", json!("before")).await;
    assert_eq!(data(&next_publication(&mut live_a).await), json!("before"));

    redis.kill();
    let addr = a.local_addr();
    eventually("health to report the broker down", || async { http(addr, "GET", "/healthz", &[], "").await.0 == 503 })
        .await;
    assert_eq!(metric(addr, "ferrows_broker_up").await, 0.0);
    // Publishing fails cleanly, with a temporary error; the connections
    // stay and answer.
    let (status, body) = http(
        b.local_addr(),
        "POST",
        "/api/publish",
        &[("Authorization", "apikey test-key")],
        r#"{"channel":"live","data":1}"#,
    )
    .await;
    assert_eq!((status, body["error"]["temporary"].clone()), (503, json!(true)), "{body}");
    let failed = on_a.publish_json("live", &2).await.unwrap_err();
    assert_eq!(failed.code(), Some(100), "{failed}");
    assert!(failed.is_temporary());
    on_b.ping().await.unwrap();

    redis.restart();
    eventually("health to recover", || async { http(addr, "GET", "/healthz", &[], "").await.0 == 200 }).await;
    // The restarted Redis lost the history (a new epoch). The clients stay
    // connected and are told where the stream goes on from, so they know
    // to reload their state; then publications flow again.
    for subscription in [&mut live_a, &mut live_b] {
        loop {
            if let Event::Reset(position) = next_event(subscription).await {
                assert!(!position.epoch.is_empty());
                break;
            }
        }
    }
    api_publish(b.local_addr(), "live", json!("after")).await;
    assert_eq!(data(&next_publication(&mut live_a).await), json!("after"));
    assert_eq!(data(&next_publication(&mut live_b).await), json!("after"));
    on_a.publish_json("live", &"from a again").await.unwrap();
    assert_eq!(data(&next_publication(&mut live_b).await), json!("from a again"));
    assert_eq!(metric(addr, "ferrows_broker_reconnects_total").await, 1.0);
}
}
