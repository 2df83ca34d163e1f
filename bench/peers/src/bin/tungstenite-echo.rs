//! Echo server on tokio-tungstenite, for scripts/bench.sh.
//!
//! Written as a competent user of the library would: `accept_async` with the
//! default configuration (tokio-tungstenite has no permessage-deflate, so
//! compression is never negotiated), and messages queued with
//! `SinkExt::feed` then written with one `flush` once no further message is
//! immediately ready. That is what `StreamExt::forward` does in the
//! crate's own echo-server example, here without `split()` and its lock.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{Error, Message};

fn main() -> std::io::Result<()> {
    let addr = ferrows_bench_peers::listen_addr();
    ferrows_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        ferrows_bench_peers::announce(&listener)?;
        loop {
            let (tcp, _) = listener.accept().await?;
            tokio::spawn(async move {
                if let Err(e) = serve(tcp).await
                    && !matches!(e, Error::ConnectionClosed | Error::AlreadyClosed)
                {
                    eprintln!("connection ended: {e}");
                }
            });
        }
    })
}

async fn serve(tcp: TcpStream) -> Result<(), Error> {
    tcp.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async(tcp).await?;
    while let Some(message) = ws.next().await {
        echo(&mut ws, message?).await?;
        // Queue every message that has already arrived, then write them all
        // back with one flush.
        while let Some(next) = ws.next().now_or_never() {
            match next {
                Some(message) => echo(&mut ws, message?).await?,
                None => return ws.flush().await,
            }
        }
        ws.flush().await?;
    }
    Ok(())
}

/// Queues data messages; ping, pong and close are answered by tungstenite.
async fn echo<S>(ws: &mut S, message: Message) -> Result<(), Error>
where
    S: futures_util::Sink<Message, Error = Error> + Unpin,
{
    if message.is_text() || message.is_binary() { ws.feed(message).await } else { Ok(()) }
}
