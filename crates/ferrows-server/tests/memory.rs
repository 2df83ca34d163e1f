//! What an idle, subscribed `serve` connection costs: the live heap of
//! this process per connection, counted by the global allocator, with the
//! clients on plain blocking sockets (which allocate nothing) so that the
//! growth is the server's alone.
#![allow(missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ferrows::testing::CountingAllocator;

mod common;

/// Counts the bytes live on the heap of this test process.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Connections measured.
const CONNECTIONS: usize = 1000;

/// The live server heap each idle connection subscribed to one channel
/// (presence tracked, as in the default namespace) may hold: 1053 bytes
/// measured. An idle plain-TCP session has no task: it waits in the
/// server's lot, in a slot of about 224 bytes (the session and the parked
/// connection) of a table that doubles as it grows, so up to twice that is
/// allocated; then the queue with its outlet 96, the lot's waker 32, and
/// the identity, subscription, presence entry and the node's maps. (With a
/// task of its own it was 1531: the task 640, tokio's I/O registration 256
/// and the keepalive timer 184.)
const BUDGET_PER_CONNECTION: isize = 1120;

/// The future of a connection's task while it runs (whole for the
/// connection's life over TLS, which does not park in the lot): 264 bytes
/// measured (the session, and the connection parked while idle; a
/// token's grants and the connect proxy's meta live in a box of their
/// own, which connections without them do not allocate).
const TASK_BUDGET: usize = 264;

/// A masked client text frame (mask key 0).
fn text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Reads one unmasked server frame's payload.
fn read_frame(tcp: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).unwrap();
    let len = match head[1] & 0x7F {
        126 => {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => panic!("no reply is that large"),
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).unwrap();
    payload
}

/// A client on a blocking socket: upgrade, connect, subscribe to `channel`.
fn subscribed_client(addr: SocketAddr, channel: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(common::WAIT)).unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp.write_all(&text_frame(r#"{"id":1,"connect":{"name":"idle"}}"#)).unwrap();
    let reply = read_frame(&mut tcp);
    assert!(reply.starts_with(br#"{"id":1,"result""#), "{}", String::from_utf8_lossy(&reply));
    tcp.write_all(&text_frame(&format!(r#"{{"id":2,"subscribe":{{"channel":"{channel}"}}}}"#))).unwrap();
    let reply = read_frame(&mut tcp);
    assert!(reply.starts_with(br#"{"id":2,"result""#), "{}", String::from_utf8_lossy(&reply));
    tcp
}

fn open_clients(addr: SocketAddr, count: usize, channel: &'static str) -> Vec<TcpStream> {
    (0..count).map(|_| subscribed_client(addr, channel)).collect()
}

/// The live heap, less the spare buffers the per-thread caches keep for
/// reuse (how many depends on how many connections happened to be busy at
/// once, not on how many are open), once `count` sessions (every one opened
/// so far) wait in the server's lots and that figure stopped changing
/// (sampled every 20 ms), within a bound.
async fn settled_heap(server: &ferrows_server::Server, count: usize) -> isize {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while server.parked_sessions() < count {
        assert!(tokio::time::Instant::now() < deadline, "{} of {count} sessions parked", server.parked_sessions());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = || CountingAllocator::live_bytes() - ferrows::cached_buffer_bytes() as isize;
    let mut last = held();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = held();
        if now == last || tokio::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscribed_connection_stays_within_its_heap_budget() {
    // 1 100 clients from one address: over the default per-address limit
    // (which costs per address, not per connection).
    let server = common::server(|config| config.limits.max_connections_per_address = 0).await;
    let task = server.session_task_size().await.unwrap();
    eprintln!("an idle plain connection's task future: {task} bytes");
    assert!(task <= TASK_BUDGET, "the session task future grew to {task} bytes (budget {TASK_BUDGET})");
    let addr = server.local_addr();
    // Warm up: the runtime, the channel and the per-thread caches exist.
    let warm = tokio::task::spawn_blocking(move || open_clients(addr, 100, "idle")).await.unwrap();
    let before = settled_heap(&server, 100).await;
    let cached_before = ferrows::cached_buffer_bytes();
    let sizes_before = CountingAllocator::live_by_size();
    let clients = tokio::task::spawn_blocking(move || open_clients(addr, CONNECTIONS, "idle")).await.unwrap();
    // Every session parks (its buffers released) once it has been quiet
    // for a while after its last reply; wait for the last of them.
    let per_connection = (settled_heap(&server, 100 + CONNECTIONS).await - before) / CONNECTIONS as isize;
    eprintln!(
        "live heap per idle subscribed serve connection: {per_connection} bytes (spare buffers cached: {cached_before} B before, {} B after, not counted), in allocations of:",
        ferrows::cached_buffer_bytes()
    );
    // What each connection holds, by allocation size (the ones most
    // connections have).
    let sizes_before: std::collections::HashMap<usize, isize> = sizes_before.into_iter().collect();
    for (size, count) in CountingAllocator::live_by_size() {
        let added = count - sizes_before.get(&size).copied().unwrap_or(0);
        if added >= CONNECTIONS as isize / 2 || added * size as isize >= 8 * CONNECTIONS as isize {
            eprintln!("  {size:>5} B x {:.2} per connection", added as f64 / CONNECTIONS as f64);
        }
    }
    assert!(
        per_connection <= BUDGET_PER_CONNECTION,
        "{per_connection} bytes of heap per idle connection (budget {BUDGET_PER_CONNECTION})"
    );
    drop((warm, clients));
    server.shut_down().await;
}
