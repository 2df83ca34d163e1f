//! An echo server: every text or binary message comes back.
//!
//! ```sh
//! cargo run -p ferrows --example echo_server -- 127.0.0.1:9001
//! ```

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let mut ws = match ferrows::accept(tcp).await {
                Ok(ws) => ws,
                Err(e) => return eprintln!("{peer}: handshake failed: {e}"),
            };
            while let Some(message) = ws.recv().await {
                match message {
                    Ok(message) if message.is_data() => {
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return eprintln!("{peer}: {e}"),
                }
            }
        });
    }
}
