//! `ferrows connect`: an interactive client. Lines typed on standard input
//! are sent as text messages; what arrives is printed. `/ping [text]`,
//! `/close [code [reason]]` and `/binary <hex>` send the other frame kinds.

use clap::Args;
use ferrows::{ClientConfig, CloseCode, Message, ProxySetting};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Options of `ferrows connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// `ws://` or `wss://` URL.
    url: String,
    /// Subprotocols to offer (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Extra request headers, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Do not offer permessage-deflate.
    #[arg(long)]
    no_compression: bool,
    /// Use the proxy from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY.
    #[arg(long)]
    proxy_from_env: bool,
    /// Trust these PEM root certificates instead of the system's.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
}

pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let mut config = ClientConfig { subprotocols: args.protocols.clone(), ..ClientConfig::default() };
    if args.no_compression {
        config.websocket.deflate = None;
    }
    if args.proxy_from_env {
        config.proxy = ProxySetting::FromEnv;
    }
    if let Some(ca) = &args.ca {
        config.tls = Some(ferrows::tls::client_config_with_roots(&std::fs::read(ca)?)?);
    }
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| anyhow::anyhow!("header must be `Name: value`"))?;
        config.headers.append(http_name(name.trim())?, value.trim().parse()?);
    }
    let ws = ferrows::connect_with(args.url.as_str(), &config).await?;
    eprintln!(
        "connected to {} (subprotocol: {}, compression: {})",
        args.url,
        ws.subprotocol().unwrap_or("none"),
        ws.is_compressed()
    );
    let (mut reader, mut writer) = ws.split();
    let printer = tokio::spawn(async move {
        while let Some(message) = reader.recv().await {
            match message {
                Ok(Message::Text(text)) => println!("{text}"),
                Ok(Message::Binary(data)) => {
                    println!("[binary {} bytes] {}", data.len(), hex(&data[..data.len().min(64)]))
                }
                Ok(Message::Ping(data)) => eprintln!("[ping {}]", String::from_utf8_lossy(&data)),
                Ok(Message::Pong(data)) => eprintln!("[pong {}]", String::from_utf8_lossy(&data)),
                Ok(Message::Close(frame)) => match frame {
                    Some(f) => eprintln!("[closed by peer: {} {}]", f.code, f.reason),
                    None => eprintln!("[closed by peer]"),
                },
                Err(e) => {
                    eprintln!("[error: {e}]");
                    return;
                }
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut closed = false;
    while let Some(line) = lines.next_line().await? {
        let message = if let Some(rest) = line.strip_prefix("/ping") {
            Message::Ping(rest.trim().as_bytes().to_vec().into())
        } else if let Some(rest) = line.strip_prefix("/binary") {
            Message::binary(unhex(rest.trim())?)
        } else if let Some(rest) = line.strip_prefix("/close") {
            let mut parts = rest.trim().splitn(2, ' ');
            let code = parts.next().filter(|c| !c.is_empty()).map_or(Ok(1000), str::parse)?;
            writer.close(CloseCode(code), parts.next().unwrap_or("")).await?;
            closed = true;
            break;
        } else {
            Message::text(line)
        };
        if writer.send(message).await.is_err() {
            break;
        }
    }
    if !closed {
        let _ = writer.close(CloseCode::NORMAL, "").await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), printer).await;
    Ok(())
}

fn http_name(name: &str) -> anyhow::Result<ferrows::http::HeaderName> {
    Ok(name.parse()?)
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        anyhow::bail!("hex needs an even number of digits");
    }
    (0..text.len()).step_by(2).map(|i| Ok(u8::from_str_radix(&text[i..i + 2], 16)?)).collect()
}
