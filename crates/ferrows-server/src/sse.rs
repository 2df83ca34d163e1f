//! Server-Sent Events (`GET /api/stream`): one or more channels streamed
//! over a plain HTTP response, for clients that cannot open a WebSocket
//! (a browser's `EventSource`).
//!
//! A stream is a subscriber like a WebSocket session: the same node
//! subscription with recovery, the same bounded queue (a client that
//! does not read overflows it and its connection is closed), presence. Its
//! events are the WebSocket's JSON pushes; each publication's event has
//! an `id` holding every channel's position, which a browser sends back as
//! `Last-Event-ID` when it reconnects, so the stream goes on where it was.
//! See `docs/protocol.md`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrows::PreparedMessage;
use ferrows::proto::DataKind;
use ferrows_hub::broker::HistoryAnswer;
use ferrows_hub::protocol::stream::{ChannelPositions, PushMove, Subscribed, write_event};
use ferrows_hub::protocol::{ClientInfo, Connected, Encoding, Error, Position, Positioned, Push};
use ferrows_hub::queue::{Batch, ClientQueue};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use serde::{Deserialize, Serialize};
use tokio::time::Sleep;

use crate::answer::{Body, error_response};
use crate::http_client::{ChannelRequest, Route, display_name};
use crate::session::SessionOutlet;
use crate::state::{AppState, subscribe_error};

/// What an idle stream sends every `sse_keepalive`: an event (not a
/// comment: `EventSource` shows comments to nobody), so that a client can
/// tell a quiet stream from a dead one.
const KEEPALIVE: &[u8] = b"event: ping\ndata: {}\n\n";

/// The shortest keepalive interval a stream takes (a configuration made
/// in code could ask for none at all: a busy loop).
const MIN_KEEPALIVE: Duration = Duration::from_millis(100);

/// The subscribe reply a stream's queue holds (in a binary message, which
/// no push is): the stream writes it as a `subscribed` event followed by
/// the recovered publications.
#[derive(Serialize, Deserialize)]
struct Joined {
    channel: String,
    positioned: Positioned,
}

/// A stream's queue and whether it overflowed, watched by its HTTP
/// connection: a client that stops reading stops hyper from polling the
/// stream, so the connection itself closes on the overflow.
#[derive(Clone, Default)]
pub(crate) struct StreamWatch(Arc<Mutex<Option<ClientQueue<SessionOutlet>>>>);

impl StreamWatch {
    /// Completes once the stream of this connection (if it opens one)
    /// overflowed.
    pub(crate) fn overflowed(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(queue) if queue.poll_ended(cx).is_ready() && queue.overflowed() => Poll::Ready(()),
                // Ended otherwise (closed by a shutdown): the response ends
                // by itself.
                _ => Poll::Pending,
            }
        })
    }

    fn watch(&self, queue: &ClientQueue<SessionOutlet>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue.clone());
    }
}

/// Opens a stream: subscribes to every channel asked for (recovering from
/// the positions given), then answers 200 with the stream; or an error
/// status when any channel cannot be had.
pub(crate) async fn handle(request: Request<Incoming>, state: Arc<AppState>, watch: StreamWatch) -> Response<Body> {
    if state.shutdown.is_cancelled() {
        return error_response(&Error::Unavailable("shutting down".into()));
    }
    let asked = match ChannelRequest::read(&request, &state, Route::Stream).await {
        Ok(asked) => asked,
        Err(error) => return error_response(&error),
    };
    drop(request);
    if state.holds_all_subscribers() {
        return error_response(&Error::ServerFull);
    }
    let client = asked.client;
    let (messages, bytes) = (state.config.limits.client_queue_messages, state.config.limits.client_queue_bytes);
    let queue = ClientQueue::with_outlet(messages, bytes, Encoding::Json, SessionOutlet::default());
    state.register_session(client, &queue);
    state.metrics.streams.inc();
    state.metrics.streams_opened.inc();
    let client_id = state.client_id(client);
    let name = display_name(&asked.claims, asked.name);
    let info = ClientInfo { client: client_id.clone(), user: asked.claims.sub.clone(), name }.to_info().0;
    let interval = state.config.websocket.sse_keepalive.max(MIN_KEEPALIVE);
    // Credentials that expire end the stream at their expiry (its last
    // event says so), unless the refresh proxy extends them.
    let holder = || crate::expiry::Holder { client_id: client_id.clone(), user: asked.claims.sub.clone(), meta: None };
    let expires = state.expiries.expire(client, asked.claims.exp, holder);
    // The server API's disconnect reaches its user's streams too.
    state.users.joined(&asked.claims.sub, client, false);
    let user: Box<str> = asked.claims.sub.as_str().into();
    let connected =
        Connected { client: client_id.clone(), user: asked.claims.sub, ping: interval.as_secs(), expires, data: None };
    let mut stream = EventStream {
        state: state.clone(),
        client,
        queue: queue.clone(),
        positions: ChannelPositions::default(),
        channels: Vec::with_capacity(asked.channels.len()),
        info: info.clone(),
        keepalive: Box::pin(tokio::time::sleep(interval)),
        interval,
        first: Some(event(Some("connected"), None, &Encoding::Json.encode(&connected))),
        ended: false,
        user,
    };
    for asked in asked.channels {
        let channel = asked.channel;
        let since = AppState::recovery_from(&channel, asked.since);
        let recovering = since.is_some();
        let reply = |answer: &HistoryAnswer| -> PreparedMessage {
            let positioned = Positioned::of(answer, recovering, recovering);
            PreparedMessage::binary(Encoding::Json.encode(&Joined { channel: channel.clone(), positioned }))
        };
        let limit = asked.namespace.history_size.max(1);
        let subscribed = state.node.subscribe(&channel, client, &queue.erased(), since, limit, reply).await;
        if let Err(e) = subscribed {
            // The channels subscribed so far are left as the stream drops.
            return error_response(&subscribe_error(&e));
        }
        state.metrics.subscriptions.inc();
        stream.channels.push((channel.clone(), asked.namespace.presence));
        state.joined(&channel, &asked.namespace, &client_id, info.clone()).await;
    }
    watch.watch(&queue);
    let mut response = Response::new(Body::Stream(Box::new(stream)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Asks nginx and its kind not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *response.status_mut() = StatusCode::OK;
    response
}

/// An open event stream: the body of its response.
pub(crate) struct EventStream {
    state: Arc<AppState>,
    client: u64,
    queue: ClientQueue<SessionOutlet>,
    /// Every channel's position: the `id` of its events.
    positions: ChannelPositions,
    /// The channels subscribed, and whether presence tracks them there.
    channels: Vec<(String, bool)>,
    /// Who the client is, for presence.
    info: Bytes,
    keepalive: Pin<Box<Sleep>>,
    interval: Duration,
    /// The `connected` event, sent first.
    first: Option<Bytes>,
    ended: bool,
    /// Its user (for the server API's orders).
    user: Box<str>,
}

impl EventStream {
    /// The events of `batch`, as one piece of the response.
    fn events(&mut self, batch: &Batch) -> Bytes {
        let size: usize = batch.iter().map(|message| message.payload().len() + 16).sum();
        let mut out = BytesMut::with_capacity(size + 64);
        for message in batch.iter() {
            let payload = message.payload();
            if message.kind() == DataKind::Binary {
                self.joined(&mut out, payload);
                continue;
            }
            let moved = match PushMove::of(payload) {
                PushMove::Pub { channel, offset } => self.positions.advance(&channel, offset),
                PushMove::Reset { channel, position } => {
                    self.positions.set(&channel, position);
                    true
                }
                PushMove::None => false,
            };
            write_event(&mut out, None, moved.then_some(&self.positions), payload);
        }
        self.state.metrics.stream_events_out.inc_by(batch.len() as u64);
        out.freeze()
    }

    /// A subscribe reply: the `subscribed` event, then the publications
    /// it recovered, each with its position.
    fn joined(&mut self, out: &mut BytesMut, reply: &[u8]) {
        let Joined { channel, positioned } = match Encoding::Json.decode::<Joined>(reply) {
            Ok(joined) => joined,
            Err(e) => return tracing::error!("a stream's subscribe reply does not read back: {e}"),
        };
        let Positioned { position, recovered, publications } = positioned;
        let publications = if recovered == Some(true) { publications.unwrap_or_default() } else { Vec::new() };
        let subscribed = Subscribed { channel: channel.clone(), position: position.clone(), recovered };
        let text = Encoding::Json.encode(&subscribed);
        if publications.is_empty() {
            self.positions.set(&channel, position);
            write_event(out, Some("subscribed"), Some(&self.positions), &text);
            return;
        }
        // The position moves with each publication, as the client gets it.
        write_event(out, Some("subscribed"), None, &text);
        for publication in publications {
            let offset = publication.offset;
            let push = Push { channel: channel.clone(), event: ferrows_hub::protocol::Event::Pub(publication) };
            self.positions.set(&channel, Position { offset, epoch: position.epoch.clone() });
            write_event(out, None, Some(&self.positions), &Encoding::Json.encode(&push));
        }
    }

    fn frame(&mut self, bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.state.metrics.stream_bytes_out.inc_by(bytes.len() as u64);
        let next = tokio::time::Instant::now() + self.interval;
        self.keepalive.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}

/// One event, alone.
fn event(kind: Option<&str>, id: Option<&ChannelPositions>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    write_event(&mut out, kind, id, data);
    out.freeze()
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return this.frame(first);
        }
        if this.ended {
            return Poll::Ready(None);
        }
        match this.queue.poll_take(cx) {
            Poll::Ready(Some(batch)) => {
                let events = this.events(&batch);
                this.frame(events)
            }
            Poll::Ready(None) => {
                // Overflowed (the client falls behind: it reconnects and
                // recovers what it missed) or closed (a shutdown), or
                // closed on purpose: a last `disconnect` event says why,
                // with the close code a WebSocket would get.
                this.ended = true;
                match this.state.close_reason(this.client) {
                    Some((code, reason)) => {
                        let said = serde_json::json!({"code": code, "reason": reason}).to_string();
                        this.frame(event(Some("disconnect"), None, said.as_bytes()))
                    }
                    None => Poll::Ready(None),
                }
            }
            Poll::Pending => match this.keepalive.as_mut().poll(cx) {
                Poll::Ready(()) => this.frame(Bytes::from_static(KEEPALIVE)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.first.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for EventStream {
    /// Leaves the channels (in a task: a drop cannot wait) and forgets the
    /// client.
    fn drop(&mut self) {
        if self.queue.overflowed() {
            // Counted here: a client that reads nothing at all never
            // sees the end of its stream (its connection is closed).
            self.state.metrics.slow_consumers.inc();
        }
        self.state.unregister_session(self.client);
        self.state.users.left(&self.user, self.client);
        self.state.metrics.streams.dec();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (state, client, info) = (self.state.clone(), self.client, self.info.clone());
        let channels = std::mem::take(&mut self.channels);
        let leave = async move {
            let client_id = state.client_id(client);
            for (channel, presence) in channels {
                state.node.unsubscribe(&channel, client).await;
                state.metrics.subscriptions.dec();
                if presence {
                    state.left(&channel, &client_id, info.clone()).await;
                }
            }
        };
        drop(runtime.spawn(self.state.tasks.track_future(leave)));
    }
}
