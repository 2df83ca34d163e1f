//! HTTP polling and long polling (`GET /api/poll`): the history of one or
//! more channels read over plain HTTP, for clients that cannot open a
//! WebSocket.
//!
//! Answers always come from the history, so a polling client sees the
//! same publications, in the same order, as a WebSocket subscriber. A long
//! poll with nothing new in any of its channels waits for their next event
//! (a [`Watch`](ferrows_hub::node::Watch) each: no queue, no subscriber),
//! then reads them again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use ferrows_hub::broker::{BrokerError, HistoryAnswer, HistoryQuery};
use ferrows_hub::node::Watch;
use ferrows_hub::protocol::stream::{ChannelPolled, ChannelPositions, Polled};
use ferrows_hub::protocol::{Answer, Error, Positioned};

use crate::answer::{Body, error_response, json_response};
use crate::http_client::{Asked, ChannelRequest, Route};
use crate::state::{AppState, broker_error};

pub(crate) async fn handle(request: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    state.metrics.poll_requests.inc();
    let asked = match ChannelRequest::read(&request, &state, Route::Poll).await {
        Ok(asked) => asked,
        Err(error) => return error_response(&error),
    };
    drop(request);
    let first = read_all(&state, &asked.channels).await;
    if asked.timeout.is_zero() || !nothing_new(&asked.channels, &first) {
        return answer(&asked.channels, first);
    }
    if state.shutdown.is_cancelled() {
        return error_response(&Error::Unavailable("shutting down".into()));
    }
    // A waiting long poll holds what a subscriber does: it counts toward
    // `max_connections` with the WebSocket sessions and the streams.
    if state.holds_all_subscribers() {
        return error_response(&Error::ServerFull);
    }
    // Long poll: wait for an event of any of the channels, then read them
    // again, until something new or the deadline. The watches keep the
    // node on the channels at the broker; each wait is enabled before its
    // read, so a publication between the two is not missed. Other events
    // (join, leave) wake it too: it reads, finds nothing, and waits on.
    let deadline = tokio::time::Instant::now() + asked.timeout;
    let mut watches = Vec::with_capacity(asked.channels.len());
    for channel in &asked.channels {
        match state.node.watch(&channel.channel).await {
            Ok(watch) => watches.push(watch),
            Err(e) => return error_response(&broker_error(&e)),
        }
    }
    // Counted while it waits, however it ends: hyper drops the request's
    // future when its client goes away mid-wait.
    let _waiting = Waiting::new(&state);
    long_poll(&state, &asked.channels, &watches, deadline).await
}

/// A waiting long poll, in the `long_polls` gauge while it lives.
struct Waiting<'a>(&'a AppState);

impl<'a> Waiting<'a> {
    fn new(state: &'a AppState) -> Self {
        state.metrics.long_polls.inc();
        Self(state)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.metrics.long_polls.dec();
    }
}

async fn long_poll(
    state: &AppState,
    channels: &[Asked],
    watches: &[Watch],
    deadline: tokio::time::Instant,
) -> Response<Body> {
    loop {
        let mut changes: Vec<_> = watches.iter().map(|watch| Box::pin(watch.changed())).collect();
        for change in &mut changes {
            change.as_mut().enable();
        }
        let read = read_all(state, channels).await;
        if !nothing_new(channels, &read) {
            return answer(channels, read);
        }
        let any_change = std::future::poll_fn(|cx| {
            let ready = changes.iter_mut().any(|change| Pin::new(change).poll(cx).is_ready());
            if ready { Poll::Ready(()) } else { Poll::Pending }
        });
        tokio::select! {
            _ = any_change => {}
            _ = tokio::time::sleep_until(deadline) => return answer(channels, read),
            _ = state.shutdown.cancelled() => return answer(channels, read),
        }
    }
}

type Read = Result<HistoryAnswer, BrokerError>;

/// Each channel's history since its position (its position alone when it
/// has none), at most its namespace's history size.
async fn read_all(state: &AppState, channels: &[Asked]) -> Vec<Read> {
    let mut reads = Vec::with_capacity(channels.len());
    for asked in channels {
        let query = match &asked.since {
            Some(since) => HistoryQuery::Since(since.clone(), asked.namespace.history_size.max(1)),
            None => HistoryQuery::Position,
        };
        reads.push(state.broker().history(&asked.channel, query).await);
    }
    reads
}

/// Whether a long poll waits: every channel had a position and nothing
/// came after it (a channel without one answers at once with its
/// position; a failed read, with the error; a poll of no channel at all,
/// with nothing: what a client checks the server with).
fn nothing_new(channels: &[Asked], reads: &[Read]) -> bool {
    !channels.is_empty()
        && channels.iter().zip(reads).all(|(asked, read)| {
            asked.since.is_some() && matches!(read, Ok(answer) if answer.recovered && answer.publications.is_empty())
        })
}

fn answer(channels: &[Asked], reads: Vec<Read>) -> Response<Body> {
    let mut polled = Vec::with_capacity(channels.len());
    let mut since = ChannelPositions::default();
    for (asked, read) in channels.iter().zip(reads) {
        let answer = match read {
            Ok(answer) => answer,
            Err(e) => return error_response(&broker_error(&e)),
        };
        let recovering = asked.since.is_some();
        since.set(&asked.channel, answer.position.clone().into());
        let positioned = Positioned::of(&answer, recovering, recovering);
        polled.push(ChannelPolled::of(asked.channel.clone(), positioned));
    }
    json_response(StatusCode::OK, &Answer { result: Polled { channels: polled, since: since.to_string() } })
}
