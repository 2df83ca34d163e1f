//! The `ferrows serve` pub/sub server: channels over WebSocket (the
//! protocol of `docs/protocol.md`, in JSON or MessagePack) and, for clients
//! that cannot open one, Server-Sent Events, long polling and polling with
//! publishing, presence and history over HTTP; a server API to publish,
//! history with recovery, presence, JWT auth, Prometheus metrics, graceful
//! shutdown, and the browser demo at `/`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = ferrows_server::Server::start(ferrows_server::Config::default()).await?;
//! println!("demo at http://{}/", server.local_addr());
//! server.wait_for_signal_and_shut_down().await;
//! # Ok(()) }
//! ```

mod access;
mod answer;
mod api;
pub mod auth;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
mod control;
mod expiry;
mod http;
mod http_client;
mod limits;
pub mod metrics;
mod poll;
pub mod proxy;
mod session;
mod sse;
mod state;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{BrokerKind, Config, NamespaceConfig};
use ferrows_hub::broker::{Broker, MemoryBroker};
use tokio::net::TcpListener;

use crate::state::AppState;

/// Why a server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A running server.
#[derive(Debug)]
pub struct Server {
    state: Arc<AppState>,
    local_addr: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds, connects the broker the configuration names (memory or
    /// Redis) and starts serving.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let settings = &config.broker;
        let broker: Arc<dyn Broker> = match settings.kind {
            BrokerKind::Memory => Arc::new(MemoryBroker::new()),
            BrokerKind::Redis => Arc::new(
                ferrows_hub::broker::RedisBroker::connect(&settings.redis_url, settings.redis_options())
                    .await
                    .map_err(|e| StartError(format!("redis {}: {e}", settings.redis_url)))?,
            ),
        };
        Self::start_with(config, broker).await
    }

    /// Binds and starts serving over `broker`, any [`Broker`] (one of an
    /// embedding application's own, say); `config.broker` is not used.
    pub async fn start_with(config: Config, broker: Arc<dyn Broker>) -> Result<Self, StartError> {
        config.check().map_err(StartError)?;
        let tls = match config.server.tls().map_err(StartError)? {
            Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(
                ferrows::tls::server_config_from_files(cert, key).map_err(|e| StartError(format!("TLS: {e}")))?,
            )),
            None => None,
        };
        let listen = config.server.listen_addr();
        let listener = TcpListener::bind(listen).await.map_err(|e| StartError(format!("listen on {listen}: {e}")))?;
        let local_addr = listener.local_addr().map_err(|e| StartError(e.to_string()))?;
        let state = AppState::new(config, broker).await.map_err(StartError)?;
        stats::spawn(state.clone());
        expiry::spawn(state.clone());
        control::spawn(state.clone());
        let accept_task = tokio::spawn(http::accept_loop(listener, tls, state.clone()));
        Ok(Self { state, local_addr, accept_task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.state.config.server.tls_cert.is_some() { "https" } else { "http" }
    }

    /// Graceful shutdown: stops accepting, sends every client its queued
    /// messages and a Close 1001, answers long polls, and returns once
    /// they are done or `config.server.shutdown_timeout` passed.
    pub async fn shut_down(self) {
        self.accept_task.abort();
        // Its listener is closed once the task is gone: the address is
        // free again (a new server may bind it) when this returns.
        let _ = self.accept_task.await;
        self.state.shutdown.cancel();
        self.state.close_sessions();
        let deadline = self.state.config.server.shutdown_timeout;
        self.state.tasks.close();
        let drained = tokio::time::timeout(deadline, self.state.tasks.wait()).await.is_ok();
        if !drained {
            tracing::warn!(remaining = self.state.tasks.len(), "shutdown deadline passed with connections still open");
        }
        self.state.close_lots();
    }

    /// The size of a plain WebSocket connection's task future, which the
    /// task stores for the connection's whole life (for the memory tests).
    #[doc(hidden)]
    pub async fn session_task_size(&self) -> std::io::Result<usize> {
        let listener = TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).await.or(TcpListener::bind((
            std::net::Ipv4Addr::LOCALHOST,
            0,
        ))
        .await)?;
        let (stream, _peer) =
            tokio::try_join!(tokio::net::TcpStream::connect(listener.local_addr()?), listener.accept())?;
        let ws = ferrows::WebSocket::from_raw(
            stream,
            ferrows::proto::Role::Server,
            &self.state.websocket.websocket,
            &Default::default(),
            None,
            Default::default(),
        );
        // Never polled: the session does not start.
        let session = self.state.tasks.track_future(session::run(
            Box::new(ws),
            self.state.clone(),
            limits::AddressSlot::NONE,
            None,
        ));
        Ok(std::mem::size_of_val(&session))
    }

    /// Idle plain-TCP sessions held in the server's lots now, without a
    /// task each (for the memory tests: a session parks there once it has
    /// been quiet for the WebSocket's `park_after`).
    #[doc(hidden)]
    pub fn parked_sessions(&self) -> usize {
        self.state.parked_sessions()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn wait_for_signal_and_shut_down(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shut_down().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            // Without signal handlers, run until killed.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
