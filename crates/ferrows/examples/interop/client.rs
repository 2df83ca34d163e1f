//! ferrows as the client of another WebSocket implementation's echo server,
//! for the interop tests in `interop/` (`interop/run.sh` builds and runs it).
//!
//! ```text
//! interop client URL [--no-compression] [--expect-compression yes|no]
//!                    [--send-frame-size N] [--ca CERT.pem] [--commands]
//! ```
//!
//! Against `URL/echo/ID` it checks text and binary echoes of every size in
//! [`SIZES`] (0 B to 16 MiB) byte for byte, a pipelined burst of
//! small messages, a Ping answered by a Pong, and a closing handshake
//! started with code 4000 (the peer must echo 4000). With `--commands`
//! (the peer speaks the command protocol on `URL/cmd`) it also checks that
//! the peer saw the 4000, that fragmented messages from the peer (empty
//! fragments, text split inside characters, megabyte fragments) are
//! reassembled, that a Ping from the peer is answered, and that the peer's
//! Close 4001 "bye" arrives. Every wait is bounded; the exit code is 0 when
//! every check passed.

use std::process::ExitCode;

use crate::common::{Rng, SIZES, b64, binary_payload, text_payload, within};
use bytes::Bytes;
use ferrows::{ClientConfig, CloseCode, CloseFrame, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;
type Check = Result<(), String>;

#[derive(Debug)]
struct Args {
    url: String,
    compression: bool,
    expect_compression: Option<bool>,
    send_frame_size: Option<usize>,
    ca: Option<std::path::PathBuf>,
    commands: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        compression: true,
        expect_compression: None,
        send_frame_size: None,
        ca: None,
        commands: false,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--no-compression" => args.compression = false,
            "--commands" => args.commands = true,
            "--expect-compression" => {
                args.expect_compression = match value("--expect-compression")?.as_str() {
                    "yes" => Some(true),
                    "no" => Some(false),
                    other => return Err(format!("--expect-compression yes|no, not {other}")),
                }
            }
            "--send-frame-size" => {
                let n = value("--send-frame-size")?;
                args.send_frame_size = Some(n.parse().map_err(|e| format!("--send-frame-size {n}: {e}"))?);
            }
            "--ca" => args.ca = Some(value("--ca")?.into()),
            url if !url.starts_with("--") && args.url.is_empty() => args.url = url.trim_end_matches('/').to_owned(),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if args.url.is_empty() {
        return Err("usage: interop client URL [options] (see the source)".into());
    }
    Ok(args)
}

/// Runs every check; success only if all passed.
pub(crate) async fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let result = match parse_args(args) {
        Ok(args) => run(&args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            println!("interop client: all checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("interop client: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client_config(args: &Args) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::default();
    if !args.compression {
        config.websocket.deflate = None;
    }
    if let Some(size) = args.send_frame_size {
        config.websocket.protocol.max_send_frame_size = size;
    }
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        config.tls = Some(ferrows::tls::client_config_with_roots(&pem).map_err(|e| e.to_string())?);
    }
    Ok(config)
}

async fn open(url: &str, config: &ClientConfig) -> Result<Ws, String> {
    within(&format!("connect {url}"), ferrows::connect_with(url, config))
        .await?
        .map_err(|e| format!("connect {url}: {e}"))
}

/// The next message, whatever it is.
async fn next(ws: &mut Ws, what: &str) -> Result<Message, String> {
    match within(what, ws.recv()).await? {
        Some(Ok(message)) => Ok(message),
        Some(Err(e)) => Err(format!("{what}: {e}")),
        None => Err(format!("{what}: the connection ended")),
    }
}

/// The next text or binary message (Pings and Pongs are skipped: Pings
/// are answered by ferrows itself).
async fn next_data(ws: &mut Ws, what: &str) -> Result<Message, String> {
    loop {
        match next(ws, what).await? {
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(frame) => return Err(format!("{what}: got Close {frame:?} instead")),
            data => return Ok(data),
        }
    }
}

async fn send(ws: &mut Ws, message: Message, what: &str) -> Check {
    within(what, ws.send(message)).await?.map_err(|e| format!("{what}: {e}"))
}

fn describe(message: &Message) -> String {
    match message {
        Message::Text(t) => format!("text of {} B", t.len()),
        Message::Binary(b) => format!("binary of {} B", b.len()),
        other => format!("{other:?}"),
    }
}

/// Compares two data messages byte for byte.
fn same(got: &Message, want: &Message, what: &str) -> Check {
    if got == want {
        return Ok(());
    }
    let bytes = |m: &Message| match m {
        Message::Text(t) => t.as_bytes().clone(),
        Message::Binary(b) => b.clone(),
        _ => Bytes::new(),
    };
    let (g, w) = (bytes(got), bytes(want));
    let first_difference = g.iter().zip(w.iter()).position(|(a, b)| a != b).unwrap_or(g.len().min(w.len()));
    Err(format!("{what}: sent {}, got {} (first difference at byte {first_difference})", describe(want), describe(got)))
}

async fn run(args: &Args) -> Check {
    let config = client_config(args)?;
    let id = format!("ferrows-{}-{}", std::process::id(), args.compression as u8);
    let url = format!("{}/echo/{id}", args.url);
    let mut ws = open(&url, &config).await?;
    if let Some(expected) = args.expect_compression
        && ws.is_compressed() != expected
    {
        return Err(format!("permessage-deflate in force: {}, expected {expected}", ws.is_compressed()));
    }
    println!("connected to {url} (permessage-deflate: {})", ws.is_compressed());

    echo_sizes(&mut ws).await?;
    echo_burst(&mut ws).await?;
    ping_pong(&mut ws).await?;
    close_with_4000(&mut ws).await?;

    // `ws` is kept, not dropped, while the commands run: once recv()
    // returned None our side of the TCP connection must be shut down
    // already, or the peer (Python websockets) keeps the connection open
    // and never reports the Close it received.
    if args.commands {
        let cmd_url = format!("{}/cmd", args.url);
        let mut cmd = open(&cmd_url, &config).await?;
        close_seen_by_peer(&mut cmd, &id).await?;
        fragmented_from_peer(&mut cmd).await?;
        ping_from_peer(&mut cmd).await?;
        close_from_peer(&mut cmd).await?;
    }
    drop(ws);
    Ok(())
}

async fn echo_sizes(ws: &mut Ws) -> Check {
    for (i, &size) in SIZES.iter().enumerate() {
        let text = Message::text(text_payload(size, i as u64));
        let binary = Message::binary(binary_payload(size, 1000 + i as u64));
        for message in [text, binary] {
            let what = format!("echo of {}", describe(&message));
            send(ws, message.clone(), &what).await?;
            let got = next_data(ws, &what).await?;
            same(&got, &message, &what)?;
        }
    }
    println!("ok: text and binary echoes of {SIZES:?} bytes");
    Ok(())
}

/// Many small messages queued before any echo is read: ordering and
/// frames that share a read.
async fn echo_burst(ws: &mut Ws) -> Check {
    let mut rng = Rng::new(77);
    let mut sent = Vec::new();
    for i in 0..200u64 {
        let size = (rng.next_u64() % 600) as usize;
        let message = if i % 2 == 0 {
            Message::text(text_payload(size, 5000 + i))
        } else {
            Message::binary(binary_payload(size, 5000 + i))
        };
        within("queue burst", ws.feed(message.clone())).await?.map_err(|e| format!("feed: {e}"))?;
        sent.push(message);
    }
    within("flush burst", ws.flush()).await?.map_err(|e| format!("flush: {e}"))?;
    for (i, want) in sent.iter().enumerate() {
        let what = format!("echo {i} of the burst");
        let got = next_data(ws, &what).await?;
        same(&got, want, &what)?;
    }
    println!("ok: burst of {} small messages echoed in order", sent.len());
    Ok(())
}

async fn ping_pong(ws: &mut Ws) -> Check {
    let payload = Bytes::from_static("ferrows ping ✓".as_bytes());
    send(ws, Message::Ping(payload.clone()), "send Ping").await?;
    loop {
        match next(ws, "Pong").await? {
            Message::Pong(p) if p == payload => break,
            Message::Pong(p) => return Err(format!("Pong with {p:?}, expected {payload:?}")),
            Message::Ping(_) => continue,
            other => return Err(format!("waiting for the Pong: got {}", describe(&other))),
        }
    }
    println!("ok: Ping answered by a Pong with the same payload");
    Ok(())
}

/// Reads to the end of the connection; returns the peer's Close frame.
async fn read_to_end(ws: &mut Ws, what: &str) -> Result<Option<CloseFrame>, String> {
    let mut close = None;
    let mut got_close = false;
    loop {
        match within(what, ws.recv()).await? {
            Some(Ok(Message::Close(frame))) => {
                close = frame;
                got_close = true;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => return Err(format!("{what}: unexpected {}", describe(&other))),
            Some(Err(e)) => return Err(format!("{what}: {e}")),
            None if got_close => return Ok(close),
            None => return Err(format!("{what}: the connection ended without a Close frame")),
        }
    }
}

async fn close_with_4000(ws: &mut Ws) -> Check {
    let frame = CloseFrame { code: CloseCode(4000), reason: "done".into() };
    send(ws, Message::Close(Some(frame)), "send Close 4000").await?;
    let echoed = read_to_end(ws, "closing handshake after our Close 4000").await?;
    match echoed {
        Some(frame) if frame.code == CloseCode(4000) => {}
        other => return Err(format!("the peer answered our Close 4000 with {other:?}")),
    }
    println!("ok: Close 4000 echoed by the peer");
    Ok(())
}

async fn command(cmd: &mut Ws, line: String) -> Result<Message, String> {
    let what = format!("answer to {}", line.split(' ').next().unwrap_or(""));
    send(cmd, Message::text(line), &what).await?;
    next_data(cmd, &what).await
}

async fn close_seen_by_peer(cmd: &mut Ws, id: &str) -> Check {
    let answer = command(cmd, format!("close-seen {id}")).await?;
    if answer != Message::text("closed 4000 done") {
        return Err(format!("the peer saw our Close as {answer:?}, expected \"closed 4000 done\""));
    }
    println!("ok: the peer saw Close 4000 \"done\"");
    Ok(())
}

async fn fragmented_from_peer(cmd: &mut Ws) -> Check {
    // Text split every 3 bytes, so most splits fall inside characters,
    // with empty fragments first, in the middle and last.
    let text = "héllo, wörld: 1€ 😀 𝄞 中文!".as_bytes();
    let mut parts: Vec<&[u8]> = vec![b""];
    for (i, chunk) in text.chunks(3).enumerate() {
        parts.push(chunk);
        if i == 4 {
            parts.push(b"");
        }
    }
    parts.push(b"");
    let big_text = text_payload(300_000, 9);
    let big = big_text.as_bytes();
    let big_parts: Vec<&[u8]> = vec![&big[..100_001], &big[100_001..200_003], &big[200_003..]];
    let blobs: Vec<Vec<u8>> = [0usize, 1, 125, 65536, 1 << 20, 7]
        .iter()
        .enumerate()
        .map(|(i, &n)| binary_payload(n, 300 + i as u64))
        .collect();
    let blob_parts: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let cases: [(&str, &[&[u8]]); 3] = [("text", &parts), ("text", &big_parts), ("binary", &blob_parts)];
    for (kind, parts) in cases {
        let whole = parts.concat();
        let want = if kind == "text" {
            Message::text(String::from_utf8(whole).map_err(|e| e.to_string())?)
        } else {
            Message::binary(whole)
        };
        let encoded: Vec<String> = parts.iter().map(|p| b64(p)).collect();
        let got = command(cmd, format!("fragments {kind} {}", encoded.join(","))).await?;
        same(&got, &want, &format!("{kind} message in {} fragments from the peer", parts.len()))?;
    }
    println!("ok: fragmented messages from the peer reassembled (text split inside characters, empty fragments)");
    Ok(())
}

async fn ping_from_peer(cmd: &mut Ws) -> Check {
    let payload = b64("peer ping ✓".as_bytes());
    let answer = command(cmd, format!("ping {payload}")).await?;
    if answer != Message::text(format!("pong {payload}")) {
        return Err(format!("the peer's Ping: it reported {answer:?}"));
    }
    println!("ok: the peer's Ping was answered with its payload");
    Ok(())
}

async fn close_from_peer(cmd: &mut Ws) -> Check {
    send(cmd, Message::text("close 4001 bye"), "send close command").await?;
    let close = read_to_end(cmd, "closing handshake started by the peer").await?;
    match close {
        Some(frame) if frame.code == CloseCode(4001) && frame.reason == "bye" => {}
        other => return Err(format!("the peer's Close: got {other:?}, expected 4001 \"bye\"")),
    }
    println!("ok: the peer's Close 4001 \"bye\" arrived");
    Ok(())
}
