//! A client: sends each line of standard input, prints what comes back.
//!
//! ```sh
//! cargo run -p ferrows --example client -- ws://127.0.0.1:9001
//! ```

use ferrows::{CloseCode, Message};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> ferrows::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let ws = ferrows::connect(url.as_str()).await?;
    println!("connected to {url} (compression: {})", ws.is_compressed());
    let (mut reader, mut writer) = ws.split();
    let printer = tokio::spawn(async move {
        while let Some(message) = reader.recv().await {
            match message {
                Ok(Message::Text(text)) => println!("< {text}"),
                Ok(Message::Binary(data)) => println!("< {} bytes", data.len()),
                Ok(Message::Close(frame)) => println!("closed: {frame:?}"),
                Ok(_) => {}
                Err(e) => return eprintln!("error: {e}"),
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        writer.send(Message::text(line)).await?;
    }
    writer.close(CloseCode::NORMAL, "bye").await?;
    let _ = printer.await;
    Ok(())
}
