//! The `ferrows` command.

mod autobahn;
mod bench;
mod bench_proxy;
mod bench_pubsub;
mod bench_transports;
mod connect;
mod echo;
mod measure;
mod process;
mod serve;

use clap::{Parser, Subcommand};

/// jemalloc, for servers that hold many long-lived connections. Its
/// size-class runs keep what connections hold for hours apart from what a
/// burst of handshakes used and freed, and it hands freed pages back to the
/// system (after `dirty_decay_ms`, 10 s, by a background thread: see
/// [`release_freed_memory`]). With glibc's malloc the pages of such a burst
/// stay resident, each holding a few live connection objects: 2.1 KB of
/// RSS per idle `serve` connection at 10 000 against jemalloc's 1.0 KB
/// (`scripts/idle-connections.sh`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Starts jemalloc's background thread (one), which returns freed pages to
/// the system after the decay time even while the server is idle (without
/// it jemalloc purges only when it allocates).
fn release_freed_memory() {
    let started = tikv_jemalloc_ctl::max_background_threads::write(1)
        .and_then(|()| tikv_jemalloc_ctl::background_thread::write(true));
    if let Err(e) = started {
        tracing::debug!("jemalloc background thread not started: {e}");
    }
}

/// ferrows: a WebSocket toolkit.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pub/sub server and its browser demo (http://127.0.0.1:8000/).
    Serve(Box<ferrows_server::cli::ServeArgs>),
    /// Run a WebSocket echo server (every message is sent back).
    Echo(echo::EchoArgs),
    /// Interactive client: stdin lines out, messages in.
    Connect(connect::ConnectArgs),
    /// Load an echo server: messages/s over many connections.
    Bench(bench::BenchArgs),
    /// Load the pub/sub server: fan-out of publications to many subscribers.
    BenchPubsub(bench_pubsub::BenchPubSubArgs),
    /// Compare the transports (WebSocket, Server-Sent Events, long polling,
    /// polling) on one server: latency, CPU, bytes, requests, idle cost.
    BenchTransports(bench_transports::BenchTransportsArgs),
    /// Measure the backend in the loop: publications through the publish
    /// proxy, and a reconnect storm through the connect proxy.
    BenchProxy(bench_proxy::BenchProxyArgs),
    /// Play the client role against an Autobahn|Testsuite fuzzingserver.
    AutobahnClient(autobahn::AutobahnArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    release_freed_memory();
    let threads = match &cli.command {
        Command::Echo(args) => args.threads,
        Command::BenchPubsub(args) => args.threads,
        Command::BenchTransports(args) => args.threads,
        _ => 0,
    };
    let runtime = match threads {
        // One thread: no work stealing, for pinned single-core comparisons.
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Echo(args) => echo::run(args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::BenchPubsub(args) => bench_pubsub::run(args).await,
            Command::BenchTransports(args) => bench_transports::run(args).await,
            Command::BenchProxy(args) => bench_proxy::run(args).await,
            Command::AutobahnClient(args) => autobahn::run(args).await,
        }
    })
}
