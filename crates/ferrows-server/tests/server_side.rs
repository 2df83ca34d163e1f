//! Server-side subscriptions: channels the server subscribes a connection
//! to (a token's `subs`, the connect proxy's), announced with `subscribe`
//! pushes, recovered from the positions `connect` gives.

mod common;

use common::{Backend, Client, api_publish, next_publication, server, token};
use ferrows_server::NamespaceConfig;
use serde_json::{Value, json};

/// The next push about `channel` holding `event`.
async fn next_event(client: &mut Client, channel: &str, event: &str) -> Value {
    loop {
        let push = client.next_push().await;
        if push["push"]["channel"] == channel && push["push"].get(event).is_some() {
            return push["push"][event].clone();
        }
    }
}

per_encoding! {
    async fn a_token_subscribes_its_connection_and_recovery_works() {
        let server = server(|config| {
            config.auth.token_hmac_secret = Some(common::TOKEN_SECRET.into());
            let private = NamespaceConfig { protected: true, ..Default::default() };
            config.namespaces.named.insert("private".into(), private);
            config.namespaces.named.insert("news".into(), NamespaceConfig::default());
        })
        .await;
        let addr = server.local_addr();
        let claims = json!({"sub": "al", "subs": ["news:1", "private:al", "bad name", "nope:x"]});
        let jwt = token(claims);
        let mut client = Client::open(addr).await;
        let reply = client.call(json!({"connect": {"token": jwt}})).await;
        assert!(reply.get("result").is_some(), "{reply}");
        // In the order given; protected channels too (the token named
        // them); the ones that cannot be had are unsubscribed.
        let news = next_event(&mut client, "news:1", "subscribe").await;
        assert_eq!(news["position"]["offset"], 0, "{news}");
        next_event(&mut client, "private:al", "subscribe").await;
        assert_eq!(next_event(&mut client, "bad name", "unsubscribe").await, json!({}));
        assert_eq!(next_event(&mut client, "nope:x", "unsubscribe").await, json!({}));
        api_publish(addr, "news:1", json!({"n": 1})).await;
        let publication = next_publication(&mut client).await;
        assert_eq!(publication["data"], json!({"n": 1}));
        // The client may not leave it, nor subscribe again.
        let reply = client.call(json!({"unsubscribe": {"channel": "news:1"}})).await;
        assert_eq!(reply["error"]["code"], 103, "{reply}");
        let reply = client.call(json!({"subscribe": {"channel": "news:1"}})).await;
        assert_eq!(reply["error"]["code"], 105, "{reply}");
        drop(client);

        // Away while two are published: recovered at the next connect.
        let position = publication["offset"].as_u64().unwrap();
        let epoch = news["position"]["epoch"].clone();
        api_publish(addr, "news:1", json!({"n": 2})).await;
        api_publish(addr, "news:1", json!({"n": 3})).await;
        let mut client = Client::open(addr).await;
        let since = json!({"news:1": {"offset": position, "epoch": epoch}});
        client.call(json!({"connect": {"token": token(json!({"sub": "al", "subs": ["news:1"]})), "subs": since}})).await;
        let recovered = next_event(&mut client, "news:1", "subscribe").await;
        assert_eq!(recovered["recovered"], true, "{recovered}");
        let data: Vec<Value> = recovered["publications"].as_array().unwrap().iter().map(|p| p["data"].clone()).collect();
        assert_eq!(data, vec![json!({"n": 2}), json!({"n": 3})]);
        api_publish(addr, "news:1", json!({"n": 4})).await;
        assert_eq!(next_publication(&mut client).await["data"], json!({"n": 4}));
        drop(client);
        server.shut_down().await;
    }

    async fn the_connect_proxy_subscribes_its_connection() {
        let backend = Backend::start(&[]).await;
        let server = server(|config| {
            config.proxy.connect_url = Some(backend.url("connect"));
            let private = NamespaceConfig { protected: true, ..Default::default() };
            config.namespaces.named.insert("private".into(), private);
        })
        .await;
        let addr = server.local_addr();
        let mut client = Client::open(addr).await;
        let reply = client.call(json!({"connect": {"data": {"user": "ann", "subs": ["private:ann"]}}})).await;
        assert_eq!(reply["result"]["user"], "ann");
        next_event(&mut client, "private:ann", "subscribe").await;
        api_publish(addr, "private:ann", json!("for ann")).await;
        assert_eq!(next_publication(&mut client).await["data"], "for ann");
        drop(client);
        server.shut_down().await;
    }
}
