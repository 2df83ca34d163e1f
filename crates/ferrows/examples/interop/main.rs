//! ferrows against other WebSocket implementations, for the interop tests
//! in `interop/` (`interop/run.sh` builds and runs it): the server for
//! their clients, or the client of their echo servers.
//!
//! ```text
//! cargo run --release -p ferrows --example interop -- server [OPTIONS]
//! cargo run --release -p ferrows --example interop -- client URL [OPTIONS]
//! ```
//!
//! The options of each role are described in `server.rs` and `client.rs`;
//! the payloads and the command protocol they share, in `common.rs`.

mod client;
mod common;
mod server;

use std::process::ExitCode;

const USAGE: &str = "usage: interop server [OPTIONS] | interop client URL [OPTIONS] (see the source)";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("server") => match server::main(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("interop server: {e}");
                ExitCode::FAILURE
            }
        },
        Some("client") => client::main(args).await,
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
