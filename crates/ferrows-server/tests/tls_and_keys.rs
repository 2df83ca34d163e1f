//! `wss://` with `--tls-cert`/`--tls-key`, and ES256 tokens checked with a
//! public key file: certificates and keys made at test time.

mod common;

use common::{Client, WAIT, server, subscribe};
use ferrows::{ClientConfig, Message};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrows-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn serves_wss_with_a_pem_certificate() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    let dir = temp_dir("tls");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server = server(|config| {
        config.server.tls_cert = Some(cert_path);
        config.server.tls_key = Some(key_path);
    })
    .await;
    assert_eq!(server.scheme(), "https");
    let config = ClientConfig {
        tls: Some(ferrows::tls::client_config_with_roots(cert.pem().as_bytes()).unwrap()),
        ..ClientConfig::default()
    };
    let url = format!("wss://localhost:{}/ws", server.local_addr().port());
    let mut ws = tokio::time::timeout(WAIT, ferrows::connect_with(url, &config)).await.unwrap().unwrap();
    ws.send(Message::text(json!({"id": 1, "connect": {}}).to_string())).await.unwrap();
    let reply = tokio::time::timeout(WAIT, ws.recv()).await.unwrap().unwrap().unwrap();
    match reply {
        Message::Text(text) => assert!(text.as_str().contains("\"result\""), "{}", text.as_str()),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn es256_tokens_are_verified_with_the_public_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let dir = temp_dir("es256");
    let public = dir.join("jwt.pub.pem");
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let server = server(|config| {
        config.auth.token_ecdsa_public_key = Some(public.clone());
        config.auth.allow_anonymous = false;
    })
    .await;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &json!({"sub": "ec-user", "exp": exp}), &signing).unwrap();
    let mut client = Client::connect(server.local_addr(), Some(&token)).await;
    subscribe(&mut client, "chat:ok").await;
    // The same claims under HS256 with a guessed secret are refused: only
    // the configured algorithm and key count.
    let forged =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({"sub": "x"}), &EncodingKey::from_secret(b"k"))
            .unwrap();
    let mut refused = Client::open(server.local_addr()).await;
    let reply = refused.call(json!({"connect": {"token": forged}})).await;
    assert_eq!(reply["error"]["code"], 101, "{reply}");
    std::fs::remove_dir_all(dir).unwrap();
}
