//! `ferrows bench-proxy`: what the backend in the loop costs, against a
//! minimal backend of its own process (`--backend`), whose CPU is
//! reported beside the server's.
//!
//! - Publications through the publish proxy against publications that do
//!   not ask the backend, on the same server: `--clients` WebSocket
//!   clients each publish in a closed loop (the next once the reply came)
//!   for `--duration` seconds into each path. Reported per path:
//!   publications/s, the publish's round trip (p50, p99, max), the server's
//!   and the backend's CPU per publication; and what the proxy adds.
//! - A reconnect storm through the connect proxy: `--storm` WebSockets are
//!   opened, then all send `connect` at once. The backend takes
//!   `--connect-delay-ms` per connect; the server lets
//!   `--max-in-flight` wait on it and answers the others error 111 at
//!   once; those clients reconnect after a jittered backoff, as the
//!   clients do. Reported: the time
//!   until all are connected, connect latency (p50, p99, max), the 111s
//!   and the retries, and the most connects the backend ever held at once
//!   (the in-flight bound, which must hold).

mod backend;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use ferrows::{Message, WebSocket};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::measure::{check_open_file_limit, cpu_nanos, rss_kib};
use crate::process::{Started, TempFile, serve_args};

/// `ferrows bench-proxy`'s options.
#[derive(Debug, Args)]
pub(crate) struct BenchProxyArgs {
    /// Publishing clients (each in a closed loop).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of publishing per path.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Clients of the reconnect storm (0: none).
    #[arg(long, default_value_t = 10_000)]
    storm: usize,
    /// The server's `proxy_max_in_flight`.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// What the backend takes per connect, in ms.
    #[arg(long, default_value_t = 20)]
    connect_delay_ms: u64,
    /// Pin the server to this core (`taskset`).
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Pin the backend to this core.
    #[arg(long)]
    backend_cpu: Option<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Run as the benchmark's backend (started by the benchmark itself).
    #[arg(long, hide = true)]
    backend: bool,
    /// The backend's port (with `--backend`).
    #[arg(long, hide = true, default_value_t = 0)]
    port: u16,
}

/// Latencies in µs (from an HDR histogram).
#[derive(Debug, Clone, Copy, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let us = |v: u64| v as f64;
        Self {
            p50: us(histogram.value_at_quantile(0.5)),
            p99: us(histogram.value_at_quantile(0.99)),
            max: us(histogram.max()),
        }
    }
}

/// One publish path's results.
#[derive(Debug, Serialize)]
struct PathResult {
    path: &'static str,
    publications: u64,
    per_second: f64,
    latency_us: Latency,
    server_cpu_us_per_publication: f64,
    backend_cpu_us_per_publication: f64,
    errors: u64,
}

/// The storm's results.
#[derive(Debug, Serialize)]
struct StormResult {
    clients: usize,
    connected: usize,
    seconds_until_all_connected: f64,
    connect_latency_ms: Latency,
    temporary_errors: u64,
    other_errors: u64,
    retries: u64,
    backend_max_in_flight: u64,
    max_in_flight: usize,
    server_proxy_busy: f64,
    server_cpu_seconds: f64,
    backend_cpu_seconds: f64,
    server_rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct Results {
    paths: Vec<PathResult>,
    added_latency_us: Option<Latency>,
    storm: Option<StormResult>,
}

pub(crate) async fn run(args: BenchProxyArgs) -> anyhow::Result<()> {
    if args.backend {
        return backend::run(args.port, Duration::from_millis(args.connect_delay_ms)).await;
    }
    check_open_file_limit(args.storm + args.clients + 256)?;
    let bin = std::env::current_exe()?;
    let delay = args.connect_delay_ms.to_string();
    let backend_args: Vec<OsString> =
        ["bench-proxy", "--backend", "--connect-delay-ms", &delay].map(Into::into).to_vec();
    let backend = Started::start(&bin, &backend_args, args.backend_cpu).context("start the backend")?;
    let config = TempFile::with("proxy.toml", server_config(backend.addr, args.max_in_flight))?;
    let serve = serve_args("bench", &["--command-rate", "0"], &config);
    let server = Started::start(&bin, &serve, args.server_cpu).context("start the server")?;
    let pids = (server.pid(), backend.pid());
    println!("server {} (pid {}), backend {} (pid {})", server.addr, pids.0, backend.addr, pids.1);

    let mut paths = Vec::new();
    for path in ["direct", "proxied"] {
        let result = publish_path(server.addr, &pids, path, &args).await?;
        println!(
            "{path:>8}: {:.0} publications/s, round trip p50 {:.0} µs p99 {:.0} µs max {:.0} µs, \
             server {:.1} µs and backend {:.1} µs of CPU per publication, {} errors",
            result.per_second,
            result.latency_us.p50,
            result.latency_us.p99,
            result.latency_us.max,
            result.server_cpu_us_per_publication,
            result.backend_cpu_us_per_publication,
            result.errors
        );
        paths.push(result);
    }
    let added_latency_us = match paths.as_slice() {
        [direct, proxied] => Some(Latency {
            p50: proxied.latency_us.p50 - direct.latency_us.p50,
            p99: proxied.latency_us.p99 - direct.latency_us.p99,
            max: proxied.latency_us.max - direct.latency_us.max,
        }),
        _ => None,
    };
    if let Some(added) = &added_latency_us {
        println!("the publish proxy adds p50 {:.0} µs, p99 {:.0} µs", added.p50, added.p99);
    }
    let storm = if args.storm > 0 { Some(storm(server.addr, backend.addr, &pids, &args).await?) } else { None };
    if let Some(storm) = &storm {
        println!(
            "storm: {} of {} connected in {:.2} s; connect p50 {:.0} ms p99 {:.0} ms max {:.0} ms; \
             {} temporary errors (111), {} other, {} retries; the backend held at most {} at once \
             (bound {}); server CPU {:.2} s, backend CPU {:.2} s, server RSS {:.0} MiB",
            storm.connected,
            storm.clients,
            storm.seconds_until_all_connected,
            storm.connect_latency_ms.p50,
            storm.connect_latency_ms.p99,
            storm.connect_latency_ms.max,
            storm.temporary_errors,
            storm.other_errors,
            storm.retries,
            storm.backend_max_in_flight,
            storm.max_in_flight,
            storm.server_cpu_seconds,
            storm.backend_cpu_seconds,
            storm.server_rss_mib
        );
        if storm.backend_max_in_flight > storm.max_in_flight as u64 {
            bail!("the in-flight bound did not hold: {} > {}", storm.backend_max_in_flight, storm.max_in_flight);
        }
        if storm.connected < storm.clients {
            bail!("{} clients did not connect", storm.clients - storm.connected);
        }
    }
    let results = Results { paths, added_latency_us, storm };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    drop(config);
    Ok(())
}

/// The server's configuration: both proxies at the backend, and the two
/// publish paths.
fn server_config(backend: SocketAddr, max_in_flight: usize) -> String {
    format!(
        "strict_namespaces = false\n\
         proxy_connect_url = \"http://{backend}/connect\"\n\
         proxy_publish_url = \"http://{backend}/publish\"\n\
         proxy_max_in_flight = {max_in_flight}\n\
         proxy_timeout = 10\n\
         [namespaces.direct]\npresence = false\n\
         [namespaces.proxied]\npresence = false\nproxy_publish = true\n"
    )
}

type Socket = WebSocket<ferrows::MaybeTlsStream>;

/// Opens a WebSocket and sends `connect` (through the connect proxy):
/// the socket, once connected.
async fn connected(addr: SocketAddr) -> anyhow::Result<Socket> {
    let mut ws = ferrows::connect(format!("ws://{addr}/ws")).await?;
    let reply = call(&mut ws, 1, json!({"connect": {}})).await?;
    if reply.get("result").is_none() {
        bail!("connect: {reply}");
    }
    Ok(ws)
}

/// Sends command `id` and reads its reply.
async fn call(ws: &mut Socket, id: u64, mut command: Value) -> anyhow::Result<Value> {
    command["id"] = json!(id);
    ws.send(Message::text(command.to_string())).await?;
    loop {
        match ws.recv().await {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str())?;
                if value["id"] == json!(id) {
                    return Ok(value);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the connection ended"),
        }
    }
}

/// CPU ns of the server and the backend now.
fn cpu_now(pids: &(String, String)) -> (u64, u64) {
    (cpu_nanos(&pids.0).unwrap_or(0), cpu_nanos(&pids.1).unwrap_or(0))
}

async fn publish_path(
    addr: SocketAddr,
    pids: &(String, String),
    path: &'static str,
    args: &BenchProxyArgs,
) -> anyhow::Result<PathResult> {
    let mut sockets = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        sockets.push(connected(addr).await?);
    }
    let duration = Duration::from_secs_f64(args.duration);
    let before = cpu_now(pids);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, mut ws) in sockets.into_iter().enumerate() {
        let channel = format!("{path}:c{n}");
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("a histogram");
            let (mut published, mut errors) = (0u64, 0u64);
            let mut id = 1;
            while started.elapsed() < duration {
                id += 1;
                let sent = Instant::now();
                let command = json!({"publish": {"channel": channel, "data": {"n": id}}});
                match call(&mut ws, id, command).await {
                    Ok(reply) if reply.get("result").is_some() => {
                        let _ = histogram.record(sent.elapsed().as_micros() as u64);
                        published += 1;
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (histogram, published, errors)
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let (mut publications, mut errors) = (0, 0);
    for task in tasks {
        let (h, p, e) = task.await?;
        histogram.add(h)?;
        publications += p;
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = cpu_now(pids);
    let per = |ns: u64| ns as f64 / 1e3 / publications.max(1) as f64;
    Ok(PathResult {
        path,
        publications,
        per_second: publications as f64 / seconds,
        latency_us: Latency::of(&histogram),
        server_cpu_us_per_publication: per(after.0.saturating_sub(before.0)),
        backend_cpu_us_per_publication: per(after.1.saturating_sub(before.1)),
        errors,
    })
}

async fn storm(
    addr: SocketAddr,
    backend: SocketAddr,
    pids: &(String, String),
    args: &BenchProxyArgs,
) -> anyhow::Result<StormResult> {
    // Open every WebSocket first (at most 256 handshakes at once), then
    // send every `connect` at once: a server restart's reconnections.
    let opening = Arc::new(Semaphore::new(256));
    let mut opened = Vec::with_capacity(args.storm);
    for _ in 0..args.storm {
        let opening = opening.clone();
        opened.push(tokio::spawn(async move {
            let _permit = opening.acquire().await;
            ferrows::connect(format!("ws://{addr}/ws")).await
        }));
    }
    let mut sockets = Vec::with_capacity(args.storm);
    for task in opened {
        sockets.push(task.await?.context("open a storm WebSocket")?);
    }
    println!("storm: {} WebSockets open; every connect now", sockets.len());
    let (temporary, other, retries) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let before = cpu_now(pids);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.storm);
    for ws in sockets {
        let (temporary, other, retries) = (temporary.clone(), other.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            let mut ws = Some(ws);
            for _ in 0..200 {
                // As the clients do after a temporary refusal: a new
                // connection, after a jittered, doubling backoff.
                let mut socket = match ws.take() {
                    Some(socket) => socket,
                    None => match ferrows::connect(format!("ws://{addr}/ws")).await {
                        Ok(socket) => socket,
                        Err(_) => {
                            other.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                    },
                };
                match call(&mut socket, 1, json!({"connect": {}})).await {
                    Ok(reply) if reply.get("result").is_some() => return Some((started.elapsed(), socket)),
                    Ok(reply) if reply["error"]["temporary"] == json!(true) => {
                        temporary.fetch_add(1, Ordering::Relaxed);
                        retries.fetch_add(1, Ordering::Relaxed);
                        drop(socket);
                        tokio::time::sleep(backoff.mul_f64(0.5 + rand_fraction())).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    Ok(_) | Err(_) => {
                        other.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
            None
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut connected = Vec::new();
    for task in tasks {
        if let Some((took, ws)) = task.await? {
            histogram.record(took.as_millis() as u64)?;
            connected.push(ws);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = cpu_now(pids);
    let stats: Value = http_get(backend, "/stats").await?;
    let metrics = http_text(addr, "/metrics").await?;
    let busy = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ferrows_proxy_busy_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let rss = rss_kib(&pids.0).map_or(f64::NAN, |kib| kib as f64 / 1024.0);
    Ok(StormResult {
        clients: args.storm,
        connected: connected.len(),
        seconds_until_all_connected: seconds,
        connect_latency_ms: Latency::of(&histogram),
        temporary_errors: temporary.load(Ordering::Relaxed),
        other_errors: other.load(Ordering::Relaxed),
        retries: retries.load(Ordering::Relaxed),
        backend_max_in_flight: stats["max_in_flight"].as_u64().unwrap_or(0),
        max_in_flight: args.max_in_flight,
        server_proxy_busy: busy,
        server_cpu_seconds: after.0.saturating_sub(before.0) as f64 / 1e9,
        backend_cpu_seconds: after.1.saturating_sub(before.1) as f64 / 1e9,
        server_rss_mib: rss,
    })
}

/// A uniform fraction in [0, 1), from the clock (jitter needs no more).
fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    f64::from(nanos.wrapping_mul(2_654_435_761) % 1_000_000) / 1e6
}

/// `GET path` of `addr`, as JSON.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&http_text(addr, path).await?)?)
}

/// `GET path` of `addr`: the body.
async fn http_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned())
}
