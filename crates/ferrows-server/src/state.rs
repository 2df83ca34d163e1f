//! What every request and connection of a server shares.

use bytes::Bytes;
use ferrows_hub::StreamPosition;
use ferrows_hub::broker::BrokerEvent;
use ferrows_hub::protocol::{Encoding, Error, Info, Positioned, Presence, Published};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferrows::{ServerConfig, WebSocketConfig};
use ferrows_hub::broker::{Broker, BrokerError};
use ferrows_hub::node::{Fanout, Node, NodeObserver, SubscribeError};
use ferrows_hub::queue::ClientQueue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::{Config, NamespaceConfig, is_valid_channel, namespace_of};
use crate::limits::{AddressTable, RateLimit};
use crate::metrics::Metrics;
use crate::session::SessionOutlet;

/// The node's reports, counted in the server's metrics.
struct MetricsObserver(Arc<Metrics>);

impl NodeObserver for MetricsObserver {
    fn fanout(&self, fanout: &Fanout) {
        let metrics = &self.0;
        if let Some(seconds) = fanout.seconds {
            metrics.fanout_latency.observe(seconds);
        }
        if fanout.direct > 0 {
            metrics.messages_out.inc_by(fanout.direct);
            metrics.direct_out.inc_by(fanout.direct);
            metrics.bytes_out.inc_by(fanout.direct_bytes);
        }
    }

    fn broker_reconnected(&self) {
        self.0.broker_reconnects.inc();
    }
}

/// The namespace of server-made channels (`$sys:stats`): anyone connected
/// may subscribe, nobody may publish, nothing is tracked.
pub(crate) const SYSTEM_NAMESPACE: &str = "$sys";

pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) node: Arc<Node>,
    pub(crate) auth: Authenticator,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) websocket: ServerConfig,
    /// Cancelled when the server shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Connections and long polls, waited for on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Idle plain-TCP sessions, held without a task each: one lot per
    /// worker thread (each lot is one task, which writes the deliveries
    /// to its sessions), sessions spread over them by client number.
    lots: Box<[crate::session::SessionLot]>,
    /// The queue of every WebSocket session (by client number): a shutdown
    /// closes them, so an idle session waits on its queue alone.
    sessions: Mutex<HashMap<u64, ClientQueue<SessionOutlet>>>,
    system_namespace: NamespaceConfig,
    next_client: AtomicU64,
    /// Open connections per client address.
    pub(crate) addresses: AddressTable,
    /// The command rate of every WebSocket client (`None`: no limit).
    pub(crate) command_rate: Option<RateLimit>,
    /// The application's backend, when a proxy is configured.
    pub(crate) backend: Option<crate::proxy::Backend>,
    /// The deadlines of connections whose credentials expire.
    pub(crate) expiries: crate::expiry::Expiries,
    /// Users' sessions on this node, and what the server API told them.
    pub(crate) users: crate::control::Users,
    /// The close code and reason of sessions the server is closing on
    /// purpose (expired, disconnected by the backend or the API), taken
    /// by the session as it ends.
    closing: Mutex<HashMap<u64, (u16, String)>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("listen", &self.config.server.listen_addr()).finish()
    }
}

impl AppState {
    pub(crate) async fn new(mut config: Config, broker: Arc<dyn Broker>) -> Result<Arc<Self>, String> {
        let auth = Authenticator::new(&config.auth.keys()?)?;
        for origin in &mut config.server.allowed_origins {
            origin.truncate(origin.trim_end_matches('/').len());
        }
        // Once here, not at every upgrade: header names are matched in
        // lowercase.
        for name in &mut config.proxy.headers {
            name.make_ascii_lowercase();
        }
        let metrics = Arc::new(Metrics::new());
        let observer = Box::new(MetricsObserver(metrics.clone()));
        let node = Node::start(broker, Some(observer)).await.map_err(|e| e.to_string())?;
        let mut websocket = ServerConfig {
            subprotocols: Encoding::ALL.iter().map(|e| e.subprotocol().to_owned()).collect(),
            websocket: WebSocketConfig {
                ping_interval: Some(config.websocket.ping_interval),
                pong_timeout: config.websocket.pong_timeout,
                // Straight to the lot once a session waits: a quiet spell
                // in the session's task would make a storm of new
                // subscribers hold their tasks and buffers at once, and
                // the allocator keeps the high-water mark of that.
                park_after: std::time::Duration::ZERO,
                ..WebSocketConfig::default()
            },
        };
        websocket.websocket.protocol.max_message_size = config.limits.max_message_size;
        websocket.websocket.protocol.max_frame_size = config.limits.max_message_size;
        // Pushes are written once per node and shared by every subscriber:
        // compress each message on its own so that stays possible. And ask
        // clients to do the same (browsers always offer compression): a
        // decompression context kept between messages holds about 65 KiB
        // per connection for its whole life, 35 times what an idle
        // connection costs otherwise. Commands are small; their ratio
        // barely changes.
        if let Some(deflate) = &mut websocket.websocket.deflate {
            deflate.server_no_context_takeover = true;
            deflate.client_no_context_takeover = true;
        }
        let backend = crate::proxy::Backend::new(&config.proxy, config.namespaces.any_proxy_url(), metrics.clone())?;
        Ok(Arc::new(Self {
            backend,
            expiries: crate::expiry::Expiries::default(),
            users: crate::control::Users::default(),
            closing: Mutex::new(HashMap::new()),
            addresses: AddressTable::new(config.limits.max_connections_per_address),
            command_rate: RateLimit::new(config.limits.command_rate, config.limits.command_burst),
            config,
            node,
            auth,
            metrics,
            websocket,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            #[cfg(unix)]
            lots: (0..std::thread::available_parallelism().map_or(1, |n| n.get()))
                .map(|_| crate::session::SessionLot::new().map_err(|e| format!("the connection lot: {e}")))
                .collect::<Result<_, _>>()?,
            sessions: Mutex::new(HashMap::new()),
            system_namespace: NamespaceConfig {
                anonymous: true,
                publish: false,
                protected: false,
                presence: false,
                join_leave: false,
                history_size: 0,
                history_ttl: 0,
                history_max_bytes: 0,
                proxy_subscribe: false,
                proxy_publish: false,
                proxy_subscribe_url: None,
                proxy_publish_url: None,
            },
            next_client: AtomicU64::new(rand::random::<u32>() as u64),
        }))
    }

    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        self.node.broker()
    }

    /// A client id unique in this process; random start, so ids of two
    /// nodes rarely meet (presence keys also carry the node's start).
    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a session's queue, to be closed on shutdown (at once if
    /// the shutdown already began).
    pub(crate) fn register_session(&self, client: u64, queue: &ClientQueue<SessionOutlet>) {
        self.lock_sessions().insert(client, queue.clone());
        if self.shutdown.is_cancelled() {
            queue.close();
        }
    }

    /// The lot that holds `client` while it is idle.
    #[cfg(unix)]
    pub(crate) fn lot(&self, client: u64) -> &crate::session::SessionLot {
        &self.lots[(client % self.lots.len() as u64) as usize]
    }

    /// Sessions waiting in the lots now.
    pub(crate) fn parked_sessions(&self) -> usize {
        #[cfg(unix)]
        return self.lots.iter().map(|lot| lot.len()).sum();
        #[cfg(not(unix))]
        0
    }

    /// Forgets a session that ended.
    pub(crate) fn unregister_session(&self, client: u64) {
        self.lock_sessions().remove(&client);
        self.expiries.remove(client);
        self.closing.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
    }

    /// Closes session `client` with `code` and `reason` (once it sent what
    /// it holds); whether there is such a session on this node.
    pub(crate) fn disconnect(&self, client: u64, code: u16, reason: &str) -> bool {
        let sessions = self.lock_sessions();
        let Some(queue) = sessions.get(&client) else { return false };
        self.closing.lock().unwrap_or_else(|p| p.into_inner()).entry(client).or_insert((code, reason.to_owned()));
        queue.close();
        true
    }

    /// Wakes session `client` to read its mail.
    pub(crate) fn signal_session(&self, client: u64) {
        if let Some(queue) = self.lock_sessions().get(&client) {
            queue.signal();
        }
    }

    /// Whether session `client` is open on this node.
    pub(crate) fn has_session(&self, client: u64) -> bool {
        self.lock_sessions().contains_key(&client)
    }

    /// The close code and reason the server chose for `client`, if it
    /// closed it on purpose ([`disconnect`](Self::disconnect)).
    pub(crate) fn close_reason(&self, client: u64) -> Option<(u16, String)> {
        self.closing.lock().unwrap_or_else(|p| p.into_inner()).remove(&client)
    }

    /// Closes every session's queue: each sends what it holds, then a
    /// Close 1001. Called after `shutdown` is cancelled.
    pub(crate) fn close_sessions(&self) {
        for queue in self.lock_sessions().values() {
            queue.close();
        }
    }

    /// Stops the lots: their tasks end, and sessions still parked there
    /// (after the shutdown deadline) are dropped with their connections.
    /// Parked sessions hold the state, so the lots would not stop alone.
    pub(crate) fn close_lots(&self) {
        #[cfg(unix)]
        for lot in &self.lots {
            lot.close();
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ClientQueue<SessionOutlet>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The options of `channel`'s namespace, or why there are none (an
    /// invalid name or an unknown namespace).
    pub(crate) fn channel_namespace(&self, channel: &str) -> Result<&NamespaceConfig, Error> {
        if !is_valid_channel(channel) {
            return Err(Error::UnknownChannel(format!("invalid channel name {channel:?}")));
        }
        self.namespace_for(channel).ok_or_else(|| Error::UnknownChannel(format!("unknown namespace of {channel:?}")))
    }

    /// Publishes `data` into `channel` (of `namespace`) with `info` (who
    /// published: `None` for the server API), once per `once` (an
    /// idempotency key, scoped by who gave it) within the
    /// `idempotency_window`.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        namespace: &NamespaceConfig,
        data: Bytes,
        info: Option<Bytes>,
        once: Option<&str>,
    ) -> Result<Published, Error> {
        if data.len() > self.config.limits.max_message_size {
            return Err(Error::LimitExceeded("publication too large".into()));
        }
        let limits = namespace.history_limits();
        let position = match once {
            Some(key) => {
                let once = ferrows_hub::broker::Once { key, window: self.config.broker.idempotency_window };
                self.broker().publish_once(channel, data, info, limits, once).await
            }
            None => self.broker().publish(channel, data, info, limits).await,
        };
        let position = position.map_err(|e| broker_error(&e))?;
        self.metrics.publications.inc();
        Ok(position.into())
    }

    /// Who is subscribed to `channel` (of `namespace`), where presence is
    /// tracked.
    pub(crate) async fn presence(&self, channel: &str, namespace: &NamespaceConfig) -> Result<Presence, Error> {
        if !namespace.presence {
            return Err(Error::PermissionDenied("presence is not enabled here".into()));
        }
        let present = self.broker().presence(channel).await.map_err(|e| broker_error(&e))?;
        Ok(Presence { clients: present.into_iter().map(|(client, info)| (client, Info(info))).collect() })
    }

    /// The latest publications of `channel` (of `namespace`): `limit` of
    /// them at most, and never more than the namespace keeps.
    pub(crate) async fn history(
        &self,
        channel: &str,
        namespace: &NamespaceConfig,
        limit: Option<usize>,
    ) -> Result<Positioned, Error> {
        let limit = limit.unwrap_or(namespace.history_size).min(namespace.history_size);
        let query = ferrows_hub::broker::HistoryQuery::Latest(limit);
        let answer = self.broker().history(channel, query).await.map_err(|e| broker_error(&e))?;
        Ok(Positioned::of(&answer, false, true))
    }

    /// The id of client number `client` in presence and `info`: made from
    /// its number when needed rather than kept by every connection.
    pub(crate) fn client_id(&self, client: u64) -> String {
        format!("{:016x}", client ^ (u64::from(self.config.server.port) << 48))
    }

    /// A client (`client_id`, who is `info`) subscribed to `channel`: in
    /// its presence, and announced, where `namespace` says. Best effort: a
    /// broker that fails forgets presence anyway.
    pub(crate) async fn joined(&self, channel: &str, namespace: &NamespaceConfig, client_id: &str, info: Bytes) {
        if !namespace.presence {
            return;
        }
        let broker = self.broker();
        let _ = broker.presence_add(channel, client_id, info.clone()).await;
        if namespace.join_leave {
            let _ = broker.publish_event(BrokerEvent::Join { channel: channel.to_owned(), info }).await;
        }
    }

    /// The client left `channel`, which it [`joined`](Self::joined).
    pub(crate) async fn left(&self, channel: &str, client_id: &str, info: Bytes) {
        let broker = self.broker();
        let _ = broker.presence_remove(channel, client_id).await;
        if self.namespace_for(channel).is_some_and(|n| n.join_leave) {
            let _ = broker.publish_event(BrokerEvent::Leave { channel: channel.to_owned(), info }).await;
        }
    }

    /// The position a subscription to `channel` recovers from: `since`,
    /// except for server-made channels, which have no history to recover
    /// from (WebSocket subscribes and streams alike).
    pub(crate) fn recovery_from(channel: &str, since: Option<StreamPosition>) -> Option<StreamPosition> {
        since.filter(|_| namespace_of(channel) != SYSTEM_NAMESPACE)
    }

    /// Whether the subscribers that hold a connection open (WebSocket
    /// sessions, event streams, waiting long polls) are as many as
    /// `max_connections` allows, for a stream or a long poll to be refused.
    pub(crate) fn holds_all_subscribers(&self) -> bool {
        let metrics = &self.metrics;
        let open = metrics.connections.get() + metrics.streams.get() + metrics.long_polls.get();
        open.max(0) as usize >= self.config.limits.max_connections
    }

    /// The options of `channel`'s namespace, or `None` (unknown).
    pub(crate) fn namespace_for(&self, channel: &str) -> Option<&NamespaceConfig> {
        let namespace = namespace_of(channel);
        if namespace == SYSTEM_NAMESPACE {
            return Some(&self.system_namespace);
        }
        self.config.namespace(namespace)
    }
}

/// The idempotency key of a client's publication: its user's (keys of
/// different users, and the server API's, never meet).
pub(crate) fn client_key(user: &str, key: &str) -> String {
    format!("u:{user}:{key}")
}

/// The idempotency key of a server API publication.
pub(crate) fn api_key(key: &str) -> String {
    format!("api:{key}")
}

/// The protocol error for a failed subscribe.
pub(crate) fn subscribe_error(error: &SubscribeError) -> Error {
    match error {
        SubscribeError::AlreadySubscribed => Error::AlreadySubscribed,
        SubscribeError::Broker(e) => broker_error(e),
    }
}

/// The protocol error for a broker failure (temporary).
pub(crate) fn broker_error(error: &BrokerError) -> Error {
    Error::Unavailable(error.to_string())
}
