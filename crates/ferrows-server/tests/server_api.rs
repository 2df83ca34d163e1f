//! The server API's orders and reads: subscribe, unsubscribe and
//! disconnect a user's connections (on every node: with a real
//! `redis-server` too), the channel list, presence and history.

mod common;

use common::{Client, api_publish, http, next_publication, server, subscribe};
use ferrows_hub::testing::RedisServer;
use ferrows_server::{BrokerKind, Server};
use serde_json::{Value, json};

/// A token of `user`.
fn token(user: &str) -> String {
    common::token(json!({"sub": user}))
}

async fn api(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let headers = [("Authorization", "apikey test-key"), ("Content-Type", "application/json")];
    http(server.local_addr(), "POST", path, &headers, &body.to_string()).await
}

/// The next push about `channel` holding `event` (others skipped).
async fn next_event(client: &mut Client, channel: &str, event: &str) -> Value {
    loop {
        let push = client.next_push().await;
        if push["push"]["channel"] == channel && push["push"].get(event).is_some() {
            return push["push"][event].clone();
        }
    }
}

async fn node(redis: Option<&RedisServer>) -> Server {
    let url = redis.map(RedisServer::url);
    server(move |config| {
        config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
        if let Some(url) = url {
            config.broker.kind = BrokerKind::Redis;
            config.broker.redis_url = url;
        }
    })
    .await
}

/// The orders reach the user's connections on `a` and `b` (one node, or
/// two on one Redis), and nobody else's.
async fn orders_reach_every_connection_of_the_user(a: &Server, b: &Server) {
    let mut al_a = Client::connect(a.local_addr(), Some(&token("al"))).await;
    let mut al_b = Client::connect(b.local_addr(), Some(&token("al"))).await;
    let mut bo = Client::connect(a.local_addr(), Some(&token("bo"))).await;
    subscribe(&mut bo, "news:1").await;
    subscribe(&mut al_a, "room:1").await;

    // Subscribe: a server-side subscription on each of al's connections.
    let (status, answer) = api(b, "/api/subscribe", json!({"user": "al", "channel": "news:1"})).await;
    assert_eq!((status, &answer), (200, &json!({"result": {}})));
    for client in [&mut al_a, &mut al_b] {
        let subscribed = next_event(client, "news:1", "subscribe").await;
        assert!(subscribed["position"].is_object(), "{subscribed}");
    }
    api_publish(a.local_addr(), "news:1", json!("one")).await;
    for client in [&mut al_a, &mut al_b, &mut bo] {
        assert_eq!(next_publication(client).await["data"], "one");
    }
    // Listed, across nodes; the server's own channels are not.
    let (_, list) = api(a, "/api/channels", json!({})).await;
    let channels = list["result"]["channels"].as_array().unwrap().clone();
    assert!(channels.contains(&json!("news:1")) && channels.contains(&json!("room:1")), "{list}");
    assert!(!channels.iter().any(|c| c.as_str().unwrap().starts_with(['#', '$'])), "{list}");

    // Unsubscribe, from a client's own subscription too.
    api(a, "/api/unsubscribe", json!({"user": "al", "channel": "news:1"})).await;
    api(a, "/api/unsubscribe", json!({"user": "al", "channel": "room:1"})).await;
    for client in [&mut al_a, &mut al_b] {
        assert_eq!(next_event(client, "news:1", "unsubscribe").await, json!({}));
    }
    assert_eq!(next_event(&mut al_a, "room:1", "unsubscribe").await, json!({}));
    api_publish(a.local_addr(), "news:1", json!("two")).await;
    assert_eq!(next_publication(&mut bo).await["data"], "two");
    let reply = al_a.call(json!({"ping": {}})).await;
    assert!(al_a.pushes.iter().all(|p| p["push"].get("pub").is_none()), "no publication after: {:?}", al_a.pushes);
    assert_eq!(reply["result"], json!({}));

    // Disconnect: every connection of al, with the code asked for.
    let (status, _) = api(b, "/api/disconnect", json!({"user": "al", "code": 4501, "reason": "banned"})).await;
    assert_eq!(status, 200);
    for client in [&mut al_a, &mut al_b] {
        let close = client.closed().await.unwrap();
        assert_eq!((close.code.0, close.reason.as_str()), (4501, "banned"));
    }
    assert_eq!(bo.call(json!({"ping": {}})).await["result"], json!({}), "bo stays");
    drop(bo);
}

per_encoding! {
    async fn orders_on_one_node() {
        let server = node(None).await;
        orders_reach_every_connection_of_the_user(&server, &server).await;
        // The default code.
        let mut al = Client::connect(server.local_addr(), Some(&token("al"))).await;
        api(&server, "/api/disconnect", json!({"user": "al"})).await;
        let close = al.closed().await.unwrap();
        assert_eq!((close.code.0, close.reason.as_str()), (4008, "disconnected"));
        // An event stream of the user ends with a `disconnect` event.
        let path = format!("/api/stream?channel=news&token={}", token("al"));
        let mut stream = common::EventStream::open(server.local_addr(), &path, &[]).await;
        assert_eq!(stream.next_json().await.0, "connected");
        api(&server, "/api/disconnect", json!({"user": "al", "code": 4502, "reason": "bye"})).await;
        loop {
            let (kind, _, data) = stream.next_json().await;
            if kind == "disconnect" {
                assert_eq!(data, json!({"code": 4502, "reason": "bye"}));
                break;
            }
        }
        server.shut_down().await;
    }

    async fn orders_across_nodes_on_redis() {
        let redis = RedisServer::start();
        let (a, b) = (node(Some(&redis)).await, node(Some(&redis)).await);
        orders_reach_every_connection_of_the_user(&a, &b).await;
        a.shut_down().await;
        b.shut_down().await;
    }
}

#[tokio::test]
async fn reads_and_refusals() {
    let server = node(None).await;
    let addr = server.local_addr();
    let mut client = Client::connect(addr, Some(&token("al"))).await;
    subscribe(&mut client, "room:1").await;
    api_publish(addr, "room:1", json!({"n": 1})).await;
    let (status, presence) = api(&server, "/api/presence", json!({"channel": "room:1"})).await;
    assert_eq!(status, 200, "{presence}");
    let clients = presence["result"]["clients"].as_object().unwrap();
    assert_eq!(clients.values().next().unwrap()["user"], "al");
    let (_, history) = api(&server, "/api/history", json!({"channel": "room:1", "limit": 5})).await;
    assert_eq!(history["result"]["publications"][0]["data"], json!({"n": 1}), "{history}");
    // Clients GET the same paths with their rules.
    let (status, _) = http(addr, "GET", "/api/history?channel=room:1", &[], "").await;
    assert_eq!(status, 200);
    // Refused: no key, bad bodies, bad codes, anonymous users, the
    // server's channels.
    let (status, _) = http(addr, "POST", "/api/subscribe", &[], r#"{"user":"al","channel":"a"}"#).await;
    assert_eq!(status, 401);
    for (path, body, code) in [
        ("/api/subscribe", json!({"user": "", "channel": "a"}), 400),
        ("/api/subscribe", json!({"user": "al", "channel": "bad name"}), 400),
        ("/api/subscribe", json!({"user": "al", "channel": "$sys:stats"}), 403),
        ("/api/subscribe", json!({"user": "al"}), 400),
        ("/api/disconnect", json!({"user": "al", "code": 1000}), 400),
        ("/api/disconnect", json!({"user": "al", "reason": "x".repeat(124)}), 400),
        ("/api/channels", json!({"extra": 1}), 400),
        ("/api/presence", json!({"channel": "bad name"}), 400),
    ] {
        let (status, answer) = api(&server, path, body.clone()).await;
        assert_eq!(status, code, "{path} {body}: {answer}");
    }
    let (status, _) = http(addr, "GET", "/api/channels", &[], "").await;
    assert_eq!(status, 405);
    drop(client);
    server.shut_down().await;
}

/// Publications with an idempotency key are made once, whoever retries:
/// the server API (on `a` and on `b`), a WebSocket client, an HTTP client.
async fn keyed_publications_are_made_once(a: &Server, b: &Server) {
    let mut reader = Client::connect(a.local_addr(), Some(&token("rd"))).await;
    subscribe(&mut reader, "news:k").await;
    let body = json!({"channel": "news:k", "data": "api", "idempotency_key": "order-1"});
    let (_, first) = api(a, "/api/publish", body.clone()).await;
    let (_, again) = api(b, "/api/publish", body).await;
    assert_eq!(first, again, "the first publication's position");
    let batch = json!({"publications": [{"channel": "news:k", "data": "api", "idempotency_key": "order-1"}]});
    let (_, batched) = api(b, "/api/batch", batch).await;
    assert_eq!(batched["results"][0], first);
    let mut writer = Client::connect(b.local_addr(), Some(&token("wr"))).await;
    let publish = json!({"publish": {"channel": "news:k", "data": "ws", "idempotency_key": "order-1"}});
    let ws_first = writer.call(publish.clone()).await;
    let ws_again = writer.call(publish).await;
    assert_eq!(ws_first["result"], ws_again["result"]);
    assert_ne!(ws_first["result"], first["result"], "a client's keys are not the API's");
    let body = json!({"channel": "news:k", "data": "http", "idempotency_key": "order-1"}).to_string();
    let bearer = format!("Bearer {}", token("wr"));
    let headers = [("Authorization", bearer.as_str())];
    let (_, http_first) = http(b.local_addr(), "POST", "/api/client/publish", &headers, &body).await;
    assert_eq!(http_first, json!({"result": ws_first["result"]}), "the same user's key");
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(next_publication(&mut reader).await["data"].clone());
    }
    assert_eq!(got, [json!("api"), json!("ws")]);
    api_publish(a.local_addr(), "news:k", json!("last")).await;
    assert_eq!(next_publication(&mut reader).await["data"], "last", "nothing else was published");
    let (status, _) = api(a, "/api/publish", json!({"channel": "news:k", "data": 1, "idempotency_key": "a b"})).await;
    assert_eq!(status, 400);
    drop((reader, writer));
}

per_encoding! {
    async fn keyed_publications_on_one_node() {
        let server = node(None).await;
        keyed_publications_are_made_once(&server, &server).await;
        server.shut_down().await;
    }

    async fn keyed_publications_across_nodes_on_redis() {
        let redis = RedisServer::start();
        let (a, b) = (node(Some(&redis)).await, node(Some(&redis)).await);
        keyed_publications_are_made_once(&a, &b).await;
        a.shut_down().await;
        b.shut_down().await;
    }
}
