//! `ferrows serve`: the pub/sub server with the browser demo.

use ferrows_server::{Config, ServeArgs, Server};

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args).map_err(anyhow::Error::msg)?;
    let broker = format!("{:?}", config.broker).to_lowercase();
    let server = Server::start(config).await?;
    let (scheme, addr) = (server.scheme(), server.local_addr());
    let ws = if scheme == "https" { "wss" } else { "ws" };
    // Scripts and tests wait for this line.
    println!(
        "listening on {scheme}://{addr} (demo: {scheme}://{addr}/, websocket: {ws}://{addr}/ws, broker: {broker})"
    );
    server.wait_for_signal_and_shut_down().await;
    Ok(())
}
