//! The lot: parked connections held without a task each receive what their
//! tenant sends without leaving it, and leave it (resumed, nothing lost)
//! when bytes, the end of file or a deadline arrive, or when the peer does
//! not take what is sent.
#![cfg(unix)]
#![allow(missing_docs)]

use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use ferrows::lot::{Lot, LotStream, Outlet, Tenant};
use ferrows::{ClientConfig, MaybeTlsStream, Message, ParkedWebSocket, PreparedMessage, ServerConfig, WebSocket};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("test step timed out")
}

/// What a test sends through a parked connection, and whether it asks the
/// connection to leave the lot.
#[derive(Default)]
struct Outbox {
    messages: Vec<PreparedMessage>,
    waker: Option<Waker>,
    /// The tenant panics at its next poll (a bug in the lot's owner).
    panic: bool,
    /// Whether the tenant opens an outlet while idle.
    open_outlet: bool,
    /// The outlet, while open (taken back in `leaving`).
    outlet: Option<Outlet>,
    /// The rest of a frame the outlet began, for the connection to send.
    rest: Option<Vec<u8>>,
    /// Whether `leaving` was called.
    left: bool,
}

type Resumed = io::Result<ParkedWebSocket<TcpStream>>;

struct TestTenant {
    outbox: Arc<Mutex<Outbox>>,
    resumed: mpsc::UnboundedSender<Resumed>,
}

impl Tenant for TestTenant {
    fn poll_parked(&mut self, ws: &mut ParkedWebSocket<LotStream>, cx: &mut Context<'_>) -> Poll<()> {
        let mut outbox = self.outbox.lock().unwrap();
        if std::mem::take(&mut outbox.panic) {
            drop(outbox);
            panic!("a tenant's bug");
        }
        if let Some(rest) = outbox.rest.take() {
            ws.finish_frame(&rest);
            return Poll::Ready(());
        }
        let messages = std::mem::take(&mut outbox.messages);
        if !messages.is_empty() {
            // A failed write is met again by the WebSocket once resumed.
            let _ = ws.send_prepared(messages.iter());
        }
        if outbox.open_outlet && outbox.outlet.is_none() {
            outbox.outlet = Outlet::of(ws);
        }
        outbox.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn leaving(&mut self, _: &mut ParkedWebSocket<LotStream>) {
        let mut outbox = self.outbox.lock().unwrap();
        outbox.outlet = None;
        outbox.left = true;
    }

    fn resume(self, ws: Resumed) {
        let _ = self.resumed.send(ws);
    }
}

fn send(outbox: &Mutex<Outbox>, message: PreparedMessage) {
    let waker = {
        let mut outbox = outbox.lock().unwrap();
        outbox.messages.push(message);
        outbox.waker.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

struct Parked {
    lot: Lot<TestTenant>,
    outbox: Arc<Mutex<Outbox>>,
    resumed: mpsc::UnboundedReceiver<Resumed>,
    client: WebSocket<MaybeTlsStream>,
    config: ServerConfig,
}

/// A server connection parked in a new lot, and its client.
async fn parked(config: ServerConfig, client_config: ClientConfig) -> Parked {
    parked_sending_into(config, client_config, None).await
}

/// [`parked`], the server's socket given a send buffer of `send_buffer`
/// bytes if set.
async fn parked_sending_into(config: ServerConfig, client_config: ClientConfig, send_buffer: Option<usize>) -> Parked {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Some(size) = send_buffer {
            socket2::SockRef::from(&tcp).set_send_buffer_size(size).unwrap();
        }
        ferrows::accept_with(tcp, ferrows::AcceptAll, &server_config).await.unwrap()
    });
    let client = bounded(ferrows::connect_with(url.as_str(), &client_config)).await.unwrap();
    let server = bounded(server).await.unwrap();
    let lot = Lot::new().unwrap();
    let outbox = Arc::new(Mutex::new(Outbox::default()));
    let (tx, resumed) = mpsc::unbounded_channel();
    let ws = server.park().map_err(|_| "a new connection is idle").unwrap();
    lot.park(TestTenant { outbox: outbox.clone(), resumed: tx }, ws);
    Parked { lot, outbox, resumed, client, config }
}

fn plain() -> (ServerConfig, ClientConfig) {
    let mut server = ServerConfig::default();
    server.websocket.deflate = None;
    let mut client = ClientConfig::default();
    client.websocket.deflate = None;
    (server, client)
}

async fn next_data(client: &mut WebSocket<MaybeTlsStream>) -> Message {
    loop {
        match bounded(client.recv()).await {
            Some(Ok(message)) if message.is_data() => return message,
            Some(Ok(_)) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Parks a WebSocket that just read a message: one more read finds
/// nothing and lets its buffers go, which leaves it idle.
fn park_now(mut ws: WebSocket<TcpStream>) -> ParkedWebSocket<TcpStream> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(ws.poll_recv(&mut cx).is_pending(), "nothing more to read");
    ws.park().map_err(|_| "idle now").unwrap()
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    bounded(async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_parked_connection_receives_without_leaving_the_lot() {
    let (server, client) = plain();
    let mut p = parked(server, client).await;
    wait_until(|| p.lot.len() == 1).await;
    for i in 0..3 {
        send(&p.outbox, PreparedMessage::text(format!("message {i}").into()));
    }
    for i in 0..3 {
        assert_eq!(next_data(&mut p.client).await, Message::Text(format!("message {i}").into()));
    }
    assert_eq!(p.lot.len(), 1, "it stays parked");
    assert!(p.resumed.try_recv().is_err(), "and was not resumed");
}

/// Writes `message` through the open outlet of `outbox`, as a fan-out
/// would; how many bytes of its frame went, and the frame.
#[allow(unsafe_code)]
fn send_through_outlet(outbox: &Mutex<Outbox>, message: &PreparedMessage) -> (usize, Bytes) {
    let outbox = outbox.lock().unwrap();
    let outlet = outbox.outlet.expect("the outlet is open");
    let frame = outlet.frame(message).clone();
    // SAFETY: the outlet is open, so its connection is in the lot: the
    // tenant takes it back in `leaving` (before the socket leaves) under
    // the lock held here, and writes nothing else meanwhile.
    let sent = unsafe { outlet.send(&frame) };
    (sent, frame)
}

#[tokio::test]
async fn an_outlet_writes_into_the_parked_socket_and_the_connection_finishes_a_frame_begun_there() {
    let (server, client) = plain();
    // A send buffer of a few kilobytes: a large frame goes in part.
    let mut p = parked_sending_into(server, client, Some(4096)).await;
    p.outbox.lock().unwrap().open_outlet = true;
    send(&p.outbox, PreparedMessage::text("through the tenant".into()));
    assert_eq!(next_data(&mut p.client).await, Message::text("through the tenant"));
    wait_until(|| p.outbox.lock().unwrap().outlet.is_some()).await;
    for i in 0..3 {
        let message = PreparedMessage::text(format!("direct {i}").into());
        let (sent, frame) = send_through_outlet(&p.outbox, &message);
        assert_eq!(sent, frame.len());
        assert_eq!(next_data(&mut p.client).await, Message::text(format!("direct {i}")));
    }
    assert!(p.resumed.try_recv().is_err(), "still parked");
    // The client does not read now: a megabyte goes in part, and the
    // connection sends the rest before anything else.
    let big = Bytes::from((0..1 << 20).map(|i: u32| (i % 251) as u8).collect::<Vec<_>>());
    let (sent, frame) = send_through_outlet(&p.outbox, &PreparedMessage::binary(big.clone()));
    assert!(sent > 0 && sent < frame.len(), "{sent} of {} bytes", frame.len());
    let waker = {
        let mut outbox = p.outbox.lock().unwrap();
        outbox.rest = Some(frame[sent..].to_vec());
        outbox.waker.take()
    };
    waker.expect("the tenant waits").wake();
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    {
        let outbox = p.outbox.lock().unwrap();
        assert!(outbox.left && outbox.outlet.is_none(), "the outlet was taken back before it left");
    }
    let mut ws = ws.unpark(&p.config.websocket);
    let writer = tokio::spawn(async move {
        ws.send(Message::text("after")).await.unwrap();
        ws
    });
    assert_eq!(next_data(&mut p.client).await, Message::Binary(big));
    assert_eq!(next_data(&mut p.client).await, Message::text("after"));
    bounded(writer).await.unwrap();
}

#[tokio::test]
async fn compressed_connections_receive_their_compressed_frames() {
    // Both sides offer and accept permessage-deflate by default.
    let mut p = parked(ServerConfig::default(), ClientConfig::default()).await;
    let text = "compressible ".repeat(100);
    send(&p.outbox, PreparedMessage::text(text.clone().into()));
    send(&p.outbox, PreparedMessage::binary(Bytes::from_static(b"short")));
    assert_eq!(next_data(&mut p.client).await, Message::Text(text.into()));
    assert_eq!(next_data(&mut p.client).await, Message::Binary(Bytes::from_static(b"short")));
    // The contexts survive: the resumed WebSocket still speaks deflate.
    p.client.send(Message::Text("back".into())).await.unwrap();
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    let mut ws = ws.unpark(&p.config.websocket);
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::Text("back".into()));
    ws.send(Message::Text("again ".repeat(50).into())).await.unwrap();
    assert_eq!(next_data(&mut p.client).await, Message::Text("again ".repeat(50).into()));
}

#[tokio::test]
async fn without_context_takeover_the_halves_are_made_again_and_still_compress() {
    // What `serve` asks for: each message compressed on its own both ways,
    // so the parked connection keeps no halves, only what they were made of.
    let mut server = ServerConfig::default();
    let deflate = server.websocket.deflate.as_mut().unwrap();
    deflate.server_no_context_takeover = true;
    deflate.client_no_context_takeover = true;
    let mut p = parked(server, ClientConfig::default()).await;
    let text = "compressible ".repeat(100);
    send(&p.outbox, PreparedMessage::text(text.clone().into()));
    assert_eq!(next_data(&mut p.client).await, Message::Text(text.clone().into()));
    p.client.send(Message::Text(text.clone().into())).await.unwrap();
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    let mut ws = ws.unpark(&p.config.websocket);
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::Text(text.clone().into()));
    ws.send(Message::Text(text.clone().into())).await.unwrap();
    assert_eq!(next_data(&mut p.client).await, Message::Text(text.into()));
}

#[tokio::test]
async fn bytes_from_the_peer_resume_it_with_nothing_lost() {
    let (server, client) = plain();
    let mut p = parked(server, client).await;
    p.client.send(Message::Text("hello".into())).await.unwrap();
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    assert_eq!(p.lot.len(), 0);
    let mut ws = ws.unpark(&p.config.websocket);
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::Text("hello".into()));
    ws.send(Message::Text("answer".into())).await.unwrap();
    assert_eq!(next_data(&mut p.client).await, Message::Text("answer".into()));
}

#[tokio::test]
async fn a_message_larger_than_the_first_read_arrives_whole() {
    let (server, client) = plain();
    let mut p = parked(server, client).await;
    let big = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
    p.client.send(Message::Binary(big.clone())).await.unwrap();
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    let mut ws = ws.unpark(&p.config.websocket);
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::Binary(big));
}

#[tokio::test]
async fn the_keepalive_ping_goes_out_from_the_lot_and_the_pong_resumes_it() {
    let (mut server, client) = plain();
    server.websocket.ping_interval = Some(Duration::from_millis(200));
    let mut p = parked(server, client).await;
    loop {
        match bounded(p.client.recv()).await {
            Some(Ok(Message::Ping(_))) => break,
            Some(Ok(_)) => continue,
            other => panic!("expected a Ping, got {other:?}"),
        }
    }
    // Sent while parked: nothing resumed it for the Ping.
    assert!(p.resumed.try_recv().is_err());
    // The client answers (its reads write the Pong), which resumes it.
    let mut client = p.client;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = client.recv().await {} });
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    let mut ws = ws.unpark(&p.config.websocket);
    assert!(matches!(bounded(ws.recv()).await, Some(Ok(Message::Pong(_)))));
    reader.abort();
}

/// Sends move the idle deadline on: the lot schedules a parked
/// connection's deadline once, and one that passes after it moved is
/// scheduled again, not resumed; once nothing is sent it passes for real.
#[tokio::test]
async fn a_deadline_that_moved_on_is_scheduled_again_not_resumed() {
    let (mut server, client) = plain();
    server.websocket.idle_timeout = Some(Duration::from_millis(1500));
    let mut p = parked(server, client).await;
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    // Twice the idle timeout, sending every 100 ms.
    while started.elapsed() < Duration::from_millis(3000) {
        send(&p.outbox, PreparedMessage::text(format!("m{sent}").into()));
        assert_eq!(next_data(&mut p.client).await, Message::text(format!("m{sent}")));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(p.resumed.try_recv().is_err(), "resumed while data went out every 100 ms");
    // Quiet now: the idle deadline passes and the WebSocket needs to close.
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    assert!(ws.is_due());
    drop(p.lot);
}

#[tokio::test]
async fn a_missing_pong_resumes_it_to_give_up() {
    let (mut server, client) = plain();
    server.websocket.ping_interval = Some(Duration::from_millis(100));
    server.websocket.pong_timeout = Duration::from_millis(200);
    // The client never reads, so it never answers.
    let mut p = parked(server, client).await;
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    let mut ws = ws.unpark(&p.config.websocket);
    assert!(!matches!(bounded(ws.recv()).await, Some(Ok(_))), "the WebSocket gives up on the peer");
}

#[tokio::test]
async fn a_peer_that_does_not_read_gets_everything_once_resumed() {
    let (server, client) = plain();
    let mut p = parked(server, client).await;
    // Far more than the sockets buffer: the lot's writes fall short, and the
    // connection leaves with what is left.
    let count = 200;
    let payload = |i: usize| Bytes::from(vec![(i % 251) as u8; 64 * 1024]);
    for i in 0..count {
        send(&p.outbox, PreparedMessage::binary(payload(i)));
    }
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    assert!(ws.needs_websocket(), "unsent bytes wait for the WebSocket");
    let mut ws = ws.unpark(&p.config.websocket);
    let flush = tokio::spawn(async move {
        ws.flush().await.unwrap();
        ws
    });
    for i in 0..count {
        assert_eq!(next_data(&mut p.client).await, Message::Binary(payload(i)), "message {i}");
    }
    bounded(flush).await.unwrap();
}

#[tokio::test]
async fn the_end_of_file_resumes_it() {
    let (server, client) = plain();
    let mut p = parked(server, client).await;
    drop(p.client);
    let ws = bounded(p.resumed.recv()).await.unwrap().unwrap();
    let mut ws = ws.unpark(&p.config.websocket);
    assert!(!matches!(bounded(ws.recv()).await, Some(Ok(_))));
}

#[tokio::test]
async fn dropping_the_lot_closes_what_is_parked() {
    let (server, client) = plain();
    let mut p = parked(server, client).await;
    wait_until(|| p.lot.len() == 1).await;
    drop(p.lot);
    assert!(!matches!(bounded(p.client.recv()).await, Some(Ok(_))));
}

#[tokio::test]
async fn many_connections_each_get_their_own_messages() {
    let (server, client) = plain();
    let mut all = Vec::new();
    for _ in 0..20 {
        all.push(parked(server.clone(), client.clone()).await);
    }
    for (i, p) in all.iter().enumerate() {
        send(&p.outbox, PreparedMessage::text(format!("for {i}").into()));
    }
    for (i, p) in all.iter_mut().enumerate() {
        assert_eq!(next_data(&mut p.client).await, Message::Text(format!("for {i}").into()));
    }
}

#[tokio::test]
async fn a_panicking_tenant_is_resumed_and_the_others_go_on() {
    let (server, client) = plain();
    let mut buggy = parked(server.clone(), client.clone()).await;
    let mut fine = parked(server, client).await;
    // Both in one lot: move the second connection into the first's.
    fine.client.send(Message::Text("wake".into())).await.unwrap();
    let ws = bounded(fine.resumed.recv()).await.unwrap().unwrap();
    let mut ws = ws.unpark(&fine.config.websocket);
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::Text("wake".into()));
    let (tx, mut resumed) = mpsc::unbounded_channel();
    buggy.lot.park(TestTenant { outbox: fine.outbox.clone(), resumed: tx }, park_now(ws));
    wait_until(|| buggy.lot.len() == 2).await;

    buggy.outbox.lock().unwrap().panic = true;
    send(&buggy.outbox, PreparedMessage::text("never".into()));
    let back = bounded(buggy.resumed.recv()).await.unwrap().unwrap();
    assert_eq!(buggy.lot.len(), 1, "only the buggy tenant left");
    drop(back);
    send(&fine.outbox, PreparedMessage::text("still served".into()));
    assert_eq!(next_data(&mut fine.client).await, Message::Text("still served".into()));
    assert!(resumed.try_recv().is_err());
}

#[tokio::test]
async fn a_closed_lot_closes_its_connections_and_takes_no_more() {
    let (server, client) = plain();
    let mut p = parked(server.clone(), client.clone()).await;
    wait_until(|| p.lot.len() == 1).await;
    p.lot.close();
    assert!(!matches!(bounded(p.client.recv()).await, Some(Ok(_))));
    // Parked after the close: dropped, and the connection with it.
    let mut late = parked(server, client).await;
    let ws = {
        late.client.send(Message::Text("x".into())).await.unwrap();
        bounded(late.resumed.recv()).await.unwrap().unwrap().unpark(&late.config.websocket)
    };
    let (tx, mut resumed) = mpsc::unbounded_channel();
    let mut ws = ws;
    assert_eq!(bounded(ws.recv()).await.unwrap().unwrap(), Message::Text("x".into()));
    p.lot.park(TestTenant { outbox: late.outbox.clone(), resumed: tx }, park_now(ws));
    assert!(bounded(resumed.recv()).await.is_none(), "the tenant was dropped");
    assert_eq!(p.lot.len(), 0);
    assert!(!matches!(bounded(late.client.recv()).await, Some(Ok(_))));
}

/// A small deterministic generator (a 64-bit linear congruential one), so
/// the random cases are the same on every run.
struct Lcg(u64);

impl Lcg {
    /// The next number below `bound` (0 when `bound` is 0).
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % bound.max(1)
    }
}

/// A socket that takes at most the next of its budgets per write, then
/// would block.
struct Trickle {
    taken: Vec<u8>,
    budgets: Vec<usize>,
}

impl io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.budgets.pop() {
            Some(budget) if budget > 0 => {
                let n = budget.min(buf.len());
                self.taken.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut budget = match self.budgets.pop() {
            Some(budget) if budget > 0 => budget,
            _ => return Err(io::ErrorKind::WouldBlock.into()),
        };
        let mut n = 0;
        for buf in bufs {
            let take = budget.min(buf.len());
            self.taken.extend_from_slice(&buf[..take]);
            (n, budget) = (n + take, budget - take);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn whatever_the_socket_takes_the_rest_follows_in_order() {
    let config = ferrows::WebSocketConfig::default();
    let mut rng = Lcg(0x9E37_79B9_7F4A_7C15_u64);
    let mut next = |bound: usize| rng.below(bound);
    for case in 0..200 {
        let budgets = (0..next(6)).map(|_| next(300)).collect();
        let trickle = Trickle { taken: Vec::new(), budgets };
        let ws = WebSocket::from_raw(
            trickle,
            ferrows::proto::Role::Server,
            &config,
            &Default::default(),
            None,
            Default::default(),
        );
        let mut parked = ws.park().map_err(|_| "new is idle").unwrap();
        let mut expected = Vec::new();
        for call in 0..1 + next(4) {
            let messages: Vec<PreparedMessage> = (0..1 + next(5))
                .map(|i| PreparedMessage::binary(Bytes::from(vec![(case + call + i) as u8; next(200)])))
                .collect();
            for message in &messages {
                expected.extend_from_slice(message.plain_frame());
            }
            let _ = parked.send_prepared(messages.iter());
        }
        // What the socket did not take goes out first once unparked.
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut taken = Vec::new();
        let parked = parked
            .try_map_io(|trickle| {
                taken = trickle.taken;
                Ok::<_, ()>(near)
            })
            .unwrap();
        let mut ws = parked.unpark(&config);
        bounded(ws.flush()).await.unwrap();
        drop(ws);
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut far, &mut rest).await.unwrap();
        taken.extend_from_slice(&rest);
        assert_eq!(taken, expected, "case {case}");
    }
}

/// The peer's bytes in chunks, shared by a connection's parked and whole
/// forms: whichever reads next gets the next chunk (the end of file after
/// the last). The whole form waits once before each chunk, as a socket
/// with nothing to read would make it.
#[derive(Clone)]
struct Chunks(Arc<Mutex<(std::collections::VecDeque<Vec<u8>>, bool)>>);

impl Chunks {
    fn next(&self) -> Vec<u8> {
        let mut state = self.0.lock().unwrap();
        state.1 = false;
        state.0.pop_front().unwrap_or_default()
    }

    /// Whether a chunk may be read now; if not, the next try may.
    fn ready(&self) -> bool {
        let mut state = self.0.lock().unwrap();
        let open = state.1;
        state.1 = !open;
        open
    }
}

impl io::Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.next();
        assert!(chunk.len() <= buf.len(), "chunks fit one read");
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

impl tokio::io::AsyncRead for Chunks {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ready() {
            return Poll::Pending;
        }
        let chunk = self.next();
        assert!(chunk.len() <= buf.remaining(), "chunks fit one read");
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Chunks {
    fn poll_write(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a server connection reads from `chunks`, parking whenever it can
/// between reads (and reading the next chunk parked, as the lot does) or
/// never parking.
fn received(chunks: Vec<Vec<u8>>, park: bool) -> (Vec<String>, usize) {
    let config = ferrows::WebSocketConfig::default();
    let source = Chunks(Arc::new(Mutex::new((chunks.into(), false))));
    let mut ws = WebSocket::from_raw(
        source,
        ferrows::proto::Role::Server,
        &config,
        &Default::default(),
        None,
        Default::default(),
    );
    let mut cx = Context::from_waker(Waker::noop());
    let (mut seen, mut parks) = (Vec::new(), 0);
    loop {
        match ws.poll_recv(&mut cx) {
            Poll::Ready(Some(Ok(message))) => seen.push(format!("{message:?}")),
            Poll::Ready(Some(Err(e))) => seen.push(format!("error: {e}")),
            Poll::Ready(None) => return (seen, parks),
            Poll::Pending => {}
        }
        if park {
            ws = match ws.park() {
                Ok(mut parked) => {
                    parks += 1;
                    parked.read_arrived();
                    parked.unpark(&config)
                }
                Err(ws) => ws,
            };
        }
    }
}

#[tokio::test]
async fn parking_between_reads_changes_nothing_the_peer_sees() {
    use ferrows::proto::{Connection, DataKind, config::Negotiated};
    let mut rng = Lcg(0x2545_F491_4F6C_DD1D_u64);
    let mut next = |bound: usize| rng.below(bound);
    let mut total_parks = 0;
    for case in 0..300 {
        // A client's frames: messages, fragments, pings, maybe a close;
        // sometimes a byte spoiled.
        let (_, mut tx) =
            Connection::new(ferrows::proto::Role::Client, Default::default(), &Negotiated::default()).split();
        for _ in 0..1 + next(6) {
            let payload = vec![b'a' + next(26) as u8; next(300)];
            let _ = match next(5) {
                0 => tx.send_text(String::from_utf8(payload).unwrap().into()),
                1 => tx.send_binary(payload.into()),
                2 => tx.send_ping(&payload[..payload.len().min(125)]),
                3 => tx
                    .send_fragment(DataKind::Binary, &payload, false)
                    .and_then(|()| tx.send_fragment(DataKind::Binary, b"end", true)),
                _ => tx.send_close(Some(ferrows::CloseCode::NORMAL), "bye"),
            };
        }
        // Chunks end where frames end, and elsewhere.
        let mut chunks = Vec::new();
        while let Some(frame) = tx.take_output() {
            let mut frame = frame.to_vec();
            if next(8) == 0 {
                let at = next(frame.len());
                frame[at] ^= 1 << next(8);
            }
            let mut rest = &frame[..];
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(1 + next(rest.len().min(1024)));
                chunks.push(chunk.to_vec());
                rest = tail;
            }
        }
        let (parked, parks) = received(chunks.clone(), true);
        assert_eq!(parked, received(chunks, false).0, "case {case}");
        total_parks += parks;
    }
    assert!(total_parks > 300, "the connections did park ({total_parks} times)");
}
