//! The clients of `bench-transports`: a subscriber per transport, the
//! publisher, and the socket wrapper that counts every byte they carry.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use ferrows::MaybeTlsStream;
use ferrows_hub::protocol::stream::{EventReader, Polled};
use ferrows_hub::protocol::{Answer, Command, Connect, Encoding, Method, Subscribe};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::Transport;
use crate::measure::{Receipt, Receipts, now_micros};

/// Bytes through the subscribers' sockets, both ways, and their HTTP
/// requests.
#[derive(Default)]
pub(super) struct Meter {
    /// Server to subscribers.
    pub(super) bytes_in: AtomicU64,
    /// Subscribers to server.
    pub(super) bytes_out: AtomicU64,
    pub(super) requests: AtomicU64,
}

/// A snapshot of a [`Meter`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Metered {
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) requests: u64,
}

impl Meter {
    pub(super) fn read(&self) -> Metered {
        Metered {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Sub for Metered {
    type Output = Metered;

    fn sub(self, earlier: Metered) -> Metered {
        Metered {
            bytes_in: self.bytes_in - earlier.bytes_in,
            bytes_out: self.bytes_out - earlier.bytes_out,
            requests: self.requests - earlier.requests,
        }
    }
}

/// A TCP connection that counts what it carries (HTTP heads, WebSocket
/// framing and all) into a [`Meter`].
pub(super) struct Counted {
    tcp: TcpStream,
    meter: Arc<Meter>,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let read = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.meter.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.tcp).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = written {
            this.meter.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            this.meter.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A subscriber's connection: counted TCP, or TLS over it (counted as
/// it travels: encrypted).
type Connection = MaybeTlsStream<Counted>;

/// What every client of one transport's run shares.
pub(super) struct Plan {
    pub(super) addr: SocketAddr,
    /// TLS to the server, when it serves HTTPS.
    pub(super) tls: Option<Tls>,
    pub(super) channel: String,
    pub(super) poll_interval: Duration,
    pub(super) long_poll_timeout: u32,
    /// Send time of publication n (µs since the epoch; 0: not sent).
    pub(super) sent_at: Vec<AtomicU64>,
    pub(super) meter: Arc<Meter>,
    /// First receipts so far, over every subscriber (the drain waits on it).
    pub(super) delivered: AtomicU64,
    /// Subscribers ready (subscribed, with a position).
    pub(super) ready: AtomicUsize,
}

impl Plan {
    fn planned(&self) -> u64 {
        self.sent_at.len() as u64 - 1
    }
}

/// What one subscriber saw.
#[derive(Default)]
pub(super) struct Seen {
    /// First receipts: (publication, µs from its sending).
    pub(super) deliveries: Vec<(u32, u32)>,
    /// Publications received again.
    pub(super) duplicates: Vec<u32>,
    /// Publications first received after a later one.
    pub(super) late: Vec<u32>,
    /// Messages that were not this run's publications.
    pub(super) unexpected: u64,
    /// Why it stopped before it was told to.
    pub(super) error: Option<String>,
}

struct Subscriber {
    plan: Arc<Plan>,
    receipts: Receipts,
    seen: Seen,
    ready: bool,
    /// Its place among the setups in flight, given back once ready.
    setup: Option<OwnedSemaphorePermit>,
}

impl Subscriber {
    /// A publication's data arrived at `now`.
    fn data(&mut self, data: &[u8], now: u64) {
        let plan = &self.plan;
        let Some(seq) = seq_of(data).filter(|&seq| seq >= 1 && seq <= plan.planned()) else {
            self.seen.unexpected += 1;
            return;
        };
        let sent = plan.sent_at[seq as usize].load(Ordering::Acquire);
        if sent == 0 {
            self.seen.unexpected += 1;
            return;
        }
        match self.receipts.first(seq, plan.planned()) {
            Receipt::Duplicate => self.seen.duplicates.push(seq as u32),
            receipt => {
                if receipt == Receipt::FirstOutOfOrder {
                    self.seen.late.push(seq as u32);
                }
                let latency = now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32;
                self.seen.deliveries.push((seq as u32, latency));
                plan.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn ready(&mut self) {
        if !self.ready {
            self.ready = true;
            self.setup = None;
            self.plan.ready.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The `seq` of a publication's data (`{"seq":N,...}`), wherever it sits
/// in a message.
fn seq_of(bytes: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\":";
    let at = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&bytes[at..at + digits]).ok()?.parse().ok()
}

/// The data of publication `seq`, `size` bytes of JSON.
pub(super) fn publication_data(seq: u64, size: usize) -> String {
    let head = format!("{{\"seq\":{seq},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// TLS to a server whose certificate names `localhost`.
#[derive(Clone)]
pub(super) struct Tls(pub(super) Arc<rustls::ClientConfig>);

impl Tls {
    async fn over<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> anyhow::Result<MaybeTlsStream<S>> {
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = tokio_rustls::TlsConnector::from(self.0.clone()).connect(name, stream).await?;
        Ok(MaybeTlsStream::Tls(Box::new(tls)))
    }
}

async fn connect(plan: &Plan) -> anyhow::Result<Connection> {
    let tcp = TcpStream::connect(plan.addr).await.with_context(|| format!("connect to {}", plan.addr))?;
    tcp.set_nodelay(true)?;
    let counted = Counted { tcp, meter: plan.meter.clone() };
    match &plan.tls {
        Some(tls) => tls.over(counted).await,
        None => Ok(MaybeTlsStream::Plain(counted)),
    }
}

/// An HTTP/1.1 connection (kept alive) over a counted socket.
async fn http_connection(plan: &Plan) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(connect(plan).await?)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Runs one subscriber of `transport` until `stop` (`index` of `count`
/// spreads the polls over their interval); `setup` is given back once it
/// is ready.
pub(super) async fn subscriber(
    transport: Transport,
    plan: Arc<Plan>,
    index: usize,
    count: usize,
    setup: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut subscriber =
        Subscriber { plan, receipts: Receipts::default(), seen: Seen::default(), ready: false, setup: Some(setup) };
    let run = async {
        match transport {
            Transport::Websocket => websocket(&mut subscriber).await,
            Transport::Sse => stream(&mut subscriber).await,
            Transport::LongPoll | Transport::Poll => poll(&mut subscriber, transport, index, count).await,
        }
    };
    tokio::select! {
        ended = run => {
            let why = match ended {
                Ok(()) => "the server ended it".to_owned(),
                Err(e) => format!("{e:#}"),
            };
            subscriber.seen.error = Some(why);
        }
        _ = stop.wait_for(|stop| *stop) => {}
    }
    subscriber.seen
}

async fn websocket(subscriber: &mut Subscriber) -> anyhow::Result<()> {
    let plan = subscriber.plan.clone();
    let uri: http::Uri = format!("ws://localhost:{}/ws", plan.addr.port()).parse()?;
    let mut config = ferrows::ClientConfig::default();
    config.websocket.deflate = None;
    config.websocket.read_chunk = 4096;
    let mut ws = ferrows::client_handshake(connect(&plan).await?, &uri, &config).await?;
    let commands = [
        Command { id: 1, method: Method::Connect(Connect::default()) },
        Command {
            id: 2,
            method: Method::Subscribe(Subscribe { channel: plan.channel.clone(), since: None, recover: false }),
        },
    ];
    for command in &commands {
        let text = String::from_utf8(Encoding::Json.encode(command).to_vec())?;
        ws.send(ferrows::Message::text(text)).await?;
    }
    loop {
        let Some(message) = ws.recv().await else { return Ok(()) };
        let text = match message? {
            ferrows::Message::Text(text) => text,
            ferrows::Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let bytes = text.as_bytes();
        if bytes.starts_with(b"{\"push\"") {
            if bytes.windows(6).any(|w| w == b"\"pub\":") {
                subscriber.data(bytes, now_micros());
            }
        } else if bytes.starts_with(b"{\"id\":2,") {
            if !bytes.starts_with(b"{\"id\":2,\"result\"") {
                bail!("subscribe failed: {}", String::from_utf8_lossy(bytes));
            }
            subscriber.ready();
        }
    }
}

async fn stream(subscriber: &mut Subscriber) -> anyhow::Result<()> {
    let plan = subscriber.plan.clone();
    let mut sender = http_connection(&plan).await?;
    let request = http::Request::get(format!("/api/stream?channel={}", plan.channel))
        .header(http::header::HOST, plan.addr.to_string())
        .header(http::header::ACCEPT, "text/event-stream")
        .body(Empty::new())?;
    plan.meter.requests.fetch_add(1, Ordering::Relaxed);
    let response = sender.send_request(request).await?;
    if response.status() != http::StatusCode::OK {
        bail!("the stream answered {}", response.status());
    }
    let mut body = response.into_body();
    let mut reader = EventReader::new(1 << 20);
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let now = now_micros();
        reader.feed(&data, &mut events).map_err(anyhow::Error::msg)?;
        for event in events.drain(..) {
            match event.kind.as_str() {
                "subscribed" => subscriber.ready(),
                "message" if event.data.contains("\"pub\":") => subscriber.data(event.data.as_bytes(), now),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Long polling (`transport` LongPoll) or polling every `poll_interval`.
async fn poll(subscriber: &mut Subscriber, transport: Transport, index: usize, count: usize) -> anyhow::Result<()> {
    let plan = subscriber.plan.clone();
    let mut sender = http_connection(&plan).await?;
    let long = transport == Transport::LongPoll;
    let mut since: Option<String> = None;
    // Polls of the subscribers spread evenly over the interval.
    let offset = plan.poll_interval.mul_f64(index as f64 / count.max(1) as f64);
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        if !long && since.is_some() {
            tokio::time::sleep_until(next).await;
            next += plan.poll_interval;
        }
        let mut path = format!("/api/poll?channel={}", plan.channel);
        if let Some(since) = &since {
            let timeout = if long { plan.long_poll_timeout } else { 0 };
            path.push_str(&format!("&since={since}&timeout={timeout}"));
        }
        let request = http::Request::get(path).header(http::header::HOST, plan.addr.to_string()).body(Empty::new())?;
        sender.ready().await?;
        plan.meter.requests.fetch_add(1, Ordering::Relaxed);
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let now = now_micros();
        if status != http::StatusCode::OK {
            bail!("a poll answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let answer: Answer<Polled> = Encoding::Json.decode(&body).map_err(anyhow::Error::msg)?;
        let Some(polled) = answer.result.channels.first() else { bail!("a poll without its channel") };
        if since.is_some() && polled.recovered != Some(true) {
            bail!("a poll did not recover (the history is too short for the interval)");
        }
        for publication in polled.publications.iter().flatten() {
            subscriber.data(&publication.data.0, now);
        }
        since = Some(answer.result.since);
        subscriber.ready();
    }
}

/// The publisher: the server API, on one kept-alive connection (not
/// counted: its cost is the same for every transport).
pub(super) struct Publisher {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    key: String,
    channel: String,
}

impl Publisher {
    pub(super) async fn connect(addr: SocketAddr, tls: Option<&Tls>, key: &str, channel: &str) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = match tls {
            Some(tls) => tls.over(tcp).await?,
            None => MaybeTlsStream::Plain(tcp),
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender, addr, key: key.to_owned(), channel: channel.to_owned() })
    }

    /// Publishes `data`; fails unless the server accepted it.
    pub(super) async fn publish(&mut self, data: &str) -> anyhow::Result<()> {
        let body = format!("{{\"channel\":\"{}\",\"data\":{data}}}", self.channel);
        let request = http::Request::post("/api/publish")
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::AUTHORIZATION, format!("apikey {}", self.key))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != http::StatusCode::OK {
            bail!("publish answered {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_data_has_its_size_and_its_seq() {
        for size in [20, 100, 1000] {
            let data = publication_data(42, size);
            assert_eq!(data.len(), size);
            assert_eq!(seq_of(data.as_bytes()), Some(42));
            serde_json::from_str::<serde_json::Value>(&data).unwrap();
        }
        let push = format!(r#"{{"push":{{"channel":"c","pub":{{"offset":9,"data":{}}}}}}}"#, publication_data(7, 50));
        assert_eq!(seq_of(push.as_bytes()), Some(7));
        assert_eq!(seq_of(b"{}"), None);
    }
}
