//! `wss://` with certificates made at test time, and `CONNECT` proxies.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use ferrows::{ClientConfig, Error, Message, Proxy, ProxySetting};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("test step timed out")
}

struct TestCa {
    cert_pem: String,
    key_pem: String,
}

fn localhost_cert() -> TestCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCa { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A wss:// echo server; returns its port.
async fn wss_echo(ca: &TestCa) -> u16 {
    let tls = ferrows::tls::server_config_from_pem(ca.cert_pem.as_bytes(), ca.key_pem.as_bytes()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
                let Ok(mut ws) = ferrows::accept(tls).await else { return };
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn trusting(ca: &TestCa) -> ClientConfig {
    ClientConfig {
        tls: Some(ferrows::tls::client_config_with_roots(ca.cert_pem.as_bytes()).unwrap()),
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn wss_round_trip_with_sni_and_alpn() {
    let ca = localhost_cert();
    let port = wss_echo(&ca).await;
    let mut ws = bounded(ferrows::connect_with(format!("wss://localhost:{port}/"), &trusting(&ca))).await.unwrap();
    assert!(matches!(ws.get_ref(), ferrows::MaybeTlsStream::Tls(_)));
    for size in [0usize, 100, 70_000, 1 << 20] {
        let msg = Message::binary(vec![7u8; size]);
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), msg);
    }
    bounded(ws.close(ferrows::CloseCode::NORMAL, "")).await.unwrap();
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let ca = localhost_cert();
    let port = wss_echo(&ca).await;
    let other = localhost_cert();
    let err = bounded(ferrows::connect_with(format!("wss://localhost:{port}/"), &trusting(&other))).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
}

#[tokio::test]
async fn name_mismatch_is_refused() {
    let ca = localhost_cert();
    let port = wss_echo(&ca).await;
    // The certificate names "localhost", not the IP address.
    let err = bounded(ferrows::connect_with(format!("wss://127.0.0.1:{port}/"), &trusting(&ca))).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
}

/// A minimal CONNECT proxy that records the request line.
async fn connect_proxy() -> (u16, Arc<tokio::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                log.lock().await.push(head.clone());
                let target = head.split_whitespace().nth(1).unwrap().to_owned();
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn wss_through_connect_proxy_with_credentials() {
    let ca = localhost_cert();
    let port = wss_echo(&ca).await;
    let (proxy_port, seen) = connect_proxy().await;
    let config = ClientConfig {
        proxy: ProxySetting::Url(Proxy::new(&format!("http://alice:secret@127.0.0.1:{proxy_port}")).unwrap()),
        ..trusting(&ca)
    };
    let mut ws = bounded(ferrows::connect_with(format!("wss://localhost:{port}/chat"), &config)).await.unwrap();
    ws.send(Message::text("via proxy")).await.unwrap();
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text("via proxy"));
    let requests = seen.lock().await;
    assert_eq!(requests.len(), 1);
    assert!(requests[0].starts_with(&format!("CONNECT localhost:{port} HTTP/1.1\r\n")), "{}", requests[0]);
    assert!(requests[0].contains("Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"));
}

#[tokio::test]
async fn proxy_refusal_is_an_error() {
    let (proxy_port, _) = connect_proxy().await;
    // Nothing listens on port 1: the proxy answers 502.
    let config = ClientConfig {
        proxy: ProxySetting::Url(Proxy::new(&format!("http://127.0.0.1:{proxy_port}")).unwrap()),
        ..ClientConfig::default()
    };
    let err = bounded(ferrows::connect_with("ws://127.0.0.1:1/", &config)).await.unwrap_err();
    assert!(err.to_string().contains("502"), "{err}");
}
