//! `ferrows bench-pubsub`: a fan-out load test of `ferrows serve`.
//!
//! `--subscribers` WebSocket connections subscribe to one channel; then one
//! publisher (a WebSocket client using `publish`, or the server API with
//! `--api-url`) publishes `{"seq": n, "t": <µs since the Unix epoch>}` into
//! it at `--rate` publications/s for `--duration` seconds. Every subscriber
//! checks that it receives every publication exactly once and in order, and
//! records each delivery's latency (receive time - `t`; the clients and the
//! server must share a clock, i.e. run on one machine).
//!
//! `--protocol raw` speaks to a plain broadcast server instead (uWebSockets'
//! pub/sub peer, `../shared/peers-uws/pubsub.cpp`): subscribers only open
//! their WebSocket, and the publisher sends the data itself as a text
//! message, which the server relays to every connection, its sender included.
//!
//! With `--server-pid`, the report also gives the server's resident memory
//! per subscriber (RSS after the setup minus before, over the subscribers),
//! and with `--hold`, its CPU use while every subscriber sits idle.
//!
//! The report gives the delivered messages/s over the publishing window
//! (from the first publication to the last expected delivery, or to the
//! drain timeout after the last publication) and the latency percentiles.
//! Any missing, duplicated or out-of-order delivery, lost subscriber or
//! failed publication makes the command fail after the report.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Buf, BytesMut};
use clap::Args;
use ferrows::{ClientConfig, MaybeTlsStream, Message, WsWriter};
use ferrows_hub::protocol::{
    ApiPublish, Command, Connect, Data, Encoding, Event, Method, Pub, Publish, Push as Pushed, Reply, Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::measure::{CLOCK_TICKS, Receipts, check_open_file_limit, cpu_ticks, now_micros, rss_kib};

/// What the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// `ferrows serve`: connect, subscribe and publish commands, publication pushes.
    Serve,
    /// A broadcast server: no commands, every message relayed as it is.
    Raw,
}

/// Options of `ferrows bench-pubsub`.
#[derive(Debug, Args)]
pub(crate) struct BenchPubSubArgs {
    /// WebSocket endpoint of the server.
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws")]
    url: String,
    /// Subscriber connections (each needs a file descriptor: see `ulimit -n`).
    #[arg(long, short, default_value_t = 1000)]
    subscribers: usize,
    /// Publications per second.
    #[arg(long, short, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, short, default_value_t = 10.0)]
    duration: f64,
    /// Channel to subscribe to and publish into.
    #[arg(long, default_value = "bench:load")]
    channel: String,
    /// Publish through the server API at this base URL (`http://HOST:PORT`)
    /// instead of a WebSocket `publish` command.
    #[arg(long, requires = "api_key")]
    api_url: Option<String>,
    /// Key of the server API (`--api-key` of `ferrows serve`).
    #[arg(long)]
    api_key: Option<String>,
    /// Connection handshakes (connect and subscribe) in flight at once.
    #[arg(long, default_value_t = 200)]
    setup_concurrency: usize,
    /// Seconds allowed for opening and subscribing every connection (then
    /// the pushes the subscriptions caused, such as joins, may drain until
    /// this deadline too).
    #[arg(long, default_value_t = 120.0)]
    setup_timeout: f64,
    /// Seconds to wait after the last publication for the last deliveries.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Also report the CPU use and memory of this process (the server, on
    /// the same machine): CPU over the publishing window and the idle hold,
    /// RSS per subscriber.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's protocol: `serve` (ferrows serve's JSON commands) or
    /// `raw` (a broadcast server: every message sent is relayed to every
    /// connection).
    #[arg(long, value_enum, default_value_t = Protocol::Serve)]
    protocol: Protocol,
    /// Local addresses the subscribers connect from, in turn (e.g.
    /// `127.0.0.2,127.0.0.3`): each gives about 28 000 ephemeral ports, so
    /// 100 000 connections to one server need four.
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<std::net::IpAddr>,
    /// Seconds every subscriber sits idle between the setup and the first
    /// publication (the server's idle CPU is measured over it).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// With `--protocol raw`: pad every publication with a `"pad"` string
    /// member to this many bytes, e.g. the size of `serve`'s publication
    /// push (`delivery_bytes` of its run) to compare servers at equal bytes
    /// per delivery (frames of 128 bytes and more take a longer path in
    /// the receiving kernel: `tcp_grow_window`).
    #[arg(long)]
    raw_bytes: Option<usize>,
    /// Offer permessage-deflate (as browsers do): the subscribers' commands
    /// then arrive compressed, and the server keeps what it negotiated.
    #[arg(long)]
    deflate: bool,
    /// PEM certificates to trust for a `wss://` URL (a self-signed
    /// server's), instead of the system's roots.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Runtime threads: 1 runs everything on the calling thread (no work
    /// stealing: the cheapest on one core, as `bench-pubsub.sh` runs it),
    /// 0 one per core.
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
}

pub(crate) async fn run(args: BenchPubSubArgs) -> anyhow::Result<()> {
    validate(&args)?;
    check_open_file_limit(args.subscribers + 64)?;
    let planned = (args.rate * args.duration).round() as u64;
    let shared = Arc::new(Shared::new(&args.channel, planned, args.protocol));
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let server_rss_before = server_pid.as_deref().and_then(rss_kib);
    let mut config = ClientConfig::default();
    // Thousands of connections: no compression contexts unless asked,
    // small read buffers.
    if !args.deflate {
        config.websocket.deflate = None;
    }
    config.websocket.read_chunk = 4096;
    if let Some(path) = &args.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("--ca-file {}", path.display()))?;
        config.tls = Some(ferrows::tls::client_config_with_roots(&pem)?);
    }
    let config = Arc::new(config);

    // Subscribers: every task reports the end of its setup, then reads
    // until told to stop.
    let setup_started = Instant::now();
    let setup_deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.setup_timeout);
    let in_flight = Arc::new(Semaphore::new(args.setup_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), String>>(args.subscribers.max(1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(args.subscribers + args.subscribers.div_ceil(SHARD));
    let mut shard_tx = None;
    for index in 0..args.subscribers {
        if index % SHARD == 0 {
            let (tx, rx) = mpsc::channel(SHARD);
            tasks.push(tokio::spawn(shard(rx, shared.clone(), stop_rx.clone())));
            shard_tx = Some(tx);
        }
        let setup = Setup {
            index,
            url: args.url.clone(),
            source: (!args.source_addrs.is_empty()).then(|| args.source_addrs[index % args.source_addrs.len()]),
            config: config.clone(),
            in_flight: in_flight.clone(),
            ready: ready_tx.clone(),
            shard: shard_tx.clone().expect("made at index 0"),
        };
        tasks.push(tokio::spawn(subscriber(setup, shared.clone())));
    }
    drop(shard_tx);
    drop(ready_tx);
    let mut ready = 0;
    let mut next_progress = Instant::now() + Duration::from_secs(5);
    while ready < args.subscribers {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ready += 1,
            Ok(Some(Err(e))) => bail!("subscriber setup failed ({ready}/{} ready): {e}", args.subscribers),
            Ok(None) => bail!("subscriber tasks ended early ({ready}/{} ready)", args.subscribers),
            Err(_) => bail!(
                "setup timed out: {ready}/{} subscribers connected and subscribed after {} s",
                args.subscribers,
                args.setup_timeout
            ),
        }
        if Instant::now() >= next_progress {
            eprintln!("bench-pubsub: {ready}/{} subscribed", args.subscribers);
            next_progress += Duration::from_secs(5);
        }
    }
    // Let the pushes caused by the setup (join events, in namespaces that
    // send them) drain before measuring: wait for 250 ms without any.
    loop {
        let before = shared.other_pushes.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(250)).await;
        if shared.other_pushes.load(Ordering::Relaxed) == before || tokio::time::Instant::now() >= setup_deadline {
            break;
        }
    }
    let setup_pushes = shared.other_pushes.load(Ordering::Relaxed);
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let server_rss_after = server_pid.as_deref().and_then(rss_kib);
    let per_subscriber = |after: Option<u64>| match (server_rss_before, after) {
        (Some(before), Some(after)) => {
            format!("{:.0}", after.saturating_sub(before) as f64 * 1024.0 / args.subscribers as f64)
        }
        _ => "null".to_owned(),
    };
    let rss_per_subscriber = per_subscriber(server_rss_after);
    eprintln!(
        "bench-pubsub: {} subscribed in {setup_secs:.1} s (server RSS per subscriber: {rss_per_subscriber} B)",
        args.subscribers
    );
    // The idle hold: every subscriber connected, nothing published.
    let mut idle_cpu = "null".to_owned();
    // And the RSS once the setup's garbage had time to go back (an
    // allocator returns freed pages after a delay).
    let mut rss_idle_per_subscriber = "null".to_owned();
    if args.hold > 0.0 {
        eprintln!("bench-pubsub: holding every subscriber idle for {} s", args.hold);
        let before = (Instant::now(), server_pid.as_deref().and_then(cpu_ticks));
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
        if let (Some(b), Some(a)) = (before.1, server_pid.as_deref().and_then(cpu_ticks)) {
            let secs = before.0.elapsed().as_secs_f64();
            idle_cpu = format!("{:.2}", a.saturating_sub(b) as f64 / CLOCK_TICKS / secs * 100.0);
        }
        rss_idle_per_subscriber = per_subscriber(server_pid.as_deref().and_then(rss_kib));
        eprintln!("bench-pubsub: server RSS per subscriber after the hold: {rss_idle_per_subscriber} B");
    }
    eprintln!("bench-pubsub: publishing {planned} at {}/s", args.rate);

    // The publisher.
    let acks = Arc::new(Acks::default());
    let (mut publisher, reader) = match (&args.api_url, args.protocol) {
        (Some(api_url), _) => {
            Publisher::http(api_url, args.api_key.as_deref().unwrap_or_default(), acks.clone()).await?
        }
        (None, Protocol::Serve) => Publisher::websocket(&args.url, &config, acks.clone()).await?,
        (None, Protocol::Raw) => Publisher::raw(&args.url, &config, args.raw_bytes, acks.clone()).await?,
    };
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let publish_started = Instant::now();
    let cpu_before = (cpu_ticks("self"), server_pid.as_deref().and_then(cpu_ticks));
    let publish_started_tokio = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut publish_failure = None;
    for seq in 1..=planned {
        tokio::time::sleep_until(publish_started_tokio + interval.mul_f64((seq - 1) as f64)).await;
        let t = now_micros();
        shared.sent_at[seq as usize].store(t, Ordering::Release);
        if let Err(e) = publisher.publish(&args.channel, seq, t).await {
            publish_failure = Some(format!("publication {seq}: {e}"));
            break;
        }
        sent += 1;
    }
    let publish_secs = publish_started.elapsed().as_secs_f64();
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);

    // Drain: every acknowledged publication delivered to every subscriber,
    // or the timeout.
    let mut all_delivered = false;
    loop {
        let acked = acks.ok.load(Ordering::Relaxed) + acks.failed.load(Ordering::Relaxed);
        let expected = acks.ok.load(Ordering::Relaxed) * args.subscribers as u64;
        if acked >= sent && shared.delivered.load(Ordering::Relaxed) >= expected {
            all_delivered = true;
            break;
        }
        if Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drain_end = now_micros();
    let cpu_after = (cpu_ticks("self"), server_pid.as_deref().and_then(cpu_ticks));
    let _ = stop_tx.send(true);
    reader.abort();
    drop(publisher);

    let mut totals = SubscriberReport::default();
    let mut latency = latency_histogram();
    let mut lost = 0usize;
    let mut first_loss = None;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(seen)) => {
                if let Some(shard) = &seen.latency {
                    latency.add(shard).expect("same bounds");
                }
                for report in seen.reports {
                    if let Some(error) = &report.error {
                        lost += 1;
                        first_loss.get_or_insert_with(|| error.clone());
                    }
                    totals.add(&report);
                }
            }
            _ => {
                lost += 1;
                first_loss.get_or_insert_with(|| "subscriber task did not stop".to_owned());
            }
        }
    }

    let acked_ok = acks.ok.load(Ordering::Relaxed);
    let acked_failed = acks.failed.load(Ordering::Relaxed);
    let unacked = sent.saturating_sub(acked_ok + acked_failed);
    let expected = acked_ok * args.subscribers as u64;
    let missing = expected.saturating_sub(totals.delivered);
    // The window: first publication to the last delivery (when everything
    // arrived) or to the end of the drain.
    let start_micros = shared.epoch_micros_at(publish_started);
    let end_micros =
        if all_delivered { shared.last_delivery.load(Ordering::Relaxed).max(start_micros) } else { drain_end };
    let window_secs = (end_micros.saturating_sub(start_micros) as f64 / 1e6).max(1e-6);
    let delivered_rate = totals.delivered as f64 / window_secs;
    let (p50, p99, max) = (
        latency.value_at_quantile(0.50) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0,
    );
    // CPU use over the window, in % of one core.
    let cpu_secs = (drain_end.saturating_sub(start_micros) as f64 / 1e6).max(1e-6);
    let cpu_percent = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) => format!("{:.0}", a.saturating_sub(b) as f64 / CLOCK_TICKS / cpu_secs * 100.0),
        _ => "null".to_owned(),
    };
    let server_us_per_delivery = match (cpu_before.1, cpu_after.1) {
        (Some(b), Some(a)) if totals.delivered > 0 => {
            format!("{:.2}", a.saturating_sub(b) as f64 / CLOCK_TICKS * 1e6 / totals.delivered as f64)
        }
        _ => "null".to_owned(),
    };
    let client_cpu = cpu_percent(cpu_before.0, cpu_after.0);
    let server_cpu = cpu_percent(cpu_before.1, cpu_after.1);
    let publisher_kind = match (&args.api_url, args.protocol) {
        (Some(_), _) => "http",
        (None, Protocol::Serve) => "websocket",
        (None, Protocol::Raw) => "raw",
    };
    let setup_rate = args.subscribers as f64 / setup_secs.max(1e-6);
    let achieved_rate = if publish_secs > 0.0 { sent as f64 / publish_secs } else { 0.0 };
    let publish_errors = acked_failed + unacked + u64::from(publish_failure.is_some());
    let ok = missing == 0
        && totals.duplicated == 0
        && totals.out_of_order == 0
        && totals.unexpected == 0
        && lost == 0
        && publish_errors == 0;

    if args.json {
        println!(
            "{{\"subscribers\":{},\"rate\":{},\"duration_s\":{},\"publisher\":\"{publisher_kind}\",\
             \"publications\":{acked_ok},\"publish_s\":{publish_secs:.3},\"publish_rate\":{achieved_rate:.1},\
             \"expected\":{expected},\"delivered\":{},\"window_s\":{window_secs:.3},\
             \"delivered_per_sec\":{delivered_rate:.0},\"latency_ms\":{{\"p50\":{p50:.3},\"p99\":{p99:.3},\"max\":{max:.3}}},\
             \"missing\":{missing},\"duplicated\":{},\"out_of_order\":{},\"unexpected\":{},\
             \"subscribers_lost\":{lost},\"publish_errors\":{publish_errors},\"setup_s\":{setup_secs:.1},\
             \"setup_per_sec\":{setup_rate:.0},\"setup_pushes\":{setup_pushes},\
             \"server_rss_per_subscriber_b\":{rss_per_subscriber},\"hold_s\":{},\"server_idle_cpu_pct\":{idle_cpu},\
             \"server_rss_idle_per_subscriber_b\":{rss_idle_per_subscriber},\
             \"client_cpu_pct\":{client_cpu},\"server_cpu_pct\":{server_cpu},\
             \"server_cpu_us_per_delivery\":{server_us_per_delivery},\"delivery_bytes\":{},\"ok\":{ok}}}",
            args.subscribers,
            args.rate,
            args.duration,
            totals.delivered,
            totals.duplicated,
            totals.out_of_order,
            totals.unexpected,
            args.hold,
            totals.delivery_bytes,
        );
    } else {
        println!(
            "{} subscribers, {acked_ok} publications at {}/s ({publisher_kind}; sent at {achieved_rate:.0}/s): \
             {} delivered in {window_secs:.2} s = {delivered_rate:.0} msgs/s; \
             latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; \
             missing {missing}, duplicated {}, out of order {}, unexpected {}, subscribers lost {lost}, \
             publish errors {publish_errors}; CPU % of a core: client {client_cpu}, server {server_cpu} \
             ({server_us_per_delivery} µs per delivery); \
             setup {setup_rate:.0} subscribers/s; server RSS per subscriber {rss_per_subscriber} B \
             ({rss_idle_per_subscriber} B after the hold), idle CPU {idle_cpu} % over {} s",
            args.subscribers,
            args.rate,
            totals.delivered,
            totals.duplicated,
            totals.out_of_order,
            totals.unexpected,
            args.hold,
        );
    }
    if ok {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if let Some(e) = publish_failure.or_else(|| acks.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone()) {
        reasons.push(format!("publisher: {e}"));
    } else if unacked > 0 {
        reasons.push(format!("{unacked} publications never acknowledged"));
    }
    if let Some(e) = first_loss {
        reasons.push(format!("{lost} subscribers lost (first: {e})"));
    }
    if missing + totals.duplicated + totals.out_of_order + totals.unexpected > 0 {
        reasons.push(format!(
            "deliveries: {missing} missing, {} duplicated, {} out of order, {} unexpected messages",
            totals.duplicated, totals.out_of_order, totals.unexpected
        ));
    }
    bail!("pub/sub benchmark failed: {}", reasons.join("; "))
}

fn validate(args: &BenchPubSubArgs) -> anyhow::Result<()> {
    if !ferrows_server::config::is_valid_channel(&args.channel) {
        bail!("invalid channel name {:?} (1 to 255 bytes of [A-Za-z0-9_:.@$-])", args.channel);
    }
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if !positive(args.rate) || !positive(args.duration) {
        bail!("--rate and --duration must be positive");
    }
    if args.subscribers == 0 {
        bail!("--subscribers must be at least 1");
    }
    if !(args.hold >= 0.0 && args.hold.is_finite()) {
        bail!("--hold must be zero or positive");
    }
    if args.protocol == Protocol::Raw && args.api_url.is_some() {
        bail!("--protocol raw has no server API to publish through");
    }
    Ok(())
}

/// State shared by the subscriber tasks.
struct Shared {
    channel: String,
    /// `{"push":{"channel":"<channel>","pub":{"offset":`: a publication of
    /// the channel starts with this.
    pub_prefix: Vec<u8>,
    planned: u64,
    protocol: Protocol,
    /// First deliveries of publications, over every subscriber.
    delivered: AtomicU64,
    /// Receive time of the latest delivery, µs since the epoch.
    last_delivery: AtomicU64,
    /// Pushes other than publications of the channel (join, leave), after
    /// the subscribe reply.
    other_pushes: AtomicU64,
    /// When each publication was sent, µs since the epoch (its `t`), by
    /// sequence number: receivers look it up rather than read it.
    sent_at: Box<[AtomicU64]>,
    /// `Instant` and wall clock read together, to place instants on the
    /// wall clock.
    origin: (Instant, u64),
}

impl Shared {
    fn new(channel: &str, planned: u64, protocol: Protocol) -> Self {
        // What the codec writes before a publication's offset.
        let push = Pushed {
            channel: channel.to_owned(),
            event: Event::Pub(Pub { offset: 0, data: bench_data(0, 0), info: None }),
        };
        let encoded = Encoding::Json.encode(&push);
        let at = encoded.windows(9).position(|w| w == b"\"offset\":").expect("a publication has an offset") + 9;
        let pub_prefix = encoded[..at].to_vec();
        Self {
            channel: channel.to_owned(),
            pub_prefix,
            planned,
            protocol,
            delivered: AtomicU64::new(0),
            last_delivery: AtomicU64::new(0),
            other_pushes: AtomicU64::new(0),
            sent_at: (0..=planned).map(|_| AtomicU64::new(0)).collect(),
            origin: (Instant::now(), now_micros()),
        }
    }

    fn epoch_micros_at(&self, instant: Instant) -> u64 {
        let (origin, micros) = self.origin;
        micros + instant.saturating_duration_since(origin).as_micros() as u64
    }
}

/// What a subscriber saw.
#[derive(Debug, Default)]
struct SubscriberReport {
    /// Publications received (first receipts).
    delivered: u64,
    /// Receipts of a publication already received.
    duplicated: u64,
    /// First receipts of a publication older than one already received.
    out_of_order: u64,
    /// Messages that are neither replies nor pushes, or publications with
    /// data this command did not send.
    unexpected: u64,
    /// Size of the largest publication message received, bytes.
    delivery_bytes: u64,
    /// Why the connection ended before the end of the test.
    error: Option<String>,
}

impl SubscriberReport {
    fn add(&mut self, other: &Self) {
        self.delivered += other.delivered;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.unexpected += other.unexpected;
        self.delivery_bytes = self.delivery_bytes.max(other.delivery_bytes);
    }
}

struct Setup {
    index: usize,
    url: String,
    /// Local address to connect from.
    source: Option<std::net::IpAddr>,
    config: Arc<ClientConfig>,
    in_flight: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    /// Where its connection is read once set up.
    shard: mpsc::Sender<ferrows::WebSocket<MaybeTlsStream>>,
}

/// Subscribers are read in shards of this many connections, each shard by
/// one task: a publication then wakes a task per shard rather than one per
/// subscriber, so that the load generator costs little more than its
/// reads and checks (and the benchmark measures the server).
const SHARD: usize = 128;

/// What a task saw: the report of each subscriber it read, and (a shard)
/// the latencies it recorded.
#[derive(Default)]
struct Seen {
    reports: Vec<SubscriberReport>,
    latency: Option<Latency>,
}

/// Latencies from publication to receipt, µs, within 1% (2 significant
/// digits: each shard keeps one, small enough to stay in cache), up to an
/// hour (longer ones are counted as an hour).
type Latency = hdrhistogram::Histogram<u64>;

fn latency_histogram() -> Latency {
    Latency::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds")
}

/// What a shard counts between two of its passes, and tells the others
/// once per pass: atomics per delivery would cost the generator more
/// than its reads.
struct Tally {
    latency: Latency,
    /// Deliveries not yet added to [`Shared::delivered`].
    delivered: u64,
    /// Receive time of its latest delivery, µs since the epoch.
    last: u64,
}

impl Tally {
    fn flush(&mut self, shared: &Shared) {
        if self.delivered > 0 {
            shared.delivered.fetch_add(std::mem::take(&mut self.delivered), Ordering::Relaxed);
            shared.last_delivery.fetch_max(self.last, Ordering::Relaxed);
        }
    }
}

/// Sets a subscriber up, then hands its connection to its shard; reports
/// only a setup that failed.
async fn subscriber(setup: Setup, shared: Arc<Shared>) -> Seen {
    let permit = setup.in_flight.clone().acquire_owned().await;
    let ws = match connect_and_subscribe(&setup, &shared).await {
        Ok(ws) => ws,
        Err(e) => {
            let message = format!("subscriber {}: {e}", setup.index);
            let report = SubscriberReport { error: Some(message.clone()), ..SubscriberReport::default() };
            let _ = setup.ready.send(Err(message)).await;
            return Seen { reports: vec![report], latency: None };
        }
    };
    drop(permit);
    if setup.shard.send(ws).await.is_err() {
        let report = SubscriberReport { error: Some("its shard ended".to_owned()), ..SubscriberReport::default() };
        return Seen { reports: vec![report], latency: None };
    }
    let _ = setup.ready.send(Ok(())).await;
    Seen::default()
}

/// Reads the connections its subscribers hand over until told to stop,
/// all from one task; returns what each saw. Each connection has a waker
/// of its own that marks it ready ([`ReadyConnections`]): a pass reads
/// only the connections whose socket woke it, not all of the shard's.
async fn shard(
    mut incoming: mpsc::Receiver<ferrows::WebSocket<MaybeTlsStream>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut receivers: Vec<Receiver> = Vec::with_capacity(SHARD);
    let mut tally = Tally { latency: latency_histogram(), delivered: 0, last: 0 };
    let ready = Arc::new(ReadyConnections::default());
    let mut incoming_open = true;
    let stopped = stop.wait_for(|stop| *stop);
    tokio::pin!(stopped);
    std::future::poll_fn(|cx| {
        if stopped.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(());
        }
        ready.task.register(cx.waker());
        while incoming_open {
            match incoming.poll_recv(cx) {
                std::task::Poll::Ready(Some(ws)) => {
                    let index = receivers.len();
                    let waker = std::task::Waker::from(Arc::new(ConnectionWaker { ready: ready.clone(), index }));
                    receivers.push(Receiver::new(ws, waker));
                    ready.mark(index);
                }
                std::task::Poll::Ready(None) => incoming_open = false,
                std::task::Poll::Pending => break,
            }
        }
        // One sweep over the connections marked so far: those marked
        // meanwhile (or left when the runtime's budget for one poll ran
        // out) have woken the task again.
        for (word, bits) in ready.bits.iter().enumerate() {
            let mut bits = bits.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let index = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let receiver = &mut receivers[index];
                if !receiver.open {
                    continue;
                }
                // Out while the connection is read (lent without a count).
                let waker = std::mem::replace(&mut receiver.waker, std::task::Waker::noop().clone());
                let mut cx = std::task::Context::from_waker(&waker);
                // One receive time for what one connection had: read at once.
                let mut now = None;
                while let std::task::Poll::Ready(message) = receiver.ws.poll_recv(&mut cx) {
                    let now = *now.get_or_insert_with(now_micros);
                    if !receiver.on(message, &shared, &mut tally, now) {
                        receiver.open = false;
                        break;
                    }
                }
                receiver.waker = waker;
            }
        }
        tally.flush(&shared);
        std::task::Poll::Pending
    })
    .await;
    Seen { reports: receivers.into_iter().map(|r| r.report).collect(), latency: Some(tally.latency) }
}

/// The connections of a shard that were woken since its last pass (a bit
/// each), and the shard's task to wake.
#[derive(Default)]
struct ReadyConnections {
    bits: [AtomicU64; SHARD / 64],
    task: futures_util::task::AtomicWaker,
}

impl ReadyConnections {
    fn mark(&self, index: usize) {
        self.bits[index / 64].fetch_or(1 << (index % 64), Ordering::AcqRel);
        self.task.wake();
    }
}

/// The waker one connection of a shard is polled with.
struct ConnectionWaker {
    ready: Arc<ReadyConnections>,
    index: usize,
}

impl std::task::Wake for ConnectionWaker {
    fn wake(self: Arc<Self>) {
        self.ready.mark(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.mark(self.index);
    }
}

/// One subscriber's connection and what it saw.
struct Receiver {
    ws: ferrows::WebSocket<MaybeTlsStream>,
    /// Marks it ready in its shard.
    waker: std::task::Waker,
    receipts: Receipts,
    report: SubscriberReport,
    open: bool,
}

impl Receiver {
    fn new(ws: ferrows::WebSocket<MaybeTlsStream>, waker: std::task::Waker) -> Self {
        Self { ws, waker, receipts: Receipts::default(), report: SubscriberReport::default(), open: true }
    }

    /// Takes in one message received at `now` (µs since the epoch);
    /// `false` once the connection is over.
    fn on(
        &mut self,
        message: Option<Result<Message, ferrows::Error>>,
        shared: &Shared,
        tally: &mut Tally,
        now: u64,
    ) -> bool {
        let report = &mut self.report;
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                report.error = Some(match frame {
                    Some(frame) => format!("closed by the server: {} {}", u16::from(frame.code), frame.reason),
                    None => "closed by the server".to_owned(),
                });
                return false;
            }
            Some(Ok(Message::Binary(_))) => {
                report.unexpected += 1;
                return true;
            }
            Some(Ok(_)) => return true,
            Some(Err(e)) => {
                report.error = Some(format!("connection failed: {e}"));
                return false;
            }
            None => {
                report.error = Some("connection closed".to_owned());
                return false;
            }
        };
        let push = match shared.protocol {
            Protocol::Serve => parse_push(text.as_bytes(), &shared.pub_prefix),
            Protocol::Raw => match publication_seq(text.as_bytes()) {
                Some(seq) => Push::Publication { seq },
                None => Push::Unexpected,
            },
        };
        match push {
            Push::Publication { seq } => {
                let sent = shared.sent_at.get(seq as usize).map_or(0, |t| t.load(Ordering::Acquire));
                // Never sent (0 and past the plan included): not this
                // command's publication.
                if sent == 0 {
                    self.report.unexpected += 1;
                } else if self
                    .receipts
                    .first(seq, shared.planned)
                    .counted(&mut self.report.duplicated, &mut self.report.out_of_order)
                {
                    let report = &mut self.report;
                    report.delivered += 1;
                    tally.latency.saturating_record(now.saturating_sub(sent));
                    tally.delivered += 1;
                    tally.last = tally.last.max(now);
                    report.delivery_bytes = report.delivery_bytes.max(text.len() as u64);
                }
            }
            Push::Other => {
                shared.other_pushes.fetch_add(1, Ordering::Relaxed);
            }
            Push::Unexpected => self.report.unexpected += 1,
        }
        true
    }
}

/// Opens a subscriber's WebSocket from `setup.source` (when set).
async fn open(setup: &Setup) -> anyhow::Result<ferrows::WebSocket<MaybeTlsStream>> {
    let Some(source) = setup.source else {
        return ferrows::connect_with(setup.url.as_str(), &setup.config).await.context("connect");
    };
    let uri: ferrows::http::Uri = setup.url.parse().context("--url")?;
    let authority = uri.authority().context("--url has no host")?;
    let port = authority.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let target = tokio::net::lookup_host((authority.host(), port))
        .await?
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .context("no server address of the source address's family")?;
    let socket = if source.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(std::net::SocketAddr::new(source, 0)).with_context(|| format!("bind {source}"))?;
    let tcp = socket.connect(target).await.with_context(|| format!("connect from {source}"))?;
    tcp.set_nodelay(true)?;
    let stream = if uri.scheme_str() == Some("wss") {
        let tls = match &setup.config.tls {
            Some(tls) => tls.clone(),
            None => ferrows::tls::default_client_config()?,
        };
        let name = ferrows::tokio_rustls::rustls::pki_types::ServerName::try_from(authority.host().to_owned())?;
        let connector = ferrows::tokio_rustls::TlsConnector::from(tls);
        MaybeTlsStream::Tls(Box::new(
            connector.connect(name, tcp).await.map_err(|e| anyhow::anyhow!("TLS handshake: {e}"))?,
        ))
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    Ok(ferrows::client_handshake(stream, &uri, &setup.config).await?)
}

async fn connect_and_subscribe(setup: &Setup, shared: &Shared) -> anyhow::Result<ferrows::WebSocket<MaybeTlsStream>> {
    let mut ws = open(setup).await?;
    if shared.protocol == Protocol::Raw {
        return Ok(ws);
    }
    let subscribe = Subscribe { channel: shared.channel.clone(), since: None, recover: false };
    ws.feed(command(1, Method::Connect(Connect::default()))).await?;
    ws.send(command(2, Method::Subscribe(subscribe))).await?;
    let (mut connected, mut subscribed) = (false, false);
    while !(connected && subscribed) {
        let text = match ws.recv().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => bail!("closed by the server during setup: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("connection failed during setup: {e}"),
            None => bail!("connection closed during setup"),
        };
        // A push (join) may come before the replies.
        let Some((id, refused)) = reply_of(text.as_bytes()) else { continue };
        if let Some(error) = refused {
            bail!("command {id} refused: {error}");
        }
        match id {
            1 => connected = true,
            2 => subscribed = true,
            _ => {}
        }
    }
    Ok(ws)
}

#[derive(Debug, PartialEq, Eq)]
enum Push {
    /// A publication of the channel with this command's data.
    Publication { seq: u64 },
    /// Another push (join, leave, another channel).
    Other,
    /// Not a push, or a publication of the channel with other data.
    Unexpected,
}

/// Reads a push without a JSON parser: the server writes publication pushes
/// as `{"push":{"channel":"C","pub":{"offset":N,"data":DATA...}}}` with
/// DATA copied verbatim from the publisher, `{"seq":N,"t":N}` here.
fn parse_push(message: &[u8], pub_prefix: &[u8]) -> Push {
    let Some(rest) = message.strip_prefix(pub_prefix) else {
        return if message.starts_with(b"{\"push\":") { Push::Other } else { Push::Unexpected };
    };
    let Some((_offset, rest)) = number(rest) else { return Push::Unexpected };
    let Some(data) = rest.strip_prefix(b",\"data\":") else { return Push::Unexpected };
    match publication_seq(data) {
        Some(seq) => Push::Publication { seq },
        None => Push::Unexpected,
    }
}

/// The `seq` of a publication's data: at once in the form this command
/// publishes (`{"seq":N,"t":N}`, whose `t` the receivers look up in
/// [`Shared::sent_at`] instead), member by member otherwise.
fn publication_seq(data: &[u8]) -> Option<u64> {
    if let Some(rest) = data.strip_prefix(b"{\"seq\":")
        && let Some((seq, rest)) = number(rest)
        && rest.starts_with(b",\"t\":")
    {
        return Some(seq);
    }
    seq_and_time(data).map(|(seq, _)| seq)
}

/// A raw publication: `{"seq":N,"t":N}`, with a `"pad":"xx..."` member
/// when that makes it `pad_to` bytes long.
fn raw_publication(seq: u64, t: u64, pad_to: Option<usize>) -> String {
    const PAD_MEMBER: &str = ",\"pad\":\"\"";
    let mut message = format!("{{\"seq\":{seq},\"t\":{t}}}");
    if let Some(fill) = pad_to.and_then(|size| size.checked_sub(message.len() + PAD_MEMBER.len())) {
        message.pop(); // the closing brace
        message.push_str(",\"pad\":\"");
        message.extend(std::iter::repeat_n('x', fill));
        message.push_str("\"}");
    }
    message
}

/// The `seq` and `t` members of a flat JSON object of numbers (and strings
/// without escapes, skipped) at the start of `data`.
fn seq_and_time(data: &[u8]) -> Option<(u64, u64)> {
    let mut rest = skip_ws(data).strip_prefix(b"{")?;
    let (mut seq, mut t) = (None, None);
    loop {
        rest = skip_ws(rest);
        let after_quote = rest.strip_prefix(b"\"")?;
        let end = after_quote.iter().position(|&b| b == b'"' || b == b'\\')?;
        if after_quote[end] != b'"' {
            return None;
        }
        let key = &after_quote[..end];
        rest = skip_ws(skip_ws(&after_quote[end + 1..]).strip_prefix(b":")?);
        let after = if let Some(string) = rest.strip_prefix(b"\"") {
            let end = string.iter().position(|&b| b == b'"' || b == b'\\')?;
            (string[end] == b'"').then_some(&string[end + 1..])?
        } else {
            let (value, after) = number(rest)?;
            match key {
                b"seq" => seq = Some(value),
                b"t" => t = Some(value),
                _ => {}
            }
            after
        };
        rest = skip_ws(after);
        match rest.first()? {
            b',' => rest = &rest[1..],
            b'}' => return Some((seq?, t?)),
            _ => return None,
        }
    }
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// A non-negative integer at the start of `s`, and what follows it.
/// (One pass: it runs twice per delivery.)
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let (mut value, mut digits) = (0u64, 0usize);
    for &b in s {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        digits += 1;
    }
    if digits == 0 || digits > 19 {
        return None;
    }
    Some((value, &s[digits..]))
}

/// Replies to the publisher's publications.
#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Acks {
    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
    }

    fn note(&self, error: String) {
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
    }
}

/// The publishing connection; a separate task reads its replies into
/// [`Acks`], so publications are pipelined and stay in order.
enum Publisher {
    WebSocket {
        writer: WsWriter<MaybeTlsStream>,
        next_id: u64,
    },
    /// A broadcast server's connection: no replies, so every message sent
    /// counts as acknowledged.
    Raw {
        writer: WsWriter<MaybeTlsStream>,
        /// Bytes to pad every publication to (`--raw-bytes`).
        pad_to: Option<usize>,
        acks: Arc<Acks>,
    },
    Http {
        write: OwnedWriteHalf,
        head: String,
        buf: Vec<u8>,
    },
}

impl Publisher {
    async fn websocket(
        url: &str,
        config: &ClientConfig,
        acks: Arc<Acks>,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let mut ws = ferrows::connect_with(url, config).await.context("publisher: connect")?;
        ws.send(command(1, Method::Connect(Connect::default()))).await?;
        loop {
            match ws.recv().await {
                Some(Ok(Message::Text(text))) => match reply_of(text.as_bytes()) {
                    Some((1, None)) => break,
                    Some((1, Some(error))) => bail!("publisher: connect refused: {error}"),
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("publisher: {e}"),
                None => bail!("publisher: connection closed during connect"),
            }
        }
        let (mut reader, writer) = ws.split();
        let task = tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Some(Ok(Message::Text(text))) => match reply_of(text.as_bytes()) {
                        Some((_, None)) => {
                            acks.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((_, Some(error))) => acks.fail(format!("publish refused: {error}")),
                        None => {}
                    },
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return acks.note(format!("publisher connection failed: {e}")),
                    None => return acks.note("publisher connection closed".to_owned()),
                }
            }
        });
        Ok((Self::WebSocket { writer, next_id: 2 }, task))
    }

    async fn raw(
        url: &str,
        config: &ClientConfig,
        pad_to: Option<usize>,
        acks: Arc<Acks>,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let ws = ferrows::connect_with(url, config).await.context("publisher: connect")?;
        let (mut reader, writer) = ws.split();
        // The server relays the publisher's messages to it too: read them
        // so it never holds them back.
        let task = tokio::spawn(async move { while let Some(Ok(_)) = reader.recv().await {} });
        Ok((Self::Raw { writer, pad_to, acks }, task))
    }

    async fn http(
        api_url: &str,
        api_key: &str,
        acks: Arc<Acks>,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let Some(rest) = api_url.strip_prefix("http://") else {
            bail!("--api-url must be http://HOST:PORT[/PREFIX]");
        };
        let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p.trim_end_matches('/')));
        let address = if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let stream = TcpStream::connect(&address).await.with_context(|| format!("publisher: connect to {address}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let path = if prefix.is_empty() { "/api/publish".to_owned() } else { format!("/{prefix}/api/publish") };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: apikey {api_key}\r\n\
             Content-Type: application/json\r\nContent-Length: "
        );
        let task = tokio::spawn(read_http_responses(read, acks));
        Ok((Self::Http { write, head, buf: Vec::with_capacity(512) }, task))
    }

    async fn publish(&mut self, channel: &str, seq: u64, t: u64) -> anyhow::Result<()> {
        match self {
            Self::WebSocket { writer, next_id } => {
                let id = *next_id;
                *next_id += 1;
                let publish = Publish { channel: channel.to_owned(), data: bench_data(seq, t), idempotency_key: None };
                writer.send(command(id, Method::Publish(publish))).await?;
            }
            Self::Raw { writer, pad_to, acks } => {
                writer.send(Message::text(raw_publication(seq, t, *pad_to))).await?;
                acks.ok.fetch_add(1, Ordering::Relaxed);
            }
            Self::Http { write, head, buf } => {
                let publication =
                    ApiPublish { channel: channel.to_owned(), data: bench_data(seq, t), idempotency_key: None };
                let body = Encoding::Json.encode(&publication);
                buf.clear();
                buf.extend_from_slice(head.as_bytes());
                buf.extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
                buf.extend_from_slice(&body);
                write.write_all(buf).await?;
            }
        }
        Ok(())
    }
}

/// A command in JSON, the encoding the load generator speaks.
fn command(id: u64, method: Method) -> Message {
    Message::text(String::from_utf8(Encoding::Json.encode(&Command { id, method }).to_vec()).expect("JSON is UTF-8"))
}

/// A publication's data: `{"seq":N,"t":N}` (what [`publication_seq`] reads).
fn bench_data(seq: u64, t: u64) -> Data {
    Data(bytes::Bytes::from(format!("{{\"seq\":{seq},\"t\":{t}}}")))
}

/// The id of a reply, and its error if it failed (`None`: not a reply).
fn reply_of(message: &[u8]) -> Option<(u64, Option<String>)> {
    let reply: Reply<serde::de::IgnoredAny> = Encoding::Json.decode(message).ok()?;
    Some((reply.id, reply.error.map(|e| format!("error {}: {}", e.code, e.message))))
}

/// Reads the pipelined responses of the server API (HTTP/1.1 with a
/// `Content-Length`, as the server writes them).
async fn read_http_responses(mut read: OwnedReadHalf, acks: Arc<Acks>) {
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        // Every complete response in the buffer.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            let head_len = match response.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => break,
                Err(e) => return acks.note(format!("server API: a malformed response: {e}")),
            };
            let length = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length"));
            let Some(length) = length.and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
            else {
                return acks.note("server API response without Content-Length".to_owned());
            };
            if buf.len() < head_len + length {
                break;
            }
            let status = response.code;
            let body = String::from_utf8_lossy(&buf[head_len..head_len + length]).into_owned();
            buf.advance(head_len + length);
            match status {
                Some(200) => {
                    acks.ok.fetch_add(1, Ordering::Relaxed);
                }
                _ => acks.fail(format!("server API: {status:?} {body}")),
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => return acks.note("server API connection closed".to_owned()),
            Ok(_) => {}
            Err(e) => return acks.note(format!("server API connection failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_parse_reader_reads_what_the_codec_writes() {
        let shared = Shared::new("bench:load", 10, Protocol::Serve);
        for info in [None, Some(ferrows_hub::protocol::Info(bytes::Bytes::from_static(br#"{"client":"c"}"#)))] {
            let publication = Pub { offset: 41, data: bench_data(3, 1_700_000_000_000_001), info };
            let push = Pushed { channel: "bench:load".into(), event: Event::Pub(publication) };
            let encoded = Encoding::Json.encode(&push);
            assert_eq!(parse_push(&encoded, &shared.pub_prefix), Push::Publication { seq: 3 });
        }
        let join =
            Pushed { channel: "bench:load".into(), event: Event::Join(ferrows_hub::protocol::Info("{}".into())) };
        assert_eq!(parse_push(&Encoding::Json.encode(&join), &shared.pub_prefix), Push::Other);
        let reply = Encoding::Json.encode(&Reply::ok(7, ferrows_hub::protocol::Empty {}));
        assert_eq!(reply_of(&reply), Some((7, None)));
    }

    #[test]
    fn publications_are_read_without_a_json_parser() {
        let prefix = Shared::new("bench:load", 10, Protocol::Serve).pub_prefix;
        let with_info = br#"{"push":{"channel":"bench:load","pub":{"offset":7,"data":{"seq":3,"t":1700000000000001},"info":{"client":"x","user":"","name":""}}}}"#;
        assert_eq!(parse_push(with_info, &prefix), Push::Publication { seq: 3 });
        let spaced = br#"{"push":{"channel":"bench:load","pub":{"offset":7,"data":{ "t" : 5 , "x":1, "seq":2 }}}}"#;
        assert_eq!(parse_push(spaced, &prefix), Push::Publication { seq: 2 });
        let join = br#"{"push":{"channel":"bench:load","join":{"client":"x","user":"","name":""}}}"#;
        assert_eq!(parse_push(join, &prefix), Push::Other);
        let other = br#"{"push":{"channel":"bench:loader","pub":{"offset":1,"data":{"seq":1,"t":1}}}}"#;
        assert_eq!(parse_push(other, &prefix), Push::Other);
        let no_t = br#"{"push":{"channel":"bench:load","pub":{"offset":1,"data":{"seq":1}}}}"#;
        assert_eq!(parse_push(no_t, &prefix), Push::Unexpected);
        let string = br#"{"push":{"channel":"bench:load","pub":{"offset":1,"data":{"seq":"1","t":1}}}}"#;
        assert_eq!(parse_push(string, &prefix), Push::Unexpected);
        assert_eq!(parse_push(br#"{"id":3,"result":{}}"#, &prefix), Push::Unexpected);
    }

    #[test]
    fn raw_publications_are_padded_to_the_size_asked() {
        let plain = raw_publication(12, 1_700_000_000_000_001, None);
        assert_eq!(plain, r#"{"seq":12,"t":1700000000000001}"#);
        assert_eq!(raw_publication(12, 1_700_000_000_000_001, Some(plain.len() + 8)), plain, "too short to pad");
        for size in [plain.len() + 9, 128, 168] {
            let padded = raw_publication(12, 1_700_000_000_000_001, Some(size));
            assert_eq!(padded.len(), size);
            assert_eq!(seq_and_time(padded.as_bytes()), Some((12, 1_700_000_000_000_001)), "{padded}");
        }
        assert_eq!(seq_and_time(br#"{"seq":1,"pad":"a\"b","t":2}"#), None, "escapes are not skipped");
    }

    #[test]
    fn seq_and_time_read_any_flat_object_alike() {
        let forms: [&[u8]; 6] = [
            br#"{"seq":12,"t":34}"#,
            br#"{"seq":12,"t":34},"info":{}}"#,
            br#"{ "seq" : 12 , "t" : 34 }"#,
            br#"{"t":34,"seq":12}"#,
            br#"{"seq":12,"t":34,"pad":"xx"}"#,
            br#"{"seq":12,"x":"y","t":34}"#,
        ];
        for form in forms {
            assert_eq!(seq_and_time(form), Some((12, 34)), "{}", String::from_utf8_lossy(form));
        }
        for bad in [
            &br#"{"seq":12,"t":34"#[..],
            br#"{"seq":12,"t":}"#,
            br#"{"seq":12}"#,
            br#"{"seq":99999999999999999999,"t":1}"#,
        ] {
            assert_eq!(seq_and_time(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        for form in forms {
            assert_eq!(publication_seq(form), Some(12), "{}", String::from_utf8_lossy(form));
        }
        assert_eq!(number(b"18446744073709551615,"), None, "20 digits");
        assert_eq!(number(b"1844674407370955161,"), Some((1_844_674_407_370_955_161, &b","[..])));
    }
}
