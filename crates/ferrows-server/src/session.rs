//! One WebSocket client: its commands in, its queue out.
//!
//! Everything the client receives (replies and pushes) goes through its
//! bounded queue, so a subscribe's reply always precedes the publications
//! that follow it, and a client that does not read is dropped (4004) when
//! the queue overflows instead of growing the server's memory.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ferrows::hyper_upgrade::HyperWebSocket;
use ferrows::{CloseCode, Message, PreparedMessage, Utf8Bytes};
use ferrows_hub::broker::{BrokerEvent, HistoryAnswer};
use ferrows_hub::protocol::{
    ChannelArg, Command, Connect, ErrorCode, History, Method, ParseError, Publish, Subscribe, error_reply,
};
use ferrows_hub::queue::ClientQueue;
use ferrows_hub::{Publication, StreamPosition};
use serde_json::json;

use crate::config::NamespaceConfig;
use crate::state::{AppState, broker_error, subscribe_error};

/// Close codes of docs/protocol.md.
pub(crate) mod close {
    use ferrows::CloseCode;
    pub(crate) const BAD_REQUEST: CloseCode = CloseCode(4000);
    pub(crate) const UNAUTHORIZED: CloseCode = CloseCode(4001);
    pub(crate) const SLOW_CONSUMER: CloseCode = CloseCode(4004);
    pub(crate) const CONNECT_TIMEOUT: CloseCode = CloseCode(4005);
}

/// Longest display name kept (longer ones are cut).
const MAX_NAME_CHARS: usize = 64;

struct Identity {
    id: String,
    user: String,
    channels: Vec<String>,
    /// `{"client","user","name"}`, raw JSON for presence and `info`.
    info: Bytes,
}

struct Session {
    state: Arc<AppState>,
    client: u64,
    queue: ClientQueue,
    identity: Option<Identity>,
    /// Subscribed channels and whether presence is tracked in them.
    subscriptions: HashMap<String, bool>,
}

/// How a session ended, for the Close frame.
enum End {
    Peer,
    Close(CloseCode, &'static str),
}

type Reply = Result<serde_json::Value, (ErrorCode, String)>;

pub(crate) async fn run(mut ws: HyperWebSocket, state: Arc<AppState>) {
    let client = state.next_client_id();
    let queue = ClientQueue::new(state.config.client_queue_messages, state.config.client_queue_bytes);
    let mut session =
        Session { state: state.clone(), client, queue: queue.clone(), identity: None, subscriptions: HashMap::new() };
    state.metrics.connections.inc();
    state.metrics.connections_accepted.inc();
    let end = session.serve(&mut ws).await;
    // Boxed, like every broker call a connection makes only now and then
    // (see `handle`): the idle task stays small.
    Box::pin(session.leave_all()).await;
    state.metrics.connections.dec();
    if let End::Close(code, reason) = end {
        // Bounded by the WebSocket's close timeout.
        let _ = ws.close(code, reason).await;
    }
}

impl Session {
    async fn serve(&mut self, ws: &mut HyperWebSocket) -> End {
        let connect_deadline = tokio::time::sleep(self.state.config.connect_timeout);
        tokio::pin!(connect_deadline);
        let mut presence_refresh = tokio::time::interval(crate::PRESENCE_REFRESH);
        presence_refresh.reset();
        let mut batch = Vec::new();
        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                drained = self.queue.pop_all(&mut batch) => {
                    if drained.is_none() {
                        return self.queue_ended();
                    }
                    // A peer that does not read blocks the write: the
                    // queue overflowing meanwhile ends the session.
                    tokio::select! {
                        written = self.write(ws, &mut batch) => if written.is_err() {
                            return End::Peer;
                        },
                        _ = self.queue.ended() => return self.queue_ended(),
                    }
                }
                message = ws.recv() => {
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => return End::Close(close::BAD_REQUEST, "binary messages are not commands"),
                        Some(Ok(_)) => continue,
                        Some(Err(ferrows::Error::Protocol(_))) | Some(Err(_)) | None => return End::Peer,
                    };
                    self.state.metrics.messages_in.inc();
                    self.state.metrics.bytes_in.inc_by(text.len() as u64);
                    // Boxed: commands are rare next to the idle wait, and
                    // their futures (broker calls) would otherwise size every
                    // connection's task for the largest of them.
                    if let Some(end) = Box::pin(self.handle(text)).await {
                        // Flush what the handling queued (an error reply) first.
                        let _ = self.write_queued(ws, &mut batch).await;
                        return end;
                    }
                    // The reply goes to the WebSocket before the next frame
                    // is read, as the echo server answers each message:
                    // a bad frame right after a command fails the
                    // connection only after the command's answer is out.
                    // (Queued, not flushed: the next read writes it, so a
                    // burst of commands is answered in few writes.)
                    if !self.queue.is_empty() {
                        tokio::select! {
                            fed = self.feed_queued(ws, &mut batch) => if fed.is_err() {
                                return End::Peer;
                            },
                            _ = self.queue.ended() => return self.queue_ended(),
                        }
                    }
                }
                _ = &mut connect_deadline, if self.identity.is_none() => {
                    return End::Close(close::CONNECT_TIMEOUT, "no connect command in time");
                }
                _ = presence_refresh.tick() => Box::pin(self.refresh_presence()).await,
                _ = shutdown.cancelled() => {
                    let _ = self.write_queued(ws, &mut batch).await;
                    return End::Close(CloseCode::GOING_AWAY, "server shutting down");
                }
            }
        }
    }

    fn queue_ended(&self) -> End {
        if self.queue.overflowed() {
            self.state.metrics.slow_consumers.inc();
            End::Close(close::SLOW_CONSUMER, "slow consumer")
        } else {
            End::Close(CloseCode::GOING_AWAY, "closed by the server")
        }
    }

    async fn write(&self, ws: &mut HyperWebSocket, batch: &mut Vec<Arc<PreparedMessage>>) -> ferrows::Result<()> {
        self.feed(ws, batch).await?;
        ws.flush().await
    }

    /// Hands `batch` to the WebSocket's output buffer, without flushing
    /// (waits only while that buffer is over its bound).
    async fn feed(&self, ws: &mut HyperWebSocket, batch: &mut Vec<Arc<PreparedMessage>>) -> ferrows::Result<()> {
        let mut bytes = 0;
        let count = batch.len() as u64;
        for message in batch.drain(..) {
            bytes += message.payload().len() as u64;
            ws.feed_prepared(&message).await?;
        }
        self.state.metrics.messages_out.inc_by(count);
        self.state.metrics.bytes_out.inc_by(bytes);
        Ok(())
    }

    /// Hands whatever is queued now to the WebSocket, without flushing.
    async fn feed_queued(&self, ws: &mut HyperWebSocket, batch: &mut Vec<Arc<PreparedMessage>>) -> ferrows::Result<()> {
        if self.queue.pop_all(batch).await.is_some() {
            self.feed(ws, batch).await?;
        }
        Ok(())
    }

    /// Writes whatever is queued now, without waiting for more.
    async fn write_queued(
        &self,
        ws: &mut HyperWebSocket,
        batch: &mut Vec<Arc<PreparedMessage>>,
    ) -> ferrows::Result<()> {
        if !self.queue.is_empty() && self.queue.pop_all(batch).await.is_some() {
            self.write(ws, batch).await?;
        }
        Ok(())
    }

    fn send(&self, text: String) {
        // An overflow is noticed by the serve loop (the queue says so).
        let _ = self.queue.push(Arc::new(PreparedMessage::text(Utf8Bytes::from(text))));
    }

    fn reply(&self, id: u64, reply: Reply) {
        match reply {
            Ok(result) => self.send(json!({"id": id, "result": result}).to_string()),
            Err((code, message)) => {
                self.state.metrics.command_errors.inc();
                self.send(error_reply(id, code, &message));
            }
        }
    }

    /// Handles one client message; `Some` ends the session.
    async fn handle(&mut self, text: Utf8Bytes) -> Option<End> {
        let command = match Command::parse(text.as_str()) {
            Ok(command) => command,
            Err(ParseError::NotJson | ParseError::NoId) => {
                return Some(End::Close(close::BAD_REQUEST, "not a command"));
            }
            Err(ParseError::Reply { id, code, message }) => {
                self.reply(id, Err((code, message)));
                return None;
            }
        };
        let id = command.id;
        if let Method::Connect(connect) = command.method {
            return self.connect(id, connect);
        }
        if self.identity.is_none() {
            self.reply(id, Err((ErrorCode::NOT_CONNECTED, "send connect first".into())));
            return None;
        }
        match command.method {
            Method::Connect(_) => unreachable!("handled above"),
            Method::Subscribe(subscribe) => self.subscribe(id, subscribe).await,
            Method::Unsubscribe(arg) => {
                let reply = self.unsubscribe(&arg).await;
                self.reply(id, reply);
            }
            Method::Publish(publish) => {
                let reply = self.publish(publish).await;
                self.reply(id, reply);
            }
            Method::Presence(arg) => {
                let reply = self.presence(&arg).await;
                self.reply(id, reply);
            }
            Method::History(history) => {
                let reply = self.history(history).await;
                self.reply(id, reply);
            }
            Method::Ping => self.reply(id, Ok(json!({}))),
        }
        None
    }

    fn connect(&mut self, id: u64, connect: Connect) -> Option<End> {
        if self.identity.is_some() {
            self.reply(id, Err((ErrorCode::BAD_REQUEST, "already connected".into())));
            return None;
        }
        let claims = match self.state.auth.identify(connect.token.as_deref()) {
            Ok(claims) => claims,
            Err(e) => {
                self.reply(id, Err((ErrorCode::UNAUTHORIZED, e.0)));
                return Some(End::Close(close::UNAUTHORIZED, "unauthorized"));
            }
        };
        let (user, channels, token_name) = (claims.sub, claims.channels, claims.name);
        let name: String = token_name.or(connect.name).unwrap_or_default().chars().take(MAX_NAME_CHARS).collect();
        let client_id = format!("{:016x}", self.client ^ (u64::from(self.state.config.listen.port()) << 48));
        let info = json!({"client": client_id, "user": user, "name": name}).to_string();
        self.reply(
            id,
            Ok(json!({"client": client_id, "user": user, "ping": self.state.config.ping_interval.as_secs()})),
        );
        self.identity = Some(Identity { id: client_id, user, channels, info: Bytes::from(info) });
        None
    }

    fn identity(&self) -> &Identity {
        self.identity.as_ref().expect("commands other than connect need it")
    }

    /// The namespace of `channel` if the client may subscribe to it.
    fn may_subscribe(&self, channel: &str) -> Result<&NamespaceConfig, (ErrorCode, String)> {
        let namespace = self.state.channel_namespace(channel).map_err(|why| (ErrorCode::UNKNOWN_NAMESPACE, why))?;
        let identity = self.identity();
        if namespace.may_read(&identity.user, &identity.channels, channel) {
            Ok(namespace)
        } else {
            Err((ErrorCode::PERMISSION_DENIED, format!("not allowed: {channel}")))
        }
    }

    async fn subscribe(&mut self, id: u64, subscribe: Subscribe) {
        let channel = subscribe.channel;
        let namespace = match self.may_subscribe(&channel) {
            Ok(namespace) => namespace.clone(),
            Err(e) => return self.reply(id, Err(e)),
        };
        if self.subscriptions.contains_key(&channel) {
            return self.reply(id, Err((ErrorCode::ALREADY_SUBSCRIBED, "already subscribed".into())));
        }
        if self.subscriptions.len() >= self.state.config.max_subscriptions {
            let limit = self.state.config.max_subscriptions;
            return self.reply(id, Err((ErrorCode::LIMIT_EXCEEDED, format!("at most {limit} subscriptions"))));
        }
        // Server-made channels have no history to recover from.
        let system = crate::config::namespace_of(&channel) == crate::state::SYSTEM_NAMESPACE;
        let since = subscribe.since.map(StreamPosition::from).filter(|_| !system);
        let recovering = since.is_some();
        let reply = |answer: &HistoryAnswer| {
            let result = position_result(answer, recovering, recovering);
            PreparedMessage::text(Utf8Bytes::from(format!("{{\"id\":{id},\"result\":{result}}}")))
        };
        let node = self.state.node.clone();
        let limit = namespace.history_size.max(1);
        match node.subscribe(&channel, self.client, &self.queue, since, limit, reply).await {
            Ok(_) => {}
            Err(e) => return self.reply(id, Err(subscribe_error(&e))),
        }
        self.state.metrics.subscriptions.inc();
        let track_presence = namespace.presence;
        self.subscriptions.insert(channel.clone(), track_presence);
        if track_presence {
            let identity = self.identity();
            let broker = self.state.broker();
            let _ = broker.presence_add(&channel, &identity.id, identity.info.clone()).await;
            if namespace.join_leave {
                let event = BrokerEvent::Join { channel, info: identity.info.clone() };
                let _ = broker.publish_event(event).await;
            }
        }
    }

    async fn unsubscribe(&mut self, arg: &ChannelArg) -> Reply {
        let Some(track_presence) = self.subscriptions.remove(&arg.channel) else {
            return Err((ErrorCode::NOT_SUBSCRIBED, format!("not subscribed to {}", arg.channel)));
        };
        self.leave(&arg.channel, track_presence).await;
        Ok(json!({}))
    }

    async fn leave(&self, channel: &str, track_presence: bool) {
        self.state.node.unsubscribe(channel, self.client).await;
        self.state.metrics.subscriptions.dec();
        if track_presence {
            let identity = self.identity();
            let broker = self.state.broker();
            let _ = broker.presence_remove(channel, &identity.id).await;
            if self.state.namespace_for(channel).is_some_and(|n| n.join_leave) {
                let event = BrokerEvent::Leave { channel: channel.to_owned(), info: identity.info.clone() };
                let _ = broker.publish_event(event).await;
            }
        }
    }

    async fn leave_all(&mut self) {
        for (channel, track_presence) in std::mem::take(&mut self.subscriptions) {
            self.leave(&channel, track_presence).await;
        }
    }

    async fn refresh_presence(&self) {
        let Some(identity) = &self.identity else { return };
        for (channel, _) in self.subscriptions.iter().filter(|(_, tracked)| **tracked) {
            let _ = self.state.broker().presence_add(channel, &identity.id, identity.info.clone()).await;
        }
    }

    async fn publish(&self, publish: Publish) -> Reply {
        let channel = &publish.channel;
        let namespace = self.may_subscribe(channel)?;
        let identity = self.identity();
        if !namespace.may_publish(&identity.user, &identity.channels, channel) {
            return Err((ErrorCode::PERMISSION_DENIED, format!("clients may not publish into {channel}")));
        }
        let limits = namespace.history_limits();
        let data = Bytes::copy_from_slice(publish.data.get().as_bytes());
        let position = self
            .state
            .broker()
            .publish(channel, data, Some(identity.info.clone()), limits)
            .await
            .map_err(|e| broker_error(&e))?;
        self.state.metrics.publications.inc();
        Ok(json!({"offset": position.offset, "epoch": position.epoch}))
    }

    async fn presence(&self, arg: &ChannelArg) -> Reply {
        let namespace = self.may_subscribe(&arg.channel)?;
        if !namespace.presence {
            return Err((ErrorCode::PERMISSION_DENIED, "presence is not enabled here".into()));
        }
        let present = self.state.broker().presence(&arg.channel).await.map_err(|e| broker_error(&e))?;
        let clients: serde_json::Map<String, serde_json::Value> = present
            .into_iter()
            .filter_map(|(client, info)| Some((client, serde_json::from_slice(&info).ok()?)))
            .collect();
        Ok(json!({ "clients": clients }))
    }

    async fn history(&self, history: History) -> Reply {
        let namespace = self.may_subscribe(&history.channel)?;
        let limit = history.limit.unwrap_or(namespace.history_size).min(namespace.history_size);
        let query = ferrows_hub::broker::HistoryQuery::Latest(limit);
        let answer = self.state.broker().history(&history.channel, query).await.map_err(|e| broker_error(&e))?;
        let result = position_result(&answer, false, true);
        Ok(serde_json::from_str(&result).expect("position_result writes JSON"))
    }
}

/// `{"position":..}`, then `"recovered"` and `"publications":[..]` when
/// asked for (publication data copied raw).
pub(crate) fn position_result(answer: &HistoryAnswer, with_recovered: bool, with_publications: bool) -> String {
    let mut out = String::with_capacity(64 + answer.publications.iter().map(|p| p.size() + 32).sum::<usize>());
    out.push_str(&format!(
        "{{\"position\":{{\"offset\":{},\"epoch\":{}}}",
        answer.position.offset,
        serde_json::to_string(&answer.position.epoch).expect("strings serialize")
    ));
    if with_recovered {
        out.push_str(if answer.recovered { ",\"recovered\":true" } else { ",\"recovered\":false" });
    }
    if with_publications {
        out.push_str(",\"publications\":[");
        for (i, publication) in answer.publications.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_publication(&mut out, publication);
        }
        out.push(']');
    }
    out.push('}');
    out
}

fn push_publication(out: &mut String, publication: &Publication) {
    out.push_str(&format!("{{\"offset\":{},\"data\":", publication.offset));
    out.push_str(std::str::from_utf8(&publication.data).unwrap_or("null"));
    if let Some(info) = &publication.info {
        out.push_str(",\"info\":");
        out.push_str(std::str::from_utf8(info).unwrap_or("null"));
    }
    out.push('}');
}
