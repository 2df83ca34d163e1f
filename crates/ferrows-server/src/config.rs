//! Configuration: command-line flags, environment variables (`FERROWS_*`)
//! and an optional TOML file, in that order of precedence, over defaults
//! made for a local demo (anonymous clients may subscribe and publish).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ferrows_hub::HistoryLimits;

pub use crate::auth::AuthConfig;
use serde::Deserialize;

/// Largest client message: 64 KiB. Commands are small; a publication
/// larger than this is better sent as a link to the data.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 10;
/// Subscriptions per connection: 128, far beyond what a page needs, small
/// enough that one connection cannot make the server track thousands.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 128;
/// Connections per server: 100 000 (each costs a few KiB when idle).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// A client must send `connect` within 10 s of opening the WebSocket.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive Ping every 25 s (below the 30 s+ idle cut-offs of common
/// proxies); a peer that does not answer within 20 s more is dropped.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// On SIGTERM/SIGINT, clients get this long to take their last messages
/// and the Close 1001 before the process exits anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to send a request head (and to finish the TLS handshake), and
/// again to send its body: 10 s each, so clients that trickle bytes cannot
/// hold sockets for ever (a body is at most 1 MiB: 100 KiB/s suffice).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers): 32 KiB, what common
/// proxies accept (nginx: 4 buffers of 8 KiB), room for big cookies; a
/// larger head gets 431 before it is buffered further.
pub const DEFAULT_MAX_REQUEST_HEAD_SIZE: usize = 32 << 10;
/// Open connections (HTTP and WebSocket) per client address: 1 000, so
/// that one host cannot take every socket of the server. An IPv6 client
/// is counted by its /64 prefix. Behind a reverse proxy every client comes
/// from the proxy's address: set 0 (no limit) there, and limit at the
/// proxy.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1000;
/// Commands a WebSocket client may send per second on average: 1 000, far
/// above what an application's client sends (a chat, a game's moves), low
/// enough that one connection cannot keep a core busy (each command costs
/// the server a few microseconds).
pub const DEFAULT_COMMAND_RATE: u32 = 1000;
/// Commands a client may send at once above the rate: 1 000 (a reconnect
/// resubscribes up to `max_subscriptions` channels in one burst).
pub const DEFAULT_COMMAND_BURST: u32 = 1000;
/// Longest long poll a client may ask for.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(60);

/// Which broker carries publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// In this process (one node).
    #[default]
    Memory,
    /// Redis pub/sub and history (several nodes form one service).
    Redis,
}

/// Per-namespace options (the part of a channel name before `:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Anonymous clients may subscribe (and publish, with `publish`).
    pub anonymous: bool,
    /// Clients may publish (otherwise only the server API may).
    pub publish: bool,
    /// Only users whose token lists the channel may use it.
    pub protected: bool,
    /// Presence is tracked and can be queried.
    pub presence: bool,
    /// Subscribers get join/leave pushes (needs `presence`). Off by
    /// default: every join is pushed to every subscriber, so n clients
    /// joining one channel cost n² pushes (50 million for 10 000); turn it
    /// on for rooms of modest size (the demo's `chat` namespace has it).
    pub join_leave: bool,
    /// Publications kept per channel (0 keeps none: no recovery).
    pub history_size: usize,
    /// Seconds publications are kept.
    pub history_ttl: u64,
    /// Bytes of publications kept per channel.
    pub history_max_bytes: usize,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        let history = HistoryLimits::default();
        Self {
            anonymous: true,
            publish: true,
            protected: false,
            presence: true,
            join_leave: false,
            history_size: history.max_count,
            history_ttl: history.max_age.as_secs(),
            history_max_bytes: history.max_bytes,
        }
    }
}

impl NamespaceConfig {
    /// Whether `user` (`""`: anonymous), whose token grants the channel
    /// patterns `granted`, may read `channel` of this namespace: subscribe,
    /// poll, read its history and presence.
    pub fn may_read(&self, user: &str, granted: &[String], channel: &str) -> bool {
        crate::auth::grants(granted, channel) || (!self.protected && (!user.is_empty() || self.anonymous))
    }

    /// Whether that user may also publish into `channel` (clients publish
    /// where the namespace allows it, or where their token grants it).
    pub fn may_publish(&self, user: &str, granted: &[String], channel: &str) -> bool {
        crate::auth::grants(granted, channel) || (self.publish && self.may_read(user, granted, channel))
    }

    /// The history bounds of the namespace's channels.
    pub fn history_limits(&self) -> HistoryLimits {
        HistoryLimits {
            max_count: self.history_size,
            max_bytes: self.history_max_bytes,
            max_age: Duration::from_secs(self.history_ttl),
        }
    }
}

/// Flags of `ferrows serve` (each also read from `FERROWS_<NAME>`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (flags and environment override it).
    #[arg(long, env = "FERROWS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "FERROWS_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: 8000].
    #[arg(long, short, env = "FERROWS_PORT")]
    pub port: Option<u16>,
    /// Broker [default: memory].
    #[arg(long, env = "FERROWS_BROKER", value_enum)]
    pub broker: Option<BrokerKind>,
    /// Redis URL for `--broker redis`; several, comma-separated, for a
    /// primary and its replicas: the broker uses the primary and follows a
    /// failover [default: redis://127.0.0.1:6379].
    #[arg(long, env = "FERROWS_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Replicas that must confirm a publication before it is acknowledged
    /// (Redis `WAIT`): 1 keeps acknowledged publications through a
    /// failover; 0 does not wait [default: 0].
    #[arg(long, env = "FERROWS_REDIS_MIN_REPLICAS")]
    pub redis_min_replicas: Option<usize>,
    /// Key for the server API (`Authorization: apikey KEY`); without one
    /// the API is disabled.
    #[arg(long, env = "FERROWS_API_KEY")]
    pub api_key: Option<String>,
    /// Secret for HS256 connection tokens.
    #[arg(long, env = "FERROWS_TOKEN_HMAC_SECRET")]
    pub token_hmac_secret: Option<String>,
    /// PEM public key file for RS256 tokens.
    #[arg(long, env = "FERROWS_TOKEN_RSA_PUBLIC_KEY")]
    pub token_rsa_public_key: Option<PathBuf>,
    /// PEM public key file for ES256 tokens.
    #[arg(long, env = "FERROWS_TOKEN_ECDSA_PUBLIC_KEY")]
    pub token_ecdsa_public_key: Option<PathBuf>,
    /// Whether clients may connect without a token [default: true].
    #[arg(long, env = "FERROWS_ALLOW_ANONYMOUS")]
    pub allow_anonymous: Option<bool>,
    /// Browser origins allowed to connect (repeat or comma-separate);
    /// any origin when none is given.
    #[arg(long, env = "FERROWS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origin: Vec<String>,
    /// PEM certificate chain: serve HTTPS and `wss://` (with --tls-key).
    #[arg(long, env = "FERROWS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "FERROWS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to drain clients on SIGTERM/SIGINT [default: 10].
    #[arg(long, env = "FERROWS_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<f64>,
    /// Messages a client's send queue holds before it is dropped as a
    /// slow consumer [default: 1024].
    #[arg(long, env = "FERROWS_CLIENT_QUEUE_MESSAGES")]
    pub client_queue_messages: Option<usize>,
    /// Bytes a client's send queue holds [default: 4 MiB].
    #[arg(long, env = "FERROWS_CLIENT_QUEUE_BYTES")]
    pub client_queue_bytes: Option<usize>,
    /// Largest message a client may send [default: 64 KiB].
    #[arg(long, env = "FERROWS_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Subscriptions per connection [default: 128].
    #[arg(long, env = "FERROWS_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<usize>,
    /// Connections per server [default: 100000].
    #[arg(long, env = "FERROWS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds between keepalive Pings [default: 25].
    #[arg(long, env = "FERROWS_PING_INTERVAL")]
    pub ping_interval: Option<f64>,
    /// Seconds a client has to send `connect` [default: 10].
    #[arg(long, env = "FERROWS_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<f64>,
    /// Seconds a client has to answer a keepalive Ping before it is
    /// dropped as dead [default: 20].
    #[arg(long, env = "FERROWS_PONG_TIMEOUT")]
    pub pong_timeout: Option<f64>,
    /// Seconds a client has to send an HTTP request head (and finish the
    /// TLS handshake), and again its body; later: 408 or cut off [default: 10].
    #[arg(long, env = "FERROWS_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
    /// Largest HTTP request head in bytes; larger ones get 431 [default: 32768].
    #[arg(long, env = "FERROWS_MAX_REQUEST_HEAD_SIZE")]
    pub max_request_head_size: Option<usize>,
    /// Open connections per client address (IPv6: per /64); more get 429;
    /// 0: no limit (behind a reverse proxy) [default: 1000].
    #[arg(long, env = "FERROWS_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Commands per second a WebSocket client may send on average; more
    /// get error 110, and a client that keeps on is closed (4006); 0: no
    /// limit [default: 1000].
    #[arg(long, env = "FERROWS_COMMAND_RATE")]
    pub command_rate: Option<u32>,
    /// Commands a client may send at once above the rate [default: 1000].
    #[arg(long, env = "FERROWS_COMMAND_BURST")]
    pub command_burst: Option<u32>,
}

/// The TOML file: the same settings as the flags (snake_case names), plus
/// `[namespaces.NAME]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    host: Option<IpAddr>,
    port: Option<u16>,
    broker: Option<BrokerKind>,
    redis_url: Option<String>,
    redis_min_replicas: Option<usize>,
    api_key: Option<String>,
    token_hmac_secret: Option<String>,
    token_rsa_public_key: Option<PathBuf>,
    token_ecdsa_public_key: Option<PathBuf>,
    allow_anonymous: Option<bool>,
    allowed_origins: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    shutdown_timeout: Option<f64>,
    client_queue_messages: Option<usize>,
    client_queue_bytes: Option<usize>,
    max_message_size: Option<usize>,
    max_subscriptions: Option<usize>,
    max_connections: Option<usize>,
    ping_interval: Option<f64>,
    connect_timeout: Option<f64>,
    pong_timeout: Option<f64>,
    request_timeout: Option<f64>,
    max_request_head_size: Option<usize>,
    max_connections_per_address: Option<usize>,
    command_rate: Option<u32>,
    command_burst: Option<u32>,
    /// Options of the default namespace (channels without `:`), and of
    /// every namespace when no `[namespaces]` are configured.
    default_namespace: Option<NamespaceConfig>,
    namespaces: HashMap<String, NamespaceConfig>,
    /// Refuse channels of namespaces not named (default: when some are).
    strict_namespaces: Option<bool>,
}

/// The resolved configuration of a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The broker.
    pub broker: BrokerKind,
    /// Redis URLs (redis broker): one, or a primary and its replicas,
    /// comma-separated.
    pub redis_url: String,
    /// Replicas that must confirm a publication (Redis `WAIT`); 0 by
    /// default: Redis's own asynchronous replication, no wait.
    pub redis_min_replicas: usize,
    /// Server API key (API disabled without one).
    pub api_key: Option<String>,
    /// Token verification.
    pub auth: AuthConfig,
    /// Allowed `Origin`s (empty: any).
    pub allowed_origins: Vec<String>,
    /// TLS certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Drain deadline on shutdown.
    pub shutdown_timeout: Duration,
    /// Messages per client queue.
    pub client_queue_messages: usize,
    /// Bytes per client queue.
    pub client_queue_bytes: usize,
    /// Largest client message.
    pub max_message_size: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Connections per server.
    pub max_connections: usize,
    /// Keepalive Ping interval.
    pub ping_interval: Duration,
    /// Time to send `connect`.
    pub connect_timeout: Duration,
    /// Time to answer a keepalive Ping.
    pub pong_timeout: Duration,
    /// Time to send an HTTP request head (and finish TLS), and its body.
    pub request_timeout: Duration,
    /// Largest HTTP request head.
    pub max_request_head_size: usize,
    /// Open connections per client address (0: no limit).
    pub max_connections_per_address: usize,
    /// Commands per second per WebSocket client (0: no limit).
    pub command_rate: u32,
    /// Commands at once above the rate.
    pub command_burst: u32,
    /// The default namespace's options.
    pub default_namespace: NamespaceConfig,
    /// Namespaces with their own options (none by default; `ferrows serve`
    /// without a configuration file has the demo's `chat`).
    pub namespaces: HashMap<String, NamespaceConfig>,
    /// Channels of namespaces not in `namespaces` are refused (error 102)
    /// rather than given the default namespace's options: by default, when
    /// the configuration file names namespaces (`strict_namespaces` in it
    /// says otherwise).
    pub strict_namespaces: bool,
}

/// The demo's configuration (`demo/serve.toml`): what [`Config::resolve`]
/// reads when it is given no configuration file.
const DEMO_CONFIG: &str = include_str!("../demo/serve.toml");

/// The library's defaults: no namespace of the demo.
impl Default for Config {
    fn default() -> Self {
        Self::merge(ServeArgs::default(), FileConfig::default()).expect("defaults are valid")
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{what}: {value} is not a number of seconds"))
}

impl Config {
    /// Merges flags and environment (`args`), the TOML file they name (the
    /// demo's, `demo/serve.toml`, when they name none), and the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Self, String> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => toml::from_str::<FileConfig>(DEMO_CONFIG).map_err(|e| format!("the demo's configuration: {e}"))?,
        };
        Self::merge(args, file)
    }

    fn merge(args: ServeArgs, file: FileConfig) -> Result<Self, String> {
        let read_key = |path: Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
            path.map(|p| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))).transpose()
        };
        let host = args.host.or(file.host).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = args.port.or(file.port).unwrap_or(8000);
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("tls_cert and tls_key go together".into()),
        };
        let allowed_origins = if args.allowed_origin.is_empty() { file.allowed_origins } else { args.allowed_origin };
        let config = Self {
            listen: SocketAddr::new(host, port),
            broker: args.broker.or(file.broker).unwrap_or_default(),
            redis_url: args.redis_url.or(file.redis_url).unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            redis_min_replicas: args.redis_min_replicas.or(file.redis_min_replicas).unwrap_or(0),
            api_key: args.api_key.or(file.api_key).filter(|k| !k.is_empty()),
            auth: AuthConfig {
                hmac_secret: args.token_hmac_secret.or(file.token_hmac_secret).filter(|s| !s.is_empty()),
                rsa_public_key: read_key(args.token_rsa_public_key.or(file.token_rsa_public_key))?,
                ecdsa_public_key: read_key(args.token_ecdsa_public_key.or(file.token_ecdsa_public_key))?,
                allow_anonymous: args.allow_anonymous.or(file.allow_anonymous).unwrap_or(true),
            },
            allowed_origins: allowed_origins.into_iter().map(|o| o.trim_end_matches('/').to_owned()).collect(),
            tls,
            shutdown_timeout: args
                .shutdown_timeout
                .or(file.shutdown_timeout)
                .map_or(Ok(DEFAULT_SHUTDOWN_TIMEOUT), |s| seconds(s, "shutdown_timeout"))?,
            client_queue_messages: args
                .client_queue_messages
                .or(file.client_queue_messages)
                .unwrap_or(ferrows_hub::queue::DEFAULT_QUEUE_MESSAGES)
                .max(1),
            client_queue_bytes: args
                .client_queue_bytes
                .or(file.client_queue_bytes)
                .unwrap_or(ferrows_hub::queue::DEFAULT_QUEUE_BYTES)
                .max(1024),
            max_message_size: args.max_message_size.or(file.max_message_size).unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            max_subscriptions: args.max_subscriptions.or(file.max_subscriptions).unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS),
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            ping_interval: args
                .ping_interval
                .or(file.ping_interval)
                .map_or(Ok(DEFAULT_PING_INTERVAL), |s| seconds(s, "ping_interval"))?,
            connect_timeout: args
                .connect_timeout
                .or(file.connect_timeout)
                .map_or(Ok(DEFAULT_CONNECT_TIMEOUT), |s| seconds(s, "connect_timeout"))?,
            pong_timeout: args
                .pong_timeout
                .or(file.pong_timeout)
                .map_or(Ok(ferrows::DEFAULT_PONG_TIMEOUT), |s| seconds(s, "pong_timeout"))?,
            request_timeout: args
                .request_timeout
                .or(file.request_timeout)
                .map_or(Ok(DEFAULT_REQUEST_TIMEOUT), |s| seconds(s, "request_timeout"))?,
            // hyper's smallest read buffer is 8 KiB.
            max_request_head_size: args
                .max_request_head_size
                .or(file.max_request_head_size)
                .unwrap_or(DEFAULT_MAX_REQUEST_HEAD_SIZE)
                .max(8192),
            max_connections_per_address: args
                .max_connections_per_address
                .or(file.max_connections_per_address)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
            command_rate: args.command_rate.or(file.command_rate).unwrap_or(DEFAULT_COMMAND_RATE),
            command_burst: args.command_burst.or(file.command_burst).unwrap_or(DEFAULT_COMMAND_BURST).max(1),
            default_namespace: file.default_namespace.unwrap_or_default(),
            strict_namespaces: file.strict_namespaces.unwrap_or(!file.namespaces.is_empty()),
            namespaces: file.namespaces,
        };
        Ok(config)
    }

    /// The options of `namespace`; `None` when namespaces are strict and
    /// this one is not among them.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceConfig> {
        if let Some(config) = self.namespaces.get(namespace) {
            return Some(config);
        }
        (namespace.is_empty() || !self.strict_namespaces).then_some(&self.default_namespace)
    }
}

/// Whether `channel` is a valid channel name: 1 to 255 bytes of
/// `[A-Za-z0-9_:.@$-]`.
pub fn is_valid_channel(channel: &str) -> bool {
    (1..=255).contains(&channel.len()) && channel.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:.@$-".contains(&b))
}

/// The namespace of a channel: what precedes the first `:`.
pub fn namespace_of(channel: &str) -> &str {
    channel.split_once(':').map_or("", |(namespace, _)| namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("ferrows-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        std::fs::write(
            &path,
            r#"
port = 9100
api_key = "from-file"
allow_anonymous = false
[namespaces.chat]
presence = true
history_size = 10
[namespaces.news]
publish = false
"#,
        )
        .unwrap();
        let args = ServeArgs { config: Some(path), port: Some(9200), ..ServeArgs::default() };
        let config = Config::resolve(args).unwrap();
        assert_eq!(config.listen.port(), 9200);
        assert_eq!(config.api_key.as_deref(), Some("from-file"));
        assert!(!config.auth.allow_anonymous);
        assert_eq!(config.namespace("chat").unwrap().history_size, 10);
        assert!(!config.namespace("news").unwrap().publish);
        assert!(config.namespace("").is_some(), "the default namespace always exists");
        assert!(config.namespace("other").is_none(), "unknown when namespaces are configured");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/serve.example.toml");
        let config = Config::resolve(ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap();
        assert_eq!(config.broker, BrokerKind::Redis);
        assert!(config.namespace("user").unwrap().protected);
        assert!(config.namespace("").is_some_and(|n| !n.publish));
        assert!(config.namespace("other").is_none());
    }

    #[test]
    fn the_library_defaults_have_no_demo() {
        let config = Config::default();
        assert!(config.namespaces.is_empty() && !config.strict_namespaces);
        assert!(config.namespace("chat").is_some_and(|n| !n.join_leave), "the default namespace's options");
    }

    #[test]
    fn defaults_serve_the_demo() {
        let config = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8000");
        assert!(config.auth.allow_anonymous);
        assert!(config.namespace("chat").is_some_and(|n| n.anonymous && n.publish && n.presence && n.join_leave));
        assert!(config.namespace("bench").is_some_and(|n| n.presence && !n.join_leave), "no n² join storms by default");
        assert!(config.api_key.is_none());
    }

    #[test]
    fn bad_files_are_reported() {
        let dir = std::env::temp_dir().join(format!("ferrows-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        std::fs::write(&path, "prot = 1\n").unwrap();
        let error = Config::resolve(ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap_err();
        assert!(error.contains("prot"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn permissions_follow_the_namespace_and_the_token() {
        let open = NamespaceConfig::default();
        let closed = NamespaceConfig { anonymous: false, publish: false, ..NamespaceConfig::default() };
        let protected = NamespaceConfig { protected: true, ..NamespaceConfig::default() };
        let granted = vec!["p:mine".to_owned()];
        assert!(open.may_read("", &[], "c") && open.may_publish("", &[], "c"));
        assert!(!closed.may_read("", &[], "c"), "anonymous refused");
        assert!(closed.may_read("al", &[], "c") && !closed.may_publish("al", &[], "c"));
        assert!(!protected.may_read("al", &[], "p:x"), "a protected channel needs a grant");
        assert!(protected.may_read("al", &granted, "p:mine") && protected.may_publish("al", &granted, "p:mine"));
        assert!(!protected.may_read("al", &granted, "p:theirs"));
    }

    #[test]
    fn channel_names() {
        assert!(is_valid_channel("chat:lobby"));
        assert!(is_valid_channel("$sys:stats"));
        assert!(!is_valid_channel(""));
        assert!(!is_valid_channel("has space"));
        assert!(!is_valid_channel(&"a".repeat(256)));
        assert_eq!(namespace_of("chat:lobby:x"), "chat");
        assert_eq!(namespace_of("news"), "");
    }
}
