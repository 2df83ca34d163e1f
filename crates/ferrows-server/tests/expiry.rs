//! Credentials that expire: a connection outlives its token only by a
//! `refresh` with a new one, or the refresh proxy's word; otherwise it is
//! closed with 4007.

mod common;

use std::time::Duration;

use common::{Backend, Client, metric, server, token};
use serde_json::json;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Whether the connection still answers a ping.
async fn alive(client: &mut Client) -> bool {
    client.call(json!({"ping": {}})).await["result"] == json!({})
}

per_encoding! {
    async fn a_token_that_expires_closes_its_connection_unless_refreshed() {
        let server = server(|config| config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into())).await;
        let addr = server.local_addr();
        // Expires in 2 s: closed with 4007 then.
        let mut client = Client::open(addr).await;
        let reply = client.call(json!({"connect": {"token": token(json!({"sub": "al", "exp": now() + 2}))}})).await;
        let expires = reply["result"]["expires"].as_u64().expect("the result says when");
        assert!((1..=2).contains(&expires), "{reply}");
        let close = client.closed().await.unwrap();
        assert_eq!((close.code.0, close.reason.as_str()), (4007, "credentials expired"));

        // Refreshed in time: it lives on past the first deadline.
        let mut client = Client::open(addr).await;
        client.call(json!({"connect": {"token": token(json!({"sub": "al", "exp": now() + 2}))}})).await;
        let other = client.call(json!({"refresh": {"token": token(json!({"sub": "bo", "exp": now() + 60}))}})).await;
        assert_eq!(other["error"]["code"], 103, "another user's token: {other}");
        let forged = client.call(json!({"refresh": {"token": "not.a.token"}})).await;
        assert_eq!(forged["error"]["code"], 101, "{forged}");
        let reply = client.call(json!({"refresh": {"token": token(json!({"sub": "al", "exp": now() + 60}))}})).await;
        let expires = reply["result"]["expires"].as_u64().expect("the new deadline");
        assert!((58..=60).contains(&expires), "{reply}");
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert!(alive(&mut client).await);
        // A token without `exp`: no deadline any more.
        let reply = client.call(json!({"refresh": {"token": token(json!({"sub": "al"}))}})).await;
        assert_eq!(reply["result"], json!({}), "{reply}");
        drop(client);
        server.shut_down().await;
    }
}

#[tokio::test]
async fn the_refresh_proxy_extends_or_ends_connections() {
    let backend = Backend::start(&[]).await;
    let server = server(|config| {
        config.proxy.connect_url = Some(backend.url("connect"));
        config.proxy.refresh_url = Some(backend.url("refresh"));
    })
    .await;
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for user in ["keep", "drop", "refuse", "forever"] {
        let mut client = Client::open(addr).await;
        let reply = client.call(json!({"connect": {"data": {"user": user, "expire_at": now() + 1}}})).await;
        assert!(reply["result"]["expires"].as_u64().unwrap() <= 1, "{reply}");
        clients.push(client);
    }
    let mut forever = clients.pop().unwrap();
    let mut refused = clients.pop().unwrap();
    let mut dropped = clients.pop().unwrap();
    let mut kept = clients.pop().unwrap();
    let close = dropped.closed().await.unwrap();
    assert_eq!((close.code.0, close.reason.as_str()), (4502, "session ended"));
    assert_eq!(refused.closed().await.unwrap().code.0, 4007);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(alive(&mut kept).await);
    assert!(alive(&mut forever).await);
    let refreshes = backend.requests("refresh").await;
    assert_eq!(refreshes.len(), 4, "{refreshes:?}");
    let keep = refreshes.iter().find(|r| r["user"] == "keep").unwrap();
    assert_eq!(keep["meta"], json!({"plan": "pro", "user": "keep"}));
    assert!(keep["client"].is_string());
    assert!(metric(addr, "ferrows_connections").await >= 2.0);
    drop((kept, forever));
    server.shut_down().await;
}

#[tokio::test]
async fn a_refresh_the_backend_cannot_answer_keeps_the_connection() {
    let server = server(|config| {
        config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
        config.proxy.refresh_url = Some(common::nothing_listens("refresh"));
        config.proxy.timeout = Duration::from_millis(300);
    })
    .await;
    let addr = server.local_addr();
    let mut client = Client::connect(addr, Some(&token(json!({"sub": "al", "exp": now() + 1})))).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(alive(&mut client).await, "kept, to be asked again later");
    let failed = metric(addr, "ferrows_proxy_requests_total{proxy=\"refresh\",outcome=\"failed\"}").await;
    assert_eq!(failed, 1.0);
    drop(client);
    server.shut_down().await;
}

#[tokio::test]
async fn an_event_stream_ends_at_its_tokens_expiry_and_says_why() {
    let server = server(|config| config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into())).await;
    let addr = server.local_addr();
    let jwt = token(json!({"sub": "al", "exp": now() + 2}));
    let mut stream = common::EventStream::open(addr, &format!("/api/stream?channel=news&token={jwt}"), &[]).await;
    assert_eq!(stream.status, 200);
    let (kind, _, connected) = stream.next_json().await;
    assert_eq!(kind, "connected");
    assert!(connected["expires"].as_u64().unwrap() <= 2, "{connected}");
    loop {
        let (kind, _, data) = stream.next_json().await;
        if kind == "disconnect" {
            assert_eq!(data, json!({"code": 4007, "reason": "credentials expired"}));
            break;
        }
    }
    assert!(stream.next().await.is_none(), "the stream ended");
    server.shut_down().await;
}
