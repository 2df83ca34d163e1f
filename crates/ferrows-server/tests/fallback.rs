//! HTTP polling and long polling, of one channel or several, receive the
//! same publications as a WebSocket subscriber: in order, nothing lost.

mod common;

use common::{Client, api_publish, http, server, subscribe};
use serde_json::{Value, json};

/// Polls (`timeout` 0) or long-polls `channels` from `since` until `count`
/// publications arrived in all; returns each channel's data.
async fn poll_until(
    addr: std::net::SocketAddr,
    channels: &[&str],
    mut since: String,
    count: usize,
    timeout: u32,
) -> Vec<Vec<Value>> {
    let mut data = vec![Vec::new(); channels.len()];
    let mut last = vec![None::<u64>; channels.len()];
    let mut rounds = 0;
    let names: String = channels.iter().map(|c| format!("channel={c}&")).collect();
    while data.iter().map(Vec::len).sum::<usize>() < count {
        rounds += 1;
        assert!(rounds < 500, "{} of {count} after {rounds} polls", data.iter().map(Vec::len).sum::<usize>());
        let path = format!("/api/poll?{names}since={since}&timeout={timeout}");
        let (status, body) = http(addr, "GET", &path, &[], "").await;
        assert_eq!(status, 200, "{body}");
        let result = &body["result"];
        for (n, polled) in result["channels"].as_array().unwrap().iter().enumerate() {
            assert_eq!(polled["channel"], channels[n], "in the order asked");
            assert_eq!(polled["recovered"], true, "{body}");
            for publication in polled["publications"].as_array().unwrap() {
                let offset = publication["offset"].as_u64().unwrap();
                if let Some(previous) = last[n] {
                    assert_eq!(offset, previous + 1, "in order, no gap: {body}");
                }
                last[n] = Some(offset);
                data[n].push(publication["data"].clone());
            }
        }
        since = result["since"].as_str().unwrap().to_owned();
        if timeout == 0 && data.iter().map(Vec::len).sum::<usize>() < count {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    data
}

/// The `since` of a first poll of `channels`: their positions now.
async fn positions(addr: std::net::SocketAddr, channels: &[&str]) -> String {
    let names: Vec<String> = channels.iter().map(|c| format!("channel={c}")).collect();
    let (status, start) = http(addr, "GET", &format!("/api/poll?{}", names.join("&")), &[], "").await;
    assert_eq!(status, 200, "{start}");
    for polled in start["result"]["channels"].as_array().unwrap() {
        assert!(polled.get("publications").is_none(), "a first poll gives positions only: {start}");
    }
    start["result"]["since"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn websocket_polling_and_long_polling_see_the_same_publications() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    const CHANNELS: [&str; 2] = ["feed", "chat:news"];
    let channels = CHANNELS;
    let since = positions(addr, &channels).await;
    let mut ws = Client::connect(addr, None).await;
    subscribe(&mut ws, channels[0]).await;
    subscribe(&mut ws, channels[1]).await;
    let pollers = tokio::spawn(poll_until(addr, &CHANNELS, since.clone(), 40, 0));
    let long_pollers = tokio::spawn(poll_until(addr, &CHANNELS, since, 40, 5));
    for n in 0..40 {
        api_publish(addr, channels[n % 2], json!({"n": n})).await;
        if n % 8 == 0 {
            // Let the long poll wake up and come back in between.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut via_websocket = vec![Vec::new(), Vec::new()];
    while via_websocket.iter().map(Vec::len).sum::<usize>() < 40 {
        let push = ws.next_push().await;
        if let Some(publication) = push["push"].get("pub") {
            let n = channels.iter().position(|c| push["push"]["channel"] == *c).unwrap();
            via_websocket[n].push(publication["data"].clone());
        }
    }
    let expected: Vec<Vec<Value>> =
        (0..2).map(|c| (0..40).filter(|n| n % 2 == c).map(|n| json!({"n": n})).collect()).collect();
    assert_eq!(via_websocket, expected);
    assert_eq!(pollers.await.unwrap(), expected);
    assert_eq!(long_pollers.await.unwrap(), expected);
}

#[tokio::test]
async fn a_long_poll_waits_for_the_next_publication_or_its_timeout() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let since = positions(addr, &["quiet", "still"]).await;
    let path = format!("/api/poll?channel=quiet&channel=still&since={since}&timeout=1");
    let began = std::time::Instant::now();
    let (status, empty) = http(addr, "GET", &path, &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(empty["result"]["channels"][0]["publications"], json!([]));
    assert_eq!(empty["result"]["channels"][1]["publications"], json!([]));
    assert!(began.elapsed() >= std::time::Duration::from_millis(900), "waited for the timeout");
    let waiting =
        tokio::spawn(async move { http(addr, "GET", &path.replace("timeout=1", "timeout=30"), &[], "").await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // A publication into either channel ends it.
    api_publish(addr, "still", json!("wake")).await;
    let (_, woke) = waiting.await.unwrap();
    assert_eq!(woke["result"]["channels"][1]["publications"][0]["data"], "wake", "{woke}");
    assert_eq!(woke["result"]["channels"][0]["publications"], json!([]), "{woke}");
}

#[tokio::test]
async fn a_long_poll_is_not_ended_by_join_and_leave_events() {
    let server = server(|config| {
        let room = ferrows_server::NamespaceConfig { join_leave: true, presence: true, ..Default::default() };
        config.namespaces.named.insert("room".into(), room);
    })
    .await;
    let addr = server.local_addr();
    let since = positions(addr, &["room:a"]).await;
    let path = format!("/api/poll?channel=room:a&since={since}&timeout=30");
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
    assert_eq!(woke["result"]["channels"][0]["publications"][0]["data"], "news", "{woke}");
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
        (format!("/api/poll?channel=a&since=a:x:e&token={token}"), 400),
        (format!("/api/poll?channel=a&since=b:1:e&token={token}"), 400),
        (format!("/api/poll?channel=a&channel=a&token={token}"), 400),
        (format!("/api/poll?{}token={token}", "channel=c&".repeat(33)), 413),
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

#[tokio::test]
async fn a_poll_of_no_channel_answers_at_once() {
    let server = server(|_| {}).await;
    let (status, answer) = http(server.local_addr(), "GET", "/api/poll?timeout=30", &[], "").await;
    assert_eq!((status, answer), (200, json!({"result": {"channels": [], "since": ""}})));
}

#[tokio::test]
async fn a_long_poll_whose_client_leaves_is_no_longer_counted() {
    use tokio::io::AsyncWriteExt;
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let since = positions(addr, &["left"]).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /api/poll?channel=left&since={since}&timeout=60 HTTP/1.1\r\nhost: x\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    common::eventually("the long poll waits", || async { common::metric(addr, "ferrows_long_polls").await == 1.0 })
        .await;
    drop(tcp);
    common::eventually("the long poll is gone", || async { common::metric(addr, "ferrows_long_polls").await == 0.0 })
        .await;
}
