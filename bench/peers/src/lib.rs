//! What the peer echo servers share: the command line (`--port N`,
//! `--host ADDR`) and the runtime (tokio current_thread, like
//! `ferrows echo --threads 1`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address from `--host ADDR` (default 127.0.0.1) and `--port N`
/// (default 9001; 0 picks a free port).
pub fn listen_addr() -> SocketAddr {
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port = 9001u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--port" | "-p" => port = value("--port").parse().unwrap_or_else(|_| usage("bad --port")),
            "--host" => host = value("--host").parse().unwrap_or_else(|_| usage("bad --host")),
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    SocketAddr::new(host, port)
}

fn usage(error: &str) -> ! {
    if !error.is_empty() {
        eprintln!("error: {error}");
    }
    eprintln!("usage: {} [--host ADDR] [--port N]", std::env::args().next().unwrap_or_default());
    std::process::exit(2)
}

/// A single-threaded runtime: everything runs on the calling thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime")
}

/// Scripts wait for this line (the same one `ferrows echo` prints).
pub fn announce(listener: &tokio::net::TcpListener) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on ws://{}", listener.local_addr()?)?;
    out.flush()
}
