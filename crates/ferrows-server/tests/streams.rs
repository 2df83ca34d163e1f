//! Server-Sent Events streams (`GET /api/stream`) and publishing over
//! HTTP (`POST /api/client/publish`): what a browser without a WebSocket
//! uses, with the WebSocket's rules.

mod common;

use std::time::Duration;

use common::{Client, EventStream, WAIT, api_publish, eventually, http, metric, server, subscribe, token};
use ferrows_server::NamespaceConfig;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Reads a stream's `connected` event and one `subscribed` event per
/// channel; returns the positions.
async fn opened(stream: &mut EventStream, channels: &[&str]) -> Vec<Value> {
    assert_eq!(stream.status, 200, "{}", stream.error);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    let (kind, _, connected) = stream.next_json().await;
    assert_eq!(kind, "connected", "{connected}");
    assert!(connected["client"].is_string(), "{connected}");
    let mut positions = Vec::new();
    for channel in channels {
        let (kind, id, subscribed) = stream.next_json().await;
        assert_eq!((kind.as_str(), subscribed["channel"].as_str()), ("subscribed", Some(*channel)));
        assert!(id.is_some(), "a subscription without recovered publications moves the id");
        positions.push(subscribed["position"].clone());
    }
    positions
}

/// The next publication event: its data, and the id it carried.
async fn next_publication(stream: &mut EventStream) -> (Value, String) {
    loop {
        let (kind, id, push) = stream.next_json().await;
        assert_eq!(kind, "message");
        if let Some(publication) = push["push"].get("pub") {
            return (publication["data"].clone(), id.expect("a publication's event has an id"));
        }
    }
}

#[tokio::test]
async fn a_stream_delivers_several_channels_and_resumes_from_its_last_event_id() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let mut stream = EventStream::open(addr, "/api/stream?channel=a&channel=chat:b", &[]).await;
    opened(&mut stream, &["a", "chat:b"]).await;
    for n in 0..6 {
        api_publish(addr, if n % 2 == 0 { "a" } else { "chat:b" }, json!(n)).await;
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next_publication(&mut stream).await);
    }
    assert_eq!(
        seen.iter().map(|(data, _)| data.clone()).collect::<Vec<_>>(),
        (0..6).map(|n| json!(n)).collect::<Vec<_>>()
    );
    // Every id holds both channels' positions, each where the stream is.
    let (_, id) = &seen[4];
    assert!(id.starts_with("a:3:") && id.contains(",chat:b:2:"), "{id}");
    let last_id = stream.last_id().unwrap();
    drop(stream);
    // Missed while away, then found again through Last-Event-ID (the URL
    // is the same, as a browser's reconnect has it).
    for n in 6..10 {
        api_publish(addr, if n % 2 == 0 { "a" } else { "chat:b" }, json!(n)).await;
    }
    let mut stream =
        EventStream::open(addr, "/api/stream?channel=a&channel=chat:b", &[("last-event-id", &last_id)]).await;
    let (kind, _, _) = stream.next_json().await;
    assert_eq!(kind, "connected");
    let mut data = Vec::new();
    while data.len() < 4 {
        let (kind, _, event) = stream.next_json().await;
        if kind == "subscribed" {
            assert_eq!(event["recovered"], true, "{event}");
            continue;
        }
        data.push(event["push"]["pub"]["data"].clone());
    }
    data.sort_by_key(|d| d.as_u64());
    assert_eq!(data, (6..10).map(|n| json!(n)).collect::<Vec<_>>(), "the missed ones, once each");
    api_publish(addr, "a", json!("live")).await;
    assert_eq!(next_publication(&mut stream).await.0, "live");
}

#[tokio::test]
async fn a_stream_from_a_lost_position_says_so() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let mut stream = EventStream::open(addr, "/api/stream?channel=a&since=a:5:oldepoch", &[]).await;
    let (kind, _, _) = stream.next_json().await;
    assert_eq!(kind, "connected");
    let (kind, id, subscribed) = stream.next_json().await;
    assert_eq!(kind, "subscribed");
    assert_eq!(subscribed["recovered"], false, "{subscribed}");
    let epoch = subscribed["position"]["epoch"].as_str().unwrap();
    assert_eq!(id.unwrap(), format!("a:{}:{epoch}", subscribed["position"]["offset"]));
}

#[tokio::test]
async fn a_stream_and_a_websocket_subscriber_get_the_same_publications() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let mut stream = EventStream::open(addr, "/api/stream?channel=feed", &[]).await;
    opened(&mut stream, &["feed"]).await;
    let mut ws = Client::connect(addr, None).await;
    subscribe(&mut ws, "feed").await;
    // Client publications too, with their info; data with line ends in it.
    ws.call(json!({"publish": {"channel": "feed", "data": {"from": "ws"}}})).await;
    api_publish(addr, "feed", json!({"lines": "a\nb"})).await;
    let mut via_stream = Vec::new();
    let mut via_ws = Vec::new();
    for _ in 0..2 {
        let (_, _, push) = stream.next_json().await;
        via_stream.push(push);
        via_ws.push(ws.next_push().await);
    }
    assert_eq!(via_stream, via_ws);
}

#[tokio::test]
async fn an_idle_stream_gets_keepalive_comments() {
    let server = server(|config| config.websocket.sse_keepalive = Duration::from_millis(100)).await;
    let addr = server.local_addr();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /api/stream?channel=a HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&seen).contains("event: ping\ndata: {}\n\n") {
        assert!(tokio::time::Instant::now() < deadline, "no keepalive: {}", String::from_utf8_lossy(&seen));
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut tcp, &mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the stream stays open");
        seen.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_stream_that_is_not_read_is_closed_and_its_memory_freed() {
    let server = server(|config| {
        config.limits.client_queue_messages = 64;
        config.limits.client_queue_bytes = 64 << 10;
    })
    .await;
    let addr = server.local_addr();
    // A client that asks for a stream and never reads a byte of it.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /api/stream?channel=flood HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    eventually("the stream opened", || async { metric(addr, "ferrows_streams").await == 1.0 }).await;
    let big = "x".repeat(16 << 10);
    let mut sent = 0;
    while metric(addr, "ferrows_slow_consumers_total").await < 1.0 {
        sent += 1;
        // Bounded: kernel buffers, hyper's and the queue fill long before.
        assert!(sent < 2000, "never dropped as slow");
        api_publish(addr, "flood", json!(big)).await;
    }
    eventually("the stream closed", || async { metric(addr, "ferrows_streams").await == 0.0 }).await;
    // Its connection was closed: the client reads what was sent, then
    // the end (or a reset).
    let mut sink = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was closed");
}

#[tokio::test]
async fn streams_follow_the_websocket_rules() {
    let server = server(|config| {
        config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
        config.auth.allow_anonymous = false;
        config.limits.max_request_channels = 2;
        let private = NamespaceConfig { anonymous: false, protected: true, ..Default::default() };
        config.namespaces.named.insert("private".into(), private);
    })
    .await;
    let addr = server.local_addr();
    let al = token(json!({"sub": "al"}));
    let bo = token(json!({"sub": "bo", "channels": ["private:bo"]}));
    let cases = [
        ("/api/stream?channel=a".to_owned(), 401, 101),
        (format!("/api/stream?channel=a&token={al}x"), 401, 101),
        (format!("/api/stream?channel=private:bo&token={al}"), 403, 103),
        (format!("/api/stream?channel=nope:a&token={al}"), 400, 102),
        (format!("/api/stream?channel=a&channel=b&channel=c&token={al}"), 413, 106),
        (format!("/api/stream?channel=a&since=a:1&token={al}"), 400, 107),
        (format!("/api/stream?channel=a&timeout=1&token={al}"), 400, 107),
        (format!("/api/stream?channel=&token={al}"), 400, 102),
    ];
    for (path, status, code) in cases {
        let stream = EventStream::open(addr, &path, &[]).await;
        assert_eq!(
            (stream.status, stream.error["error"]["code"].as_u64()),
            (status, Some(code)),
            "{path}: {}",
            stream.error
        );
    }
    let bad_id =
        EventStream::open(addr, &format!("/api/stream?channel=a&token={al}"), &[("last-event-id", "nonsense")]).await;
    assert_eq!(bad_id.status, 400, "{}", bad_id.error);
    // The bearer header works as the query does; a granted channel opens.
    let bearer = format!("Bearer {bo}");
    let mut stream = EventStream::open(addr, "/api/stream?channel=private:bo", &[("authorization", &bearer)]).await;
    opened(&mut stream, &["private:bo"]).await;
    // A stream of no channel: its client is told who it is, and waits.
    let mut stream = EventStream::open(addr, &format!("/api/stream?token={al}"), &[]).await;
    opened(&mut stream, &[]).await;
}

#[tokio::test]
async fn stream_clients_are_in_presence_until_they_leave() {
    let server = server(|config| {
        let room = NamespaceConfig { presence: true, join_leave: true, ..Default::default() };
        config.namespaces.named.insert("room".into(), room);
    })
    .await;
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr, None).await;
    subscribe(&mut watcher, "room:a").await;
    let mut stream = EventStream::open(addr, "/api/stream?channel=room:a&name=eve", &[]).await;
    opened(&mut stream, &["room:a"]).await;
    // (The watcher's own join comes first.)
    let join = loop {
        let push = watcher.next_push().await;
        if push["push"]["join"]["name"] != "tester" {
            break push;
        }
    };
    assert_eq!(join["push"]["join"]["name"], "eve", "{join}");
    let presence = watcher.call(json!({"presence": {"channel": "room:a"}})).await;
    assert_eq!(presence["result"]["clients"].as_object().unwrap().len(), 2, "{presence}");
    drop(stream);
    let leave = watcher.next_push().await;
    assert_eq!(leave["push"]["leave"]["name"], "eve", "{leave}");
    eventually("the stream is gone", || async { metric(addr, "ferrows_streams").await == 0.0 }).await;
}

#[tokio::test]
async fn a_shutdown_ends_streams() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let mut stream = EventStream::open(addr, "/api/stream?channel=a", &[]).await;
    opened(&mut stream, &["a"]).await;
    let shutdown = tokio::spawn(server.shut_down());
    assert!(stream.next().await.is_none(), "the stream ends");
    tokio::time::timeout(WAIT, shutdown).await.expect("the shutdown does not wait for ever").unwrap();
}

#[tokio::test]
async fn clients_publish_over_http_with_their_websocket_permissions() {
    let server = server(|config| {
        config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
        config.auth.allow_anonymous = false;
        config.limits.max_message_size = 1024;
        let news = NamespaceConfig { publish: false, ..Default::default() };
        config.namespaces.named.insert("news".into(), news);
    })
    .await;
    let addr = server.local_addr();
    let al = token(json!({"sub": "al", "name": "Al"}));
    let bearer = format!("Bearer {al}");
    let mut ws = Client::connect(addr, Some(&al)).await;
    subscribe(&mut ws, "chat").await;
    let body = json!({"channel": "chat", "data": {"text": "hi"}}).to_string();
    let (status, answer) = http(addr, "POST", "/api/client/publish", &[("authorization", &bearer)], &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"]["offset"].is_u64(), "{answer}");
    let push = ws.next_push().await;
    assert_eq!(push["push"]["pub"]["data"], json!({"text": "hi"}));
    assert_eq!(
        (push["push"]["pub"]["info"]["user"].as_str(), push["push"]["pub"]["info"]["name"].as_str()),
        (Some("al"), Some("Al"))
    );
    let cases = [
        (format!("/api/client/publish?token={al}"), json!({"channel": "news:a", "data": 1}).to_string(), 403, 103),
        ("/api/client/publish".to_owned(), body.clone(), 401, 101),
        (
            format!("/api/client/publish?token={al}"),
            json!({"channel": "chat", "data": "x".repeat(2000)}).to_string(),
            413,
            106,
        ),
        (format!("/api/client/publish?token={al}"), "{\"channel\": \"chat\"}".to_owned(), 400, 107),
        (format!("/api/client/publish?token={al}"), json!({"channel": "bad name", "data": 1}).to_string(), 400, 102),
        (format!("/api/client/publish?token={al}&x=1"), body.clone(), 400, 107),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = http(addr, "POST", &path, &[], &body).await;
        assert_eq!((got, answer["error"]["code"].as_u64()), (status, Some(code)), "{path} {body}: {answer}");
    }
    let (status, _) = http(addr, "GET", "/api/client/publish", &[], "").await;
    assert_eq!(status, 405);
    assert_eq!(metric(addr, "ferrows_http_publishes_total").await, 7.0);
}

#[tokio::test]
async fn pages_of_allowed_origins_may_use_the_http_routes() {
    let server = server(|config| config.server.allowed_origins = vec!["https://app.example".into()]).await;
    let addr = server.local_addr();
    let origin = [("origin", "https://app.example")];
    let (status, _) = http(addr, "GET", "/api/poll?channel=a", &[("origin", "https://evil.example")], "").await;
    assert_eq!(status, 403);
    let answer = common::raw_exchange(
        addr,
        b"OPTIONS /api/client/publish HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\n\
          access-control-request-method: POST\r\naccess-control-request-headers: authorization\r\n\
          connection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert!(answer.contains("access-control-allow-origin: https://app.example"), "{answer}");
    assert!(answer.contains("access-control-allow-headers: authorization, content-type, last-event-id"), "{answer}");
    let stream = EventStream::open(addr, "/api/stream?channel=a", &origin).await;
    assert_eq!(stream.headers["access-control-allow-origin"], "https://app.example");
    assert_eq!(stream.status, 200);
}

#[tokio::test]
async fn presence_and_history_over_http_answer_as_the_websocket_commands() {
    let server = server(|config| {
        let quiet = NamespaceConfig { presence: false, ..Default::default() };
        config.namespaces.named.insert("quiet".into(), quiet);
    })
    .await;
    let addr = server.local_addr();
    let mut ws = Client::connect(addr, None).await;
    subscribe(&mut ws, "room").await;
    for n in 0..3 {
        api_publish(addr, "room", json!(n)).await;
    }
    for command in [json!({"history": {"channel": "room", "limit": 2}}), json!({"presence": {"channel": "room"}})] {
        let reply = ws.call(command.clone()).await;
        let (method, args) = command.as_object().unwrap().iter().next().unwrap();
        let limit = args.get("limit").map_or(String::new(), |l| format!("&limit={l}"));
        let (status, answer) = http(addr, "GET", &format!("/api/{method}?channel=room{limit}"), &[], "").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"], reply["result"], "{method}");
    }
    let cases = [
        ("/api/presence?channel=quiet:a", 403, 103),
        ("/api/history?channel=a&limit=x", 400, 107),
        ("/api/history", 400, 102),
        ("/api/presence?channel=a&channel=b", 400, 107),
        ("/api/presence?channel=a&limit=1", 400, 107),
    ];
    for (path, status, code) in cases {
        let (got, answer) = http(addr, "GET", path, &[], "").await;
        assert_eq!((got, answer["error"]["code"].as_u64()), (status, Some(code)), "{path}: {answer}");
    }
}

#[tokio::test]
async fn requests_of_one_connection_follow_the_command_rate() {
    let server = server(|config| {
        config.limits.command_rate = 1;
        config.limits.command_burst = 5;
    })
    .await;
    let addr = server.local_addr();
    // Forty requests at once on one connection: the burst runs, the next
    // ones are refused with error 110, and a client that asks on at full
    // speed is closed, as a WebSocket client would be (another connection
    // has its own allowance).
    let mut pipelined = "GET /api/history?channel=a HTTP/1.1\r\nhost: x\r\n\r\n".repeat(39);
    pipelined.push_str("GET /api/history?channel=a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let answers = common::raw_exchange(addr, pipelined.as_bytes()).await;
    let statuses: Vec<&str> = answers.match_indices("HTTP/1.1 ").map(|(at, _)| &answers[at + 9..at + 12]).collect();
    let ok = statuses.iter().filter(|s| **s == "200").count();
    assert!((5..=7).contains(&ok), "{statuses:?}");
    assert!(statuses.len() > ok && statuses[ok..].iter().all(|s| *s == "429"), "{statuses:?}");
    assert!(statuses.len() < 40, "closed before the last request: {statuses:?}");
    assert!(answers.contains("\"code\":110"), "{answers}");
    assert_eq!(metric(addr, "ferrows_command_floods_total").await, 1.0);
    let (status, _) = http(addr, "GET", "/api/history?channel=a", &[], "").await;
    assert_eq!(status, 200);
}
