//! The backend in the loop: every proxy against a real HTTP backend
//! process (`tests/backend/backend.py`), which accepts, refuses, changes,
//! is slow or is down; clients get the documented errors and the server
//! keeps serving.

mod common;

use std::time::Duration;

use common::{Backend, Client, WAIT, eventually, http, metric, nothing_listens, server, subscribe, token};
use ferrows_server::NamespaceConfig;
use serde_json::{Value, json};

/// The error code of a reply (panics on a result).
fn code(reply: &Value) -> u64 {
    reply["error"]["code"].as_u64().unwrap_or_else(|| panic!("an error reply: {reply}"))
}

/// The sum of a labelled metric's samples whose labels contain `labels`.
async fn labelled(addr: std::net::SocketAddr, name: &str, labels: &str) -> f64 {
    let (_, body) = http(addr, "GET", "/metrics", &[], "").await;
    let text = body.as_str().unwrap().to_owned();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

per_encoding! {
    async fn the_connect_proxy_says_who_clients_are() {
        let backend = Backend::start(&[]).await;
        let server = server(|config| {
            config.proxy.connect_url = Some(backend.url("connect"));
            config.proxy.timeout = Duration::from_millis(500);
            config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
            config.auth.allow_anonymous = false;
            for room in ["room", "room2"] {
                let protected = NamespaceConfig { protected: true, ..Default::default() };
                config.namespaces.named.insert(room.into(), protected);
            }
        })
        .await;
        let addr = server.local_addr();

        // Accepted: the backend's user, grants and data; it saw the
        // allowed headers and the client's address, not the others.
        let headers = [("cookie", "session=abc"), ("x-secret-header", "no"), ("user-agent", "tests")];
        let mut client = Client::open_with_headers(addr, &headers).await;
        let connect = json!({"connect": {"name": "al", "data": {"user": "alice", "grants": ["room:*"]}}});
        let reply = client.call(connect).await;
        let result = &reply["result"];
        assert_eq!(result["user"], "alice", "{reply}");
        assert_eq!(result["data"]["welcome"], "alice");
        assert_eq!(result["data"]["headers"]["cookie"], "session=abc");
        assert_eq!(result["data"]["headers"]["user-agent"], "tests");
        assert!(result["data"]["headers"].get("x-secret-header").is_none(), "{reply}");
        assert_eq!(result["data"]["address"], "127.0.0.1");
        let seen = backend.requests("connect").await;
        assert_eq!(seen[0]["client"], result["client"]);
        assert_eq!(seen[0]["transport"], "websocket");
        assert_eq!(seen[0]["encoding"], if common::encoding().is_binary() { "msgpack" } else { "json" });
        assert_eq!(seen[0]["data"]["user"], "alice");
        // Its grants hold (the namespace is protected).
        let subscribed = subscribe(&mut client, "room:1").await;
        assert!(subscribed["position"].is_object(), "{subscribed}");
        let reply = client.call(json!({"subscribe": {"channel": "room2:1"}})).await;
        assert_eq!(code(&reply), 103, "not granted: {reply}");

        // Refused: the backend's error, then 4001.
        let mut refused = Client::open(addr).await;
        let reply = refused.call(json!({"connect": {"data": {"mode": "refuse"}}})).await;
        assert_eq!((code(&reply), reply["error"]["message"].as_str()), (1401, Some("go away")));
        assert_eq!(refused.closed().await.unwrap().code.0, 4001);

        // Closed with the backend's code.
        let mut banned = Client::open(addr).await;
        banned.send_command(&json!({"id": 1, "connect": {"data": {"mode": "disconnect"}}})).await;
        let close = banned.closed().await.unwrap();
        assert_eq!((close.code.0, close.reason.as_str()), (4501, "banned"));

        // A temporary refusal, a malformed, oversized, failed or late
        // answer: error 111 (temporary), the connection stays, and a later
        // connect on it can succeed.
        let mut client2 = Client::open(addr).await;
        let reply = client2.call(json!({"connect": {"data": {"mode": "temporary"}}})).await;
        assert_eq!((code(&reply), reply["error"]["temporary"].as_bool()), (1503, Some(true)));
        for mode in ["malformed", "huge", "status500", "slow"] {
            let mut other = Client::open(addr).await;
            let reply = other.call(json!({"connect": {"data": {"mode": mode}}})).await;
            assert_eq!((code(&reply), reply["error"]["temporary"].as_bool()), (111, Some(true)), "{mode}: {reply}");
        }
        let reply = client2.call(json!({"connect": {"data": {"mode": "binary", "user": "bo"}}})).await;
        assert_eq!(reply["result"]["user"], "bo", "{reply}");
        assert_eq!(reply["result"]["data_base64"], "AP8=", "binary data to the client");
        // A connection gets three connects the backend could not decide.
        let mut stubborn = Client::open(addr).await;
        for _ in 0..3 {
            stubborn.send_command(&json!({"id": 5, "connect": {"data": {"mode": "malformed"}}})).await;
        }
        let close = stubborn.closed().await.unwrap();
        assert_eq!((close.code.0, close.reason.as_str()), (4005, "too many connect attempts"));

        // A client with a token is the token's: the backend is not asked.
        let asked = backend.requests("connect").await.len();
        let token = token(json!({"sub": "tok"}));
        let mut by_token = Client::open(addr).await;
        let reply = by_token.call(json!({"connect": {"token": token}})).await;
        assert_eq!(reply["result"]["user"], "tok", "{reply}");
        assert_eq!(backend.requests("connect").await.len(), asked);
        assert!(labelled(addr, "ferrows_proxy_requests_total", "outcome=\"failed\"").await >= 3.0);
        // Clients that would not read the server's Close would hold the
        // shutdown for its close timeout.
        drop((client, client2, by_token));
        server.shut_down().await;
    }

    async fn the_subscribe_proxy_decides_in_its_namespaces() {
        let backend = Backend::start(&[]).await;
        let server = server(|config| {
            config.proxy.subscribe_url = Some(backend.url("subscribe"));
            config.proxy.timeout = Duration::from_millis(500);
            config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
            let room = NamespaceConfig { proxy_subscribe: true, protected: true, ..Default::default() };
            config.namespaces.named.insert("room".into(), room);
            config.namespaces.named.insert("open".into(), NamespaceConfig::default());
        })
        .await;
        let addr = server.local_addr();
        let grant = token(json!({"sub": "al", "channels": ["room:refuse-but-granted"]}));
        let mut client = Client::connect(addr, Some(&grant)).await;
        let reply = subscribe(&mut client, "room:ok").await;
        assert!(reply["position"].is_object(), "allowed by the backend over `protected`: {reply}");
        let asked = backend.requests("subscribe").await;
        assert_eq!((asked[0]["channel"].as_str(), asked[0]["user"].as_str()), (Some("room:ok"), Some("al")));
        assert!(asked[0]["client"].is_string());
        let reply = client.call(json!({"subscribe": {"channel": "room:refuse"}})).await;
        assert_eq!((code(&reply), reply["error"]["message"].as_str()), (1403, Some("not in this room")));
        // Granted by the token: the backend is not asked.
        let reply = subscribe(&mut client, "room:refuse-but-granted").await;
        assert!(reply["position"].is_object(), "{reply}");
        // Other namespaces keep their rules.
        assert!(subscribe(&mut client, "open:x").await["position"].is_object());
        assert_eq!(backend.requests("subscribe").await.len(), 2);
        // Slow: error 111 after the timeout; history and presence ask too.
        let started = std::time::Instant::now();
        let reply = client.call(json!({"subscribe": {"channel": "room:slow"}})).await;
        assert_eq!(code(&reply), 111, "{reply}");
        assert!(started.elapsed() < WAIT);
        let reply = client.call(json!({"history": {"channel": "room:refuse"}})).await;
        assert_eq!(code(&reply), 1403);
        // An event stream and a poll are refused as the WebSocket is.
        let (status, body) = http(addr, "GET", "/api/poll?channel=room:refuse", &[], "").await;
        assert_eq!((status, body["error"]["code"].as_u64()), (403, Some(1403)), "{body}");
        let (status, _) = http(addr, "GET", "/api/poll?channel=room:ok", &[], "").await;
        assert_eq!(status, 200);
        // The backend closes the connection.
        client.send_command(&json!({"id": 99, "subscribe": {"channel": "room:disconnect"}})).await;
        let close = client.closed().await.unwrap();
        assert_eq!((close.code.0, close.reason.as_str()), (4503, "kicked"));
        server.shut_down().await;
    }

    async fn the_publish_proxy_accepts_changes_and_refuses() {
        let backend = Backend::start(&[]).await;
        let server = server(|config| {
            config.proxy.publish_url = Some(backend.url("publish"));
            config.proxy.timeout = Duration::from_millis(500);
            let chat = NamespaceConfig { proxy_publish: true, ..Default::default() };
            config.namespaces.named.insert("chat".into(), chat);
        })
        .await;
        let addr = server.local_addr();
        let mut reader = Client::connect(addr, None).await;
        subscribe(&mut reader, "chat:a").await;
        subscribe(&mut reader, "chat:keep").await;
        let mut writer = Client::connect(addr, None).await;

        // Changed by the backend.
        let reply = writer.call(json!({"publish": {"channel": "chat:a", "data": {"text": "hi"}}})).await;
        assert!(reply.get("result").is_some(), "{reply}");
        let publication = common::next_publication(&mut reader).await;
        assert_eq!(publication["data"], json!({"text": "hi", "by": "", "moderated": true}));
        // Refused: the client gets the backend's error, nobody the data.
        let reply = writer.call(json!({"publish": {"channel": "chat:a", "data": {"text": "a badword"}}})).await;
        assert_eq!(code(&reply), 1400, "{reply}");
        assert_eq!(reply["error"]["message"], "moderated: mind your language");
        // Accepted as it is.
        writer.call(json!({"publish": {"channel": "chat:keep", "data": {"text": "as is"}}})).await;
        assert_eq!(common::next_publication(&mut reader).await["data"], json!({"text": "as is"}));
        // Over HTTP too.
        let body = json!({"channel": "chat:a", "data": {"text": "by http"}}).to_string();
        let (status, answer) = http(addr, "POST", "/api/client/publish", &[], &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(common::next_publication(&mut reader).await["data"]["moderated"], true);
        let body = json!({"channel": "chat:a", "data": {"text": "badword"}}).to_string();
        let (status, answer) = http(addr, "POST", "/api/client/publish", &[], &body).await;
        assert_eq!((status, answer["error"]["code"].as_u64()), (403, Some(1400)));
        // Slow: error 111, and not sent again (the backend may have
        // stored it).
        let before = backend.requests("publish").await.len();
        let reply = writer.call(json!({"publish": {"channel": "chat:a", "data": {"text": "slow"}}})).await;
        assert_eq!(code(&reply), 111, "{reply}");
        assert_eq!(backend.requests("publish").await.len(), before + 1);
        // The server API publishes without asking.
        common::api_publish(addr, "chat:a", json!({"text": "from the api"})).await;
        assert_eq!(common::next_publication(&mut reader).await["data"], json!({"text": "from the api"}));
        drop((reader, writer));
        server.shut_down().await;
    }

    async fn rpc_calls_reach_the_backend_and_come_back() {
        let backend = Backend::start(&[]).await;
        let server = server(|config| {
            config.proxy.connect_url = Some(backend.url("connect"));
            config.proxy.rpc_url = Some(backend.url("rpc"));
            config.proxy.timeout = Duration::from_millis(500);
        })
        .await;
        let addr = server.local_addr();
        let mut client = Client::open(addr).await;
        let reply = client.call(json!({"connect": {"data": {"user": "ann"}}})).await;
        let client_id = reply["result"]["client"].clone();
        let reply = client.call(json!({"rpc": {"method": "echo", "data": {"n": [1, 2]}}})).await;
        assert_eq!(reply["result"], json!({"data": {"n": [1, 2]}}));
        let reply = client.call(json!({"rpc": {"method": "whoami", "data": null}})).await;
        assert_eq!(reply["result"]["data"], json!({"client": client_id, "user": "ann", "meta": {"plan": "pro", "user": "ann"}}));
        let reply = client.call(json!({"rpc": {"method": "binary", "data": 1}})).await;
        assert_eq!(reply["result"], json!({"data_base64": "AP8="}));
        let reply = client.call(json!({"rpc": {"method": "echo", "data_base64": "AP8="}})).await;
        if common::encoding().is_binary() {
            // Bytes that are not JSON, from a MessagePack client: the
            // backend gets them as base64 and gives them back.
            assert_eq!(reply["result"], json!({"data_base64": "AP8="}), "{reply}");
        } else {
            assert_eq!(code(&reply), 107, "JSON commands carry JSON data: {reply}");
        }
        let reply = client.call(json!({"rpc": {"method": "fail", "data": {}}})).await;
        assert_eq!((code(&reply), reply["error"]["temporary"].as_bool()), (1500, Some(true)));
        let reply = client.call(json!({"rpc": {"method": "nope", "data": {}}})).await;
        assert_eq!(code(&reply), 1404);
        let reply = client.call(json!({"rpc": {"method": "no spaces", "data": {}}})).await;
        assert_eq!(code(&reply), 107);
        // Slow, and never sent twice.
        let reply = client.call(json!({"rpc": {"method": "slow", "data": {}}})).await;
        assert_eq!(code(&reply), 111);
        let slow = backend.requests("rpc").await.iter().filter(|r| r["method"] == "slow").count();
        assert_eq!(slow, 1);
        // The connection goes on.
        assert_eq!(client.call(json!({"ping": {}})).await["result"], json!({}));
        drop(client);
        server.shut_down().await;

        // Without an RPC proxy: 104.
        let server = common::server(|_| {}).await;
        let mut client = Client::connect(server.local_addr(), None).await;
        let reply = client.call(json!({"rpc": {"method": "echo", "data": {}}})).await;
        assert_eq!(code(&reply), 104);
        drop(client);
        server.shut_down().await;
    }
}

#[tokio::test]
async fn a_backend_that_is_down_gives_temporary_errors_and_the_server_serves_on() {
    let server = server(|config| {
        config.proxy.connect_url = Some(nothing_listens("connect"));
        config.proxy.rpc_url = Some(nothing_listens("rpc"));
        config.proxy.subscribe_url = Some(nothing_listens("subscribe"));
        config.proxy.publish_url = Some(nothing_listens("publish"));
        config.proxy.timeout = Duration::from_millis(1500);
        config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
        let room = NamespaceConfig { proxy_subscribe: true, proxy_publish: true, ..Default::default() };
        config.namespaces.named.insert("room".into(), room);
    })
    .await;
    let addr = server.local_addr();
    let mut client = Client::open(addr).await;
    let reply = client.call(json!({"connect": {}})).await;
    assert_eq!((code(&reply), reply["error"]["temporary"].as_bool()), (111, Some(true)), "{reply}");
    // A connect is sent again once (idempotent); an RPC never.
    assert_eq!(metric(addr, "ferrows_proxy_retries_total").await, 1.0);
    let mut by_token = Client::connect(addr, Some(&token(json!({"sub": "t"})))).await;
    let reply = by_token.call(json!({"rpc": {"method": "echo", "data": {}}})).await;
    assert_eq!(code(&reply), 111);
    assert_eq!(metric(addr, "ferrows_proxy_retries_total").await, 1.0);
    // A publication is not sent again either; a subscribe is.
    let reply = by_token.call(json!({"publish": {"channel": "room:1", "data": 1}})).await;
    assert_eq!(code(&reply), 111, "{reply}");
    assert_eq!(metric(addr, "ferrows_proxy_retries_total").await, 1.0);
    let reply = by_token.call(json!({"subscribe": {"channel": "room:1"}})).await;
    assert_eq!((code(&reply), reply["error"]["temporary"].as_bool()), (111, Some(true)), "{reply}");
    assert_eq!(metric(addr, "ferrows_proxy_retries_total").await, 2.0);
    // The server serves on: health, the API, the token client.
    let (status, _) = http(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(by_token.call(json!({"ping": {}})).await["result"], json!({}));
    assert_eq!(labelled(addr, "ferrows_proxy_requests_total", "outcome=\"failed\"").await, 4.0);
    drop((client, by_token));
    server.shut_down().await;
}

#[tokio::test]
async fn the_in_flight_bound_refuses_at_once() {
    let backend = Backend::start(&[]).await;
    let server = server(|config| {
        config.proxy.rpc_url = Some(backend.url("rpc"));
        config.proxy.max_in_flight = 2;
        config.proxy.timeout = Duration::from_secs(3);
    })
    .await;
    let addr = server.local_addr();
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let mut client = Client::connect(addr, None).await;
        client.send_command(&json!({"id": 7, "rpc": {"method": "hang", "data": {}}})).await;
        waiting.push(client);
    }
    eventually("two calls in flight", || async { metric(addr, "ferrows_proxy_in_flight").await == 2.0 }).await;
    let mut third = Client::connect(addr, None).await;
    let started = std::time::Instant::now();
    let reply = third.call(json!({"rpc": {"method": "echo", "data": {}}})).await;
    assert_eq!(code(&reply), 111, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("too many requests in flight"));
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not queued");
    assert_eq!(metric(addr, "ferrows_proxy_busy_total").await, 1.0);
    assert_eq!(backend.max_in_flight().await, 2);
    drop((waiting, third));
    server.shut_down().await;
}

#[tokio::test]
async fn requests_are_signed_with_the_shared_secret() {
    let backend = Backend::start(&["--secret", "s3cret"]).await;
    let signed = server(|config| {
        config.proxy.rpc_url = Some(backend.url("rpc"));
        config.proxy.secret = Some("s3cret".into());
    })
    .await;
    let mut client = Client::connect(signed.local_addr(), None).await;
    let reply = client.call(json!({"rpc": {"method": "echo", "data": 5}})).await;
    assert_eq!(reply["result"]["data"], 5, "the backend checked the signature: {reply}");
    let log = backend.log().await;
    let headers = &log.last().unwrap()["headers"];
    assert!(headers["x-ferrows-signature"].as_str().unwrap().starts_with("sha256="));
    assert_eq!(headers["x-ferrows-proxy"], "rpc");
    drop(client);
    signed.shut_down().await;

    // Signed with another secret, or not at all: the backend refuses (401)
    // and the client gets error 111.
    for secret in [Some("guess"), None] {
        let server = server(|config| {
            config.proxy.rpc_url = Some(backend.url("rpc"));
            config.proxy.secret = secret.map(String::from);
        })
        .await;
        let mut client = Client::connect(server.local_addr(), None).await;
        let reply = client.call(json!({"rpc": {"method": "echo", "data": 5}})).await;
        assert_eq!(code(&reply), 111, "{reply}");
        drop(client);
        server.shut_down().await;
    }
}

#[tokio::test]
async fn a_namespace_may_have_a_backend_of_its_own() {
    let backend = Backend::start(&[]).await;
    let own = |route: &str| Some(ferrows_server::config::ProxyUrl::parse(&backend.url(route).to_string()).unwrap());
    let server = server(|config| {
        // The global URLs lead nowhere: only the namespace's own are asked.
        config.proxy.subscribe_url = Some(nothing_listens("subscribe"));
        config.proxy.publish_url = Some(nothing_listens("publish"));
        let room = NamespaceConfig {
            proxy_subscribe: true,
            proxy_publish: true,
            proxy_subscribe_url: own("subscribe"),
            proxy_publish_url: own("publish"),
            ..Default::default()
        };
        config.namespaces.named.insert("own".into(), room);
    })
    .await;
    let addr = server.local_addr();
    let mut client = Client::connect(addr, None).await;
    assert!(subscribe(&mut client, "own:ok").await["position"].is_object());
    let reply = client.call(json!({"subscribe": {"channel": "own:refuse"}})).await;
    assert_eq!(code(&reply), 1403);
    client.call(json!({"publish": {"channel": "own:ok", "data": {"text": "hi"}}})).await;
    assert_eq!(common::next_publication(&mut client).await["data"]["moderated"], true);
    drop(client);
    server.shut_down().await;

    // A namespace that uses a proxy without any URL for it is refused.
    let mut config = ferrows_server::Config::default();
    config.server.port = 0;
    config.namespaces.named.insert("x".into(), NamespaceConfig { proxy_publish: true, ..Default::default() });
    let refused = ferrows_server::Server::start(config).await.expect_err("no publish proxy URL");
    assert!(refused.0.contains("proxy_publish"), "{refused}");
}
