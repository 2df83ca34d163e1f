//! A chat room: every message a client sends reaches every client. Each
//! message is framed (and, for clients that negotiated compression without
//! context takeover, compressed) once, whatever the number of clients.
//!
//! ```sh
//! cargo run -p ferrows --example chat -- 127.0.0.1:9001
//! ```

use std::sync::Arc;

use ferrows::{Message, PreparedMessage};
use tokio::sync::broadcast;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat on ws://{}", listener.local_addr()?);
    // A slow client that falls 1024 messages behind skips ahead (see
    // `RecvError::Lagged`) instead of holding memory for everyone.
    let (room, _) = broadcast::channel::<Arc<PreparedMessage>>(1024);
    loop {
        let (tcp, _) = listener.accept().await?;
        let room = room.clone();
        tokio::spawn(async move {
            let Ok(ws) = ferrows::accept(tcp).await else { return };
            let (mut reader, mut writer) = ws.split();
            let mut inbox = room.subscribe();
            let forward = tokio::spawn(async move {
                loop {
                    match inbox.recv().await {
                        Ok(message) => {
                            if writer.send_prepared(&message).await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
            while let Some(Ok(message)) = reader.recv().await {
                if let Message::Text(text) = message {
                    let _ = room.send(Arc::new(PreparedMessage::text(text)));
                }
            }
            forward.abort();
        });
    }
}
