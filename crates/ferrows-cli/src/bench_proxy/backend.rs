//! The minimal backend of `ferrows bench-proxy`, run as a process of its
//! own (`ferrows bench-proxy --backend`) so that its CPU is its own: it
//! accepts every publication as it is, says every connecting client is a
//! user after `--connect-delay-ms` (a database lookup's time), and counts
//! the requests it holds at once (`GET /stats`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
struct Counts {
    now: AtomicU64,
    max: AtomicU64,
    requests: AtomicU64,
}

/// Serves until killed; prints `listening on http://ADDR` first.
pub(crate) async fn run(port: u16, connect_delay: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("backend listening on http://{}", listener.local_addr()?);
    let counts = Arc::new(Counts::default());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, counts.clone(), connect_delay));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    counts: Arc<Counts>,
    connect_delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/stats" {
        let stats = serde_json::json!({
            "max_in_flight": counts.max.load(Ordering::Relaxed),
            "requests": counts.requests.load(Ordering::Relaxed),
        });
        return Ok(Response::new(Full::new(Bytes::from(stats.to_string()))));
    }
    let now = counts.now.fetch_add(1, Ordering::Relaxed) + 1;
    counts.max.fetch_max(now, Ordering::Relaxed);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let _ = request.into_body().collect().await;
    let body: &'static [u8] = match path.as_str() {
        "/connect" => {
            tokio::time::sleep(connect_delay).await;
            br#"{"result":{"user":"bench"}}"#
        }
        "/publish" => br#"{"result":{}}"#,
        _ => b"{}",
    };
    counts.now.fetch_sub(1, Ordering::Relaxed);
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    if body == b"{}" {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(response)
}
