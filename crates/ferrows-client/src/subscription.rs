//! Subscriptions: the handle the application reads events from, and the
//! state the connection task keeps for each (its last position, and the
//! pushes held while a subscribe is in flight), which makes recovery give
//! every publication once, in order.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferrows_hub::protocol::{self, ClientInfo, Info, Position, Positioned, Pub};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::connection::Request;
use crate::error::Error;

/// A publication as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its offset in the channel's stream (1, 2, 3 ... in an epoch).
    pub offset: u64,
    /// Its payload, the bytes the publisher sent (a JSON publisher's JSON
    /// text).
    pub data: Bytes,
    /// Who published it, when a client did (not the server API).
    pub info: Option<ClientInfo>,
}

impl Publication {
    /// The data read as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }
}

impl From<Pub> for Publication {
    fn from(publication: Pub) -> Self {
        Self { offset: publication.offset, data: publication.data.0, info: publication.info.and_then(client_info) }
    }
}

/// The [`ClientInfo`] an [`Info`] holds (`None` if it holds none).
pub(crate) fn client_info(info: Info) -> Option<ClientInfo> {
    serde_json::from_slice(&info.0).ok()
}

/// How a resubscription went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Whether every publication made while the subscription was away
    /// was recovered (they follow this event, `missed` of them). `false`:
    /// some may be lost (another epoch, or the history no longer reaches
    /// back): reload the state (with [`Client::history`](crate::Client::history),
    /// say).
    pub recovered: bool,
    /// The publications recovered.
    pub missed: usize,
    /// The channel's position after them.
    pub position: Position,
}

/// What a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A publication: each once, in offset order, including across
    /// reconnections when they can be recovered.
    Publication(Publication),
    /// A client subscribed (namespaces with `join_leave`).
    Join(ClientInfo),
    /// A client left.
    Leave(ClientInfo),
    /// The subscription was made again, after a reconnection or a
    /// temporary refusal, from its last position.
    Resubscribed(Recovery),
    /// The channel's history was lost while connected (a `reset` push):
    /// the stream goes on from this position in a new epoch, publications
    /// may have been lost; reload the state.
    Reset(Position),
    /// The subscription failed for good (the server refused a
    /// resubscription, or the client stopped); nothing follows.
    Failed(Error),
    /// The server ended the subscription (an `unsubscribe` push: the
    /// server API unsubscribed the user, or a server-side subscription
    /// could not be made); nothing follows.
    Unsubscribed,
}

/// A subscription to one channel, made by
/// [`Client::subscribe`](crate::Client::subscribe): a stream of
/// [`Event`]s, read with [`recv`](Self::recv) or as a
/// [`Stream`](futures_core::Stream). It lasts across reconnections until
/// [`unsubscribe`](Self::unsubscribe) or until it is dropped (which
/// unsubscribes too).
///
/// Events wait in an unbounded queue until read: read them.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    key: u64,
    events: mpsc::UnboundedReceiver<Event>,
    requests: mpsc::UnboundedSender<Request>,
    position: Position,
    timeout: Duration,
    active: bool,
}

impl Subscription {
    pub(crate) fn new(
        channel: String,
        key: u64,
        events: mpsc::UnboundedReceiver<Event>,
        requests: mpsc::UnboundedSender<Request>,
        timeout: Duration,
    ) -> Self {
        let position = Position { offset: 0, epoch: String::new() };
        Self { channel, key, events, requests, position, timeout, active: true }
    }

    /// Records the first subscribe's position.
    pub(crate) fn subscribed(&mut self, position: Position) {
        self.position = position;
    }

    /// Marks it as gone already (the client refused it).
    pub(crate) fn forget(&mut self) {
        self.active = false;
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The position of the last event read: where the subscription
    /// started, the offset of the last publication read, or the position
    /// of the last resubscription or reset.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The next event; `None` once there are no more (after
    /// [`Event::Failed`]).
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.events.recv().await;
        self.seen(event.as_ref());
        event
    }

    fn seen(&mut self, event: Option<&Event>) {
        match event {
            Some(Event::Publication(publication)) => self.position.offset = publication.offset,
            Some(Event::Resubscribed(Recovery { position, .. }) | Event::Reset(position)) => {
                self.position = position.clone();
            }
            Some(Event::Failed(_) | Event::Unsubscribed) => self.active = false,
            _ => {}
        }
    }

    /// Leaves the channel: waits for the server's answer when connected
    /// (when not, there is nothing to leave on the server).
    pub async fn unsubscribe(mut self) -> Result<(), Error> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let (done, answer) = oneshot::channel();
        let request = Request::Unsubscribe { channel: self.channel.clone(), key: self.key, done: Some(done) };
        if self.requests.send(request).is_err() {
            return Ok(());
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(Error::Timeout),
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        let event = std::task::ready!(this.events.poll_recv(cx));
        this.seen(event.as_ref());
        Poll::Ready(event)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.active {
            let channel = std::mem::take(&mut self.channel);
            let _ = self.requests.send(Request::Unsubscribe { channel, key: self.key, done: None });
        }
    }
}

/// Where a subscription is on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not subscribed (no connection yet, or waiting to retry).
    Idle,
    /// A subscribe is in flight: pushes are held until its reply.
    Subscribing,
    /// Subscribed: pushes are delivered.
    Subscribed,
}

/// A publication or a reset: what moves a channel's position.
#[derive(Debug)]
enum StreamItem {
    Pub(Pub),
    Reset(Position),
}

/// Where a subscription's events go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Its [`Subscription`].
    Own(mpsc::UnboundedSender<Event>),
    /// The client's [`ServerSubscriptions`], with the channel (`None`:
    /// nobody asked for them).
    Server(String, Option<mpsc::UnboundedSender<(String, Event)>>),
}

/// The events of the server-side subscriptions (channels the server
/// subscribed the client to), each with its channel: what a
/// [`Subscription`] gives, from [`Client::server_subscriptions`](crate::Client::server_subscriptions).
/// A server-side subscription begins with [`Event::Resubscribed`] (its
/// position; `recovered: true` and nothing missed the first time, and on
/// each reconnection whether the gap was recovered) and ends with
/// [`Event::Unsubscribed`].
#[derive(Debug)]
pub struct ServerSubscriptions {
    pub(crate) events: mpsc::UnboundedReceiver<(String, Event)>,
}

impl ServerSubscriptions {
    /// The next event and its channel; `None` once the client stopped.
    pub async fn recv(&mut self) -> Option<(String, Event)> {
        self.events.recv().await
    }
}

impl futures_core::Stream for ServerSubscriptions {
    type Item = (String, Event);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<(String, Event)>> {
        self.get_mut().events.poll_recv(cx)
    }
}

/// The connection task's side of a subscription.
#[derive(Debug)]
pub(crate) struct SubState {
    /// Tells this subscription from a later one to the same channel.
    pub(crate) key: u64,
    events: Sink,
    /// Until the first subscribe succeeds or fails for good.
    ready: Option<oneshot::Sender<Result<Position, Error>>>,
    /// The last position delivered: sent as `since` when resubscribing.
    position: Option<Position>,
    phase: Phase,
    /// Pushes that came while the subscribe was in flight, in order.
    held: Vec<StreamItem>,
    /// Counts subscribes, so that a stale reply or retry is ignored.
    pub(crate) generation: u64,
}

impl SubState {
    pub(crate) fn new(
        key: u64,
        events: mpsc::UnboundedSender<Event>,
        ready: oneshot::Sender<Result<Position, Error>>,
    ) -> Self {
        let ready = Some(ready);
        Self {
            key,
            events: Sink::Own(events),
            ready,
            position: None,
            phase: Phase::Idle,
            held: Vec::new(),
            generation: 0,
        }
    }

    /// A server-side subscription to `channel`, its events to `events`.
    pub(crate) fn server(channel: &str, events: Option<mpsc::UnboundedSender<(String, Event)>>) -> Self {
        let events = Sink::Server(channel.to_owned(), events);
        Self { key: 0, events, ready: None, position: None, phase: Phase::Subscribing, held: Vec::new(), generation: 0 }
    }

    /// The position to recover from on the next connection.
    pub(crate) fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// A server-side subscription's first subscribe: tells the
    /// application where it starts (nothing to recover).
    pub(crate) fn started(&self) {
        if let Some(position) = &self.position {
            self.send(Event::Resubscribed(Recovery { recovered: true, missed: 0, position: position.clone() }));
        }
    }

    /// The server ended it: tells the application.
    pub(crate) fn unsubscribed(self) {
        self.send(Event::Unsubscribed);
    }

    /// Whether a subscribe is in flight or done on this connection.
    pub(crate) fn is_active(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// A subscribe is being sent: returns its arguments (with `since`, the
    /// last position, once there is one) and its generation.
    pub(crate) fn subscribing(&mut self, channel: &str) -> (protocol::Subscribe, u64) {
        self.generation += 1;
        self.phase = Phase::Subscribing;
        self.held.clear();
        let subscribe =
            protocol::Subscribe { channel: channel.to_owned(), since: self.position.clone(), recover: false };
        (subscribe, self.generation)
    }

    /// The connection is gone, or the subscribe will be retried: not
    /// subscribed any more; stale replies are ignored.
    pub(crate) fn idle(&mut self) {
        self.generation += 1;
        self.phase = Phase::Idle;
        self.held.clear();
    }

    /// The reply to the subscribe sent with `since`: recovers what was
    /// missed, then delivers what was held, each publication once.
    pub(crate) fn subscribed(&mut self, result: Positioned, since: Option<Position>) {
        self.phase = Phase::Subscribed;
        if let Some(since) = since {
            // `self.position` is `since`: nothing was delivered meanwhile.
            let recovered = result.recovered == Some(true) && result.position.epoch == since.epoch;
            let missed: Vec<Pub> = if recovered {
                result.publications.unwrap_or_default().into_iter().filter(|p| p.offset > since.offset).collect()
            } else {
                // Not the whole gap: start again from the channel's position.
                self.position = None;
                Vec::new()
            };
            let recovery = Recovery { recovered, missed: missed.len(), position: result.position.clone() };
            self.send(Event::Resubscribed(recovery));
            for publication in missed {
                self.deliver(publication);
            }
        }
        self.position = Some(newest(self.position.take(), &result.position));
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(self.position.clone().unwrap_or(result.position)));
        }
        for item in std::mem::take(&mut self.held) {
            self.stream(item);
        }
    }

    /// The subscription failed for good: tells the application.
    pub(crate) fn failed(mut self, error: Error) {
        match self.ready.take() {
            Some(ready) => {
                let _ = ready.send(Err(error));
            }
            None => self.send(Event::Failed(error)),
        }
    }

    /// A push for this subscription's channel.
    pub(crate) fn push(&mut self, event: protocol::Event) {
        let item = match event {
            protocol::Event::Pub(publication) => StreamItem::Pub(publication),
            protocol::Event::Reset { position } => StreamItem::Reset(position),
            protocol::Event::Join(info) => return self.presence(info, Event::Join),
            protocol::Event::Leave(info) => return self.presence(info, Event::Leave),
            // The connection task handles these.
            protocol::Event::Subscribe(_) | protocol::Event::Unsubscribe => return,
        };
        match self.phase {
            Phase::Subscribing => self.held.push(item),
            Phase::Subscribed => self.stream(item),
            // Not subscribed on this connection: a push of an earlier
            // subscription to the channel.
            Phase::Idle => {}
        }
    }

    fn presence(&mut self, info: Info, event: fn(ClientInfo) -> Event) {
        if self.phase == Phase::Subscribed
            && let Some(info) = client_info(info)
        {
            self.send(event(info));
        }
    }

    fn stream(&mut self, item: StreamItem) {
        match item {
            StreamItem::Pub(publication) => self.deliver(publication),
            StreamItem::Reset(position) => {
                self.position = Some(position.clone());
                self.send(Event::Reset(position));
            }
        }
    }

    /// Delivers a publication unless it was delivered already (its offset
    /// is not past the last position).
    fn deliver(&mut self, publication: Pub) {
        if let Some(position) = &mut self.position {
            if publication.offset <= position.offset {
                return;
            }
            position.offset = publication.offset;
        }
        self.send(Event::Publication(publication.into()));
    }

    fn send(&self, event: Event) {
        match &self.events {
            Sink::Own(events) => drop(events.send(event)),
            Sink::Server(channel, Some(events)) => drop(events.send((channel.clone(), event))),
            Sink::Server(_, None) => {}
        }
    }
}

/// `current` unless `result` is further on or of another epoch.
fn newest(current: Option<Position>, result: &Position) -> Position {
    match current {
        Some(current) if current.epoch == result.epoch && current.offset >= result.offset => current,
        _ => result.clone(),
    }
}

#[cfg(test)]
mod tests;
