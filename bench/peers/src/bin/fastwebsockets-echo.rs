//! Echo server on fastwebsockets, for scripts/bench.sh.
//!
//! Written the way the crate's own `echo_server` example does it: hyper 1
//! serves HTTP/1.1 with upgrades, `fastwebsockets::upgrade::upgrade` answers
//! the handshake, the connection runs in a `FragmentCollector` (whole
//! messages, automatic pong and close replies) inside
//! `tokio::task::unconstrained`, and every frame is echoed with
//! `write_frame`. fastwebsockets has no write buffer to batch into:
//! `write_frame` writes each frame straight to the socket (vectored above
//! 1 KiB), so pipelined messages cost one write each; that is the library's
//! design, not something its users are expected to work around.
//! fastwebsockets does not implement permessage-deflate.

use fastwebsockets::{OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let addr = ferrows_bench_peers::listen_addr();
    ferrows_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        ferrows_bench_peers::announce(&listener)?;
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(tcp);
                let connection =
                    http1::Builder::new().serve_connection(io, service_fn(upgrade_request)).with_upgrades();
                if let Err(e) = connection.await {
                    eprintln!("http error: {e}");
                }
            });
        }
    })
}

async fn upgrade_request(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, upgraded) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(echo(upgraded)).await
            && !matches!(e, WebSocketError::ConnectionClosed | WebSocketError::UnexpectedEOF)
        {
            eprintln!("connection ended: {e}");
        }
    });
    Ok(response)
}

async fn echo(upgraded: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fastwebsockets::FragmentCollector::new(upgraded.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
