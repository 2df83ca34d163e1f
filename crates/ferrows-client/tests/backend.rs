//! What the application's backend gives a client, against a real server
//! and a real backend process (the server's `tests/backend/backend.py`):
//! RPC calls, server-side subscriptions, connect data, and credentials
//! refreshed before they expire; once per encoding.

mod common;

use std::time::Duration;

use common::{Proxy, WAIT, config, url};
use ferrows_client::{Client, Encoding, Error, Event, ServerSubscriptions};
use ferrows_server::Server;
use serde_json::{Value, json};

per_encoding!(
    a_retried_keyed_publish_is_made_once,
    rpc_calls_come_back_with_the_backends_answer,
    server_side_subscriptions_arrive_and_recover,
    connect_data_and_refreshed_credentials,
);

/// The test backend, killed when dropped.
struct Backend {
    port: u16,
    _process: tokio::process::Child,
}

impl Backend {
    async fn start() -> Self {
        use tokio::io::AsyncBufReadExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ferrows-server/tests/backend/backend.py");
        let mut process = tokio::process::Command::new("python3")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the test backend");
        let mut lines = tokio::io::BufReader::new(process.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        let port = line.strip_prefix("listening ").unwrap().parse().unwrap();
        Self { port, _process: process }
    }

    fn url(&self, route: &str) -> ferrows::http::Uri {
        format!("http://127.0.0.1:{}/{route}", self.port).parse().unwrap()
    }
}

fn token(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(b"secret");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn builder(encoding: Encoding, urls: Vec<String>) -> ferrows_client::ClientBuilder {
    Client::builder(urls)
        .encoding(encoding)
        .timeout(WAIT)
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(100))
}

async fn next(events: &mut ServerSubscriptions) -> (String, Event) {
    tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time").expect("an event")
}

async fn rpc_calls_come_back_with_the_backends_answer(encoding: Encoding) {
    let backend = Backend::start().await;
    let mut config = config();
    config.proxy.rpc_url = Some(backend.url("rpc"));
    let server = Server::start(config).await.unwrap();
    let client = builder(encoding, vec![url(&server)]).connect().await.unwrap();
    let answer: Value = client.rpc_json("echo", &json!({"n": [1, 2]})).await.unwrap();
    assert_eq!(answer, json!({"n": [1, 2]}));
    let who: Value = client.rpc_json("whoami", &()).await.unwrap();
    assert_eq!(who["client"], json!(client.connection().unwrap().client));
    match client.rpc("fail", "{}").await {
        Err(Error::Server(body)) => assert_eq!((body.code, body.temporary), (1500, true)),
        other => panic!("{other:?}"),
    }
    let binary = client.rpc("echo", vec![0xff, 0x00]).await;
    if encoding == Encoding::Msgpack {
        assert_eq!(&binary.unwrap()[..], &[0xff, 0x00]);
    } else {
        assert!(matches!(binary, Err(Error::InvalidData(_))), "JSON carries JSON text only");
    }
    // Bytes the backend answers as base64 reach either encoding as bytes.
    assert_eq!(&client.rpc("binary", "1").await.unwrap()[..], &[0x00, 0xff]);
    client.close().await;
    server.shut_down().await;
}

async fn server_side_subscriptions_arrive_and_recover(encoding: Encoding) {
    let mut config = config();
    config.auth.token_hmac_secret = Some("secret".into());
    let server = Server::start(config).await.unwrap();
    let proxy = Proxy::start(server.local_addr()).await;
    let client = builder(encoding, vec![proxy.url()])
        .token(token(json!({"sub": "al", "subs": ["private:al", "room:1"]})))
        .server_subscriptions()
        .connect()
        .await
        .unwrap();
    let mut events = client.server_subscriptions().expect("kept for us");
    assert!(client.server_subscriptions().is_none(), "taken once");
    let mut started = Vec::new();
    for _ in 0..2 {
        match next(&mut events).await {
            (channel, Event::Resubscribed(recovery)) => {
                assert!(recovery.recovered && recovery.missed == 0, "{recovery:?}");
                started.push(channel);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started, ["private:al", "room:1"]);
    client.publish_json("room:1", &json!({"n": 1})).await.unwrap();
    loop {
        match next(&mut events).await {
            (channel, Event::Publication(publication)) => {
                assert_eq!((channel.as_str(), publication.json::<Value>().unwrap()), ("room:1", json!({"n": 1})));
                break;
            }
            (_, Event::Join(_) | Event::Leave(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    // Cut: published meanwhile from another client, recovered on the
    // reconnection.
    proxy.set_open(false);
    proxy.cut();
    let other = builder(encoding, vec![url(&server)]).connect().await.unwrap();
    other.publish_json("room:1", &json!({"n": 2})).await.unwrap();
    proxy.set_open(true);
    let mut recovered = false;
    loop {
        match next(&mut events).await {
            (channel, Event::Resubscribed(recovery)) if channel == "room:1" => {
                assert!(recovery.recovered && recovery.missed == 1, "{recovery:?}");
                recovered = true;
            }
            (channel, Event::Publication(publication)) if channel == "room:1" => {
                assert!(recovered, "after its resubscription");
                assert_eq!(publication.json::<Value>().unwrap(), json!({"n": 2}));
                break;
            }
            _ => {}
        }
    }
    client.close().await;
    other.close().await;
    server.shut_down().await;
}

async fn connect_data_and_refreshed_credentials(encoding: Encoding) {
    let backend = Backend::start().await;
    let mut config = config();
    config.proxy.connect_url = Some(backend.url("connect"));
    config.auth.token_hmac_secret = Some("secret".into());
    let server = Server::start(config).await.unwrap();
    // The connect proxy's user and data.
    let client = builder(encoding, vec![url(&server)]).connect_data(r#"{"user":"ann"}"#).connect().await.unwrap();
    let connection = client.connection().unwrap();
    assert_eq!(connection.user, "ann");
    let data: Value = serde_json::from_slice(&connection.data.unwrap()).unwrap();
    assert_eq!(data["welcome"], "ann");
    client.close().await;

    // A token that expires in 2 s, refreshed from the provider before.
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = issued.clone();
    let client = builder(encoding, vec![url(&server)])
        .token_provider(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let exp = if n == 0 { now() + 2 } else { now() + 60 };
            async move { Ok::<_, String>(token(json!({"sub": "al", "exp": exp}))) }
        })
        .connect()
        .await
        .unwrap();
    let first = client.connection().unwrap();
    assert!(first.expires.unwrap() <= 2);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(client.connection().unwrap().client, first.client, "the same connection, refreshed");
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 2);
    client.ping().await.unwrap();
    client.close().await;
    server.shut_down().await;
}

async fn a_retried_keyed_publish_is_made_once(encoding: Encoding) {
    let server = Server::start(config()).await.unwrap();
    let client = builder(encoding, vec![url(&server)]).connect().await.unwrap();
    let mut news = client.subscribe("room:k").await.unwrap();
    let first = client.publish_idempotent("room:k", "1", "msg-1").await.unwrap();
    let again = client.publish_idempotent("room:k", "1", "msg-1").await.unwrap();
    assert_eq!(first, again);
    client.publish("room:k", "2").await.unwrap();
    let mut offsets = Vec::new();
    while offsets.len() < 2 {
        if let Event::Publication(publication) = tokio::time::timeout(WAIT, news.recv()).await.unwrap().unwrap() {
            offsets.push((publication.offset, publication.data));
        }
    }
    assert_eq!(offsets, [(first.offset, "1".into()), (first.offset + 1, "2".into())]);
    assert!(matches!(client.publish_idempotent("room:k", "1", "not a key").await, Err(Error::InvalidData(_))));
    client.close().await;
    server.shut_down().await;
}
