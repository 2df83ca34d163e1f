//! The application's handle: commands, subscriptions, the connection's
//! state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrows_hub::protocol::{
    ChannelArg, ClientInfo, Data, Empty, Encoding, History, Method, Position, Positioned, Presence, Publish, Rpc,
    RpcResult,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{ClientBuilder, Config};
use crate::connection::{Driver, Request};
use crate::error::Error;
use crate::state::{Connection, Disconnect, State};
use crate::subscription::{Publication, ServerSubscriptions, Subscription, client_info};
use crate::wire;

/// A client of a `ferrows serve` service: one WebSocket, kept open across
/// failures, carrying every subscription and command.
///
/// Cheap to clone (clones share the connection); the client stops when
/// [`close`](Self::close) is called or the last clone is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), ferrows_client::Error> {
/// use ferrows_client::{Client, Event};
///
/// let client = Client::builder(["ws://127.0.0.1:8000/ws"]).name("alice").connect().await?;
/// let mut chat = client.subscribe("chat:lobby").await?;
/// client.publish_json("chat:lobby", &serde_json::json!({"text": "hi"})).await?;
/// while let Some(event) = chat.recv().await {
///     match event {
///         Event::Publication(publication) => println!("{}: {:?}", publication.offset, publication.data),
///         Event::Resubscribed(recovery) if !recovery.recovered => { /* reload the state */ }
///         Event::Reset(_) => { /* reload the state */ }
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: mpsc::UnboundedSender<Request>,
    state: watch::Receiver<State>,
    encoding: Encoding,
    timeout: Duration,
    next_key: AtomicU64,
    /// The events of server-side subscriptions, until taken.
    server_subscriptions: std::sync::Mutex<Option<ServerSubscriptions>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Close { done: None });
    }
}

impl Client {
    /// A builder for a client of the service at `urls`: one or several
    /// `ws://` or `wss://` URLs of one service (nodes sharing a broker).
    /// The client starts with the first and moves to the next each time a
    /// connection is lost or cannot be opened (give clients the list in
    /// different orders to spread them over the nodes).
    pub fn builder<I, S>(urls: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::new(urls.into_iter().map(Into::into).collect())
    }

    pub(crate) fn spawn(config: Config) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        let url = config.urls[0].clone();
        let (state_sender, state) = watch::channel(State::Connecting { url, attempt: 0 });
        let (encoding, timeout) = (config.encoding, config.timeout);
        let (server_events, server_subscriptions) = match config.server_subscriptions {
            true => {
                let (sender, events) = mpsc::unbounded_channel();
                (Some(sender), Some(ServerSubscriptions { events }))
            }
            false => (None, None),
        };
        tokio::spawn(Driver::new(config, receiver, state_sender, server_events).run());
        let server_subscriptions = std::sync::Mutex::new(server_subscriptions);
        let next_key = AtomicU64::new(1);
        Self { inner: Arc::new(Inner { requests, state, encoding, timeout, next_key, server_subscriptions }) }
    }

    /// The connection's state now.
    pub fn state(&self) -> State {
        self.inner.state.borrow().clone()
    }

    /// A receiver of the connection's state, to wait for changes
    /// (`changed().await`, `wait_for(...)`).
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.inner.state.clone()
    }

    /// The current connection's `connect` result, when connected.
    pub fn connection(&self) -> Option<Connection> {
        self.inner.state.borrow().connection().cloned()
    }

    /// Waits until the client is connected (at once if it is); fails when
    /// it stops for good first.
    pub async fn wait_connected(&self) -> Result<Connection, Error> {
        let mut state = self.inner.state.clone();
        let state = state.wait_for(|s| s.connection().is_some() || s.is_stopped()).await;
        match state.as_deref() {
            Ok(State::Connected(connection)) => Ok(connection.clone()),
            _ => Err(self.stopped()),
        }
    }

    /// The encoding the client speaks.
    pub fn encoding(&self) -> Encoding {
        self.inner.encoding
    }

    /// Subscribes to `channel`; returns once the server accepted the
    /// subscription (waiting for a connection if there is none, up to the
    /// timeout). The subscription then lasts across reconnections: each
    /// resubscription asks for the publications missed meanwhile.
    ///
    /// Fails with the server's error (102 unknown namespace, 103
    /// permission denied ...), error 105 if this client already has a
    /// subscription to `channel`, or [`Error::Timeout`].
    pub async fn subscribe(&self, channel: impl Into<String>) -> Result<Subscription, Error> {
        let channel = channel.into();
        let key = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        let (events_sender, events) = mpsc::unbounded_channel();
        let (ready_sender, ready) = oneshot::channel();
        let mut subscription =
            Subscription::new(channel.clone(), key, events, self.inner.requests.clone(), self.inner.timeout);
        let request = Request::Subscribe { channel, key, events: events_sender, ready: ready_sender };
        if self.inner.requests.send(request).is_err() {
            subscription.forget();
            return Err(self.stopped());
        }
        match tokio::time::timeout(self.inner.timeout, ready).await {
            Ok(Ok(Ok(position))) => {
                subscription.subscribed(position);
                Ok(subscription)
            }
            Ok(Ok(Err(error))) => {
                subscription.forget();
                Err(error)
            }
            Ok(Err(_)) => {
                subscription.forget();
                Err(self.stopped())
            }
            // Dropping it unsubscribes.
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Publishes `data` into `channel`; returns its position. With JSON,
    /// `data` must be JSON text ([`Error::InvalidData`] otherwise); with
    /// MessagePack, any bytes (JSON subscribers get bytes that are not
    /// JSON as `data_base64`, which this client decodes).
    ///
    /// A publish that was sent when the connection went away fails with
    /// [`Error::Disconnected`]: it may or may not have been made.
    pub async fn publish(&self, channel: impl Into<String>, data: impl Into<Bytes>) -> Result<Position, Error> {
        self.publish_keyed(channel.into(), data.into(), None).await
    }

    /// Publishes as [`publish`](Self::publish) does, once per `key`: a
    /// publication with a key this user used in the channel within the
    /// server's `idempotency_window` (5 minutes by default) is not made
    /// again, and answers the first one's position. What makes a publish
    /// safe to retry after [`Error::Disconnected`] or [`Error::Timeout`]:
    /// use the same key (a UUID, say: 1 to 64 bytes of `[A-Za-z0-9_.:-]`).
    pub async fn publish_idempotent(
        &self,
        channel: impl Into<String>,
        data: impl Into<Bytes>,
        key: impl Into<String>,
    ) -> Result<Position, Error> {
        self.publish_keyed(channel.into(), data.into(), Some(key.into())).await
    }

    async fn publish_keyed(&self, channel: String, data: Bytes, key: Option<String>) -> Result<Position, Error> {
        let data = Data(data);
        if self.inner.encoding == Encoding::Json && !data.is_json() {
            return Err(Error::InvalidData("JSON carries only data that is JSON text".into()));
        }
        ferrows_hub::protocol::check_idempotency_key(key.as_deref()).map_err(Error::InvalidData)?;
        self.call(Method::Publish(Publish { channel, data, idempotency_key: key })).await
    }

    /// Publishes `value` as JSON text (in either encoding: a MessagePack
    /// client's JSON text reaches JSON subscribers as that JSON value).
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        channel: impl Into<String>,
        value: &T,
    ) -> Result<Position, Error> {
        let data = serde_json::to_vec(value).map_err(|e| Error::InvalidData(e.to_string()))?;
        self.publish(channel, data).await
    }

    /// Who is subscribed to `channel`: client id -> who it is (namespaces
    /// with `presence`).
    pub async fn presence(&self, channel: impl Into<String>) -> Result<BTreeMap<String, ClientInfo>, Error> {
        let presence: Presence = self.call(Method::Presence(ChannelArg { channel: channel.into() })).await?;
        Ok(presence.clients.into_iter().filter_map(|(id, info)| Some((id, client_info(info)?))).collect())
    }

    /// The channel's position and its latest publications (at most
    /// `limit`, or as many as the server keeps), oldest first.
    pub async fn history(
        &self,
        channel: impl Into<String>,
        limit: Option<usize>,
    ) -> Result<(Position, Vec<Publication>), Error> {
        let result: Positioned = self.call(Method::History(History { channel: channel.into(), limit })).await?;
        let publications = result.publications.unwrap_or_default().into_iter().map(Publication::from).collect();
        Ok((result.position, publications))
    }

    /// Calls `method` of the application's backend (the server's RPC
    /// proxy) with `data`; returns its answer's data. With JSON, `data`
    /// must be JSON text; with MessagePack, any bytes.
    ///
    /// Fails with the backend's error (codes 1000-1999), error 111 when
    /// it did not answer, 104 when the server has no RPC proxy. A call
    /// sent when the connection went away fails with
    /// [`Error::Disconnected`]: it may or may not have been made.
    pub async fn rpc(&self, method: impl Into<String>, data: impl Into<Bytes>) -> Result<Bytes, Error> {
        let data = Data(data.into());
        if self.inner.encoding == Encoding::Json && !data.is_json() {
            return Err(Error::InvalidData("JSON carries only data that is JSON text".into()));
        }
        let result: RpcResult = self.call(Method::Rpc(Rpc { method: method.into(), data })).await?;
        Ok(result.data.0)
    }

    /// Calls `method` with `argument` as JSON and reads the answer as JSON.
    pub async fn rpc_json<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: impl Into<String>,
        argument: &A,
    ) -> Result<R, Error> {
        let data = serde_json::to_vec(argument).map_err(|e| Error::InvalidData(e.to_string()))?;
        let answer = self.rpc(method, data).await?;
        serde_json::from_slice(&answer).map_err(|e| Error::InvalidData(format!("the answer: {e}")))
    }

    /// The events of the server-side subscriptions, once: `None` when
    /// taken already, or when the client was built without
    /// [`ClientBuilder::server_subscriptions`](crate::ClientBuilder::server_subscriptions).
    pub fn server_subscriptions(&self) -> Option<ServerSubscriptions> {
        self.inner.server_subscriptions.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// A round trip to the server.
    pub async fn ping(&self) -> Result<(), Error> {
        self.call::<Empty>(Method::Ping).await.map(|_| ())
    }

    /// Stops the client: closes the connection (Close 1000) and stops
    /// reconnecting; waiting commands fail and subscriptions end with
    /// [`Error::Closed`]. Returns once done.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.inner.requests.send(Request::Close { done: Some(done) }).is_ok() {
            let _ = closed.await;
        }
    }

    /// Sends a command (once connected) and reads its reply's result.
    async fn call<T: DeserializeOwned>(&self, method: Method) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        if self.inner.requests.send(Request::Command { method, reply }).is_err() {
            return Err(self.stopped());
        }
        let bytes = match tokio::time::timeout(self.inner.timeout, answer).await {
            Ok(Ok(outcome)) => outcome?,
            Ok(Err(_)) => return Err(self.stopped()),
            Err(_) => return Err(Error::Timeout),
        };
        wire::reply(self.inner.encoding, &bytes)
    }

    /// The error of a client that stopped.
    fn stopped(&self) -> Error {
        match &*self.inner.state.borrow() {
            State::Disconnected(Disconnect { code, reason, .. }) => {
                Error::Closed { code: *code, reason: reason.clone() }
            }
            _ => Error::Closed { code: 1000, reason: "the client stopped".into() },
        }
    }
}
