//! `ferrows bench-transports`: WebSocket against Server-Sent Events, long
//! polling and polling, on the same server, channel and publications.
//!
//! For each transport the command starts a fresh `ferrows serve` (or
//! targets one), opens `--subscribers` subscribers of one channel over that
//! transport, and measures:
//! - the idle cost: `--hold` seconds with nothing published (server CPU,
//!   resident memory per subscriber, bytes and requests per second);
//! - for each of `--rates`: a publisher sends that many publications/s of
//!   `--size` bytes for `--duration` seconds through the server API, and
//!   every subscriber checks that it gets each one once, in order. Reported:
//!   deliveries/s, latency from publication to receipt (p50, p99, max, from
//!   an HDR histogram), server CPU per delivery, bytes on the wire per
//!   delivery each way (counted at the subscribers' sockets: HTTP heads,
//!   WebSocket framing and keepalives included), requests/s, and missing,
//!   duplicated and out-of-order deliveries.
//!
//! Every HTTP transport keeps its connections alive; pollers ask every
//! `--poll-interval` (1 s), spread evenly over it; long polls wait up to
//! `--long-poll-timeout`; nothing is compressed. The server and the clients
//! share a clock (one machine). With `--out`, the results go to a JSON
//! file, a markdown table and SVG charts there.

mod clients;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use self::clients::{Meter, Metered, Plan, Publisher, Seen, Tls};
use crate::measure::{check_open_file_limit, cpu_nanos, now_micros, rss_kib};
use crate::process::{Started, TempFile, serve_args};

/// A way for subscribers to get publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    /// One WebSocket each (`/ws`).
    Websocket,
    /// One Server-Sent Events stream each (`GET /api/stream`).
    Sse,
    /// Long polls (`GET /api/poll` with `timeout`).
    #[value(name = "longpoll")]
    #[serde(rename = "longpoll")]
    LongPoll,
    /// A poll every `--poll-interval` (`GET /api/poll`).
    Poll,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Websocket => "WebSocket",
            Self::Sse => "Server-Sent Events",
            Self::LongPoll => "long polling",
            Self::Poll => "polling",
        }
    }
}

/// Options of `ferrows bench-transports`.
#[derive(Debug, Args)]
pub(crate) struct BenchTransportsArgs {
    /// Transports to compare, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "websocket,sse,longpoll,poll")]
    transports: Vec<Transport>,
    /// Subscribers per transport (each needs a file descriptor here and one
    /// in the server: see `ulimit -n`).
    #[arg(long, short, default_value_t = 1000)]
    subscribers: usize,
    /// Publication rates to measure, per second, in this order.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    rates: Vec<f64>,
    /// Seconds of publishing at each rate.
    #[arg(long, short, default_value_t = 10.0)]
    duration: f64,
    /// Bytes of each publication's data (JSON, its `seq` and padding).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds between two polls of a polling subscriber.
    #[arg(long, default_value_t = 1.0)]
    poll_interval: f64,
    /// Seconds a long poll waits for news.
    #[arg(long, default_value_t = 25)]
    long_poll_timeout: u32,
    /// Seconds every subscriber sits idle before the first rate (the idle
    /// cost is measured over it).
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Measure a running server at this address (`HOST:PORT`) instead of
    /// starting one per transport; its process id (`--server-pid`) gives its
    /// CPU and memory, its API key (`--api-key`) lets the publisher in. Its
    /// channel's namespace must keep enough history for the pollers.
    #[arg(long, requires = "api_key")]
    server: Option<SocketAddr>,
    /// Process id of the server given with `--server`.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// API key of the server given with `--server`.
    #[arg(long)]
    api_key: Option<String>,
    /// The `ferrows` binary whose `serve` is started (default: this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Run each started server on this CPU only (`taskset`), the load
    /// generator being elsewhere.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Channel to use (its namespace `bench` keeps 10 000 publications in
    /// the started servers).
    #[arg(long, default_value = "bench:transports")]
    channel: String,
    /// Serve over TLS (the started servers get a self-signed certificate
    /// for `localhost`; a given one must have such a certificate too, whose
    /// PEM `--ca-file` names): WebSocket over `wss://`, HTTPS for the rest.
    #[arg(long)]
    tls: bool,
    /// The certificate to trust with `--tls` and `--server`.
    #[arg(long, requires = "tls")]
    ca_file: Option<PathBuf>,
    /// Write `transports.json`, `transports.md` and the charts
    /// (`transports-*.svg`) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runtime threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
}

/// The results of one transport.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TransportRun {
    transport: Transport,
    subscribers: usize,
    idle: Idle,
    rates: Vec<RateRun>,
}

/// What subscribers cost while nothing is published.
#[derive(Debug, Clone, Serialize)]
struct Idle {
    seconds: f64,
    /// Server CPU, % of one core.
    server_cpu_pct: f64,
    /// Server CPU per subscriber and second, µs.
    server_cpu_us_per_subscriber_s: f64,
    /// Server RSS per subscriber (after the setup and the hold), bytes.
    server_rss_per_subscriber_b: Option<f64>,
    /// Bytes per subscriber and second, server to subscriber.
    bytes_in_per_subscriber_s: f64,
    /// Bytes per subscriber and second, subscriber to server.
    bytes_out_per_subscriber_s: f64,
    requests_per_s: f64,
}

/// The results of one rate.
#[derive(Debug, Clone, Serialize)]
struct RateRun {
    rate: f64,
    publications: u64,
    deliveries: u64,
    deliveries_per_s: f64,
    latency_ms: Latency,
    /// Server CPU over the window, % of one core.
    server_cpu_pct: f64,
    /// This load generator's CPU over the window, % of one core (near 100
    /// with one thread, its latencies include its own queueing).
    generator_cpu_pct: f64,
    server_cpu_us_per_delivery: f64,
    bytes_in_per_delivery: f64,
    bytes_out_per_delivery: f64,
    requests_per_s: f64,
    missing: u64,
    duplicated: u64,
    out_of_order: u64,
    /// The latency distribution: (percentile, ms), for the charts.
    percentiles: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

/// Percentiles drawn in the latency chart.
const PERCENTILES: [f64; 11] = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0];

pub(crate) async fn run(args: BenchTransportsArgs) -> anyhow::Result<()> {
    if args.rates.iter().any(|&r| !(r > 0.0 && r <= 10_000.0)) || args.duration <= 0.0 || args.subscribers == 0 {
        bail!("rates must be in (0, 10000], the duration positive, and there must be subscribers");
    }
    check_open_file_limit(args.subscribers * 2 + 64)?;
    let mut runs = Vec::new();
    for &transport in &args.transports {
        eprintln!("bench-transports: {} ({} subscribers)", transport.name(), args.subscribers);
        let run = run_transport(&args, transport).await.with_context(|| transport.name())?;
        report::print_run(&run);
        runs.push(run);
    }
    if let Some(out) = &args.out {
        report::write(out, &args, &runs)?;
        eprintln!("bench-transports: results in {}", out.display());
    }
    let failed: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            run.rates.iter().filter(|r| r.missing + r.duplicated + r.out_of_order > 0).map(move |r| {
                format!(
                    "{} at {}/s: {} missing, {} duplicated, {} out of order",
                    run.transport.name(),
                    r.rate,
                    r.missing,
                    r.duplicated,
                    r.out_of_order
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        bail!("deliveries went wrong: {}", failed.join("; "));
    }
    Ok(())
}

/// A server measured: started here (and killed when dropped), or given.
struct Server {
    addr: SocketAddr,
    pid: Option<String>,
    key: String,
    tls: Option<Tls>,
    /// Killed when dropped, before its files go.
    _process: Option<Started>,
    /// Its configuration, certificate and key files.
    _files: Vec<TempFile>,
}

/// The started servers' configuration: the bench namespace keeps enough
/// history for a poller to find every publication of its interval, and
/// tracks no presence (its cost is not the transports').
const SERVER_CONFIG: &str = "strict_namespaces = false\n\n[namespaces.bench]\npresence = false\nhistory_size = 10000\nhistory_ttl = 600\nhistory_max_bytes = 67108864\n";

fn start_server(args: &BenchTransportsArgs) -> anyhow::Result<Server> {
    if let Some(addr) = args.server {
        let key = args.api_key.clone().unwrap_or_default();
        let tls = match &args.ca_file {
            Some(path) => Some(Tls(ferrows::tls::client_config_with_roots(&std::fs::read(path)?)?)),
            None if args.tls => Some(Tls(ferrows::tls::default_client_config()?)),
            None => None,
        };
        let pid = args.server_pid.map(|p| p.to_string());
        return Ok(Server { addr, pid, key, tls, _process: None, _files: Vec::new() });
    }
    let config = TempFile::with("serve.toml", SERVER_CONFIG)?;
    let mut files = Vec::new();
    let key = "bench-transports".to_owned();
    let mut serve = serve_args(&key, &["--max-connections", "1000000"], &config);
    files.push(config);
    let mut tls = None;
    if args.tls {
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.self_signed(&key)?;
        let (cert_file, key_file) =
            (TempFile::with("cert.pem", cert.pem())?, TempFile::with("key.pem", key.serialize_pem())?);
        tls = Some(Tls(ferrows::tls::client_config_with_roots(cert.pem().as_bytes())?));
        serve.extend([
            "--tls-cert".into(),
            cert_file.0.clone().into_os_string(),
            "--tls-key".into(),
            key_file.0.clone().into_os_string(),
        ]);
        files.extend([cert_file, key_file]);
    }
    let bin = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?,
    };
    let process = Started::start(&bin, &serve, args.server_cpu).context("start the server")?;
    Ok(Server { addr: process.addr, pid: Some(process.pid()), key, tls, _process: Some(process), _files: files })
}

/// A span of a run: its seconds, the CPU seconds of the server and of this
/// process, and the subscribers' traffic.
struct Window {
    seconds: f64,
    server_cpu: f64,
    generator_cpu: f64,
    traffic: Metered,
}

/// Server and generator CPU time (ns), subscribers' traffic and time, at
/// one moment.
struct Mark {
    at: Instant,
    cpu: Option<u64>,
    generator: Option<u64>,
    metered: Metered,
}

impl Mark {
    fn now(server: &Server, meter: &Meter) -> Self {
        let (cpu, generator) = (server.pid.as_deref().and_then(cpu_nanos), cpu_nanos("self"));
        Self { at: Instant::now(), cpu, generator, metered: meter.read() }
    }

    /// What happened since `earlier`.
    fn since(&self, earlier: &Mark) -> Window {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64().max(1e-6);
        let cpu = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) => a.saturating_sub(b) as f64 / 1e9,
            _ => f64::NAN,
        };
        Window {
            seconds,
            server_cpu: cpu(earlier.cpu, self.cpu),
            generator_cpu: cpu(earlier.generator, self.generator),
            traffic: self.metered - earlier.metered,
        }
    }
}

async fn run_transport(args: &BenchTransportsArgs, transport: Transport) -> anyhow::Result<TransportRun> {
    let server = start_server(args)?;
    let per_rate: Vec<u64> = args.rates.iter().map(|r| (r * args.duration).round().max(1.0) as u64).collect();
    let planned: u64 = per_rate.iter().sum();
    let meter = Arc::new(Meter::default());
    let plan = Arc::new(Plan {
        addr: server.addr,
        tls: server.tls.clone(),
        channel: args.channel.clone(),
        poll_interval: Duration::from_secs_f64(args.poll_interval),
        long_poll_timeout: args.long_poll_timeout,
        sent_at: (0..=planned).map(|_| AtomicU64::new(0)).collect(),
        meter: meter.clone(),
        delivered: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
    });
    let rss_before = server.pid.as_deref().and_then(rss_kib);
    let (stop_tx, stop_rx) = watch::channel(false);
    let in_flight = Arc::new(Semaphore::new(100));
    let mut tasks = Vec::with_capacity(args.subscribers);
    for index in 0..args.subscribers {
        let (plan, stop, in_flight) = (plan.clone(), stop_rx.clone(), in_flight.clone());
        let count = args.subscribers;
        tasks.push(tokio::spawn(async move {
            // Setups in flight are bounded: a subscriber gives its place
            // back once ready.
            let setup = in_flight.acquire_owned().await.expect("never closed");
            clients::subscriber(transport, plan, index, count, setup, stop).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while plan.ready.load(Ordering::Relaxed) < args.subscribers {
        if Instant::now() > deadline || tasks.iter().any(|t| t.is_finished()) {
            let ready = plan.ready.load(Ordering::Relaxed);
            let _ = stop_tx.send(true);
            let mut why = String::new();
            for task in tasks {
                if let Ok(seen) = task.await
                    && let Some(error) = seen.error
                {
                    why = error;
                    break;
                }
            }
            bail!("{ready}/{} subscribers ready; {why}", args.subscribers);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("bench-transports: {} subscribers ready; idle for {} s", args.subscribers, args.hold);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Mark::now(&server, &meter);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let Window { seconds, server_cpu: cpu, traffic, .. } = Mark::now(&server, &meter).since(&start);
    let rss_after = server.pid.as_deref().and_then(rss_kib);
    let n = args.subscribers as f64;
    let idle = Idle {
        seconds,
        server_cpu_pct: cpu / seconds * 100.0,
        server_cpu_us_per_subscriber_s: cpu * 1e6 / seconds / n,
        server_rss_per_subscriber_b: rss_before
            .zip(rss_after)
            .map(|(before, after)| after.saturating_sub(before) as f64 * 1024.0 / n),
        bytes_in_per_subscriber_s: traffic.bytes_in as f64 / seconds / n,
        bytes_out_per_subscriber_s: traffic.bytes_out as f64 / seconds / n,
        requests_per_s: traffic.requests as f64 / seconds,
    };

    let mut publisher = Publisher::connect(server.addr, server.tls.as_ref(), &server.key, &args.channel).await?;
    let mut windows = Vec::new();
    let mut first = 1u64;
    for (&rate, &count) in args.rates.iter().zip(&per_rate) {
        eprintln!("bench-transports: {} at {rate}/s for {} s", transport.name(), args.duration);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let delivered_before = plan.delivered.load(Ordering::Relaxed);
        let start = Mark::now(&server, &meter);
        let began = tokio::time::Instant::now();
        for seq in first..first + count {
            tokio::time::sleep_until(began + interval.mul_f64((seq - first) as f64)).await;
            let data = clients::publication_data(seq, args.size);
            plan.sent_at[seq as usize].store(now_micros(), Ordering::Release);
            publisher.publish(&data).await.with_context(|| format!("publication {seq}"))?;
        }
        // The last deliveries: a poller's come within its interval.
        let expected = delivered_before + count * args.subscribers as u64;
        let drain = Instant::now() + Duration::from_secs_f64(5.0 + 2.0 * args.poll_interval);
        while plan.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let end = Mark::now(&server, &meter);
        windows.push((rate, first..first + count, end.since(&start)));
        first += count;
        // Settle before the next rate.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = stop_tx.send(true);
    let mut seen = Vec::with_capacity(tasks.len());
    for task in tasks {
        seen.push(task.await?);
    }
    if let Some(error) = seen.iter().find_map(|s| s.error.clone()) {
        bail!("a subscriber stopped: {error}");
    }
    let rates = windows
        .into_iter()
        .map(|(rate, range, window)| rate_run(rate, range, window, &seen, args.subscribers))
        .collect();
    Ok(TransportRun { transport, subscribers: args.subscribers, idle, rates })
}

fn rate_run(rate: f64, range: std::ops::Range<u64>, window: Window, seen: &[Seen], subscribers: usize) -> RateRun {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let (mut deliveries, mut duplicated, mut out_of_order) = (0u64, 0u64, 0u64);
    let within = |seq: u32| range.contains(&u64::from(seq));
    for subscriber in seen {
        for &(_, micros) in subscriber.deliveries.iter().filter(|(seq, _)| within(*seq)) {
            deliveries += 1;
            latency.saturating_record(u64::from(micros).max(1));
        }
        duplicated += subscriber.duplicates.iter().filter(|&&seq| within(seq)).count() as u64;
        out_of_order += subscriber.late.iter().filter(|&&seq| within(seq)).count() as u64;
    }
    let Window { seconds, server_cpu: cpu, generator_cpu, traffic } = window;
    let publications = range.end - range.start;
    let expected = publications * subscribers as u64;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let per = |value: f64| if deliveries > 0 { value / deliveries as f64 } else { f64::NAN };
    RateRun {
        rate,
        publications,
        deliveries,
        deliveries_per_s: deliveries as f64 / seconds,
        latency_ms: Latency {
            p50: ms(latency.value_at_quantile(0.5)),
            p99: ms(latency.value_at_quantile(0.99)),
            max: ms(latency.max()),
        },
        server_cpu_pct: cpu / seconds * 100.0,
        generator_cpu_pct: generator_cpu / seconds * 100.0,
        server_cpu_us_per_delivery: per(cpu * 1e6),
        bytes_in_per_delivery: per(traffic.bytes_in as f64),
        bytes_out_per_delivery: per(traffic.bytes_out as f64),
        requests_per_s: traffic.requests as f64 / seconds,
        missing: expected.saturating_sub(deliveries),
        duplicated,
        out_of_order,
        percentiles: PERCENTILES.iter().map(|&p| (p, ms(latency.value_at_quantile(p / 100.0)))).collect(),
    }
}
