//! Every setting of `ferrows serve`, declared once: its field, type and
//! default, what it does and why the default is what it is (the doc
//! comment, which is also its `--help` and its row in
//! `docs/configuration.md`), its TOML key, flag and environment variable.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use ferrows_hub::broker::RedisOptions;
use ferrows_hub::queue::{DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_MESSAGES};

use super::declare::settings;
use super::{BrokerKind, NamespaceConfig};

/// The port of the demo's address: free on most machines, and what the
/// docs and scripts point browsers at.
pub const DEFAULT_PORT: u16 = 8000;
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
/// proxies); a peer that does not answer within
/// [`ferrows::DEFAULT_PONG_TIMEOUT`] (20 s) more is dropped.
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
/// hyper's smallest read buffer: a request head limit cannot be lower.
pub const MIN_REQUEST_HEAD_SIZE: usize = 8 << 10;
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
/// Largest request body of the server API (a batch): 1 MiB, a thousand
/// publications of a KiB.
pub const DEFAULT_MAX_API_BODY: usize = 1 << 20;
/// Publications per batch of the server API: 1 000, so that one request
/// cannot hold the server (and the broker) for long.
pub const DEFAULT_MAX_API_BATCH: usize = 1000;
/// Longest long poll a client may ask for: 60 s, below the idle cut-offs
/// of most proxies and load balancers.
pub const DEFAULT_MAX_LONG_POLL: Duration = Duration::from_secs(60);
/// Channels one poll or event stream may name: 32. Their positions travel
/// in the URL and come back in the `Last-Event-ID` header, so that
/// 32 channels of the longest name (255 bytes) still fit in a request
/// head of [`DEFAULT_MAX_REQUEST_HEAD_SIZE`].
pub const DEFAULT_MAX_REQUEST_CHANNELS: usize = 32;
/// A `ping` event on an idle event stream every 15 s: proxies and
/// browsers that cut idle HTTP responses do so after 30 s or more, and a
/// client that hears nothing for two of them (the JavaScript client
/// does this) knows its stream died.
pub const DEFAULT_SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// A publication's idempotency key is remembered 5 minutes: longer than a
/// client's retries across a reconnect take, short enough that the keys
/// of a busy channel stay few (one small entry per keyed publication).
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

/// A backend must answer a proxy request within 3 s: a person waits for
/// a connect, a subscribe or a publication, and a backend that takes
/// longer is better reported as slow (error 111) than waited for.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(3);
/// Proxy requests in flight to the backend per server: 256, what a
/// small backend serves at once; more are refused at once with error 111
/// (temporary) rather than queued, so that a reconnect storm reaches the
/// backend at its pace and clients retry with their backoff.
pub const DEFAULT_PROXY_MAX_IN_FLIGHT: usize = 256;
/// The largest answer a backend may give: 64 KiB, what a client message
/// may hold ([`DEFAULT_MAX_MESSAGE_SIZE`]); an answer ends up in one.
/// With [`DEFAULT_PROXY_MAX_IN_FLIGHT`] that bounds answers in memory to
/// 16 MiB.
pub const DEFAULT_PROXY_MAX_ANSWER: usize = 64 << 10;
/// Times an idempotent proxy request (connect, refresh, subscribe) is
/// sent again after it failed on its way (refused, reset, 502-504),
/// within its [`DEFAULT_PROXY_TIMEOUT`]: once, which rides over a backend
/// restart without doubling the load of one that is down.
pub const DEFAULT_PROXY_RETRIES: u32 = 1;

/// The headers of a client's opening handshake the connect proxy sees:
/// what backends authenticate with (cookies, `Authorization`) and what
/// says where the client is (`Origin`, `User-Agent`, a proxy's
/// `X-Forwarded-For` and `X-Real-IP`). Others stay with the server.
pub fn default_proxy_headers() -> Vec<String> {
    ["cookie", "authorization", "origin", "user-agent", "x-forwarded-for", "x-real-ip"].map(String::from).to_vec()
}

settings! {
    /// The configuration of a server: every setting of `ferrows serve`, in
    /// sections. [`Config::default`] is the library's defaults (no demo
    /// namespace); `ferrows serve` fills it from the TOML file (or the
    /// demo's), then the environment (`FERROWS_*`), then its flags.
    pub struct Config {
        /// Where and how the server listens.
        server: ServerSettings ("Server") {
            /// Address to listen on. The loopback by default, so that a demo
            /// is not reachable from the network by accident.
            host: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
                key = "host", flag = "host", env = "FERROWS_HOST";
            /// Port to listen on; 0 picks a free one.
            port: u16 = DEFAULT_PORT;
                key = "port", flag = "port", short = 'p', env = "FERROWS_PORT";
            /// PEM certificate chain: serve HTTPS and `wss://` (with
            /// `tls_key`).
            tls_cert: Option<PathBuf> = None;
                key = "tls_cert", flag = "tls-cert", env = "FERROWS_TLS_CERT";
            /// PEM private key of `tls_cert`.
            tls_key: Option<PathBuf> = None;
                key = "tls_key", flag = "tls-key", env = "FERROWS_TLS_KEY";
            /// Browser origins allowed to connect (the flag repeats or takes a
            /// comma-separated list); any origin when none is given. Others
            /// get 403.
            allowed_origins: Vec<String> = Vec::new();
                key = "allowed_origins", flag = "allowed-origin", env = "FERROWS_ALLOWED_ORIGINS";
            /// Seconds to drain clients on SIGTERM/SIGINT (their queued
            /// messages and a Close 1001); then the remaining connections are
            /// dropped.
            shutdown_timeout: Duration = DEFAULT_SHUTDOWN_TIMEOUT;
                key = "shutdown_timeout", flag = "shutdown-timeout", env = "FERROWS_SHUTDOWN_TIMEOUT";
            /// Seconds a client has to send an HTTP request head (and finish
            /// the TLS handshake), and again its body; later, the head: the
            /// connection is dropped; the body: 408.
            request_timeout: Duration = DEFAULT_REQUEST_TIMEOUT;
                key = "request_timeout", flag = "request-timeout", env = "FERROWS_REQUEST_TIMEOUT";
        }

        /// What one client, one address or the whole server may take.
        limits: Limits ("Limits") {
            /// Connections per server; more get 503 at the upgrade.
            max_connections: usize = DEFAULT_MAX_CONNECTIONS;
                key = "max_connections", flag = "max-connections", env = "FERROWS_MAX_CONNECTIONS";
            /// Open connections per client address (HTTP and WebSocket; IPv6:
            /// per /64); more get 429 (over TLS: closed). 0: no limit, for a
            /// server behind a reverse proxy, where every client has the
            /// proxy's address.
            max_connections_per_address: usize = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
                key = "max_connections_per_address", flag = "max-connections-per-address",
                env = "FERROWS_MAX_CONNECTIONS_PER_ADDRESS";
            /// Largest message a client may send, in bytes; larger: close
            /// 1009.
            max_message_size: usize = DEFAULT_MAX_MESSAGE_SIZE;
                key = "max_message_size", flag = "max-message-size", env = "FERROWS_MAX_MESSAGE_SIZE", min = 1;
            /// Subscriptions per connection; more: error 106.
            max_subscriptions: usize = DEFAULT_MAX_SUBSCRIPTIONS;
                key = "max_subscriptions", flag = "max-subscriptions", env = "FERROWS_MAX_SUBSCRIPTIONS";
            /// Commands per second a WebSocket client may send on average;
            /// more get error 110, and a client that keeps on is closed
            /// (4006). The requests of one HTTP connection to the client
            /// routes (polls, streams, publishes) count the same way (more:
            /// 429, error 110). 0: no limit.
            command_rate: u32 = DEFAULT_COMMAND_RATE;
                key = "command_rate", flag = "command-rate", env = "FERROWS_COMMAND_RATE";
            /// Commands a client may send at once above the rate.
            command_burst: u32 = DEFAULT_COMMAND_BURST;
                key = "command_burst", flag = "command-burst", env = "FERROWS_COMMAND_BURST", min = 1;
            /// Messages a client's send queue holds before the client is
            /// closed as a slow consumer (4004).
            client_queue_messages: usize = DEFAULT_QUEUE_MESSAGES;
                key = "client_queue_messages", flag = "client-queue-messages", env = "FERROWS_CLIENT_QUEUE_MESSAGES",
                min = 1;
            /// Bytes a client's send queue holds before the client is closed
            /// as a slow consumer (4004).
            client_queue_bytes: usize = DEFAULT_QUEUE_BYTES;
                key = "client_queue_bytes", flag = "client-queue-bytes", env = "FERROWS_CLIENT_QUEUE_BYTES",
                min = 1024;
            /// Largest HTTP request head (request line and headers) in bytes,
            /// at least 8 KiB (hyper's smallest buffer); larger: 431.
            max_request_head_size: usize = DEFAULT_MAX_REQUEST_HEAD_SIZE;
                key = "max_request_head_size", flag = "max-request-head-size", env = "FERROWS_MAX_REQUEST_HEAD_SIZE",
                min = MIN_REQUEST_HEAD_SIZE;
            /// Largest request body of the server API, in bytes; larger: 413.
            max_api_body: usize = DEFAULT_MAX_API_BODY;
                key = "max_api_body", flag = "max-api-body", env = "FERROWS_MAX_API_BODY", min = 1;
            /// Publications per batch of the server API; more: the batch is
            /// refused whole (413, error 106) before any is published.
            max_api_batch: usize = DEFAULT_MAX_API_BATCH;
                key = "max_api_batch", flag = "max-api-batch", env = "FERROWS_MAX_API_BATCH", min = 1;
            /// Longest long poll (`timeout` of `GET /api/poll`) a client may ask
            /// for, in seconds; longer: 400.
            max_long_poll: Duration = DEFAULT_MAX_LONG_POLL;
                key = "max_long_poll", flag = "max-long-poll", env = "FERROWS_MAX_LONG_POLL";
            /// Channels one poll or event stream may name (`channel` of
            /// `GET /api/poll` and `GET /api/stream`); more: 413.
            max_request_channels: usize = DEFAULT_MAX_REQUEST_CHANNELS;
                key = "max_request_channels", flag = "max-request-channels", env = "FERROWS_MAX_REQUEST_CHANNELS",
                min = 1;
        }

        /// The timers of WebSocket sessions and event streams.
        websocket: WebSocketSettings ("Sessions and streams") {
            /// Seconds a client has to send `connect` after opening the
            /// WebSocket; later: close 4005.
            connect_timeout: Duration = DEFAULT_CONNECT_TIMEOUT;
                key = "connect_timeout", flag = "connect-timeout", env = "FERROWS_CONNECT_TIMEOUT";
            /// Seconds between keepalive Pings.
            ping_interval: Duration = DEFAULT_PING_INTERVAL;
                key = "ping_interval", flag = "ping-interval", env = "FERROWS_PING_INTERVAL";
            /// Seconds a client has to answer a keepalive Ping before it is
            /// dropped as dead.
            pong_timeout: Duration = ferrows::DEFAULT_PONG_TIMEOUT;
                key = "pong_timeout", flag = "pong-timeout", env = "FERROWS_PONG_TIMEOUT";
            /// Seconds between keepalive `ping` events on an idle
            /// Server-Sent Events stream (`GET /api/stream`), at least 1.
            sse_keepalive: Duration = DEFAULT_SSE_KEEPALIVE;
                key = "sse_keepalive", flag = "sse-keepalive", env = "FERROWS_SSE_KEEPALIVE",
                min = Duration::from_secs(1);
        }

        /// The application's backend in the loop: HTTP(S) endpoints that
        /// decide what clients do (see `docs/protocol.md`, *The backend in
        /// the loop*).
        proxy: ProxySettings ("Backend proxies") {
            /// URL the connect proxy posts to: the backend authenticates every
            /// WebSocket connection (instead of its token) and says who it is.
            connect_url: Option<http::Uri> = None;
                key = "proxy_connect_url", flag = "proxy-connect-url", env = "FERROWS_PROXY_CONNECT_URL";
            /// URL the refresh proxy posts to when a connection's credentials
            /// expire; without one the client must send `refresh` with a new
            /// token in time, or is closed (4007).
            refresh_url: Option<http::Uri> = None;
                key = "proxy_refresh_url", flag = "proxy-refresh-url", env = "FERROWS_PROXY_REFRESH_URL";
            /// URL the subscribe proxy posts to, for the channels of namespaces
            /// with `proxy_subscribe`.
            subscribe_url: Option<http::Uri> = None;
                key = "proxy_subscribe_url", flag = "proxy-subscribe-url", env = "FERROWS_PROXY_SUBSCRIBE_URL";
            /// URL the publish proxy posts to, for client publications into
            /// namespaces with `proxy_publish`.
            publish_url: Option<http::Uri> = None;
                key = "proxy_publish_url", flag = "proxy-publish-url", env = "FERROWS_PROXY_PUBLISH_URL";
            /// URL the RPC proxy posts to: clients' `rpc` commands; without one
            /// they get error 104.
            rpc_url: Option<http::Uri> = None;
                key = "proxy_rpc_url", flag = "proxy-rpc-url", env = "FERROWS_PROXY_RPC_URL";
            /// Seconds the backend has to answer a proxy request (retries
            /// included); later: error 111 for the client.
            timeout: Duration = DEFAULT_PROXY_TIMEOUT;
                key = "proxy_timeout", flag = "proxy-timeout", env = "FERROWS_PROXY_TIMEOUT",
                min = Duration::from_millis(1);
            /// Proxy requests in flight to the backend at once; more are refused
            /// at once with error 111 (temporary).
            max_in_flight: usize = DEFAULT_PROXY_MAX_IN_FLIGHT;
                key = "proxy_max_in_flight", flag = "proxy-max-in-flight", env = "FERROWS_PROXY_MAX_IN_FLIGHT",
                min = 1;
            /// Largest answer a backend may give, in bytes; larger: error 111.
            max_answer: usize = DEFAULT_PROXY_MAX_ANSWER;
                key = "proxy_max_answer", flag = "proxy-max-answer", env = "FERROWS_PROXY_MAX_ANSWER", min = 64;
            /// Times a connect, refresh or subscribe request is sent again after
            /// failing on its way (never a publication or an RPC, which the
            /// backend may have acted on).
            retries: u32 = DEFAULT_PROXY_RETRIES;
                key = "proxy_retries", flag = "proxy-retries", env = "FERROWS_PROXY_RETRIES";
            /// Secret that signs every proxy request (HMAC-SHA256 of
            /// `TIMESTAMP.BODY` in `X-Ferrows-Signature`), for the backend to
            /// check that a request comes from this server.
            secret: Option<String> = None;
                key = "proxy_secret", flag = "proxy-secret", env = "FERROWS_PROXY_SECRET", secret = true;
            /// Headers of the client's opening handshake that the connect proxy
            /// sees (case-insensitive; the flag repeats or takes a list).
            headers: Vec<String> = default_proxy_headers();
                key = "proxy_headers", flag = "proxy-headers", env = "FERROWS_PROXY_HEADERS";
            /// PEM file of certificate authorities to trust for an `https`
            /// backend, besides the system's (a private CA).
            ca_file: Option<PathBuf> = None;
                key = "proxy_ca_file", flag = "proxy-ca-file", env = "FERROWS_PROXY_CA_FILE";
        }

        /// The broker that carries publications, history and presence.
        broker: BrokerSettings ("Broker") {
            /// Broker: `memory` (this process, one node) or `redis` (several
            /// nodes form one service).
            kind: BrokerKind = BrokerKind::Memory;
                key = "broker", flag = "broker", env = "FERROWS_BROKER";
            /// Redis URL for the redis broker; several, comma-separated, for
            /// a primary and its replicas: the broker uses the primary and
            /// follows a failover. The default is a local Redis's.
            redis_url: String = "redis://127.0.0.1:6379".into();
                key = "redis_url", flag = "redis-url", env = "FERROWS_REDIS_URL";
            /// Replicas that must confirm a publication before it is
            /// acknowledged (Redis `WAIT`, bounded by
            /// `redis_command_timeout`): 1 keeps acknowledged publications
            /// through a failover, and refuses publications (error 100) while
            /// no replica is attached; 0 does not wait.
            redis_min_replicas: usize = RedisOptions::default().min_replicas;
                key = "redis_min_replicas", flag = "redis-min-replicas", env = "FERROWS_REDIS_MIN_REPLICAS";
            /// Prefix of every Redis key and pub/sub channel, so that several
            /// services can share one Redis.
            redis_prefix: String = RedisOptions::default().prefix;
                key = "redis_prefix", flag = "redis-prefix", env = "FERROWS_REDIS_PREFIX";
            /// Seconds a presence entry lives in Redis unless its node
            /// refreshes it (every 5/12 of it), so the entries of a node that
            /// vanished expire.
            redis_presence_ttl: Duration = RedisOptions::default().presence_ttl;
                key = "redis_presence_ttl", flag = "redis-presence-ttl", env = "FERROWS_REDIS_PRESENCE_TTL",
                min = Duration::from_secs(1);
            /// Seconds before the first reconnection to a lost Redis; the
            /// delay doubles after each failed attempt.
            redis_reconnect_min: Duration = RedisOptions::default().reconnect_min;
                key = "redis_reconnect_min", flag = "redis-reconnect-min", env = "FERROWS_REDIS_RECONNECT_MIN",
                min = Duration::from_millis(1);
            /// Longest delay between two reconnections to Redis, in seconds.
            redis_reconnect_max: Duration = RedisOptions::default().reconnect_max;
                key = "redis_reconnect_max", flag = "redis-reconnect-max", env = "FERROWS_REDIS_RECONNECT_MAX",
                min = Duration::from_millis(1);
            /// Seconds a publication's `idempotency_key` is remembered (per
            /// channel, on every node): a publication with the same key within
            /// this is not made again.
            idempotency_window: Duration = DEFAULT_IDEMPOTENCY_WINDOW;
                key = "idempotency_window", flag = "idempotency-window", env = "FERROWS_IDEMPOTENCY_WINDOW",
                min = Duration::from_secs(1);
            /// Bound of every Redis call, connecting included, in seconds;
            /// later: the operation fails (error 100, temporary).
            redis_command_timeout: Duration = RedisOptions::default().command_timeout;
                key = "redis_command_timeout", flag = "redis-command-timeout", env = "FERROWS_REDIS_COMMAND_TIMEOUT",
                min = Duration::from_millis(1);
        }

        /// Who may use the server.
        auth: AuthSettings ("Auth") {
            /// Key of the server API (`Authorization: apikey KEY`); without
            /// one the API is disabled.
            api_key: Option<String> = None;
                key = "api_key", flag = "api-key", env = "FERROWS_API_KEY", secret = true;
            /// Secret of HS256 connection tokens.
            token_hmac_secret: Option<String> = None;
                key = "token_hmac_secret", flag = "token-hmac-secret", env = "FERROWS_TOKEN_HMAC_SECRET", secret = true;
            /// PEM public key file of RS256 connection tokens.
            token_rsa_public_key: Option<PathBuf> = None;
                key = "token_rsa_public_key", flag = "token-rsa-public-key", env = "FERROWS_TOKEN_RSA_PUBLIC_KEY";
            /// PEM public key file of ES256 connection tokens.
            token_ecdsa_public_key: Option<PathBuf> = None;
                key = "token_ecdsa_public_key", flag = "token-ecdsa-public-key", env = "FERROWS_TOKEN_ECDSA_PUBLIC_KEY";
            /// Whether clients may connect without a token (the demo's
            /// default: anyone may try it).
            allow_anonymous: bool = true;
                key = "allow_anonymous", flag = "allow-anonymous", env = "FERROWS_ALLOW_ANONYMOUS";
        }

        /// Namespaces (the part of a channel name before `:`) and their
        /// options. The options themselves are TOML tables only
        /// (`[default_namespace]`, `[namespaces.NAME]`).
        namespaces: Namespaces ("Namespaces") {
            /// Whether channels of namespaces not named are refused (error
            /// 102) rather than given the default namespace's options. Unset:
            /// refused when some namespaces are named.
            strict: Option<bool> = None;
                key = "strict_namespaces", flag = "strict-namespaces", env = "FERROWS_STRICT_NAMESPACES";
        } + {
            /// The options of channels without a namespace, and of every
            /// namespace not named (file: `[default_namespace]`).
            default: NamespaceConfig,
            /// Namespaces with their own options, by name (file:
            /// `[namespaces.NAME]`; none by default, the demo's `chat` when
            /// `ferrows serve` is given no file).
            named: HashMap<String, NamespaceConfig>,
        }
    }
}
