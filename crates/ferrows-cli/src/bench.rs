//! `ferrows bench`: an echo load generator. Every connection keeps
//! `--pipeline` messages in flight against an echo server and counts the
//! echoes that come back; the same client measures every server, so the
//! numbers compare servers, not clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use ferrows::{ClientConfig, Message};

/// Options of `ferrows bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Echo server to load.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// Number of connections.
    #[arg(long, short, default_value_t = 100)]
    connections: usize,
    /// Payload size of each message in bytes.
    #[arg(long, short, default_value_t = 20)]
    size: usize,
    /// Messages in flight per connection (1: request/response).
    #[arg(long, short, default_value_t = 1)]
    pipeline: usize,
    /// Seconds of measurement (after one second of warm-up).
    #[arg(long, short, default_value_t = 5.0)]
    duration: f64,
    /// Send binary messages instead of text.
    #[arg(long)]
    binary: bool,
    /// Offer permessage-deflate.
    #[arg(long)]
    compression: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut config = ClientConfig::default();
    if !args.compression {
        config.websocket.deflate = None;
    }
    let payload =
        if args.binary { Message::binary(vec![0x5Au8; args.size]) } else { Message::text("x".repeat(args.size)) };
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        sockets.push(ferrows::connect_with(args.url.as_str(), &config).await?);
    }
    let mut tasks = Vec::with_capacity(args.connections);
    for mut ws in sockets {
        let (received, stop, payload, pipeline) =
            (received.clone(), stop.clone(), payload.clone(), args.pipeline.max(1));
        tasks.push(tokio::spawn(async move {
            for _ in 0..pipeline {
                ws.feed(payload.clone()).await?;
            }
            ws.flush().await?;
            while let Some(message) = ws.recv().await {
                if !message?.is_data() {
                    continue;
                }
                received.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // Queued here, written when the next read would wait.
                ws.feed(payload.clone()).await?;
            }
            let _ = ws.close(ferrows::CloseCode::NORMAL, "").await;
            Ok::<_, ferrows::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_count = received.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let count = received.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let rate = count as f64 / elapsed;
    let mib = rate * args.size as f64 / (1 << 20) as f64;
    if args.json {
        println!(
            "{{\"connections\":{},\"size\":{},\"pipeline\":{},\"messages_per_sec\":{rate:.0},\"mib_per_sec\":{mib:.1}}}",
            args.connections, args.size, args.pipeline
        );
    } else {
        println!(
            "{} connections x {} B, pipeline {}: {rate:.0} msgs/s ({mib:.1} MiB/s echoed)",
            args.connections, args.size, args.pipeline
        );
    }
    Ok(())
}
