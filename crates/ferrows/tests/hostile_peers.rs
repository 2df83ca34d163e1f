//! Peers that misbehave at the transport level: ones that never read,
//! and a storm of connections that open and close.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrows::testing::CountingAllocator;
use ferrows::{ClientConfig, Message, ServerConfig, WebSocketConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future).await.expect("test step timed out")
}

/// Counts the bytes live on the heap of this test process.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_that_never_reads_gets_backpressure_not_memory() {
    let limit = 256 << 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let max_seen = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let (max_seen2, sent2) = (max_seen.clone(), sent.clone());
    // The server floods its first client, and echoes for the others.
    tokio::spawn(async move {
        let config = ServerConfig {
            websocket: WebSocketConfig { max_write_buffer: limit, deflate: None, ..WebSocketConfig::default() },
            ..ServerConfig::default()
        };
        let (tcp, _) = listener.accept().await.unwrap();
        let mut flooded = ferrows::accept_with(tcp, ferrows::AcceptAll, &config).await.unwrap();
        tokio::spawn(async move {
            let chunk = Message::binary(vec![1u8; 64 << 10]);
            loop {
                // Waits (never errors) once the buffer is full.
                if flooded.feed(chunk.clone()).await.is_err() {
                    break;
                }
                sent2.fetch_add(1, Ordering::Relaxed);
                max_seen2.fetch_max(flooded.buffered_amount(), Ordering::Relaxed);
            }
        });
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = config.clone();
            tokio::spawn(async move {
                let mut ws = ferrows::accept_with(tcp, ferrows::AcceptAll, &config).await.unwrap();
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let url = format!("ws://{addr}");
    // The client that never reads.
    let _stalled = bounded(ferrows::connect_with(url.as_str(), &ClientConfig::default())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_before = sent.load(Ordering::Relaxed);
    // Other clients are served meanwhile.
    for i in 0..20 {
        let mut ws = bounded(ferrows::connect(url.as_str())).await.unwrap();
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::text(format!("hello {i}")));
    }
    // The flooding sender is stuck: it made no progress since the socket
    // buffers filled, and its queue stayed within limit + one message.
    let sent_after = sent.load(Ordering::Relaxed);
    assert_eq!(sent_before, sent_after, "send must wait while the peer does not read");
    let max = max_seen.load(Ordering::Relaxed);
    assert!(max <= limit + (64 << 10) + 16, "queue grew to {max} bytes (limit {limit})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_leave_nothing_behind() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let live2 = live.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let live = live2.clone();
            live.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut ws) = ferrows::accept(tcp).await {
                    while let Some(Ok(msg)) = ws.recv().await {
                        if msg.is_data() && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
                live.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let url = format!("ws://{addr}");
    // Warm up so lazily created state (runtime, TLS roots, the per-thread
    // caches of spare buffers, bounded at 1 MiB a thread) exists.
    for i in 0..300 {
        open_and_close(&url, i).await;
    }
    bounded(async {
        while live.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let fds_before = open_fds();
    let heap_before = CountingAllocator::live_bytes();
    let cached_before = cached_bytes();
    for i in 0..1000 {
        open_and_close(&url, i).await;
    }
    // Every server task ends and every descriptor is released.
    bounded(async {
        while live.load(Ordering::SeqCst) != 0 || open_fds() > fds_before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert!(open_fds() <= fds_before, "{} fds now, {} before", open_fds(), fds_before);
    // Heap back to baseline, give or take what the runtime keeps for reuse
    // (timer wheel slots, task slabs), and the spare buffers and zlib
    // streams cached for the next connections (bounded per thread, but a
    // thread may keep one more after a moment when more of its connections
    // were compressing at once): far below one connection per cycle.
    let cached = cached_bytes() - cached_before;
    let grown = CountingAllocator::live_bytes() as i64 - heap_before as i64 - cached;
    eprintln!("heap change over 1000 connections: {grown} bytes");
    assert!(grown < 64 << 10, "heap grew by {grown} bytes over 1000 connections");
}

/// What the per-thread caches of every thread keep for reuse: spare
/// buffers, and zlib streams (each weighed by making one like it here).
fn cached_bytes() -> i64 {
    fn weigh<T>(make: impl FnOnce() -> T) -> i64 {
        let before = CountingAllocator::live_bytes() as i64;
        let stream = make();
        let bytes = CountingAllocator::live_bytes() as i64 - before;
        drop(stream);
        bytes
    }
    let streams = ferrows::proto::deflate::cached_streams();
    let mut bytes = ferrows::cached_buffer_bytes() as i64;
    for bits in 9..=15u8 {
        let (compressors, decompressors) = (streams.compressors[bits as usize], streams.decompressors[bits as usize]);
        if compressors > 0 {
            let level = flate2::Compression::default();
            bytes += compressors as i64 * weigh(|| flate2::Compress::new_with_window_bits(level, false, bits));
        }
        if decompressors > 0 {
            bytes += decompressors as i64 * weigh(|| flate2::Decompress::new_with_window_bits(false, bits));
        }
    }
    bytes
}

/// One connection of the churn test, ended in one of three ways.
async fn open_and_close(url: &str, i: usize) {
    let mut ws = bounded(ferrows::connect(url)).await.unwrap();
    match i % 3 {
        // A clean closing handshake.
        0 => {
            ws.send(Message::text("hi")).await.unwrap();
            bounded(ws.recv()).await.unwrap().unwrap();
            bounded(ws.close(ferrows::CloseCode::NORMAL, "")).await.unwrap();
        }
        // Dropped without a Close.
        1 => drop(ws),
        // The transport is shut down under it (FIN, no Close).
        _ => {
            let tcp: &mut TcpStream = match ws.get_mut() {
                ferrows::MaybeTlsStream::Plain(tcp) => tcp,
                ferrows::MaybeTlsStream::Tls(_) => unreachable!(),
            };
            let _ = tcp.shutdown().await;
        }
    }
}
