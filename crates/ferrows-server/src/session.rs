//! One WebSocket client: its commands in, its queue out.
//!
//! Everything the client receives (replies and pushes) goes through its
//! bounded queue, so a subscribe's reply always precedes the publications
//! that follow it, and a client that does not read is dropped (4004) when
//! the queue overflows instead of growing the server's memory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
#[cfg(unix)]
use ferrows::ParkedWebSocket;
#[cfg(unix)]
use ferrows::lot::{Lot, LotStream, Tenant};
use ferrows::{CloseCode, Message, ParkingWebSocket, PreparedMessage, WebSocket};
use ferrows_hub::StreamPosition;
use ferrows_hub::broker::HistoryAnswer;
use ferrows_hub::protocol::payload::DataRef;
use ferrows_hub::protocol::proxy::{ConnectRequest, ConnectResult, ProxyKind, RpcAnswer, RpcRequest};
use ferrows_hub::protocol::{
    ChannelArg, ClientInfo, Connect, Connected, Data, Empty, Encoding, Error, Event, History, Method, ParseError,
    Position, Positioned, Presence, Publish, Published, Push, Refreshed, Reply, Rpc, RpcResult, Subscribe, close,
};
use ferrows_hub::queue::{Batch, ClientQueue, Outlet, QueueGuard, Sent};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Sleep;
#[cfg(unix)]
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::access::{Asker, Refusal};
use crate::auth::Claims;
use crate::config::NamespaceConfig;
use crate::control::Mail;
use crate::expiry::Holder;
use crate::limits::{AddressSlot, CommandRate, Verdict};
use crate::state::{AppState, subscribe_error};

/// A close code of the protocol ([`close`]).
fn closing(code: u16, reason: &'static str) -> End {
    End::Close(CloseCode(code), Cow::Borrowed(reason))
}

/// The `connect`s the connect proxy could not decide (error 111, or a
/// temporary refusal) that one connection may send: 3, then it is closed
/// with 4005 (its client reconnects with its backoff).
const MAX_CONNECT_ATTEMPTS: u8 = 3;

/// What the connect proxy sees of a client's opening handshake: kept
/// from the upgrade until `connect`, and only where there is a connect
/// proxy.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    /// Its `connect`s that the backend could not decide so far.
    pub(crate) attempts: u8,
    /// The client's address.
    pub(crate) address: String,
    /// The headers the allow-list (`proxy_headers`) names: lowercase
    /// name, and the values of a header sent twice joined with `, `.
    pub(crate) headers: std::collections::BTreeMap<String, String>,
}

/// Who a session's client is: not known before `connect`.
enum Who {
    /// Before `connect`, with what the connect proxy may see.
    Connecting(Option<Box<Handshake>>),
    Connected(Identity),
}

/// Who the client is; boxed slices, not vectors: every idle connection
/// keeps one.
struct Identity {
    user: Box<str>,
    /// Its [`ClientInfo`] as JSON, for presence and `info` (16 bytes
    /// here, not the 32 of `Bytes`: see [`Identity::info`]).
    info: Arc<[u8]>,
    /// What only some connections have, boxed: 8 bytes for the others.
    extra: Option<Box<Extra>>,
}

/// The parts of an identity that many connections do without.
struct Extra {
    /// The channel patterns its token or the connect proxy granted.
    grants: Box<[String]>,
    /// What the connect proxy said to keep, sent along in the
    /// connection's later proxy requests.
    meta: Option<Box<serde_json::value::RawValue>>,
}

impl Identity {
    /// The `info` for the broker: shares the session's copy.
    fn info(&self) -> Bytes {
        Bytes::from_owner(self.info.clone())
    }
}

/// A subscribed channel and whether presence is tracked in it.
struct Subscription {
    channel: Box<str>,
    presence: bool,
    /// Made by the server (the token's `subs`, the connect proxy's): the
    /// client may not leave it.
    server_side: bool,
}

pub(crate) struct Session {
    state: Arc<AppState>,
    client: u64,
    queue: ClientQueue<SessionOutlet>,
    who: Who,
    /// In subscription order; a few per connection, searched linearly
    /// (bounded by `max_subscriptions`). A boxed slice (8 bytes less than
    /// a vector for every idle connection), made again on each change.
    subscriptions: Box<[Subscription]>,
    /// Where its connection is counted for its address (given back when
    /// the session is dropped).
    address: AddressSlot,
    /// Its use of the command rate.
    rate: CommandRate,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state.addresses.leave(self.address);
    }
}

/// How a session ended, for the Close frame.
enum End {
    Peer,
    Close(CloseCode, Cow<'static, str>),
}

/// What the idle wait of a session ends with.
enum Step {
    Command(Bytes),
    /// The server API told it something (its mail).
    Mail,
    End(End),
    /// Connected, parked and waiting: the session may leave its task for
    /// the lot.
    Idle,
}

/// What [`Session::serve`] ends with.
enum Served {
    End(End),
    Idle,
}

/// A stream sessions run over, and whether its idle sessions leave their
/// task for the server's [`Lot`] (plain TCP only: the lot holds standard
/// sockets).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    /// Whether [`leave`](Self::leave) hands sessions to the lot.
    const LEAVES: bool = false;

    /// Takes an idle, connected session with its parked connection out of
    /// its task (the task ends). Where it cannot, it goes on in a new task.
    fn leave(session: Session, conn: ParkingWebSocket<Self>) {
        spawn_drive(session, conn);
    }
}

/// Serves the session on in a task of its own (tracked for shutdown).
fn spawn_drive<S: Transport>(session: Session, conn: ParkingWebSocket<S>) {
    let tasks = session.state.tasks.clone();
    drop(tasks.spawn(drive(session, conn)));
}

/// The lot is Unix's (epoll, kqueue): elsewhere sessions keep their task.
#[cfg(not(unix))]
impl Transport for TcpStream {}

#[cfg(unix)]
impl Transport for TcpStream {
    const LEAVES: bool = true;

    fn leave(session: Session, conn: ParkingWebSocket<Self>) {
        match conn.into_parked() {
            Ok(parked) => {
                let lot = session.state.lot(session.client).clone();
                let task = session.state.tasks.token();
                lot.park(ParkedSession { session, _task: task }, parked);
            }
            Err(conn) => spawn_drive(session, conn),
        }
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}
impl Transport for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}

/// What a session's queue sends into at once ([`ClientQueue::deliver`]):
/// the connection's socket while the session waits in the lot with
/// nothing queued ([`ParkedSession`] opens and shuts it), nothing
/// otherwise (messages are queued for the session's task).
/// (The node's fan-out observer counts what it sends: see `AppState`.)
#[derive(Default)]
pub(crate) struct SessionOutlet {
    #[cfg(unix)]
    open: Option<ferrows::lot::Outlet>,
}

impl Outlet for SessionOutlet {
    fn send(&mut self, message: &PreparedMessage) -> Sent {
        #[cfg(unix)]
        if let Some(outlet) = &self.open {
            let frame = outlet.frame(message);
            #[allow(unsafe_code)]
            // SAFETY: an outlet is open only while its connection is in
            // the lot: `ParkedSession` opens it there and shuts it in
            // `leaving`, which the lot calls before the socket leaves or
            // closes. Both happen under the queue's lock, which this call
            // holds, so the socket is open for the whole call. (The
            // session's own writes while parked are made under the same
            // lock, so none overlaps this one.)
            let sent = unsafe { outlet.send(frame) };
            if sent == 0 {
                return Sent::Nothing;
            }
            return if sent == frame.len() { Sent::All } else { Sent::Part(sent) };
        }
        let _ = message;
        Sent::Nothing
    }
}

/// Shuts the outlet of a parked session's queue (held), handing the rest
/// of a frame it began to the connection, which sends it first.
#[cfg(unix)]
fn shut_outlet(queue: &mut QueueGuard<'_, SessionOutlet>, ws: &mut ParkedWebSocket<LotStream>) {
    let Some(outlet) = queue.outlet().open.take() else { return };
    if let Some((message, sent)) = queue.take_started() {
        ws.finish_frame(&outlet.frame(&message)[sent..]);
    }
}

/// A session in the server's lot, between two tasks: it sends what its
/// queue receives straight to the socket, and leaves for a new task when
/// the connection needs its WebSocket (a command, a deadline, a queue that
/// ended, a peer that does not take what is sent). While nothing waits in
/// its queue, a fan-out writes to the socket itself (its outlet).
#[cfg(unix)]
pub(crate) struct ParkedSession {
    session: Session,
    /// Keeps a graceful shutdown waiting for it, as its task would.
    _task: TaskTrackerToken,
}

/// The lot of a server's idle plain-TCP sessions.
#[cfg(unix)]
pub(crate) type SessionLot = Lot<ParkedSession>;

#[cfg(unix)]
impl Tenant for ParkedSession {
    fn poll_parked(&mut self, ws: &mut ParkedWebSocket<LotStream>, cx: &mut Context<'_>) -> Poll<()> {
        // Held while this writes: the outlet does not write meanwhile.
        let mut queue = self.session.queue.lock();
        if self.session.queue.signaled() {
            // Mail: the session's task reads it.
            shut_outlet(&mut queue, ws);
            return Poll::Ready(());
        }
        if queue.has_started() {
            // The outlet began a frame the socket did not take whole.
            shut_outlet(&mut queue, ws);
            return Poll::Ready(());
        }
        loop {
            match queue.poll_take(cx) {
                Poll::Ready(Some(batch)) => {
                    let sent = ws.send_prepared(batch.iter().map(|message| &**message));
                    self.session.count_out(&batch);
                    if sent.is_err() || ws.needs_websocket() {
                        shut_outlet(&mut queue, ws);
                        return Poll::Ready(());
                    }
                }
                // The session's task closes the connection.
                Poll::Ready(None) => {
                    shut_outlet(&mut queue, ws);
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    // Nothing waits: later messages may go straight out.
                    if queue.outlet().open.is_none() {
                        queue.outlet().open = ferrows::lot::Outlet::of(ws);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn send_due_ping(&mut self, ws: &mut ParkedWebSocket<LotStream>) -> bool {
        let mut queue = self.session.queue.lock();
        let sent = ws.send_due_ping();
        if ws.needs_websocket() {
            shut_outlet(&mut queue, ws);
        }
        sent
    }

    fn leaving(&mut self, ws: &mut ParkedWebSocket<LotStream>) {
        shut_outlet(&mut self.session.queue.lock(), ws);
    }

    fn resume(self, ws: std::io::Result<ParkedWebSocket<TcpStream>>) {
        match ws {
            Ok(parked) => {
                // Active from the start: what brought it back (bytes, a
                // deadline, unsent output) needs the WebSocket, and a
                // parked one would only leave again.
                let ws = parked.unpark(&self.session.state.websocket.websocket);
                spawn_drive(self.session, ParkingWebSocket::new(Box::new(ws)));
            }
            Err(e) => {
                tracing::debug!("a parked session lost its socket: {e}");
                let tasks = self.session.state.tasks.clone();
                drop(tasks.spawn(self.session.finish::<TcpStream>(End::Peer, None)));
            }
        }
    }
}

/// Serves one WebSocket client until it leaves, the server closes it or
/// shuts down.
///
/// The connection's task stores its future whole while it runs, so what it
/// holds while the client is idle is kept small: the session, the
/// connection parked while it waits with nothing in progress (a
/// [`ParkingWebSocket`]: the `WebSocket` is made again when something
/// arrives or is sent), and one wait ([`Session::poll_step`]) on the queue,
/// the socket and the connect deadline. Command handling and the goodbye
/// run in boxed futures that exist only while they run. The WebSocket comes
/// boxed: an `async fn` keeps room for its arguments for its whole life.
///
/// Over plain TCP a connected session that waits leaves its task for the
/// server's lot ([`ParkedSession`]), and comes back in a new one.
/// `address` is where the connection is counted for its address; the
/// session gives it back when it ends.
pub(crate) fn run<S: Transport>(
    ws: Box<WebSocket<S>>,
    state: Arc<AppState>,
    address: AddressSlot,
    handshake: Option<Box<Handshake>>,
) -> impl Future<Output = ()> {
    let client = state.next_client_id();
    let outlet = SessionOutlet::default();
    // The handshake offered only the encodings' subprotocols.
    let encoding = Encoding::from_subprotocol(ws.subprotocol()).unwrap_or_default();
    let (messages, bytes) = (state.config.limits.client_queue_messages, state.config.limits.client_queue_bytes);
    let queue = ClientQueue::with_outlet(messages, bytes, encoding, outlet);
    state.register_session(client, &queue);
    let rate = CommandRate::new(state.command_rate.as_ref());
    let who = Who::Connecting(handshake);
    let session = Session { state, client, queue, who, subscriptions: Box::default(), address, rate };
    session.state.metrics.connections.inc();
    session.state.metrics.connections_accepted.inc();
    // The task's future is the drive alone: nothing above lives on.
    drive(session, ParkingWebSocket::new(ws))
}

/// Serves the session until it ends, or until it leaves for the lot.
///
/// This is the future a task holds, so its parts are boxed: the serving
/// and the goodbye futures, and the session with its connection (an
/// `async fn` stores its arguments apart from the locals they move into,
/// so it would hold them twice).
fn drive<S: Transport>(session: Session, conn: ParkingWebSocket<S>) -> impl Future<Output = ()> {
    let parts = Box::new((session, conn));
    async move {
        let (mut session, mut conn) = *parts;
        match Box::pin(session.serve(&mut conn)).await {
            Served::End(end) => Box::pin(session.finish(end, Some(conn))).await,
            Served::Idle => S::leave(session, conn),
        }
    }
}

impl Session {
    /// Leaves every channel, forgets the session and closes the
    /// connection (if it still has one) with the code of `end`.
    async fn finish<S: Transport>(mut self, end: End, conn: Option<ParkingWebSocket<S>>) {
        Box::pin(self.leave_all()).await;
        if let Who::Connected(identity) = &self.who {
            self.state.users.left(&identity.user, self.client);
        }
        self.state.unregister_session(self.client);
        self.state.metrics.connections.dec();
        if let (End::Close(code, reason), Some(conn)) = (end, conn) {
            let mut ws = conn.into_websocket(&self.state.websocket.websocket);
            // Bounded by the WebSocket's close timeout.
            let _ = Box::pin(ws.close(code, &reason)).await;
        }
    }

    async fn serve<S: Transport>(&mut self, conn: &mut ParkingWebSocket<S>) -> Served {
        let mut connect_deadline =
            (!self.is_connected()).then(|| Box::pin(tokio::time::sleep(self.state.config.websocket.connect_timeout)));
        loop {
            let step = std::future::poll_fn(|cx| self.poll_step(cx, conn, &mut connect_deadline)).await;
            let text = match step {
                Step::Command(text) => text,
                Step::Mail => {
                    Box::pin(self.read_mail()).await;
                    continue;
                }
                Step::End(end) => return Served::End(end),
                Step::Idle => return Served::Idle,
            };
            self.state.metrics.messages_in.inc();
            self.state.metrics.bytes_in.inc_by(text.len() as u64);
            // Boxed: commands are rare next to the idle wait, and their
            // futures (broker calls) would otherwise size every
            // connection's task for the largest of them.
            if let Some(end) = Box::pin(self.handle(text)).await {
                // What the handling queued (an error reply) goes out
                // before the Close.
                let mut noop = Context::from_waker(std::task::Waker::noop());
                if let Poll::Ready(Some(batch)) = self.queue.poll_take(&mut noop) {
                    let ws = conn.active(&self.state.websocket.websocket);
                    self.hand_over(ws, batch);
                }
                return Served::End(end);
            }
            if self.is_connected() {
                connect_deadline = None;
            }
        }
    }

    /// The idle wait: hands queued messages to the WebSocket and writes
    /// them, reads the client's next message, and watches the connect
    /// deadline; parks the connection once it has waited a while (the
    /// quiet spell of `park_after`) with nothing in progress.
    ///
    /// The next message is read only once everything queued was handed to
    /// the WebSocket, so a command's reply always goes out before a later
    /// frame can fail the connection. A client that does not read blocks
    /// the hand-over (the WebSocket's buffer is bounded), its queue fills,
    /// and the overflow ends the session (4004).
    fn poll_step<S: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut ParkingWebSocket<S>,
        connect_deadline: &mut Option<Pin<Box<Sleep>>>,
    ) -> Poll<Step> {
        let config = &self.state.websocket.websocket;
        loop {
            // A load first: this runs at every wake-up, and a swap would
            // write the cache line the fan-out reads.
            if self.is_connected() && self.queue.signaled() && self.queue.take_signal() {
                return Poll::Ready(Step::Mail);
            }
            if conn.is_parked() {
                match self.queue.poll_take(cx) {
                    Poll::Ready(Some(batch)) => self.hand_over(conn.active(config), batch),
                    Poll::Ready(None) => return Poll::Ready(Step::End(self.queue_ended())),
                    // The lot watches the socket and the deadlines from
                    // here (and sends back at once what needs the
                    // WebSocket). Parked here means the WebSocket found
                    // nothing to do: sessions start active, and park only
                    // once a read found nothing.
                    // A deadline that passed stays here: the WebSocket's
                    // timer fires on the timer wheel's next tick, and the
                    // lot would only send the session back at once.
                    Poll::Pending if S::LEAVES && self.is_connected() && !conn.is_due() => {
                        return Poll::Ready(Step::Idle);
                    }
                    Poll::Pending => {
                        if conn.poll_activity(cx).is_pending() {
                            return self.poll_connect_deadline(cx, connect_deadline);
                        }
                    }
                }
            }
            let ws = conn.active(config);
            match ws.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Step::End(End::Peer)),
                Poll::Pending => {
                    return match self.queue.poll_ended(cx) {
                        Poll::Ready(()) => Poll::Ready(Step::End(self.queue_ended())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
            match self.queue.poll_take(cx) {
                Poll::Ready(Some(batch)) => {
                    self.hand_over(ws, batch);
                    continue;
                }
                Poll::Ready(None) => return Poll::Ready(Step::End(self.queue_ended())),
                Poll::Pending => {}
            }
            if let Poll::Ready(Err(_)) = ws.poll_write_out(cx) {
                return Poll::Ready(Step::End(End::Peer));
            }
            match ws.poll_recv(cx) {
                // Commands come in the frames of the connection's encoding.
                Poll::Ready(Some(Ok(Message::Text(text)))) if !self.encoding().is_binary() => {
                    return Poll::Ready(Step::Command(text.into()));
                }
                Poll::Ready(Some(Ok(Message::Binary(bytes)))) if self.encoding().is_binary() => {
                    return Poll::Ready(Step::Command(bytes));
                }
                Poll::Ready(Some(Ok(Message::Text(_) | Message::Binary(_)))) => {
                    let why = if self.encoding().is_binary() { "text in a binary encoding" } else { "binary in JSON" };
                    return Poll::Ready(Step::End(closing(close::BAD_REQUEST, why)));
                }
                // Control frames: the WebSocket answered them.
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Step::End(End::Peer)),
                Poll::Pending => {}
            }
            // Waiting with nothing in progress: park once quiet for a
            // while, and wait parked.
            if conn.park_if_idle(cx, config) {
                continue;
            }
            return self.poll_connect_deadline(cx, connect_deadline);
        }
    }

    /// Ready with the end of the session once the connect deadline passed
    /// without a connect; `Pending` otherwise.
    fn poll_connect_deadline(
        &self,
        cx: &mut Context<'_>,
        connect_deadline: &mut Option<Pin<Box<Sleep>>>,
    ) -> Poll<Step> {
        if !self.is_connected()
            && let Some(deadline) = connect_deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Step::End(closing(close::CONNECT_TIMEOUT, "no connect command in time")));
        }
        Poll::Pending
    }

    /// Queues `batch` in the WebSocket's output buffer (written by the
    /// next [`poll_step`](Self::poll_step), or by the closing handshake).
    fn hand_over<S>(&self, ws: &mut WebSocket<S>, batch: Batch)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.count_out(&batch);
        for message in batch {
            // Fails only once the connection is over, which the next
            // read reports.
            let _ = ws.queue_prepared(&message);
        }
    }

    /// Counts messages sent to the client.
    fn count_out(&self, batch: &Batch) {
        let bytes: usize = batch.iter().map(|message| message.payload().len()).sum();
        self.state.metrics.messages_out.inc_by(batch.len() as u64);
        self.state.metrics.bytes_out.inc_by(bytes as u64);
    }

    fn queue_ended(&self) -> End {
        if let Some((code, reason)) = self.state.close_reason(self.client) {
            End::Close(CloseCode(code), Cow::Owned(reason))
        } else if self.queue.overflowed() {
            self.state.metrics.slow_consumers.inc();
            closing(close::SLOW_CONSUMER, "slow consumer")
        } else if self.state.shutdown.is_cancelled() {
            End::Close(CloseCode::GOING_AWAY, Cow::Borrowed("server shutting down"))
        } else {
            End::Close(CloseCode::GOING_AWAY, Cow::Borrowed("closed by the server"))
        }
    }

    /// What the client speaks.
    fn encoding(&self) -> Encoding {
        self.queue.encoding()
    }

    fn reply<R: Serialize>(&self, id: u64, reply: Result<R, Error>) {
        let message = match reply {
            Ok(result) => self.encoding().message(&Reply::ok(id, result)),
            Err(error) => {
                self.state.metrics.command_errors.inc();
                self.encoding().message(&Reply::<Empty>::error(id, &error))
            }
        };
        // An overflow is noticed by the serve loop (the queue says so).
        let _ = self.queue.push(Arc::new(message));
    }

    /// Replies to command `id` with `outcome`; a backend's `disconnect`
    /// ends the session instead.
    fn answer<R: Serialize>(&self, id: u64, outcome: Result<R, Refusal>) -> Option<End> {
        match outcome {
            Ok(result) => self.reply(id, Ok(result)),
            Err(Refusal::Error(error)) => self.reply::<Empty>(id, Err(error)),
            Err(Refusal::Disconnect { code, reason }) => {
                return Some(End::Close(CloseCode(code), Cow::Owned(reason)));
            }
        }
        None
    }

    /// Handles one client message; `Some` ends the session.
    async fn handle(&mut self, message: Bytes) -> Option<End> {
        let parsed = match self.encoding().decode_command(&message) {
            Ok(command) => Ok(command),
            Err(ParseError::Reply { id, error }) => Err((id, error)),
            Err(ParseError::NotAMap | ParseError::NoId) => {
                return Some(closing(close::BAD_REQUEST, "not a command"));
            }
        };
        if let Some(limit) = &self.state.command_rate {
            match self.rate.check(limit) {
                Verdict::Run => {}
                Verdict::Refuse => {
                    self.state.metrics.commands_over_rate.inc();
                    let id = match &parsed {
                        Ok(command) => command.id,
                        Err((id, _)) => *id,
                    };
                    self.reply::<Empty>(id, Err(Error::TooManyRequests("too many commands, slow down".into())));
                    return None;
                }
                Verdict::Close => {
                    self.state.metrics.command_floods.inc();
                    return Some(closing(close::COMMAND_FLOOD, "too many commands"));
                }
            }
        }
        let command = match parsed {
            Ok(command) => command,
            Err((id, error)) => {
                self.reply::<Empty>(id, Err(error));
                return None;
            }
        };
        let id = command.id;
        if let Method::Connect(connect) = command.method {
            return self.connect(id, connect).await;
        }
        if !self.is_connected() {
            self.reply::<Empty>(id, Err(Error::NotConnected));
            return None;
        }
        match command.method {
            Method::Connect(_) => unreachable!("handled above"),
            Method::Subscribe(subscribe) => self.subscribe(id, subscribe).await,
            Method::Unsubscribe(arg) => {
                let reply = self.unsubscribe(&arg).await;
                self.reply(id, reply);
                None
            }
            Method::Publish(publish) => {
                let reply = self.publish(publish).await;
                self.answer(id, reply)
            }
            Method::Presence(arg) => {
                let reply = self.presence(&arg).await;
                self.answer(id, reply)
            }
            Method::History(history) => {
                let reply = self.history(history).await;
                self.answer(id, reply)
            }
            Method::Rpc(rpc) => {
                let reply = self.rpc(rpc).await;
                self.answer(id, reply)
            }
            Method::Refresh(refresh) => {
                let reply = self.refresh(&refresh.token);
                self.reply(id, reply);
                None
            }
            Method::Ping => {
                self.reply(id, Ok(Empty {}));
                None
            }
        }
    }

    async fn connect(&mut self, id: u64, connect: Connect) -> Option<End> {
        if self.is_connected() {
            self.reply::<Empty>(id, Err(Error::BadRequest("already connected".into())));
            return None;
        }
        let client = self.client_id();
        let backend = self.state.backend.as_ref().filter(|backend| backend.has(ProxyKind::Connect));
        let (claims, meta, data) = match (connect.token.as_deref(), backend) {
            // A client with a token is the token's; one without asks the
            // backend, where there is a connect proxy.
            (None, Some(_)) => match self.ask_connect(&client, &connect).await {
                Ok(connected) => connected,
                Err(Refusal::Error(error)) => {
                    let temporary = error.temporary();
                    self.reply::<Empty>(id, Err(error));
                    if !temporary {
                        return Some(closing(close::UNAUTHORIZED, "refused by the backend"));
                    }
                    // A backend that could not decide leaves the client
                    // its connection, to send `connect` again: a few
                    // times, so that a client that is not authenticated
                    // cannot keep the backend busy from one connection.
                    let attempts = match &mut self.who {
                        Who::Connecting(Some(handshake)) => {
                            handshake.attempts += 1;
                            handshake.attempts
                        }
                        _ => 0,
                    };
                    return (attempts >= MAX_CONNECT_ATTEMPTS)
                        .then(|| closing(close::CONNECT_TIMEOUT, "too many connect attempts"));
                }
                Err(Refusal::Disconnect { code, reason }) => return Some(End::Close(CloseCode(code), reason.into())),
            },
            (token, _) => match self.state.auth.identify(token) {
                Ok(claims) => (claims, None, None),
                Err(e) => {
                    self.reply::<Empty>(id, Err(Error::Unauthorized(e.0)));
                    return Some(closing(close::UNAUTHORIZED, "unauthorized"));
                }
            },
        };
        let name = crate::http_client::display_name(&claims, connect.name);
        let (user, channels, subs) = (claims.sub, claims.channels, claims.subs);
        let info = ClientInfo { client: client.clone(), user: user.clone(), name }.to_info();
        let ping = self.state.config.websocket.ping_interval.as_secs();
        let holder = || Holder { client_id: client.clone(), user: user.clone(), meta: meta.clone() };
        let expires = self.state.expiries.expire(self.client, claims.exp, holder);
        self.reply(id, Ok(Connected { client, user: user.clone(), ping, expires, data }));
        // Sized to fit: every idle connection keeps these.
        let user = user.into_boxed_str();
        let grants: Box<[String]> = channels.into_iter().map(shrunk).collect();
        let info = Arc::from(&info.0[..]);
        let extra = (!grants.is_empty() || meta.is_some()).then(|| Box::new(Extra { grants, meta }));
        self.state.users.joined(&user, self.client, true);
        self.who = Who::Connected(Identity { user, info, extra });
        if !subs.is_empty() {
            Box::pin(self.join_server_side(subs, connect.subs)).await;
        }
        None
    }

    /// Asks the connect proxy who the client is: its claims, what to keep
    /// for later requests, and what to give the client.
    async fn ask_connect(
        &self,
        client: &str,
        connect: &Connect,
    ) -> Result<(Claims, Option<Box<serde_json::value::RawValue>>, Option<Data>), Refusal> {
        let handshake = match &self.who {
            Who::Connecting(Some(handshake)) => handshake.as_ref(),
            _ => &Handshake::default(),
        };
        let headers = handshake.headers.iter().map(|(name, value)| (name.as_str(), value.clone())).collect();
        let request = ConnectRequest {
            client,
            transport: "websocket",
            encoding: self.encoding().subprotocol().trim_start_matches("ferrows."),
            address: &handshake.address,
            name: connect.name.as_deref(),
            headers,
            data: DataRef(connect.data.as_ref()),
        };
        let result: ConnectResult = self.state.decide(ProxyKind::Connect, &request).await?;
        let claims = Claims {
            sub: result.user,
            exp: result.expire_at,
            channels: result.channels,
            subs: result.subs,
            name: result.name,
        };
        Ok((claims, result.meta, result.data))
    }

    fn is_connected(&self) -> bool {
        matches!(self.who, Who::Connected(_))
    }

    /// The client's id in presence and `info`.
    fn client_id(&self) -> String {
        self.state.client_id(self.client)
    }

    fn identity(&self) -> &Identity {
        match &self.who {
            Who::Connected(identity) => identity,
            Who::Connecting(_) => unreachable!("commands other than connect need it"),
        }
    }

    /// The namespace of `channel` if the client may subscribe to it.
    async fn may_subscribe(&self, channel: &str) -> Result<&NamespaceConfig, Refusal> {
        let client = self.client_id();
        self.state.readable(&self.asker(&client), channel).await
    }

    /// The client as the access rules and the backend see it.
    fn asker<'a>(&'a self, client: &'a str) -> Asker<'a> {
        let identity = self.identity();
        let extra = identity.extra.as_deref();
        let meta = extra.and_then(|extra| extra.meta.as_deref());
        Asker { client, user: &identity.user, grants: extra.map_or(&[], |extra| &extra.grants), meta }
    }

    async fn subscribe(&mut self, id: u64, subscribe: Subscribe) -> Option<End> {
        let channel = subscribe.channel;
        if self.subscriptions.iter().any(|s| *s.channel == *channel) {
            self.reply::<Empty>(id, Err(Error::AlreadySubscribed));
            return None;
        }
        if self.subscriptions.len() >= self.state.config.limits.max_subscriptions {
            let limit = self.state.config.limits.max_subscriptions;
            self.reply::<Empty>(id, Err(Error::LimitExceeded(format!("at most {limit} subscriptions"))));
            return None;
        }
        let namespace = match self.may_subscribe(&channel).await {
            Ok(namespace) => namespace.clone(),
            Err(refusal) => return self.answer::<Empty>(id, Err(refusal)),
        };
        let since = AppState::recovery_from(&channel, subscribe.since.map(StreamPosition::from));
        let recovering = since.is_some();
        let encoding = self.encoding();
        let reply = |answer: &HistoryAnswer| -> PreparedMessage {
            encoding.message(&Reply::ok(id, Positioned::of(answer, recovering, recovering)))
        };
        if let Err(e) = self.join(&channel, &namespace, since, reply, false).await {
            self.reply::<Empty>(id, Err(e));
        }
        None
    }

    /// Subscribes the session to `channel` (of `namespace`), recovering
    /// from `since`: `reply` makes the message that goes before the
    /// channel's publications (a `subscribe` reply, or a `subscribe`
    /// push).
    async fn join(
        &mut self,
        channel: &str,
        namespace: &NamespaceConfig,
        since: Option<StreamPosition>,
        reply: impl FnOnce(&HistoryAnswer) -> PreparedMessage,
        server_side: bool,
    ) -> Result<(), Error> {
        let node = self.state.node.clone();
        let limit = namespace.history_size.max(1);
        let queue = self.queue.erased();
        node.subscribe(channel, self.client, &queue, since, limit, reply).await.map_err(|e| subscribe_error(&e))?;
        self.state.metrics.subscriptions.inc();
        let presence = namespace.presence;
        let mut subscriptions = std::mem::take(&mut self.subscriptions).into_vec();
        subscriptions.push(Subscription { channel: channel.into(), presence, server_side });
        self.subscriptions = subscriptions.into_boxed_slice();
        self.state.joined(channel, namespace, &self.client_id(), self.identity().info()).await;
        Ok(())
    }

    /// Subscribes a client that just connected to the channels its token
    /// or the connect proxy named, recovering from the positions it gave:
    /// a `subscribe` push each, with its publications since. A channel
    /// that cannot be had (invalid, over `max_subscriptions`, a broker
    /// that fails) gets an `unsubscribe` push instead.
    async fn join_server_side(&mut self, channels: Vec<String>, mut positions: BTreeMap<String, Position>) {
        let encoding = self.encoding();
        for channel in channels {
            let push = |event| encoding.message(&Push { channel: channel.clone(), event });
            let namespace = match self.state.channel_namespace(&channel) {
                Ok(namespace) => namespace.clone(),
                Err(e) => {
                    tracing::warn!(%channel, "a server-side subscription: {e}");
                    let _ = self.queue.push(Arc::new(push(Event::Unsubscribe)));
                    continue;
                }
            };
            let taken = self.subscriptions.iter().any(|s| *s.channel == *channel);
            if taken || self.subscriptions.len() >= self.state.config.limits.max_subscriptions {
                let _ = self.queue.push(Arc::new(push(Event::Unsubscribe)));
                continue;
            }
            let since = positions.remove(&channel).map(StreamPosition::from);
            let since = AppState::recovery_from(&channel, since);
            let recovering = since.is_some();
            let reply = |answer: &HistoryAnswer| push(Event::Subscribe(Positioned::of(answer, recovering, recovering)));
            if let Err(e) = self.join(&channel, &namespace, since, reply, true).await {
                tracing::debug!(%channel, "a server-side subscription: {e}");
                let _ = self.queue.push(Arc::new(push(Event::Unsubscribe)));
            }
        }
    }

    /// Does what the server API told it: subscribes (a server-side
    /// subscription) or unsubscribes, each announced by a push.
    async fn read_mail(&mut self) {
        for mail in self.state.users.take_mail(self.client) {
            match mail {
                Mail::Subscribe(channel) => {
                    if !self.subscriptions.iter().any(|s| *s.channel == *channel) {
                        self.join_server_side(vec![channel], BTreeMap::new()).await;
                    }
                }
                Mail::Unsubscribe(channel) => {
                    let Some(index) = self.subscriptions.iter().position(|s| *s.channel == *channel) else {
                        continue;
                    };
                    self.leave_at(index).await;
                    let push = Push { channel, event: Event::Unsubscribe };
                    let _ = self.queue.push(Arc::new(self.encoding().message(&push)));
                }
            }
        }
    }

    async fn unsubscribe(&mut self, arg: &ChannelArg) -> Result<Empty, Error> {
        let Some(index) = self.subscriptions.iter().position(|s| *s.channel == *arg.channel) else {
            return Err(Error::NotSubscribed(format!("not subscribed to {}", arg.channel)));
        };
        if self.subscriptions[index].server_side {
            return Err(Error::PermissionDenied(format!("{} is a server-side subscription", arg.channel)));
        }
        self.leave_at(index).await;
        Ok(Empty {})
    }

    /// Leaves the subscription at `index` of the list.
    async fn leave_at(&mut self, index: usize) {
        let mut subscriptions = std::mem::take(&mut self.subscriptions).into_vec();
        let subscription = subscriptions.remove(index);
        self.subscriptions = subscriptions.into_boxed_slice();
        self.leave(&subscription.channel, subscription.presence).await;
    }

    async fn leave(&self, channel: &str, track_presence: bool) {
        self.state.node.unsubscribe(channel, self.client).await;
        self.state.metrics.subscriptions.dec();
        if track_presence {
            self.state.left(channel, &self.client_id(), self.identity().info()).await;
        }
    }

    async fn leave_all(&mut self) {
        for subscription in std::mem::take(&mut self.subscriptions).into_vec() {
            self.leave(&subscription.channel, subscription.presence).await;
        }
    }

    async fn publish(&self, publish: Publish) -> Result<Published, Refusal> {
        let client = self.client_id();
        let (namespace, data) = self.state.publishable(&self.asker(&client), &publish.channel, publish.data.0).await?;
        let once = publish.idempotency_key.map(|key| crate::state::client_key(&self.identity().user, &key));
        let info = Some(self.identity().info());
        Ok(self.state.publish(&publish.channel, namespace, data, info, once.as_deref()).await?)
    }

    async fn presence(&self, arg: &ChannelArg) -> Result<Presence, Refusal> {
        let namespace = self.may_subscribe(&arg.channel).await?;
        Ok(self.state.presence(&arg.channel, namespace).await?)
    }

    async fn history(&self, history: History) -> Result<Positioned, Refusal> {
        let namespace = self.may_subscribe(&history.channel).await?;
        Ok(self.state.history(&history.channel, namespace, history.limit).await?)
    }

    /// Takes new credentials: a token of the same user, whose `exp` (or
    /// none) becomes the connection's deadline.
    fn refresh(&self, token: &str) -> Result<Refreshed, Error> {
        let claims = self.state.auth.verify(token).map_err(|e| Error::Unauthorized(e.0))?;
        let identity = self.identity();
        if *claims.sub != *identity.user {
            return Err(Error::PermissionDenied("a token of another user".into()));
        }
        let meta = identity.extra.as_ref().and_then(|extra| extra.meta.clone());
        let holder = || Holder { client_id: self.client_id(), user: claims.sub, meta };
        Ok(Refreshed { expires: self.state.expiries.expire(self.client, claims.exp, holder) })
    }

    /// Calls the backend's method (the RPC proxy) and gives its answer.
    async fn rpc(&self, rpc: Rpc) -> Result<RpcResult, Refusal> {
        let client = self.client_id();
        let caller = self.asker(&client).caller();
        let request = RpcRequest { caller, method: &rpc.method, data: DataRef(Some(&rpc.data)) };
        let answer: RpcAnswer = self.state.decide(ProxyKind::Rpc, &request).await?;
        Ok(RpcResult { data: answer.data.unwrap_or_else(|| Data(bytes::Bytes::from_static(b"null"))) })
    }
}

fn shrunk(mut text: String) -> String {
    text.shrink_to_fit();
    text
}
