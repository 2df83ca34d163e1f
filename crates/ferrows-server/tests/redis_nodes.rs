//! Two `serve` nodes on one real `redis-server` form one service:
//! cross-node fan-out, recovery from the other node, and a Redis that is
//! killed and restarted while clients stay connected (they get a `reset`).

mod common;

use common::{Client, api_publish, eventually, http, metric, next_publication, server, subscribe};
use ferrows_hub::testing::RedisServer;
use ferrows_server::{BrokerKind, Server};
use serde_json::{Value, json};

async fn node(redis: &RedisServer) -> Server {
    let url = redis.url();
    server(move |config| {
        config.broker.kind = BrokerKind::Redis;
        config.broker.redis_url = url;
    })
    .await
}

#[tokio::test]
async fn a_publication_on_either_node_reaches_subscribers_on_both() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_a = Client::connect(a.local_addr(), None).await;
    let mut on_b = Client::connect(b.local_addr(), None).await;
    subscribe(&mut on_a, "chat:shared").await;
    subscribe(&mut on_b, "chat:shared").await;
    api_publish(b.local_addr(), "chat:shared", json!("from b")).await;
    let reply = on_a.call(json!({"publish": {"channel": "chat:shared", "data": "from a"}})).await;
    assert_eq!(reply["result"]["offset"], 2, "{reply}");
    for client in [&mut on_a, &mut on_b] {
        let first = next_publication(client).await;
        let second = next_publication(client).await;
        assert_eq!((first["offset"].clone(), first["data"].clone()), (json!(1), json!("from b")));
        assert_eq!((second["offset"].clone(), second["data"].clone()), (json!(2), json!("from a")));
    }
    // Presence is shared too.
    let presence = on_b.call(json!({"presence": {"channel": "chat:shared"}})).await;
    assert_eq!(presence["result"]["clients"].as_object().unwrap().len(), 2, "{presence}");
}

#[tokio::test]
async fn a_client_recovers_on_the_other_node_what_it_missed() {
    let redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut client = Client::connect(a.local_addr(), None).await;
    let position = subscribe(&mut client, "news").await["position"].clone();
    drop(client);
    for n in 1..=3 {
        api_publish(a.local_addr(), "news", json!(n)).await;
    }
    let mut elsewhere = Client::connect(b.local_addr(), None).await;
    let reply = elsewhere.call(json!({"subscribe": {"channel": "news", "since": position}})).await;
    assert_eq!(reply["result"]["recovered"], true, "{reply}");
    let data: Vec<Value> =
        reply["result"]["publications"].as_array().unwrap().iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, vec![json!(1), json!(2), json!(3)]);
    api_publish(a.local_addr(), "news", json!(4)).await;
    assert_eq!(next_publication(&mut elsewhere).await["data"], 4);
}

#[tokio::test]
async fn redis_killed_and_restarted_while_clients_stay_connected() {
    let mut redis = RedisServer::start();
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut on_a = Client::connect(a.local_addr(), None).await;
    let mut on_b = Client::connect(b.local_addr(), None).await;
    subscribe(&mut on_a, "live").await;
    subscribe(&mut on_b, "live").await;
    api_publish(b.local_addr(), "live", json!("before")).await;
    assert_eq!(next_publication(&mut on_a).await["data"], "before");

    redis.kill();
    let addr = a.local_addr();
    eventually("health to report the broker down", || async { http(addr, "GET", "/healthz", &[], "").await.0 == 503 })
        .await;
    assert_eq!(metric(addr, "ferrows_broker_up").await, 0.0);
    // Publishing fails cleanly; the connections stay and answer.
    let (status, body) = http(
        b.local_addr(),
        "POST",
        "/api/publish",
        &[("Authorization", "apikey test-key")],
        r#"{"channel":"live","data":1}"#,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let failed = on_a.call(json!({"publish": {"channel": "live", "data": 2}})).await;
    assert_eq!(failed["error"]["code"], 100, "{failed}");
    assert_eq!(on_b.call(json!({"ping": {}})).await["result"], json!({}));

    redis.restart();
    eventually("health to recover", || async { http(addr, "GET", "/healthz", &[], "").await.0 == 200 }).await;
    // The restarted Redis lost the history (a new epoch). The clients stay
    // connected and are told where the stream goes on from, so they know
    // to reload their state; then publications flow again.
    for client in [&mut on_a, &mut on_b] {
        let reset = loop {
            let push = client.next_push().await;
            if let Some(reset) = push["push"].get("reset") {
                break reset.clone();
            }
        };
        assert!(reset["position"]["epoch"].is_string(), "{reset}");
    }
    api_publish(b.local_addr(), "live", json!("after")).await;
    assert_eq!(next_publication(&mut on_a).await["data"], "after");
    assert_eq!(next_publication(&mut on_b).await["data"], "after");
    let reply = on_a.call(json!({"publish": {"channel": "live", "data": "from a again"}})).await;
    assert!(reply.get("result").is_some(), "{reply}");
    assert_eq!(next_publication(&mut on_b).await["data"], "from a again");
    assert_eq!(metric(addr, "ferrows_broker_reconnects_total").await, 1.0);
}
