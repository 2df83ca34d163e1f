//! `ferrows autobahn-client`: the client side of the Autobahn|Testsuite
//! fuzzingserver protocol (case count, run every case as an echo client,
//! then ask for the reports).

use clap::Args;
use ferrows::{ClientConfig, Message};

use crate::echo::echo_messages;

/// Options of `ferrows autobahn-client`.
#[derive(Debug, Args)]
pub(crate) struct AutobahnArgs {
    /// Base URL of the fuzzingserver.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// Agent name under which results are reported.
    #[arg(long, default_value = "ferrows")]
    agent: String,
}

pub(crate) async fn run(args: AutobahnArgs) -> anyhow::Result<()> {
    let config = ClientConfig::default();
    let count = case_count(&args.url).await?;
    println!("running {count} cases");
    for case in 1..=count {
        let url = format!("{}/runCase?case={case}&agent={}", args.url, args.agent);
        match ferrows::connect_with(&url, &config).await {
            Ok(mut ws) => {
                if let Err(e) = echo_messages(&mut ws).await {
                    tracing::debug!(case, "case ended with: {e}");
                }
            }
            Err(e) => tracing::warn!(case, "connect failed: {e}"),
        }
    }
    let mut ws = ferrows::connect(&format!("{}/updateReports?agent={}", args.url, args.agent)).await?;
    while let Some(Ok(_)) = ws.recv().await {}
    println!("reports updated");
    Ok(())
}

/// Asks for the number of cases, retrying for up to 120 s while the
/// fuzzingserver starts.
async fn case_count(url: &str) -> anyhow::Result<u32> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut ws = loop {
        match ferrows::connect(&format!("{url}/getCaseCount")).await {
            Ok(ws) => break ws,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("fuzzingserver not ready: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut count = None;
    while let Some(message) = ws.recv().await {
        if let Message::Text(text) = message? {
            count = Some(text.trim().parse()?);
        }
    }
    count.ok_or_else(|| anyhow::anyhow!("the fuzzingserver sent no case count"))
}
