//! The Redis broker: history, positions and presence in Redis, delivery
//! through Redis pub/sub, so several nodes serve the same channels.
//!
//! # Keys
//!
//! For a channel `C` and the key prefix `P` (`ferrows` by default):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P.meta.C` | hash | `epoch`, `top` (the last offset), `bytes` (payload bytes in history), `age` (max age in ms), `ttl` (the meta's own expiry in ms); after a failover lost publications, `prev` (the epoch before) and `fork` (the last offset both share) |
//! | `P.history.C` | stream | one entry per kept publication, ID `offset-0`, fields `t` (time, ms), `d` (data), `i` (info, when there is one) |
//! | `P.presence.C` | hash | client id -> info |
//! | `P.presence-expiry.C` | sorted set | client id, scored by the time (ms) its entry expires |
//!
//! and the pub/sub channel `P.ch.C` carries the channel's events.
//!
//! # History as a stream
//!
//! The history is a Redis stream whose entry IDs are the offsets
//! themselves (`42-0`), so "everything after offset N" is one `XRANGE`
//! from `N+1` in O(log n), without reading what comes before, and the
//! trimming of the oldest entries is an `XDEL` of the stream's head. A list
//! would need the offset of its first element to turn offsets into indexes
//! and would cost O(n) to reach the middle.
//!
//! # Publishing
//!
//! One Lua script (run with `EVALSHA`) does everything a publication needs,
//! atomically: creates the channel's epoch (a random string chosen by the
//! caller, used only when the meta hash does not exist), increments `top`,
//! appends the entry (with Redis's own clock, so every node agrees on
//! times), trims the history by count, by bytes and by age exactly like
//! [`ChannelHistory`](crate::history::ChannelHistory) (the meta keeps the
//! running byte count), sets the history's expiry to `max_age` and the
//! meta's to `max(max_age, 10 min)` (an idle channel keeps its epoch for a
//! while, as with the memory broker), and `PUBLISH`es the event. Offsets
//! are therefore assigned and delivered in the same order on every node.
//!
//! When the history key expires but the meta does not, `top` and the epoch
//! stay and the gap is reported as not recoverable; when the meta expires
//! (or Redis lost its data), the next use creates a new epoch.
//!
//! # Connections and failures
//!
//! Commands go through one multiplexed connection; delivery through a
//! dedicated pub/sub connection. Every call is bounded by
//! [`RedisOptions::command_timeout`] and fails with
//! [`BrokerError::Unavailable`] while Redis cannot be reached (at once when
//! the broker already knows it is disconnected). A background task reads
//! the pub/sub connection, pings both connections every second, and when
//! either fails marks the broker disconnected, tells the handler
//! (`on_connection_change(false)`), then reconnects with exponential
//! backoff between [`RedisOptions::reconnect_min`] and
//! [`RedisOptions::reconnect_max`], subscribes again to every channel this
//! node is subscribed to, and only then reports `on_connection_change(true)`.
//! Nothing is queued while Redis is down.
//!
//! # Pub/sub payloads (version 1)
//!
//! A version byte (`1`) and a kind byte, then:
//!
//! - `p` (publication): `offset \n time_ms \n epoch \n data_len \n has_info \n`
//!   (decimal ASCII, `has_info` is `0` or `1`), then the data bytes and the
//!   info bytes (everything after the data).
//! - `j` (join) and `l` (leave): the client's info bytes.
//!
//! Data and info are carried byte for byte.
//!
//! Needs Redis 5 or later (streams); Redis Cluster is not supported.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Script, ServerErrorKind, Value};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::{BoxFuture, Broker, BrokerError, BrokerEvent, BrokerHandler, BrokerHealth, HistoryAnswer, HistoryQuery};
use crate::history::{HistoryLimits, Publication, StreamPosition};

/// How long a channel's meta (its epoch and last offset) outlives its last
/// use at least, like the memory broker's empty channels.
const META_MIN_TTL: Duration = Duration::from_secs(10 * 60);

/// The longest expiry set on a key (ten years): longer limits are clamped.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// How often the background task checks both connections.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Channels per `SUBSCRIBE` when subscribing again after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 256;

/// The version byte of pub/sub payloads.
const PAYLOAD_VERSION: u8 = 1;

const PUBLISH_SCRIPT: &str = r#"
-- KEYS: meta, history[, idempotency key]. ARGV: epoch if new, data, info,
-- has_info (0/1), max_count, max_bytes, max_age_ms, meta_ttl_ms, pub/sub
-- channel[, idempotency window ms].
local meta, hist, once = KEYS[1], KEYS[2], KEYS[3]
if once then
  local done = redis.call('GET', once)
  if done then
    local sep = string.find(done, ':', 1, true)
    return {string.sub(done, 1, sep - 1), tonumber(string.sub(done, sep + 1))}
  end
end
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  redis.call('DEL', hist)
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0, 'bytes', 0)
elseif redis.call('EXISTS', hist) == 0 then
  redis.call('HSET', meta, 'bytes', 0)
end
local top = redis.call('HINCRBY', meta, 'top', 1)
local t = redis.call('TIME')
local now_s = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local now = tonumber(now_s)
local data, info, has_info = ARGV[2], ARGV[3], ARGV[4]
local id = string.format('%d-0', top)
if has_info == '1' then
  redis.call('XADD', hist, id, 't', now_s, 'd', data, 'i', info)
else
  redis.call('XADD', hist, id, 't', now_s, 'd', data)
end
local bytes = redis.call('HINCRBY', meta, 'bytes', #data + #info)
local max_count, max_bytes, max_age = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local len = redis.call('XLEN', hist)
while len > 0 do
  local oldest = redis.call('XRANGE', hist, '-', '+', 'COUNT', 1)[1]
  local fields, size, time = oldest[2], 0, now
  for i = 1, #fields, 2 do
    if fields[i] == 't' then time = tonumber(fields[i + 1]) else size = size + #fields[i + 1] end
  end
  if len <= max_count and bytes <= max_bytes and now - time <= max_age then break end
  redis.call('XDEL', hist, oldest[1])
  bytes = redis.call('HINCRBY', meta, 'bytes', -size)
  len = len - 1
end
redis.call('PEXPIRE', hist, math.max(max_age, 1))
redis.call('HSET', meta, 'age', ARGV[7], 'ttl', ARGV[8])
redis.call('PEXPIRE', meta, ARGV[8])
local payload = '\1p' .. string.format('%d', top) .. '\n' .. now_s .. '\n' .. epoch .. '\n'
  .. string.format('%d', #data) .. '\n' .. has_info .. '\n' .. data .. info
redis.call('PUBLISH', ARGV[9], payload)
if once then
  redis.call('SET', once, epoch .. ':' .. string.format('%d', top), 'PX', ARGV[10])
end
return {epoch, top}
"#;

const HISTORY_SCRIPT: &str = r#"
-- KEYS: meta, history. ARGV: epoch if new, mode (p: position, l: latest,
-- s: since, r: since the last publication a node delivered), limit, since
-- offset, since epoch, meta ttl ms if none is set, (r) the time of that
-- publication in ms (0: not known).
local meta, hist = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  redis.call('DEL', hist)
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0, 'bytes', 0)
end
local top = tonumber(redis.call('HGET', meta, 'top') or '0')
redis.call('PEXPIRE', meta, redis.call('HGET', meta, 'ttl') or ARGV[6])
local mode = ARGV[2]
if mode == 'p' then return {epoch, top, 1, {}} end
local t = redis.call('TIME')
local now = tonumber(t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)))
local max_age = tonumber(redis.call('HGET', meta, 'age') or '-1')
local function fresh(entry)
  if max_age < 0 then return true end
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 't' then return now - tonumber(fields[i + 1]) <= max_age end
  end
  return true
end
local limit = tonumber(ARGV[3])
if mode == 'l' then
  if limit <= 0 then return {epoch, top, 1, {}} end
  local newest = redis.call('XREVRANGE', hist, '+', '-', 'COUNT', ARGV[3])
  local out = {}
  for i = #newest, 1, -1 do
    if fresh(newest[i]) then out[#out + 1] = newest[i] end
  end
  return {epoch, top, 1, out}
end
local since = tonumber(ARGV[4])
-- Entries after `start`, at most `limit` (a node's replay after a loss).
local function after(start)
  if start >= top then return {} end
  return redis.call('XRANGE', hist, string.format('%d', start + 1), '+', 'COUNT', ARGV[3])
end
if mode == 'r' and since > 0 then
  if ARGV[5] == epoch then
    -- Did the history lose what a node delivered (a replica promoted
    -- before it had it)? Its offset is past the end, or holds another
    -- publication (made at another time).
    local lost, unknown = since > top, false
    if not lost and ARGV[7] ~= '0' then
      local at = redis.call('XRANGE', hist, string.format('%d', since), string.format('%d', since))
      if #at == 1 then
        local fields = at[1][2]
        for i = 1, #fields, 2 do
          if fields[i] == 't' and fields[i + 1] ~= ARGV[7] then lost = true end
        end
      else
        -- Trimmed away: it cannot be checked, nor recovered from.
        unknown = true
      end
    end
    if lost then
      -- A new epoch: nobody recovers across the loss. The fork is the last
      -- entry made before the lost publication: what follows it was made
      -- since, is new to every node, and is replayed.
      local fork = top
      if ARGV[7] ~= '0' then
        local tail = redis.call('XREVRANGE', hist, '+', '-', 'COUNT', ARGV[3])
        for i = 1, #tail do
          local t = 0
          local fields = tail[i][2]
          for k = 1, #fields, 2 do
            if fields[k] == 't' then t = tonumber(fields[k + 1]) end
          end
          if t <= tonumber(ARGV[7]) then break end
          fork = tonumber(string.match(tail[i][1], '^(%d+)')) - 1
        end
      end
      local previous = epoch
      epoch = ARGV[1]
      redis.call('HSET', meta, 'epoch', epoch, 'prev', previous, 'fork', fork)
      return {epoch, fork, 0, after(fork)}
    end
    if unknown then return {epoch, top, 0, {}} end
  elseif ARGV[5] == redis.call('HGET', meta, 'prev') then
    -- Another node found the loss first: the same fork, from where this
    -- one is (it may not have had everything before the fork).
    local start = math.min(since, tonumber(redis.call('HGET', meta, 'fork') or top))
    return {epoch, start, 0, after(start)}
  end
end
if ARGV[5] ~= epoch or since > top then return {epoch, top, 0, {}} end
if since == top then return {epoch, top, 1, {}} end
local missed = top - since
if missed > limit then return {epoch, top, 0, {}} end
local entries = redis.call('XRANGE', hist, string.format('%d', since + 1), '+', 'COUNT', string.format('%d', missed))
if #entries ~= missed then return {epoch, top, 0, {}} end
for i = 1, #entries do
  if not fresh(entries[i]) then return {epoch, top, 0, {}} end
end
return {epoch, top, 1, entries}
"#;

const PRESENCE_ADD_SCRIPT: &str = r#"
-- KEYS: presence hash, expiry sorted set. ARGV: client, info, ttl ms.
local t = redis.call('TIME')
local now = tonumber(t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)))
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%d', now + ttl), ARGV[1])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return 1
"#;

const PRESENCE_SCRIPT: &str = r#"
-- KEYS: presence hash, expiry sorted set. Drops expired entries, returns
-- the rest (HGETALL).
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #expired, 500 do
  redis.call('HDEL', KEYS[1], unpack(expired, i, math.min(i + 499, #expired)))
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
return redis.call('HGETALL', KEYS[1])
"#;

/// Settings of a [`RedisBroker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prefix of every key and pub/sub channel (default `ferrows`), so
    /// several services can share one Redis.
    pub prefix: String,
    /// How long a presence entry lives unless refreshed (default 60 s).
    /// The broker refreshes the entries its node added every 5/12 of it
    /// (25 s by default: two refreshes may fail before an entry lapses),
    /// so the entries of a node that vanished expire within the TTL.
    pub presence_ttl: Duration,
    /// First delay before reconnecting after Redis was lost (default
    /// 100 ms); it doubles after each failed attempt.
    pub reconnect_min: Duration,
    /// Longest delay between two reconnection attempts (default 5 s).
    pub reconnect_max: Duration,
    /// Bound of every Redis call, connecting included (default 2 s): past
    /// it the operation fails with [`BrokerError::Unavailable`].
    pub command_timeout: Duration,
    /// Replicas that must have a publication before it is acknowledged
    /// (Redis's `WAIT`, bounded by `command_timeout`); default 0: Redis
    /// replicates asynchronously, and a failover may lose the last
    /// publications acknowledged before it. With 1 or more, a publication
    /// fewer replicas confirmed fails with [`BrokerError::Unavailable`]
    /// (it is in the primary's history, and may still be delivered), and
    /// while no replica is attached every publication fails.
    pub min_replicas: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "ferrows".into(),
            presence_ttl: Duration::from_secs(60),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
            min_replicas: 0,
        }
    }
}

/// The connections in use while Redis is reachable.
#[derive(Clone)]
struct Live {
    commands: MultiplexedConnection,
    pubsub: PubSubSink,
    /// With `min_replicas`: publications and their `WAIT`, which blocks
    /// the connection it runs on (every other command stays on
    /// `commands`, the health checks included).
    durable: Option<MultiplexedConnection>,
}

#[derive(Debug)]
struct HealthState {
    connected: bool,
    detail: Option<String>,
}

struct Inner {
    /// One per server given; with several, the broker uses the one that is
    /// the primary (`ROLE`).
    clients: Vec<Client>,
    /// The client in use (or tried first on the next connection).
    current: std::sync::atomic::AtomicUsize,
    options: RedisOptions,
    /// `None` while disconnected.
    live: Mutex<Option<Live>>,
    /// Channels this node is subscribed to (by channel name). Held across
    /// `SUBSCRIBE`/`UNSUBSCRIBE` and while subscribing again after a
    /// reconnect, so the set and Redis's view never disagree.
    subscribed: tokio::sync::Mutex<HashSet<String>>,
    handler: OnceLock<Arc<dyn BrokerHandler>>,
    health: Mutex<HealthState>,
    connected: AtomicBool,
    /// Woken by an operation that saw a connection error, so the background
    /// task checks the connections at once.
    suspect: Notify,
    publish: Script,
    history: Script,
    presence_add: Script,
    presence: Script,
    /// The presence entries this node added (channel -> client -> info),
    /// refreshed in Redis before they expire and written again after Redis
    /// lost them.
    own_presence: Mutex<HashMap<String, HashMap<String, Bytes>>>,
}

/// The broker for several nodes: history and presence in Redis, delivery
/// through Redis pub/sub (see the [module documentation](self)).
pub struct RedisBroker {
    inner: Arc<Inner>,
    task: AbortHandle,
    refresher: AbortHandle,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.inner.options.prefix)
            .field("connected", &self.inner.connected.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.task.abort();
        self.refresher.abort();
    }
}

impl RedisBroker {
    /// A publication, once per key of `once` when there is one (the
    /// script checks and records the key with the publication).
    async fn publish_with(
        &self,
        channel: &str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
        once: Option<super::Once<'_>>,
    ) -> Result<StreamPosition, BrokerError> {
        let inner = &self.inner;
        let mut live = inner.live()?;
        let max_age = ms(limits.max_age);
        let meta_ttl = max_age.max(ms(META_MIN_TTL));
        let mut invocation = inner.publish.key(inner.key("meta", channel));
        invocation
            .key(inner.key("history", channel))
            .arg(new_epoch())
            .arg(data.as_ref())
            .arg(info.as_deref().unwrap_or_default())
            .arg(if info.is_some() { "1" } else { "0" })
            .arg(limits.max_count.min(u32::MAX as usize))
            .arg(limits.max_bytes.min(1 << 52))
            .arg(max_age)
            .arg(meta_ttl)
            .arg(inner.pubsub_channel(channel));
        if let Some(once) = once {
            // `#` is in no channel name: the key cannot be another
            // channel's.
            invocation.key(inner.key("once", &format!("{channel}#{}", once.key))).arg(ms(once.window).max(1));
        }
        // With replicas to wait for, the publication and its WAIT go on
        // their own connection (WAIT holds it).
        let connection = live.durable.as_mut().unwrap_or(&mut live.commands);
        let reply: Value = inner.call("publish", invocation.invoke_async(connection)).await?;
        let parsed = as_array(&reply).and_then(|items| match items {
            [epoch, top] => Some(StreamPosition {
                offset: u64::try_from(as_int(top)?).ok()?,
                epoch: String::from_utf8(as_bytes(epoch)?.to_vec()).ok()?,
            }),
            _ => None,
        });
        let position = parsed.ok_or_else(|| bad_reply("publish"))?;
        let wanted = inner.options.min_replicas;
        if wanted > 0 {
            let mut wait = redis::cmd("WAIT");
            // Half the call's bound: a late answer is a refusal, not a
            // broker that stopped answering.
            wait.arg(wanted).arg(ms(inner.options.command_timeout / 2));
            let reached: i64 = inner.call("WAIT", wait.query_async(connection)).await?;
            if (reached.max(0) as usize) < wanted {
                return Err(BrokerError::Unavailable(format!(
                    "publication {} reached {reached} of the {wanted} replicas required",
                    position.offset
                )));
            }
        }
        Ok(position)
    }
    /// Connects to the Redis at `url` (`redis://host:port/db`, with
    /// `user:password@` if needed) and starts the background task that
    /// reads publications and keeps the connections alive. Fails with
    /// [`BrokerError::Backend`] for a malformed URL and with
    /// [`BrokerError::Unavailable`] when Redis cannot be reached now. Must
    /// be called within a Tokio runtime.
    ///
    /// `url` may name several servers, comma-separated: a primary and its
    /// replicas. The broker uses the one whose `ROLE` is `master`, checks
    /// that it still is every second, and after a failover (a replica
    /// promoted by Sentinel, an operator or `REPLICAOF NO ONE`) moves to the
    /// new primary as it would reconnect.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, BrokerError> {
        let clients = url
            .split(',')
            .map(|url| {
                Client::open(url.trim()).map_err(|e| BrokerError::Backend(format!("bad Redis URL {url:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inner = Arc::new(Inner {
            clients,
            current: std::sync::atomic::AtomicUsize::new(0),
            options,
            live: Mutex::new(None),
            subscribed: tokio::sync::Mutex::new(HashSet::new()),
            handler: OnceLock::new(),
            health: Mutex::new(HealthState { connected: false, detail: Some("connecting".into()) }),
            connected: AtomicBool::new(false),
            suspect: Notify::new(),
            publish: Script::new(PUBLISH_SCRIPT),
            history: Script::new(HISTORY_SCRIPT),
            presence_add: Script::new(PRESENCE_ADD_SCRIPT),
            presence: Script::new(PRESENCE_SCRIPT),
            own_presence: Mutex::new(HashMap::new()),
        });
        let stream = inner.establish().await?;
        let task = tokio::spawn(supervise(inner.clone(), stream)).abort_handle();
        let refresher = tokio::spawn(refresh_presence(inner.clone())).abort_handle();
        Ok(Self { inner, task, refresher })
    }

    /// The options it was created with.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A random epoch: 12 hex digits.
fn new_epoch() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn ms(duration: Duration) -> u64 {
    (duration.as_millis().min(u128::from(MAX_TTL_MS)) as u64).max(1)
}

/// Whether an error means Redis cannot be reached (rather than a bad reply).
fn is_unavailable(err: &RedisError) -> bool {
    match err.kind() {
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::ReadOnly
        ),
        ErrorKind::Io => true,
        _ => err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_unrecoverable_error(),
    }
}

impl Inner {
    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}.{kind}.{channel}", self.options.prefix)
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        self.key("ch", channel)
    }

    fn channel_of<'m>(&self, pubsub_channel: &'m str) -> Option<&'m str> {
        pubsub_channel.strip_prefix(self.options.prefix.as_str())?.strip_prefix(".ch.")
    }

    fn live(&self) -> Result<Live, BrokerError> {
        lock(&self.live).clone().ok_or_else(|| BrokerError::Unavailable(self.down_reason()))
    }

    fn down_reason(&self) -> String {
        lock(&self.health).detail.clone().unwrap_or_else(|| "Redis is not connected".into())
    }

    fn set_health(&self, connected: bool, detail: Option<String>) {
        let mut health = lock(&self.health);
        health.connected = connected;
        health.detail = detail;
        self.connected.store(connected, Ordering::SeqCst);
    }

    /// Runs one Redis call within the command timeout, mapping errors.
    async fn call<T>(&self, what: &str, future: impl Future<Output = Result<T, RedisError>>) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.options.command_timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if is_unavailable(&err) => {
                self.suspect.notify_one();
                Err(BrokerError::Unavailable(format!("{what}: {err}")))
            }
            Ok(Err(err)) => Err(BrokerError::Backend(format!("{what}: {err}"))),
            Err(_) => {
                self.suspect.notify_one();
                Err(BrokerError::Unavailable(format!(
                    "{what}: no answer from Redis within {:?}",
                    self.options.command_timeout
                )))
            }
        }
    }

    /// The subscribed set, waiting at most the command timeout for it (it
    /// is held during `SUBSCRIBE`s, which a stalled Redis could hold up).
    async fn lock_subscribed(&self) -> Result<tokio::sync::MutexGuard<'_, HashSet<String>>, BrokerError> {
        tokio::time::timeout(self.options.command_timeout, self.subscribed.lock())
            .await
            .map_err(|_| BrokerError::Unavailable("Redis is not answering subscriptions in time".into()))
    }

    /// Opens both connections to the primary (the first server given
    /// that is one, starting with the one used last), subscribes to every
    /// channel in the set and marks the broker connected. Returns the
    /// pub/sub message stream.
    async fn establish(&self) -> Result<PubSubStream, BrokerError> {
        let count = self.clients.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for k in 0..count {
            let index = (first + k) % count;
            match self.establish_with(index).await {
                Ok(stream) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(stream);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| BrokerError::Unavailable("no Redis server".into())))
    }

    async fn establish_with(&self, index: usize) -> Result<PubSubStream, BrokerError> {
        let client = &self.clients[index];
        let timeout = self.options.command_timeout;
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
        let mut commands = self.call("connect", client.get_multiplexed_async_connection_with_config(&config)).await?;
        if self.clients.len() > 1 {
            self.check_primary(&mut commands).await?;
        }
        let durable = match self.options.min_replicas {
            0 => None,
            _ => Some(self.call("connect", client.get_multiplexed_async_connection_with_config(&config)).await?),
        };
        let pubsub = self.call("connect pub/sub", client.get_async_pubsub()).await?;
        let (mut sink, stream) = pubsub.split();
        let subscribed = self.subscribed.lock().await;
        let names: Vec<String> = subscribed.iter().map(|c| self.pubsub_channel(c)).collect();
        for chunk in names.chunks(RESUBSCRIBE_CHUNK) {
            self.call("subscribe", sink.subscribe(chunk)).await?;
        }
        *lock(&self.live) = Some(Live { commands, pubsub: sink, durable });
        self.set_health(true, None);
        drop(subscribed);
        Ok(stream)
    }

    /// Fails unless the server behind `commands` is a primary.
    async fn check_primary(&self, commands: &mut MultiplexedConnection) -> Result<(), BrokerError> {
        let role: Value = self.call("ROLE", redis::cmd("ROLE").query_async(commands)).await?;
        let role = as_array(&role).and_then(|items| items.first()).and_then(as_bytes).unwrap_or_default();
        if role == b"master" {
            Ok(())
        } else {
            Err(BrokerError::Unavailable(format!(
                "Redis server is a {}, not the primary",
                String::from_utf8_lossy(role)
            )))
        }
    }

    /// Forgets the connections after a failure.
    fn lose(&self, why: String) {
        *lock(&self.live) = None;
        self.set_health(false, Some(why));
    }

    fn handler(&self) -> Option<&Arc<dyn BrokerHandler>> {
        self.handler.get()
    }

    fn deliver(&self, channel: &str, payload: &[u8]) {
        let Some(channel) = self.channel_of(channel) else { return };
        match decode(channel, payload) {
            Some(event) => {
                if let Some(handler) = self.handler() {
                    handler.on_event(event);
                }
            }
            None => tracing::warn!(channel, len = payload.len(), "undecodable Redis broker payload ignored"),
        }
    }

    /// Pings both connections; the reason of the failure if one fails.
    async fn check(&self) -> Result<(), String> {
        let Some(mut live) = lock(&self.live).clone() else { return Err("not connected".into()) };
        let ping = redis::cmd("PING");
        self.call("PING", ping.query_async::<Value>(&mut live.commands)).await.map_err(|e| e.to_string())?;
        self.call("PING (pub/sub)", live.pubsub.ping::<Value>()).await.map_err(|e| e.to_string())?;
        if self.clients.len() > 1 {
            // Demoted (a failover elsewhere): find the new primary.
            self.check_primary(&mut live.commands).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Reads the pub/sub connection and watches both connections until one
/// fails; then reconnects (with backoff) and starts over. Runs until the
/// broker is dropped.
async fn supervise(inner: Arc<Inner>, mut stream: PubSubStream) {
    loop {
        let why = watch(&inner, &mut stream).await;
        drop(stream);
        tracing::warn!(reason = %why, "Redis broker disconnected");
        inner.lose(why);
        if let Some(handler) = inner.handler() {
            handler.on_connection_change(false);
        }
        let mut delay = inner.options.reconnect_min;
        stream = loop {
            tokio::time::sleep(delay).await;
            match inner.establish().await {
                Ok(stream) => break stream,
                Err(err) => {
                    inner.lose(err.to_string());
                    delay = (delay * 2).min(inner.options.reconnect_max.max(inner.options.reconnect_min));
                }
            }
        };
        tracing::info!("Redis broker reconnected");
        if let Some(handler) = inner.handler() {
            handler.on_connection_change(true);
        }
    }
}

/// Presence entries refreshed at once by the refresher.
const PRESENCE_REFRESH_BATCH: usize = 128;

/// Writes this node's presence entries again every 5/12 of their TTL, a
/// batch of calls in flight at a time; entries removed meanwhile may be
/// written once more and then expire.
async fn refresh_presence(inner: Arc<Inner>) {
    let every = (inner.options.presence_ttl * 5 / 12).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let entries: Vec<(String, String, Bytes)> = lock(&inner.own_presence)
            .iter()
            .flat_map(|(channel, clients)| {
                clients.iter().map(move |(client, info)| (channel.clone(), client.clone(), info.clone()))
            })
            .collect();
        for batch in entries.chunks(PRESENCE_REFRESH_BATCH) {
            let writes =
                batch.iter().map(|(channel, client, info)| inner.write_presence(channel, client, info.clone()));
            for result in futures_util::future::join_all(writes).await {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "presence refresh failed");
                }
            }
        }
    }
}

impl Inner {
    /// Writes (or refreshes) one presence entry with the TTL.
    async fn write_presence(&self, channel: &str, client: &str, info: Bytes) -> Result<(), BrokerError> {
        let mut live = self.live()?;
        let mut invocation = self.presence_add.key(self.key("presence", channel));
        invocation
            .key(self.key("presence-expiry", channel))
            .arg(client)
            .arg(info.as_ref())
            .arg(ms(self.options.presence_ttl));
        self.call("presence add", invocation.invoke_async::<Value>(&mut live.commands)).await?;
        Ok(())
    }
}

/// Delivers events until a connection fails; returns why.
async fn watch(inner: &Inner, stream: &mut PubSubStream) -> String {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => inner.deliver(message.get_channel_name(), message.get_payload_bytes()),
                None => return "the pub/sub connection to Redis was closed".into(),
            },
            _ = ping.tick() => {
                if let Err(why) = inner.check().await {
                    return why;
                }
            }
            _ = inner.suspect.notified() => {
                if let Err(why) = inner.check().await {
                    return why;
                }
            }
        }
    }
}

/// Encodes a join or leave event (publications are encoded by the script).
fn encode_event(kind: u8, info: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + info.len());
    payload.extend_from_slice(&[PAYLOAD_VERSION, kind]);
    payload.extend_from_slice(info);
    payload
}

/// Decodes a pub/sub payload (see the module documentation).
fn decode(channel: &str, payload: &[u8]) -> Option<BrokerEvent> {
    let (&version, rest) = payload.split_first()?;
    if version != PAYLOAD_VERSION {
        return None;
    }
    let (&kind, rest) = rest.split_first()?;
    let channel = channel.to_owned();
    match kind {
        b'j' => Some(BrokerEvent::Join { channel, info: Bytes::copy_from_slice(rest) }),
        b'l' => Some(BrokerEvent::Leave { channel, info: Bytes::copy_from_slice(rest) }),
        b'p' => {
            let mut rest = rest;
            let mut field = || -> Option<&str> {
                let end = rest.iter().position(|&b| b == b'\n')?;
                let text = std::str::from_utf8(&rest[..end]).ok()?;
                rest = &rest[end + 1..];
                Some(text)
            };
            let offset: u64 = field()?.parse().ok()?;
            let time_ms: u64 = field()?.parse().ok()?;
            let epoch = field()?.to_owned();
            let data_len: usize = field()?.parse().ok()?;
            let has_info = match field()? {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            if rest.len() < data_len {
                return None;
            }
            let (data, info) = rest.split_at(data_len);
            let info = has_info.then(|| Bytes::copy_from_slice(info));
            let publication = Publication { offset, data: Bytes::copy_from_slice(data), info, time_ms };
            Some(BrokerEvent::Publication { channel, epoch, publication })
        }
        _ => None,
    }
}

fn bad_reply(what: &str) -> BrokerError {
    BrokerError::Backend(format!("unexpected reply from Redis to {what}"))
}

fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => std::str::from_utf8(as_bytes(other)?).ok()?.parse().ok(),
    }
}

fn as_array(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// One history stream entry: `[ "offset-0", [field, value, ...] ]`.
fn parse_entry(entry: &Value) -> Option<Publication> {
    let [id, fields] = as_array(entry)? else { return None };
    let id = std::str::from_utf8(as_bytes(id)?).ok()?;
    let offset = id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()?;
    let mut publication = Publication { offset, data: Bytes::new(), info: None, time_ms: 0 };
    for pair in as_array(fields)?.chunks_exact(2) {
        let value = as_bytes(&pair[1])?;
        match as_bytes(&pair[0])? {
            b"t" => publication.time_ms = std::str::from_utf8(value).ok()?.parse().ok()?,
            b"d" => publication.data = Bytes::copy_from_slice(value),
            b"i" => publication.info = Some(Bytes::copy_from_slice(value)),
            _ => {}
        }
    }
    Some(publication)
}

/// The history script's reply: `[epoch, top, recovered, entries]`.
fn parse_history(reply: &Value) -> Option<HistoryAnswer> {
    let [epoch, top, recovered, entries] = as_array(reply)? else { return None };
    let epoch = String::from_utf8(as_bytes(epoch)?.to_vec()).ok()?;
    let offset = u64::try_from(as_int(top)?).ok()?;
    let publications = as_array(entries)?.iter().map(parse_entry).collect::<Option<Vec<_>>>()?;
    Some(HistoryAnswer { position: StreamPosition { offset, epoch }, publications, recovered: as_int(recovered)? == 1 })
}

impl Broker for RedisBroker {
    fn start(&self, handler: Arc<dyn BrokerHandler>) -> BoxFuture<'_, Result<(), BrokerError>> {
        let _ = self.inner.handler.set(handler);
        Box::pin(async { Ok(()) })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
    ) -> BoxFuture<'a, Result<StreamPosition, BrokerError>> {
        Box::pin(self.publish_with(channel, data, info, limits, None))
    }

    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        data: Bytes,
        info: Option<Bytes>,
        limits: HistoryLimits,
        once: super::Once<'a>,
    ) -> BoxFuture<'a, Result<StreamPosition, BrokerError>> {
        Box::pin(self.publish_with(channel, data, info, limits, Some(once)))
    }

    fn publish_event(&self, event: BrokerEvent) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let (channel, payload) = match &event {
                BrokerEvent::Join { channel, info } => (channel, encode_event(b'j', info)),
                BrokerEvent::Leave { channel, info } => (channel, encode_event(b'l', info)),
                BrokerEvent::Publication { .. } => {
                    return Err(BrokerError::Backend("publications go through publish()".into()));
                }
            };
            let inner = &self.inner;
            let mut live = inner.live()?;
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(inner.pubsub_channel(channel)).arg(payload);
            inner.call("publish event", publish.query_async::<Value>(&mut live.commands)).await?;
            Ok(())
        })
    }
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut subscribed = inner.lock_subscribed().await?;
            let mut live = inner.live()?;
            // SUBSCRIBE answers once Redis registered it: every later
            // PUBLISH reaches this connection.
            inner.call("subscribe", live.pubsub.subscribe(inner.pubsub_channel(channel))).await?;
            subscribed.insert(channel.to_owned());
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut subscribed = inner.lock_subscribed().await?;
            subscribed.remove(channel);
            // While disconnected there is nothing to undo at Redis: the
            // channel is no longer in the set, so it is not subscribed
            // again on reconnect.
            let Ok(mut live) = inner.live() else { return Ok(()) };
            inner.call("unsubscribe", live.pubsub.unsubscribe(inner.pubsub_channel(channel))).await
        })
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryAnswer, BrokerError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut live = inner.live()?;
            let clamp = |limit: usize| limit.min(u32::MAX as usize);
            let (mode, limit, since, time_ms) = match &query {
                HistoryQuery::Position => ("p", 0, None, 0),
                HistoryQuery::Latest(limit) => ("l", clamp(*limit), None, 0),
                HistoryQuery::Since(position, limit) => ("s", clamp(*limit), Some(position), 0),
                HistoryQuery::Resync { last, time_ms, limit } => ("r", clamp(*limit), Some(last), *time_ms),
            };
            let mut invocation = inner.history.key(inner.key("meta", channel));
            invocation
                .key(inner.key("history", channel))
                .arg(new_epoch())
                .arg(mode)
                .arg(limit)
                .arg(since.map_or(0, |p| p.offset.min(1 << 52)))
                .arg(since.map_or("", |p| p.epoch.as_str()))
                .arg(ms(META_MIN_TTL))
                .arg(time_ms);
            let reply: Value = inner.call("history", invocation.invoke_async(&mut live.commands)).await?;
            parse_history(&reply).ok_or_else(|| bad_reply("history"))
        })
    }

    fn presence_add<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
        info: Bytes,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        // Kept even when Redis is down now: the refresher writes it later.
        lock(&self.inner.own_presence).entry(channel.to_owned()).or_default().insert(client.to_owned(), info.clone());
        Box::pin(self.inner.write_presence(channel, client, info))
    }

    fn presence_remove<'a>(&'a self, channel: &'a str, client: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        {
            let mut own = lock(&self.inner.own_presence);
            if let Some(clients) = own.get_mut(channel) {
                clients.remove(client);
                if clients.is_empty() {
                    own.remove(channel);
                }
            }
        }
        Box::pin(async move {
            let inner = &self.inner;
            let mut live = inner.live()?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hdel(inner.key("presence", channel), client)
                .ignore()
                .zrem(inner.key("presence-expiry", channel), client)
                .ignore();
            inner.call("presence remove", pipe.query_async::<Value>(&mut live.commands)).await?;
            Ok(())
        })
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<HashMap<String, Bytes>, BrokerError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut live = inner.live()?;
            let mut invocation = inner.presence.key(inner.key("presence", channel));
            invocation.key(inner.key("presence-expiry", channel));
            let reply: Value = inner.call("presence", invocation.invoke_async(&mut live.commands)).await?;
            let parsed = as_array(&reply).and_then(|items| {
                items
                    .chunks_exact(2)
                    .map(|pair| {
                        let client = String::from_utf8(as_bytes(&pair[0])?.to_vec()).ok()?;
                        Some((client, Bytes::copy_from_slice(as_bytes(&pair[1])?)))
                    })
                    .collect::<Option<HashMap<_, _>>>()
            });
            parsed.ok_or_else(|| bad_reply("presence"))
        })
    }

    fn health(&self) -> BrokerHealth {
        let health = lock(&self.inner.health);
        BrokerHealth { kind: "redis", connected: health.connected, detail: health.detail.clone() }
    }

    /// Redis knows: every node subscribes a channel's Redis channel while
    /// it has subscribers there (`PUBSUB CHANNELS`).
    fn channels(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut live = inner.live()?;
            // The prefix is matched literally: its glob characters escaped.
            let mut pattern = String::new();
            for c in inner.pubsub_channel("").chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('*');
            let mut command = redis::cmd("PUBSUB");
            command.arg("CHANNELS").arg(pattern);
            let names: Vec<String> = inner.call("pubsub channels", command.query_async(&mut live.commands)).await?;
            Ok(names.iter().filter_map(|name| inner.channel_of(name)).map(str::to_owned).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_byte_for_byte() {
        let info = Bytes::from_static(b"{\"client\":\"c1\",\"user\":\"\xc3\xa9\"}");
        for (kind, event) in [
            (b'j', BrokerEvent::Join { channel: "a:b".into(), info: info.clone() }),
            (b'l', BrokerEvent::Leave { channel: "a:b".into(), info: info.clone() }),
        ] {
            assert_eq!(decode("a:b", &encode_event(kind, &info)), Some(event));
        }
        let payload = b"\x01p42\n1700000000123\nabc123\n5\n1\n\"a\nb\"{\"x\":1}";
        let Some(BrokerEvent::Publication { channel, epoch, publication }) = decode("c", payload) else {
            panic!("not decoded");
        };
        assert_eq!((channel.as_str(), epoch.as_str()), ("c", "abc123"));
        assert_eq!(publication.offset, 42);
        assert_eq!(publication.time_ms, 1_700_000_000_123);
        assert_eq!(&publication.data[..], b"\"a\nb\"");
        assert_eq!(publication.info.as_deref(), Some(&b"{\"x\":1}"[..]));
        let no_info = decode("c", b"\x01p1\n5\ne\n2\n0\n{}").unwrap();
        assert!(matches!(no_info, BrokerEvent::Publication { publication: Publication { info: None, .. }, .. }));
    }

    #[test]
    fn malformed_or_unknown_payloads_are_rejected() {
        for payload in
            [&b""[..], b"\x02j{}", b"\x01x", b"\x01p1\n2\ne\n9\n0\n{}", b"\x01p1\n2\ne\n2\n2\n{}", b"\x01pz\n"]
        {
            assert_eq!(decode("c", payload), None, "{payload:?}");
        }
    }
}
