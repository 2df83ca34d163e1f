//! Processes the load generators start and measure: a `ferrows serve`, a
//! backend of the proxies' benchmark. Each is started (optionally pinned
//! to a core with `taskset`), says where it listens on its first output
//! line, and is killed when dropped; with its temporary files.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

/// A file removed when dropped.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    /// A file named after this process and `name` in the temporary
    /// directory, holding `contents`.
    pub(crate) fn with(name: &str, contents: impl AsRef<[u8]>) -> anyhow::Result<Self> {
        let file = Self(std::env::temp_dir().join(format!("ferrows-bench-{}-{name}", std::process::id())));
        std::fs::write(&file.0, contents)?;
        Ok(file)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The arguments of a `ferrows serve` for a benchmark: on the loopback,
/// on a free port, with the API key `key`, no limit of connections per
/// address (every client comes from one), `extra` options, and the
/// configuration file `config`.
pub(crate) fn serve_args(key: &str, extra: &[&str], config: &TempFile) -> Vec<std::ffi::OsString> {
    let base = ["serve", "--host", "127.0.0.1", "--port", "0", "--api-key", key, "--max-connections-per-address", "0"];
    let mut args: Vec<std::ffi::OsString> = base.iter().chain(extra).map(Into::into).collect();
    args.push("--config".into());
    args.push(config.0.clone().into_os_string());
    args
}

/// A process started here, killed when dropped.
pub(crate) struct Started {
    pub(crate) child: Child,
    /// Where it listens (from its first line: `... http://ADDR ...`).
    pub(crate) addr: SocketAddr,
}

impl Started {
    /// Starts `bin` with `args` (on core `cpu` when given) and waits (30 s
    /// at most) for the first line of its output, which names its address
    /// after `://`.
    pub(crate) fn start(
        bin: &std::path::Path,
        args: &[std::ffi::OsString],
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", &cpu.to_string()]).arg(bin);
                taskset
            }
            None => Command::new(bin),
        };
        command.args(args).env("RUST_LOG", "warn");
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("start the process")?;
        let stdout = child.stdout.take().context("its output")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).context("it did not say where it listens")?;
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.trim_end_matches('/').parse().ok())
            .with_context(|| format!("no address in {line:?}"))?;
        Ok(Self { child, addr })
    }

    /// Its process id, as `/proc` names it.
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
