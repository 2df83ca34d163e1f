//! The client's options and the builder that sets them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrows_hub::protocol::Encoding;

use crate::Client;
use crate::error::Error;

/// A boxed future of a token (or why none could be had).
type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Where the `connect` token comes from.
#[derive(Clone, Default)]
pub(crate) enum TokenSource {
    /// Anonymous.
    #[default]
    None,
    /// The same token every time.
    Static(String),
    /// Asked before each connection attempt.
    Provider(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

impl TokenSource {
    /// The token for the next connection attempt.
    pub(crate) async fn get(&self) -> Result<Option<String>, String> {
        match self {
            Self::None => Ok(None),
            Self::Static(token) => Ok(Some(token.clone())),
            Self::Provider(provider) => provider().await.map(Some),
        }
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Static(_) => "Static(..)",
            Self::Provider(_) => "Provider(..)",
        })
    }
}

/// Jittered exponential backoff between connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempt` (0: the first retry) with `urls`
    /// servers: full jitter over `min * 2^round`, capped at `max`, where a
    /// round is one pass over the servers (as the JavaScript client does).
    pub(crate) fn delay(&self, attempt: u32, urls: usize) -> Duration {
        let round = attempt / urls.max(1) as u32;
        let cap = self.min.saturating_mul(2u32.saturating_pow(round.min(31))).min(self.max);
        cap.mul_f64(rand::random::<f64>())
    }
}

/// Everything the connection task needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) urls: Vec<String>,
    pub(crate) token: TokenSource,
    pub(crate) name: Option<String>,
    pub(crate) encoding: Encoding,
    pub(crate) timeout: Duration,
    pub(crate) backoff: Backoff,
    /// `None`: the interval the server announces; `Some(ZERO)`: no pings.
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) websocket: ferrows::ClientConfig,
    /// What `connect` tells the server's connect proxy.
    pub(crate) connect_data: Option<Bytes>,
    /// Whether server-side subscriptions' events are kept for
    /// [`Client::server_subscriptions`](crate::Client::server_subscriptions).
    pub(crate) server_subscriptions: bool,
}

/// Sets a [`Client`]'s options; made by [`Client::builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), ferrows_client::Error> {
/// use std::time::Duration;
/// use ferrows_client::{Client, Encoding};
///
/// let client = Client::builder(["ws://10.0.0.1:8000/ws", "ws://10.0.0.2:8000/ws"])
///     .name("alice")
///     .encoding(Encoding::Msgpack)
///     .timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until connect() or start()"]
pub struct ClientBuilder {
    config: Config,
}

impl ClientBuilder {
    pub(crate) fn new(urls: Vec<String>) -> Self {
        Self {
            config: Config {
                urls,
                token: TokenSource::None,
                name: None,
                encoding: Encoding::Json,
                timeout: Duration::from_secs(10),
                backoff: Backoff { min: Duration::from_millis(250), max: Duration::from_secs(10) },
                ping_interval: None,
                websocket: ferrows::ClientConfig::default(),
                connect_data: None,
                server_subscriptions: false,
            },
        }
    }

    /// A JWT sent with every `connect` (see `docs/protocol.md`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = TokenSource::Static(token.into());
        self
    }

    /// A function called before each connection attempt for the token to
    /// send (a fresh one, say). When it fails, the attempt counts as a
    /// failed connection: the client waits its backoff and calls it again.
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display,
    {
        self.config.token = TokenSource::Provider(Arc::new(move || {
            let token = provider();
            Box::pin(async move { token.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// The display name sent with `connect` (shown in presence and in the
    /// `info` of the client's publications, unless the token names one).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Data sent with every `connect`, for the server's connect proxy (the
    /// application's backend authenticates the client with it): JSON text
    /// with JSON, any bytes with MessagePack.
    pub fn connect_data(mut self, data: impl Into<Bytes>) -> Self {
        self.config.connect_data = Some(data.into());
        self
    }

    /// Keeps the events of server-side subscriptions (channels the server
    /// subscribes the client to: its token's `subs`, the connect proxy's)
    /// for [`Client::server_subscriptions`](crate::Client::server_subscriptions);
    /// without this they are not kept. Their positions are kept either
    /// way, and recovered after a reconnection.
    pub fn server_subscriptions(mut self) -> Self {
        self.config.server_subscriptions = true;
        self
    }

    /// The encoding to speak: [`Encoding::Json`] (the default) or
    /// [`Encoding::Msgpack`], asked for with its WebSocket subprotocol.
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.config.encoding = encoding;
        self
    }

    /// How long a command waits for its reply, including the wait for a
    /// connection when there is none, and how long opening a connection
    /// (up to the `connect` result) may take. 10 s by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The backoff between connection attempts: a random delay up to `min`
    /// doubled once per round over the servers, at most `max` (250 ms and
    /// 10 s by default).
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff = Backoff { min, max: max.max(min) };
        self
    }

    /// How often to send a `ping` command to find dead connections (one
    /// without a reply in [`timeout`](Self::timeout) is dropped and
    /// replaced). By default the interval the server announces in its
    /// `connect` result; `Duration::ZERO` sends none.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = Some(interval);
        self
    }

    /// The WebSocket options (TLS roots, proxy, extra headers, sizes). The
    /// subprotocol is set from the [`encoding`](Self::encoding).
    pub fn websocket_config(mut self, config: ferrows::ClientConfig) -> Self {
        self.config.websocket = config;
        self
    }

    /// Starts the client in the background (on the current tokio runtime)
    /// and returns at once: it connects, and reconnects whenever the
    /// connection is lost. Commands made before it is connected wait for
    /// the connection (up to their timeout).
    ///
    /// Fails only on an unusable configuration (no URL, a URL that is not
    /// `ws://` or `wss://`).
    pub fn start(self) -> Result<Client, Error> {
        self.config.validate()?;
        Ok(Client::spawn(self.config))
    }

    /// Starts the client and waits for its first connection (the
    /// `connect` result is then in [`Client::connection`]). Fails when the
    /// client stops for good first (a rejected token, say), or after the
    /// [`timeout`](Self::timeout) (the client is then stopped).
    pub async fn connect(self) -> Result<Client, Error> {
        let timeout = self.config.timeout;
        let client = self.start()?;
        match tokio::time::timeout(timeout, client.wait_connected()).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout),
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        if self.urls.is_empty() {
            return Err(Error::Config("no server URL".into()));
        }
        for url in &self.urls {
            let uri: ferrows::http::Uri = url.parse().map_err(|e| Error::Config(format!("{url}: {e}")))?;
            if !matches!(uri.scheme_str(), Some("ws" | "wss")) || uri.host().is_none() {
                return Err(Error::Config(format!("{url}: not a ws:// or wss:// URL")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_once_per_round_and_is_capped() {
        let backoff = Backoff { min: Duration::from_millis(100), max: Duration::from_millis(500) };
        for _ in 0..100 {
            assert!(backoff.delay(0, 2) <= Duration::from_millis(100));
            assert!(backoff.delay(1, 2) <= Duration::from_millis(100));
            assert!(backoff.delay(2, 2) <= Duration::from_millis(200));
            assert!(backoff.delay(40, 1) <= Duration::from_millis(500));
        }
    }

    #[test]
    fn urls_must_be_websocket_urls() {
        let check = |urls: &[&str]| ClientBuilder::new(urls.iter().map(|u| u.to_string()).collect()).config.validate();
        assert!(check(&["ws://127.0.0.1:1/ws", "wss://example.com/ws"]).is_ok());
        assert!(matches!(check(&[]), Err(Error::Config(_))));
        assert!(matches!(check(&["http://example.com/ws"]), Err(Error::Config(_))));
        assert!(matches!(check(&["not a url"]), Err(Error::Config(_))));
    }
}
