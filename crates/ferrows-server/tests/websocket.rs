//! `ferrows serve` over WebSocket: the protocol end to end, bad input,
//! limits, slow consumers and shutdown, against a server in this process.

mod common;

use common::{Client, api_publish, eventually, http, metric, next_publication, server, subscribe};
use ferrows::{CloseCode, Message};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn token(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

per_encoding! {
async fn publications_reach_every_subscriber_with_positions_and_info() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let mut alice = Client::connect(addr, None).await;
    let mut bob = Client::connect(addr, None).await;
    let first = subscribe(&mut alice, "chat:lobby").await;
    subscribe(&mut bob, "chat:lobby").await;
    assert_eq!(first["position"]["offset"], 0);
    let reply = bob.call(json!({"publish": {"channel": "chat:lobby", "data": {"text": "hi"}}})).await;
    assert_eq!(reply["result"]["offset"], 1, "{reply}");
    for client in [&mut alice, &mut bob] {
        let publication = next_publication(client).await;
        assert_eq!(publication["data"]["text"], "hi");
        assert_eq!(publication["info"]["name"], "tester");
    }
    let api = api_publish(addr, "chat:lobby", json!({"text": "from the backend"})).await;
    assert_eq!(api["offset"], 2);
    let empty = alice.call(json!({"history": {"channel": "chat:empty"}})).await;
    assert_eq!(empty["result"]["publications"], json!([]), "{empty}");
    let history = alice.call(json!({"history": {"channel": "chat:lobby", "limit": 10}})).await;
    let offsets: Vec<_> =
        history["result"]["publications"].as_array().unwrap().iter().map(|p| p["offset"].clone()).collect();
    assert_eq!(offsets, vec![json!(1), json!(2)]);
    let presence = alice.call(json!({"presence": {"channel": "chat:lobby"}})).await;
    assert_eq!(presence["result"]["clients"].as_object().unwrap().len(), 2, "{presence}");
    server.shut_down().await;
}
}

per_encoding! {
async fn recovery_returns_what_was_missed_then_live_publications() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let mut client = Client::connect(addr, None).await;
    let start = subscribe(&mut client, "news").await["position"].clone();
    drop(client);
    for n in 1..=3 {
        api_publish(addr, "news", json!(n)).await;
    }
    let mut back = Client::connect(addr, None).await;
    let reply = back.call(json!({"subscribe": {"channel": "news", "since": start}})).await;
    let result = &reply["result"];
    assert_eq!(result["recovered"], true, "{reply}");
    let data: Vec<_> = result["publications"].as_array().unwrap().iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, vec![json!(1), json!(2), json!(3)]);
    api_publish(addr, "news", json!(4)).await;
    assert_eq!(next_publication(&mut back).await["data"], 4);
    let stale = json!({"offset": 1, "epoch": "another-epoch"});
    let mut lost = Client::connect(addr, None).await;
    let reply = lost.call(json!({"subscribe": {"channel": "news", "since": stale}})).await;
    assert_eq!(reply["result"]["recovered"], false, "{reply}");
}
}

#[tokio::test]
async fn malformed_input_gets_errors_or_documented_close_codes() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    // Commands before connect.
    let mut early = Client::open(addr).await;
    let reply = early.call(json!({"subscribe": {"channel": "a"}})).await;
    assert_eq!(reply["error"]["code"], 108);
    // Unknown and malformed commands: an error reply, the connection stays.
    let mut client = Client::connect(addr, None).await;
    assert_eq!(client.call(json!({"explode": {}})).await["error"]["code"], 104);
    assert_eq!(client.call(json!({"subscribe": {"chanel": "a"}})).await["error"]["code"], 107);
    assert_eq!(client.call(json!({"subscribe": {"channel": "bad name"}})).await["error"]["code"], 102);
    assert_eq!(client.call(json!({"unsubscribe": {"channel": "never"}})).await["error"]["code"], 109);
    assert_eq!(client.call(json!({"ping": {}})).await["result"], json!({}));
    // Not JSON: 4000.
    client.send_text("this is not json".into()).await;
    assert_eq!(client.closed().await.unwrap().code, CloseCode(4000));
    // Binary: 4000.
    let mut binary = Client::connect(addr, None).await;
    binary.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(binary.closed().await.unwrap().code, CloseCode(4000));
    // Over the 64 KiB message limit: 1009.
    let mut big = Client::connect(addr, None).await;
    let huge = json!({"id": 9, "publish": {"channel": "a", "data": "x".repeat(70_000)}}).to_string();
    big.send_text(huge).await;
    assert_eq!(big.closed().await.unwrap().code, CloseCode::TOO_BIG);
    // Everybody else is still served.
    let mut fine = Client::connect(addr, None).await;
    subscribe(&mut fine, "still:fine").await;
}

per_encoding! {
async fn tokens_are_checked_and_channels_enforced() {
    let server = server(|config| {
        config.auth.token_hmac_secret = Some("secret".into());
        config.auth.allow_anonymous = false;
        config
            .namespaces
            .named
            .insert("private".into(), ferrows_server::NamespaceConfig { protected: true, ..Default::default() });
        config.namespaces.named.insert("chat".into(), ferrows_server::NamespaceConfig::default());
        config.namespaces.strict = Some(true);
    })
    .await;
    let addr = server.local_addr();
    let forged = token("guess", json!({"sub": "mallory"}));
    let expired = token("secret", json!({"sub": "al", "exp": now() - 600}));
    for bad in [Some(forged.as_str()), Some(expired.as_str()), Some("garbage"), None] {
        let mut client = Client::open(addr).await;
        let reply = client.call(json!({"connect": {"token": bad}})).await;
        assert_eq!(reply["error"]["code"], 101, "{reply}");
        assert_eq!(client.closed().await.unwrap().code, CloseCode(4001));
    }
    let good = token("secret", json!({"sub": "al", "exp": now() + 600, "channels": ["private:al"]}));
    let mut client = Client::connect(addr, Some(&good)).await;
    subscribe(&mut client, "private:al").await;
    subscribe(&mut client, "chat:x").await;
    let denied = client.call(json!({"subscribe": {"channel": "private:bob"}})).await;
    assert_eq!(denied["error"]["code"], 103, "{denied}");
    let unknown = client.call(json!({"subscribe": {"channel": "elsewhere:x"}})).await;
    assert_eq!(unknown["error"]["code"], 102, "{unknown}");
}
}

per_encoding! {
async fn ten_thousand_subscriptions_from_one_connection_hit_the_limit() {
    // 10 000 commands at once: over the command rate, which has its own test.
    let server = server(|config| config.limits.command_rate = 0).await;
    let addr = server.local_addr();
    let mut client = Client::connect(addr, None).await;
    // Pipelined: all sent, then all answers read.
    for n in 0..10_000u32 {
        let command = json!({"id": 1000 + n, "subscribe": {"channel": format!("many:{n}")}});
        client.ws.feed(client.message(&command)).await.unwrap();
    }
    client.ws.flush().await.unwrap();
    let (mut ok, mut limited) = (0, 0);
    while ok + limited < 10_000 {
        let reply = client.next_json().await;
        if reply.get("push").is_some() {
            continue;
        }
        match reply["error"]["code"].as_u64() {
            None => ok += 1,
            Some(106) => limited += 1,
            Some(other) => panic!("unexpected error {other}: {reply}"),
        }
    }
    assert_eq!(ok, ferrows_server::config::DEFAULT_MAX_SUBSCRIPTIONS);
    assert_eq!(limited, 10_000 - ferrows_server::config::DEFAULT_MAX_SUBSCRIPTIONS);
    let mut other = Client::connect(addr, None).await;
    subscribe(&mut other, "many:0").await;
    assert!(metric(addr, "ferrows_subscriptions").await >= 129.0);
}
}

per_encoding! {
async fn commands_over_the_rate_are_refused_then_the_flood_is_closed() {
    let server = server(|config| {
        config.limits.command_rate = 10;
        config.limits.command_burst = 50;
        // The flood's place is given back when it is closed (checked below).
        config.limits.max_connections_per_address = 2;
    })
    .await;
    let addr = server.local_addr();
    let mut client = Client::connect(addr, None).await;
    // The connect used one command of the burst; pipelined pings, at once.
    for n in 0..200u32 {
        let ping = client.message(&json!({"id": 1000 + n, "ping": {}}));
        client.ws.feed(ping).await.unwrap();
    }
    client.ws.flush().await.unwrap();
    let (mut ok, mut refused) = (0, 0);
    let close = loop {
        match tokio::time::timeout(common::WAIT, client.ws.recv()).await.expect("an answer in time") {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                let reply = client.view(&message).expect("a message of the encoding");
                match reply["error"]["code"].as_u64() {
                    None => ok += 1,
                    Some(110) => refused += 1,
                    Some(other) => panic!("unexpected error {other}: {reply}"),
                }
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    // A burst may take a command or two more: time passes between them.
    assert!((49..=52).contains(&ok), "{ok} ran");
    assert!((50..=52).contains(&refused), "{refused} refused");
    assert_eq!(close.unwrap().code, CloseCode(4006));
    assert_eq!(metric(addr, "ferrows_command_floods_total").await, 1.0);
    assert!(metric(addr, "ferrows_commands_over_rate_total").await >= 50.0);
    // Everybody else is served, in the flood's place too.
    drop(client);
    let mut other = Client::connect(addr, None).await;
    subscribe(&mut other, "after-the-flood").await;
    common::eventually("the flood's place given back", || async {
        common::raw_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
}
}

#[tokio::test]
async fn connections_over_the_per_address_limit_get_429() {
    let server = server(|config| config.limits.max_connections_per_address = 3).await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect(addr, None).await);
    }
    // A fourth, WebSocket or not: 429 with a JSON error, then the end.
    for request in [
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let answer = common::raw_exchange(addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(answer.contains("retry-after: 10") && answer.contains("\"code\":110"), "{answer}");
    }
    // One closes: room for another.
    let mut first = held.remove(0);
    first.ws.close(CloseCode::NORMAL, "").await.unwrap();
    drop(first);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let answer = common::raw_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no room after a close: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(metric(addr, "ferrows_refused_by_address_total").await >= 2.0);
}

per_encoding! {
async fn a_client_that_does_not_read_is_dropped_as_a_slow_consumer() {
    let server = server(|config| {
        config.limits.client_queue_messages = 64;
        config.limits.client_queue_bytes = 256 << 10;
    })
    .await;
    let addr = server.local_addr();
    let mut stalled = Client::connect(addr, None).await;
    subscribe(&mut stalled, "firehose").await;
    let mut healthy = Client::connect(addr, None).await;
    subscribe(&mut healthy, "firehose").await;
    // Publish until the stalled client's socket and queue are full.
    let payload = noise(16 << 10);
    let mut published = 0;
    while metric(addr, "ferrows_slow_consumers_total").await < 1.0 {
        for _ in 0..32 {
            api_publish(addr, "firehose", json!(payload)).await;
            published += 1;
        }
        // The healthy client keeps up.
        for _ in 0..32 {
            next_publication(&mut healthy).await;
        }
        assert!(published < 4096, "the stalled client was never dropped");
    }
    // Reading now, the stalled client finds the 4004 after what was sent.
    assert_eq!(stalled.closed().await.unwrap().code, CloseCode(4004));
    api_publish(addr, "firehose", json!("after")).await;
    while next_publication(&mut healthy).await["data"] != "after" {}
}
}

/// Pseudo-random text (permessage-deflate would shrink a repeated letter
/// to nothing on the wire).
fn noise(len: usize) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(seed % 62) as usize])
        })
        .collect()
}

per_encoding! {
async fn the_fan_out_writes_to_idle_subscribers_itself_and_frames_stay_whole() {
    let server = server(|config| {
        config.limits.max_message_size = 1 << 20;
        config.limits.client_queue_bytes = 64 << 20;
    })
    .await;
    let addr = server.local_addr();
    // A subscriber whose socket takes little, and which does not read yet.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut reader = Client::open_over(addr, tcp).await.connected().await;
    subscribe(&mut reader, "direct").await;
    let parked = || async { server.parked_sessions() == 1 };
    eventually("the subscriber waits in the lot", parked).await;
    // Publications of a quiet channel are written by the fan-out, straight
    // into the socket, until it takes only part of one (the server's send
    // buffer is 4 MiB at most): the connection then leaves the lot, and
    // sends the rest of that frame before what was queued after it.
    let bigs: Vec<String> = (0..8).map(|i| format!("{i}{}", noise(900 << 10))).collect();
    for big in &bigs {
        api_publish(addr, "direct", json!(big)).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        api_publish(addr, "direct", json!(i)).await;
    }
    assert!(metric(addr, "ferrows_direct_out_total").await >= 1.0);
    for big in &bigs {
        assert!(next_publication(&mut reader).await["data"] == json!(big), "a big publication arrived whole");
    }
    for i in 0..3 {
        assert_eq!(next_publication(&mut reader).await["data"], json!(i));
    }
    // Idle again, on a quiet channel (whose pace the bursts above did not
    // set: a machine under load may make one of their writes slow): small
    // publications go out from the fan-out whole, one write each, and
    // nothing else is needed.
    subscribe(&mut reader, "quiet").await;
    for i in 0..3 {
        eventually("the subscriber waits in the lot again", parked).await;
        let before = metric(addr, "ferrows_direct_out_total").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        api_publish(addr, "quiet", json!(format!("small {i}"))).await;
        assert_eq!(next_publication(&mut reader).await["data"], json!(format!("small {i}")));
        assert_eq!(metric(addr, "ferrows_direct_out_total").await, before + 1.0);
        assert_eq!(server.parked_sessions(), 1, "the subscriber never left the lot");
    }
    let reply = reader.call(json!({"ping": {}})).await;
    assert!(reply.get("result").is_some(), "{reply}");
}
}

per_encoding! {
async fn shutdown_closes_clients_with_1001_and_health_says_so() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let (status, health) = http(addr, "GET", "/healthz", &[], "").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let mut client = Client::connect(addr, None).await;
    subscribe(&mut client, "c").await;
    eventually("the connection gauge", || async { metric(addr, "ferrows_connections").await == 1.0 }).await;
    let shutdown = tokio::spawn(server.shut_down());
    let frame = client.closed().await.unwrap();
    assert_eq!(frame.code, CloseCode::GOING_AWAY);
    tokio::time::timeout(common::WAIT, shutdown).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
}
}

per_encoding! {
async fn a_client_that_never_connects_is_closed_after_the_connect_timeout() {
    let server = server(|config| config.websocket.connect_timeout = std::time::Duration::from_millis(200)).await;
    let mut idle = Client::open(server.local_addr()).await;
    assert_eq!(idle.closed().await.unwrap().code, CloseCode(4005));
}
}

#[tokio::test]
async fn the_demo_and_the_client_module_are_served() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    for path in ["/", "/demo/app.js", "/demo/style.css", "/ferrows.js"] {
        let (status, _) = http(addr, "GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
    }
    assert_eq!(http(addr, "GET", "/nope", &[], "").await.0, 404);
    // Not an upgrade: the handshake's own answer, as from `ferrows::accept_with`.
    assert_eq!(http(addr, "GET", "/ws", &[], "").await.0, 400);
    let (status, _) = http(addr, "POST", "/api/publish", &[("Authorization", "apikey wrong")], "{}").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn only_allowed_origins_may_open_a_websocket() {
    let server = server(|config| config.server.allowed_origins = vec!["https://app.example".into()]).await;
    let url = format!("ws://{}/ws", server.local_addr());
    let with_origin = |origin: &str| {
        let mut config = ferrows::ClientConfig::default();
        config.headers.insert(http::header::ORIGIN, origin.parse().unwrap());
        config
    };
    let good = ferrows::connect_with(url.as_str(), &with_origin("https://app.example")).await;
    assert!(good.is_ok(), "{:?}", good.err());
    match ferrows::connect_with(url.as_str(), &with_origin("https://evil.example")).await {
        Err(ferrows::Error::Handshake(e)) => assert!(e.to_string().contains("403"), "{e}"),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    // Non-browser clients send no Origin and are not refused for it.
    assert!(ferrows::connect(url.as_str()).await.is_ok());
}

#[tokio::test]
async fn the_batch_api_answers_each_publication() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let mut client = Client::connect(addr, None).await;
    subscribe(&mut client, "batch").await;
    let body = json!({"publications": [
        {"channel": "batch", "data": 1},
        {"channel": "bad name", "data": 2},
        {"channel": "batch", "data": 3},
    ]})
    .to_string();
    let (status, reply) = http(addr, "POST", "/api/batch", &[("Authorization", "apikey test-key")], &body).await;
    assert_eq!(status, 200, "{reply}");
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results[0]["result"]["offset"], 1);
    assert_eq!(results[1]["error"]["code"], 102);
    assert_eq!(results[2]["result"]["offset"], 2);
    assert_eq!(next_publication(&mut client).await["data"], 1);
    assert_eq!(next_publication(&mut client).await["data"], 3);
    let (status, _) = http(addr, "POST", "/api/batch", &[("Authorization", "apikey test-key")], "{not json").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_request_head_that_trickles_in_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server(|config| config.server.request_timeout = std::time::Duration::from_millis(300)).await;
    let mut slow = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Never finishes the head: the server must close within its timeout.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(common::WAIT, slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the stalled request was not cut off");
    // Everybody else is still served.
    let mut fine = Client::connect(server.local_addr(), None).await;
    subscribe(&mut fine, "after:slow").await;
}

/// `/ws` answers every invalid handshake of the library's shared list
/// exactly as `ferrows::accept_with` does: the same statuses, and the
/// headers the RFCs ask for (`Sec-WebSocket-Version: 13` on 426, `Allow:
/// GET` on 405).
#[tokio::test]
async fn invalid_handshakes_get_the_answers_of_the_library() {
    let server = server(|_| {}).await;
    let failures = ferrows::testing::check_handshakes(server.local_addr(), "/ws").await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And the server still serves.
    let mut fine = Client::connect(server.local_addr(), None).await;
    subscribe(&mut fine, "after:hostile").await;
}

/// Every hostile frame of the library's shared list gets its close code
/// from `/ws`, before `connect` and after it.
#[tokio::test]
async fn hostile_frames_get_the_close_codes_of_the_library() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let before = ferrows::testing::check_frames(addr, "/ws", &[]).await;
    assert!(before.is_empty(), "before connect:\n{}", before.join("\n"));
    let connect = r#"{"id": 1, "connect": {"name": "hostile"}}"#;
    let after = ferrows::testing::check_frames(addr, "/ws", &[connect]).await;
    assert!(after.is_empty(), "after connect:\n{}", after.join("\n"));
    let mut fine = Client::connect(addr, None).await;
    subscribe(&mut fine, "after:hostile").await;
}

/// An embedder brings its own broker: the configuration's broker and Redis
/// URL are not used.
#[tokio::test]
async fn a_server_runs_over_a_broker_it_is_given() {
    let mut config = ferrows_server::Config::default();
    config.server.port = 0;
    config.auth.api_key = Some("test-key".into());
    config.broker.kind = ferrows_server::BrokerKind::Redis;
    config.broker.redis_url = "redis://127.0.0.1:1".into();
    let broker = std::sync::Arc::new(ferrows_hub::broker::MemoryBroker::new());
    let server = ferrows_server::Server::start_with(config, broker.clone()).await.expect("starts without Redis");
    let addr = server.local_addr();
    let mut client = Client::connect(addr, None).await;
    subscribe(&mut client, "given").await;
    // Published straight into the broker: the server delivers it.
    use ferrows_hub::broker::Broker;
    broker.publish("given", bytes::Bytes::from_static(b"7"), None, Default::default()).await.unwrap();
    assert_eq!(next_publication(&mut client).await["data"], 7);
    let (status, health) = http(addr, "GET", "/healthz", &[], "").await;
    assert_eq!((status, health["broker"]["kind"].as_str()), (200, Some("memory")));
}
