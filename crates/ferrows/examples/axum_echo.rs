//! An axum server whose `/ws` route echoes every text or binary message,
//! with permessage-deflate (which axum's own WebSocket lacks); other paths
//! are plain HTTP.
//!
//! ```sh
//! cargo run -p ferrows --features axum --example axum_echo -- 127.0.0.1:9001
//! ```

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use ferrows::WebSocketConfig;
use ferrows::axum_upgrade::WebSocketUpgrade;
use ferrows::proto::deflate::DeflateOptions;

async fn echo(ws: WebSocketUpgrade) -> Response {
    // Compression is on by default; spelled out here to show where its
    // options go (a server with many connections may ask clients for
    // smaller windows, say).
    let config = WebSocketConfig { deflate: Some(DeflateOptions::default()), ..WebSocketConfig::default() };
    ws.protocols(["echo"]).config(config).on_upgrade(|mut socket| async move {
        while let Some(message) = socket.recv().await {
            match message {
                Ok(message) if message.is_data() => {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return eprintln!("echo: {e}"),
            }
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let app = Router::new().route("/ws", get(echo)).route("/", get(|| async { "WebSocket echo on /ws\n" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}/ws", listener.local_addr()?);
    axum::serve(listener, app).await
}
