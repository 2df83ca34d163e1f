//! The connection task: opens a connection (the next server each time one
//! is lost or cannot be opened), sends `connect`, resubscribes, relays
//! commands and replies, routes pushes to subscriptions, pings, and
//! reconnects with backoff until the client stops.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use ferrows::{CloseCode, MaybeTlsStream, Message, WebSocket};
use ferrows_hub::protocol::{
    self as protocol, Command, Connect, Connected, Data, Encoding, Method, Position, Positioned, Refresh, Refreshed,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until};

use crate::config::Config;
use crate::error::{Error, FATAL_CLOSE_CODES};
use crate::state::{Connection, Disconnect, State};
use crate::subscription::{Event, SubState};

/// How long before its credentials expire the client refreshes them: a
/// tenth of their life, at least 1 s (a token provider may take a while).
fn refresh_lead(expires: u64) -> std::time::Duration {
    std::time::Duration::from_secs((expires / 10).max(1))
}
use crate::wire::{self, Incoming};

/// Close code recorded when a connection ends without a Close frame or
/// cannot be opened.
const ABNORMAL: u16 = 1006;

/// What the application's handles ask of the connection task.
#[derive(Debug)]
pub(crate) enum Request {
    /// A command; its reply's bytes (read by the caller) or why none came.
    Command { method: Method, reply: oneshot::Sender<Result<Bytes, Error>> },
    /// A new subscription.
    Subscribe {
        channel: String,
        key: u64,
        events: mpsc::UnboundedSender<Event>,
        ready: oneshot::Sender<Result<Position, Error>>,
    },
    /// The end of subscription `key` (from `unsubscribe`, or a drop).
    Unsubscribe { channel: String, key: u64, done: Option<oneshot::Sender<Result<(), Error>>> },
    /// Stop (from `close`, or the last `Client` dropped).
    Close { done: Option<oneshot::Sender<()>> },
}

/// A command sent and not answered yet.
#[derive(Debug)]
enum Pending {
    Command(oneshot::Sender<Result<Bytes, Error>>),
    Subscribe { channel: String, generation: u64, since: Option<Position> },
    Unsubscribe(Option<oneshot::Sender<Result<(), Error>>>),
    Ping,
    Refresh,
}

/// Something the connection task does at a given time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Command `id` (one of the task's own) must have its reply by now.
    Deadline(u64),
    /// Time to ping.
    Ping,
    /// Time to send a subscribe again (after a temporary refusal).
    Retry { channel: String, generation: u64 },
    /// Time to refresh the connection's credentials.
    Refresh,
}

/// How a connection (or the wait for one) ended.
#[derive(Debug)]
enum Ended {
    /// Lost, or could not be opened: try again.
    Lost { code: u16, reason: String },
    /// Stopped for good by the server or the application.
    Stopped { code: u16, reason: String, error: Error, done: Option<oneshot::Sender<()>> },
}

impl Ended {
    fn lost(reason: impl Into<String>) -> Self {
        Self::Lost { code: ABNORMAL, reason: reason.into() }
    }

    fn closed(done: Option<oneshot::Sender<()>>) -> Self {
        let reason = "closed by the application".to_owned();
        Self::Stopped { code: 1000, reason: reason.clone(), error: Error::Closed { code: 1000, reason }, done }
    }
}

/// One open connection, after its `connect`.
struct Session {
    ws: WebSocket<MaybeTlsStream>,
    encoding: Encoding,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// The Close frame the server sent, if any.
    close: Option<(u16, String)>,
}

impl Session {
    /// Sends a command; its reply is expected as `pending`.
    async fn send(&mut self, method: Method, pending: Pending) -> Result<u64, Ended> {
        let id = self.write(method).await?;
        self.pending.insert(id, pending);
        Ok(id)
    }

    /// Sends a command with the next id.
    async fn write(&mut self, method: Method) -> Result<u64, Ended> {
        let id = self.next_id;
        self.next_id += 1;
        let message = self.encoding.message(&Command { id, method });
        self.ws.send_prepared(&message).await.map_err(|e| Ended::lost(format!("send: {e}")))?;
        Ok(id)
    }

    fn at(&mut self, when: Instant, timer: Timer) {
        self.timers.push(Reverse((when, timer)));
    }

    /// How the connection ended, from the Close frame if one came.
    fn ended(&mut self, fallback: String) -> Ended {
        match self.close.take() {
            Some((code, reason)) => Ended::Lost { code, reason },
            None => Ended::lost(fallback),
        }
    }
}

/// The connection task's state across connections.
pub(crate) struct Driver {
    config: Arc<Config>,
    requests: mpsc::UnboundedReceiver<Request>,
    state: watch::Sender<State>,
    subs: HashMap<String, SubState>,
    /// Server-side subscriptions, by channel.
    server_subs: HashMap<String, SubState>,
    /// Where their events go (when the application asked for them).
    server_events: Option<mpsc::UnboundedSender<(String, Event)>>,
    /// Commands made while not connected, sent once connected.
    queue: VecDeque<(Method, oneshot::Sender<Result<Bytes, Error>>)>,
    url: usize,
    attempt: u32,
}

impl Driver {
    pub(crate) fn new(
        config: Config,
        requests: mpsc::UnboundedReceiver<Request>,
        state: watch::Sender<State>,
        server_events: Option<mpsc::UnboundedSender<(String, Event)>>,
    ) -> Self {
        Self {
            config: Arc::new(config),
            requests,
            state,
            subs: HashMap::new(),
            server_subs: HashMap::new(),
            server_events,
            queue: VecDeque::new(),
            url: 0,
            attempt: 0,
        }
    }

    /// Runs until the client stops.
    pub(crate) async fn run(mut self) {
        loop {
            let url = self.config.urls[self.url].clone();
            self.state.send_replace(State::Connecting { url: url.clone(), attempt: self.attempt });
            let ended = match self.open(&url).await {
                Ok((mut session, connected)) => {
                    self.attempt = 0;
                    if let Some(expires) = connected.expires {
                        let lead = refresh_lead(expires);
                        let when = Instant::now() + std::time::Duration::from_secs(expires).saturating_sub(lead);
                        session.at(when, Timer::Refresh);
                    }
                    let connection = Connection {
                        url,
                        client: connected.client,
                        user: connected.user,
                        ping: connected.ping,
                        expires: connected.expires,
                        data: connected.data.map(|data| data.0),
                    };
                    let ping = connection.ping;
                    self.state.send_replace(State::Connected(connection));
                    self.serve(session, ping).await
                }
                Err(ended) => ended,
            };
            for sub in self.subs.values_mut().chain(self.server_subs.values_mut()) {
                sub.idle();
            }
            let (code, reason) = match ended {
                Ended::Stopped { code, reason, error, done } => return self.stop(code, reason, error, done),
                Ended::Lost { code, reason } if FATAL_CLOSE_CODES.contains(&code) => {
                    let error = Error::Closed { code, reason: reason.clone() };
                    return self.stop(code, reason, error, None);
                }
                Ended::Lost { code, reason } => (code, reason),
            };
            tracing::debug!(code, reason, url = self.config.urls[self.url], "connection lost");
            // The next server: this one was lost or is down.
            self.url = (self.url + 1) % self.config.urls.len();
            let delay = self.config.backoff.delay(self.attempt, self.config.urls.len());
            self.attempt = self.attempt.saturating_add(1);
            self.state.send_replace(State::Disconnected(Disconnect { code, reason, reconnect_in: Some(delay) }));
            let wait = sleep(delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    request = self.requests.recv() => {
                        if let Err(Ended::Stopped { code, reason, error, done }) = self.offline(request) {
                            return self.stop(code, reason, error, done);
                        }
                    }
                }
            }
        }
    }

    /// Opens a connection to `url` and sends `connect`, within the
    /// timeout, taking requests meanwhile.
    async fn open(&mut self, url: &str) -> Result<(Session, Connected), Ended> {
        let config = self.config.clone();
        // The positions of the server-side subscriptions, to recover from.
        let subs = self
            .server_subs
            .iter()
            .filter_map(|(channel, sub)| Some((channel.clone(), sub.position()?.clone())))
            .collect();
        let opening = tokio::time::timeout(config.timeout, open(&config, url, subs));
        tokio::pin!(opening);
        loop {
            tokio::select! {
                opened = &mut opening => return opened.unwrap_or_else(|_| Err(Ended::lost("connect timeout"))),
                request = self.requests.recv() => self.offline(request)?,
            }
        }
    }

    /// A request while not connected: commands wait for the connection.
    fn offline(&mut self, request: Option<Request>) -> Result<(), Ended> {
        match request {
            None => return Err(Ended::closed(None)),
            Some(Request::Close { done }) => return Err(Ended::closed(done)),
            Some(Request::Command { method, reply }) => {
                if self.queue.len() % 64 == 63 {
                    // Forget commands whose callers gave up.
                    self.queue.retain(|(_, reply)| !reply.is_closed());
                }
                self.queue.push_back((method, reply));
            }
            Some(Request::Subscribe { channel, key, events, ready }) => {
                self.add_subscription(&channel, key, events, ready);
            }
            Some(Request::Unsubscribe { channel, key, done }) => {
                self.remove_subscription(&channel, key);
                if let Some(done) = done {
                    let _ = done.send(Ok(()));
                }
            }
        }
        Ok(())
    }

    /// Adds a subscription; returns whether it was added (a client has one
    /// subscription per channel: a second is refused with error 105).
    fn add_subscription(
        &mut self,
        channel: &str,
        key: u64,
        events: mpsc::UnboundedSender<Event>,
        ready: oneshot::Sender<Result<Position, Error>>,
    ) -> bool {
        if self.subs.contains_key(channel) {
            let _ = ready.send(Err(Error::local(&ferrows_hub::protocol::Error::AlreadySubscribed)));
            return false;
        }
        self.subs.insert(channel.to_owned(), SubState::new(key, events, ready));
        true
    }

    /// Removes subscription `key` (not a later one to the same channel);
    /// returns whether it was subscribed (or subscribing) on the server.
    fn remove_subscription(&mut self, channel: &str, key: u64) -> bool {
        match self.subs.get(channel) {
            Some(sub) if sub.key == key => self.subs.remove(channel).is_some_and(|sub| sub.is_active()),
            _ => false,
        }
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, mut session: Session, server_ping: u64) -> Ended {
        let ended = match self.serve_inner(&mut session, server_ping).await {
            Ok(never) => match never {},
            Err(ended) => ended,
        };
        // Commands in flight: whether they took effect is not known.
        for (_, pending) in session.pending.drain() {
            match pending {
                Pending::Command(reply) => {
                    let _ = reply.send(Err(Error::Disconnected));
                }
                Pending::Unsubscribe(Some(done)) => {
                    // The server forgets the subscriptions of a connection.
                    let _ = done.send(Ok(()));
                }
                _ => {}
            }
        }
        if let Ended::Stopped { .. } = ended {
            let close = session.ws.close(CloseCode::NORMAL, "");
            let _ = tokio::time::timeout(self.config.timeout, close).await;
        }
        ended
    }

    async fn serve_inner(&mut self, session: &mut Session, server_ping: u64) -> Result<Infallible, Ended> {
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.subscribe(session, &channel).await?;
        }
        while let Some((method, reply)) = self.queue.pop_front() {
            if !reply.is_closed() {
                session.send(method, Pending::Command(reply)).await?;
            }
        }
        let interval = match self.config.ping_interval {
            Some(interval) => interval,
            None => std::time::Duration::from_secs(server_ping),
        };
        if !interval.is_zero() {
            session.at(Instant::now() + interval, Timer::Ping);
        }
        loop {
            let next = session.timers.peek().map(|Reverse((when, _))| *when);
            tokio::select! {
                message = session.ws.recv() => match message {
                    Some(Ok(Message::Text(text))) => self.on_message(session, text.into()),
                    Some(Ok(Message::Binary(bytes))) => self.on_message(session, bytes),
                    Some(Ok(Message::Close(frame))) => {
                        session.close = frame.map(|f| (u16::from(f.code), f.reason));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(session.ended(e.to_string())),
                    None => return Err(session.ended("connection closed".into())),
                },
                request = self.requests.recv() => self.online(session, request).await?,
                () = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.on_timers(session, interval).await?;
                }
            }
        }
    }

    /// Sends a subscribe for `channel` (from its last position).
    async fn subscribe(&mut self, session: &mut Session, channel: &str) -> Result<(), Ended> {
        let Some(sub) = self.subs.get_mut(channel) else { return Ok(()) };
        let (subscribe, generation) = sub.subscribing(channel);
        let since = subscribe.since.clone();
        let pending = Pending::Subscribe { channel: channel.to_owned(), generation, since };
        let id = session.send(Method::Subscribe(subscribe), pending).await?;
        session.at(Instant::now() + self.config.timeout, Timer::Deadline(id));
        Ok(())
    }

    /// A request while connected.
    async fn online(&mut self, session: &mut Session, request: Option<Request>) -> Result<(), Ended> {
        match request {
            None => Err(Ended::closed(None)),
            Some(Request::Close { done }) => Err(Ended::closed(done)),
            Some(Request::Command { method, reply }) => {
                if !reply.is_closed() {
                    session.send(method, Pending::Command(reply)).await?;
                }
                Ok(())
            }
            Some(Request::Subscribe { channel, key, events, ready }) => {
                if self.add_subscription(&channel, key, events, ready) {
                    self.subscribe(session, &channel).await?;
                }
                Ok(())
            }
            Some(Request::Unsubscribe { channel, key, done }) => {
                if self.remove_subscription(&channel, key) {
                    let method = Method::Unsubscribe(ferrows_hub::protocol::ChannelArg { channel });
                    session.send(method, Pending::Unsubscribe(done)).await?;
                } else if let Some(done) = done {
                    let _ = done.send(Ok(()));
                }
                Ok(())
            }
        }
    }

    /// A message from the server.
    fn on_message(&mut self, session: &mut Session, bytes: Bytes) {
        let id = match wire::incoming(session.encoding, &bytes) {
            Ok(Incoming::Push(push)) => return self.on_push(push),
            Ok(Incoming::Reply(id)) => id,
            Err(e) => return tracing::warn!("unreadable message from the server: {e}"),
        };
        let Some(pending) = session.pending.remove(&id) else { return };
        match pending {
            Pending::Command(reply) => {
                let _ = reply.send(Ok(bytes));
            }
            Pending::Unsubscribe(done) => {
                let outcome = wire::reply::<ferrows_hub::protocol::Empty>(session.encoding, &bytes).map(|_| ());
                if let Some(done) = done {
                    let _ = done.send(outcome);
                }
            }
            Pending::Ping => {}
            Pending::Refresh => match wire::reply::<Refreshed>(session.encoding, &bytes) {
                Ok(Refreshed { expires: Some(expires) }) => {
                    let lead = refresh_lead(expires);
                    let when = Instant::now() + std::time::Duration::from_secs(expires).saturating_sub(lead);
                    session.at(when, Timer::Refresh);
                }
                Ok(Refreshed { expires: None }) => {}
                // Refused: the server closes the connection at the
                // deadline (4007), and the next one gets a fresh token.
                Err(error) => tracing::warn!("refresh refused: {error}"),
            },
            Pending::Subscribe { channel, generation, since } => {
                let Some(sub) = self.subs.get_mut(&channel).filter(|sub| sub.generation == generation) else {
                    return;
                };
                match wire::reply::<Positioned>(session.encoding, &bytes) {
                    Ok(result) => sub.subscribed(result, since),
                    Err(error) if error.is_temporary() => {
                        // Retried on this connection after a while (or on
                        // the next one).
                        sub.idle();
                        let min = self.config.backoff.min;
                        let delay = min + min.mul_f64(rand::random::<f64>());
                        let generation = sub.generation;
                        session.at(Instant::now() + delay, Timer::Retry { channel, generation });
                    }
                    Err(error) => {
                        if let Some(sub) = self.subs.remove(&channel) {
                            sub.failed(error);
                        }
                    }
                }
            }
        }
    }

    /// A push: to its subscription; a server-side subscription's
    /// beginning and end.
    fn on_push(&mut self, push: protocol::Push) {
        let channel = push.channel;
        match push.event {
            protocol::Event::Subscribe(result) => {
                if self.subs.contains_key(&channel) {
                    return;
                }
                let events = self.server_events.clone();
                let sub = self.server_subs.entry(channel.clone()).or_insert_with(|| SubState::server(&channel, events));
                let since = sub.position().cloned();
                let first = since.is_none();
                sub.subscribed(result, since);
                if first {
                    sub.started();
                }
            }
            protocol::Event::Unsubscribe => {
                if let Some(sub) = self.server_subs.remove(&channel).or_else(|| self.subs.remove(&channel)) {
                    sub.unsubscribed();
                }
            }
            event => {
                if let Some(sub) = self.subs.get_mut(&channel).or_else(|| self.server_subs.get_mut(&channel)) {
                    sub.push(event);
                }
            }
        }
    }

    /// Runs the timers that are due.
    async fn on_timers(&mut self, session: &mut Session, interval: std::time::Duration) -> Result<(), Ended> {
        let now = Instant::now();
        while session.timers.peek().is_some_and(|Reverse((when, _))| *when <= now) {
            let Reverse((_, timer)) = session.timers.pop().expect("peeked");
            match timer {
                Timer::Deadline(id) => {
                    if session.pending.contains_key(&id) {
                        // A connection that does not answer is dead.
                        return Err(Ended::lost("no reply in time"));
                    }
                }
                Timer::Ping => {
                    let id = session.send(Method::Ping, Pending::Ping).await?;
                    session.at(now + self.config.timeout, Timer::Deadline(id));
                    session.at(now + interval, Timer::Ping);
                }
                Timer::Retry { channel, generation } => {
                    if self.subs.get(&channel).is_some_and(|sub| sub.generation == generation) {
                        self.subscribe(session, &channel).await?;
                    }
                }
                Timer::Refresh => {
                    // A token from the provider (a static one cannot be
                    // fresher: the connection ends at its expiry, 4007).
                    if let crate::config::TokenSource::Provider(_) = &self.config.token {
                        let token = tokio::time::timeout(self.config.timeout, self.config.token.get()).await;
                        match token {
                            Ok(Ok(Some(token))) => {
                                let id = session.send(Method::Refresh(Refresh { token }), Pending::Refresh).await?;
                                session.at(now + self.config.timeout, Timer::Deadline(id));
                            }
                            _ => tracing::warn!("no token to refresh the connection with"),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Stops for good: tells everyone waiting.
    fn stop(mut self, code: u16, reason: String, error: Error, done: Option<oneshot::Sender<()>>) {
        tracing::debug!(code, reason, "client stopped");
        self.state.send_replace(State::Disconnected(Disconnect { code, reason, reconnect_in: None }));
        for (_, reply) in self.queue.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, sub) in self.subs.drain().chain(self.server_subs.drain()) {
            sub.failed(error.clone());
        }
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Command { reply, .. } => {
                    let _ = reply.send(Err(error.clone()));
                }
                Request::Subscribe { ready, .. } => {
                    let _ = ready.send(Err(error.clone()));
                }
                Request::Unsubscribe { done: Some(done), .. } => {
                    let _ = done.send(Ok(()));
                }
                Request::Close { done: Some(done) } => {
                    let _ = done.send(());
                }
                _ => {}
            }
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Opens a WebSocket to `url` in the configured encoding and sends
/// `connect`: the session and the `connect` result.
async fn open(config: &Config, url: &str, subs: BTreeMap<String, Position>) -> Result<(Session, Connected), Ended> {
    let token = config.token.get().await.map_err(|e| Ended::lost(format!("token: {e}")))?;
    let mut websocket = config.websocket.clone();
    websocket.subprotocols = vec![config.encoding.subprotocol().to_owned()];
    let ws = ferrows::connect_with(url, &websocket).await.map_err(|e| Ended::lost(e.to_string()))?;
    if Encoding::from_subprotocol(ws.subprotocol()) != Some(config.encoding) {
        let reason = format!("the server does not speak {}", config.encoding.subprotocol());
        return Err(Ended::lost(reason));
    }
    let mut session = Session {
        ws,
        encoding: config.encoding,
        next_id: 1,
        pending: HashMap::new(),
        timers: BinaryHeap::new(),
        close: None,
    };
    let data = config.connect_data.clone().map(Data);
    let connect = Connect { token, name: config.name.clone(), data, subs };
    let id = session.write(Method::Connect(connect)).await?;
    loop {
        let bytes = match session.ws.recv().await {
            Some(Ok(Message::Text(text))) => text.into(),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => {
                session.close = frame.map(|f| (u16::from(f.code), f.reason));
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(session.ended(e.to_string())),
            None => return Err(session.ended("connection closed".into())),
        };
        if !matches!(wire::incoming(session.encoding, &bytes), Ok(Incoming::Reply(reply)) if reply == id) {
            continue;
        }
        return match wire::reply::<Connected>(session.encoding, &bytes) {
            Ok(connected) => Ok((session, connected)),
            // As the JavaScript client: a temporary refusal is retried
            // (with backoff), any other stops the client.
            Err(error) if error.is_temporary() => Err(Ended::lost(error.to_string())),
            Err(error) => {
                let reason = error.to_string();
                let code = match &error {
                    Error::Server(body) if body.code == 101 => ferrows_hub::protocol::close::UNAUTHORIZED,
                    _ => ABNORMAL,
                };
                Err(Ended::Stopped { code, reason, error, done: None })
            }
        };
    }
}
