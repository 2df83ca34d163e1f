//! Test support: a real `redis-server` process on a free port of
//! 127.0.0.1, killed when dropped (enabled by the `testing` feature; used
//! by the Redis tests of this crate and of the server).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound of the waits for the server to answer.
const WAIT: Duration = Duration::from_secs(10);

/// A `redis-server` process, killed when dropped.
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    child: Option<Child>,
    /// Its working directory (a replica's full sync writes files there),
    /// removed when dropped.
    dir: std::path::PathBuf,
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn pings(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts a server on a free port (another port if that one was taken
    /// in between).
    pub fn start() -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let serial = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ferrows-redis-{}-{serial}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a directory for redis-server");
            let mut server = Self { port, child: None, dir };
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => last = why,
            }
        }
        panic!("{last}");
    }

    /// Starts the server again on its port (after `kill`).
    pub fn restart(&mut self) {
        if let Err(why) = self.spawn() {
            panic!("{why}");
        }
    }

    /// Starts the server on its port and waits until it answers PING.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // Replicas sync at once, without files.
            .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not installed: run scripts/install-redis.sh")
            }
            Err(err) => panic!("cannot start redis-server: {err}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !pings(self.port) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("redis-server on port {} exited: {status}", self.port));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("redis-server on port {} does not answer PING", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the server (SIGKILL: nothing is saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
