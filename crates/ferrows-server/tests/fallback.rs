//! HTTP polling and long polling receive the same publications as a
//! WebSocket subscriber: in order, nothing lost.

mod common;

use common::{Client, api_publish, http, server, subscribe};
use serde_json::{Value, json};

/// Polls (`timeout` 0) or long-polls until `count` publications after
/// `position` arrived; returns their data.
async fn poll_until(
    addr: std::net::SocketAddr,
    channel: &str,
    mut position: Value,
    count: usize,
    timeout: u32,
) -> Vec<Value> {
    let mut data = Vec::new();
    let mut rounds = 0;
    while data.len() < count {
        rounds += 1;
        assert!(rounds < 500, "{channel}: {} of {count} after {rounds} polls", data.len());
        let path = format!(
            "/api/poll?channel={channel}&offset={}&epoch={}&timeout={timeout}",
            position["offset"],
            position["epoch"].as_str().unwrap()
        );
        let (status, body) = http(addr, "GET", &path, &[], "").await;
        assert_eq!(status, 200, "{body}");
        let result = &body["result"];
        assert_eq!(result["recovered"], true, "{body}");
        for publication in result["publications"].as_array().unwrap() {
            assert_eq!(publication["offset"], json!(position["offset"].as_u64().unwrap() + 1), "in order, no gap");
            position["offset"] = publication["offset"].clone();
            data.push(publication["data"].clone());
        }
        if timeout == 0 && data.len() < count {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    data
}

#[tokio::test]
async fn websocket_polling_and_long_polling_see_the_same_publications() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let channel = "feed";
    let (status, start) = http(addr, "GET", &format!("/api/poll?channel={channel}"), &[], "").await;
    assert_eq!(status, 200, "{start}");
    let position = start["result"]["position"].clone();
    let mut ws = Client::connect(addr, None).await;
    subscribe(&mut ws, channel).await;
    let pollers = tokio::spawn(poll_until(addr, channel, position.clone(), 40, 0));
    let long_pollers = tokio::spawn(poll_until(addr, channel, position, 40, 5));
    for n in 0..40 {
        api_publish(addr, channel, json!({"n": n})).await;
        if n % 8 == 0 {
            // Let the long poll wake up and come back in between.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut via_websocket = Vec::new();
    while via_websocket.len() < 40 {
        let push = ws.next_push().await;
        if let Some(publication) = push["push"].get("pub") {
            via_websocket.push(publication["data"].clone());
        }
    }
    let expected: Vec<Value> = (0..40).map(|n| json!({"n": n})).collect();
    assert_eq!(via_websocket, expected);
    assert_eq!(pollers.await.unwrap(), expected);
    assert_eq!(long_pollers.await.unwrap(), expected);
}

#[tokio::test]
async fn a_long_poll_waits_for_the_next_publication_or_its_timeout() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let (_, start) = http(addr, "GET", "/api/poll?channel=quiet", &[], "").await;
    let position = &start["result"]["position"];
    let path = format!("/api/poll?channel=quiet&offset=0&epoch={}&timeout=1", position["epoch"].as_str().unwrap());
    let began = std::time::Instant::now();
    let (status, empty) = http(addr, "GET", &path, &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(empty["result"]["publications"], json!([]));
    assert!(began.elapsed() >= std::time::Duration::from_millis(900), "waited for the timeout");
    let waiting =
        tokio::spawn(async move { http(addr, "GET", &path.replace("timeout=1", "timeout=30"), &[], "").await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    api_publish(addr, "quiet", json!("wake")).await;
    let (_, woke) = waiting.await.unwrap();
    assert_eq!(woke["result"]["publications"][0]["data"], "wake", "{woke}");
}

#[tokio::test]
async fn a_long_poll_is_not_ended_by_join_and_leave_events() {
    let server = server(|config| {
        let room = ferrows_server::NamespaceConfig { join_leave: true, presence: true, ..Default::default() };
        config.namespaces.named.insert("room".into(), room);
    })
    .await;
    let addr = server.local_addr();
    let (_, start) = http(addr, "GET", "/api/poll?channel=room:a", &[], "").await;
    let epoch = start["result"]["position"]["epoch"].as_str().unwrap().to_owned();
    let path = format!("/api/poll?channel=room:a&offset=0&epoch={epoch}&timeout=30");
    let waiting = tokio::spawn(async move { http(addr, "GET", &path, &[], "").await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // A client joins and leaves (events of the channel, not publications).
    let mut visitor = common::Client::connect(addr, None).await;
    common::subscribe(&mut visitor, "room:a").await;
    visitor.call(json!({"unsubscribe": {"channel": "room:a"}})).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the long poll still waits");
    api_publish(addr, "room:a", json!("news")).await;
    let (_, woke) = waiting.await.unwrap();
    assert_eq!(woke["result"]["publications"][0]["data"], "news", "{woke}");
}

#[tokio::test]
async fn bad_polls_get_clear_http_errors() {
    let server = server(|config| {
        config.auth.token_hmac_secret = Some("secret".into());
        config.auth.allow_anonymous = false;
    })
    .await;
    let addr = server.local_addr();
    let claims = json!({"sub": "al"});
    let key = jsonwebtoken::EncodingKey::from_secret(b"secret");
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let cases = [
        ("/api/poll?channel=a".to_owned(), 401),
        ("/api/poll?channel=a&token=forged".to_owned(), 401),
        (format!("/api/poll?channel=bad%20name&token={token}"), 400),
        (format!("/api/poll?channel=a&timeout=600&token={token}"), 400),
        (format!("/api/poll?channel=a&offset=3&token={token}"), 400),
        ("/api/poll?channel=a&what=1".to_owned(), 400),
    ];
    let (status, _) = http(addr, "GET", &format!("/api/poll?channel=a&token={token}"), &[], "").await;
    assert_eq!(status, 200, "a good token polls");
    for (path, expected) in cases {
        let (status, body) = http(addr, "GET", &path, &[], "").await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"]["code"].is_u64(), "{path}: {body}");
    }
}
