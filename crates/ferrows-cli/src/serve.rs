//! `ferrows serve`: the pub/sub server with the browser demo.

use ferrows_server::Server;
use ferrows_server::cli::ServeArgs;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", args.merge().map_err(anyhow::Error::msg)?.to_toml());
        return Ok(());
    }
    let config = args.resolve().map_err(anyhow::Error::msg)?;
    let broker = format!("{:?}", config.broker.kind).to_lowercase();
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
