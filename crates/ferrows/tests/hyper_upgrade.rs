//! A hyper 1.x server that upgrades requests into ferrows WebSockets.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use ferrows::{Message, ServerConfig};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if !ferrows::hyper_upgrade::is_upgrade_request(&req) {
        return Ok(Response::new(Full::new(Bytes::from_static(b"plain HTTP here\n"))));
    }
    match ferrows::hyper_upgrade::upgrade(&mut req, &ServerConfig::default()) {
        Ok((response, websocket)) => {
            tokio::spawn(async move {
                let Ok(mut ws) = websocket.await else { return };
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            Ok(response)
        }
        Err(e) => Ok(ferrows::hyper_upgrade::reject(&e)),
    }
}

#[tokio::test]
async fn hyper_request_becomes_a_websocket() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(handle))
                    .with_upgrades()
                    .await;
            });
        }
    });
    let run = async {
        let mut ws = ferrows::connect(format!("ws://{addr}/ws")).await.unwrap();
        assert!(ws.is_compressed());
        for text in ["hello", "through", "hyper"] {
            ws.send(Message::text(text)).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
        }
        ws.close(ferrows::CloseCode::NORMAL, "").await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), run).await.unwrap();
}
