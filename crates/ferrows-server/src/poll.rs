//! HTTP polling and long polling (`GET /api/poll`): the channels' history
//! read over plain HTTP, for clients that cannot open a WebSocket.
//!
//! Answers always come from the history, so a polling client sees the
//! same publications, in the same order, as a WebSocket subscriber. A long
//! poll with nothing new subscribes the request to the channel only to be
//! woken by the next publication, then reads the history again.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use ferrows::{PreparedMessage, Utf8Bytes};
use ferrows_hub::StreamPosition;
use ferrows_hub::broker::{HistoryAnswer, HistoryQuery};
use ferrows_hub::protocol::{Answer, Error, Positioned};
use ferrows_hub::queue::ClientQueue;

use crate::answer::{Body, error_response, json_response};
use crate::state::AppState;

#[derive(Default)]
struct PollQuery {
    channel: Option<String>,
    offset: Option<u64>,
    epoch: Option<String>,
    timeout: Option<f64>,
    token: Option<String>,
}

fn parse_query(query: &str, max_timeout: Duration) -> Result<PollQuery, String> {
    let mut parsed = PollQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "channel" => parsed.channel = Some(value.into_owned()),
            "offset" => parsed.offset = Some(value.parse().map_err(|_| format!("offset {value:?} is not a number"))?),
            "epoch" => parsed.epoch = Some(value.into_owned()),
            "timeout" => {
                let seconds: f64 = value.parse().map_err(|_| format!("timeout {value:?} is not a number"))?;
                if !(0.0..=max_timeout.as_secs_f64()).contains(&seconds) {
                    return Err(format!("timeout must be between 0 and {} seconds", max_timeout.as_secs_f64()));
                }
                parsed.timeout = Some(seconds);
            }
            "token" => parsed.token = Some(value.into_owned()),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(parsed)
}

pub(crate) async fn handle(request: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    state.metrics.poll_requests.inc();
    let query = match parse_query(request.uri().query().unwrap_or(""), state.config.limits.max_long_poll) {
        Ok(query) => query,
        Err(e) => return error_response(&Error::BadRequest(e)),
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
    let claims = match state.auth.identify(bearer.or(query.token).as_deref()) {
        Ok(claims) => claims,
        Err(e) => return error_response(&Error::Unauthorized(e.0)),
    };
    let Some(channel) = query.channel else {
        return error_response(&Error::UnknownChannel("a channel is required".into()));
    };
    let namespace = match state.channel_namespace(&channel) {
        Ok(namespace) => namespace,
        Err(error) => return error_response(&error),
    };
    if !namespace.may_read(&claims.sub, &claims.channels, &channel) {
        return error_response(&Error::PermissionDenied("not allowed".into()));
    }
    let limit = namespace.history_size.max(1);
    let since = match (query.offset, query.epoch) {
        (Some(offset), Some(epoch)) => StreamPosition { offset, epoch },
        (None, None) => return answer(state.broker().history(&channel, HistoryQuery::Position).await, false),
        _ => return error_response(&Error::BadRequest("offset and epoch go together".into())),
    };
    let read = || state.broker().history(&channel, HistoryQuery::Since(since.clone(), limit));
    let timeout = query.timeout.map_or(Duration::ZERO, Duration::from_secs_f64);
    if timeout.is_zero() {
        return answer(read().await, true);
    }
    if state.shutdown.is_cancelled() {
        return error_response(&Error::Unavailable("shutting down".into()));
    }
    // Long poll: be woken by the channel's next publication.
    let wakeup = ClientQueue::new(16, 1 << 20);
    let client = state.next_client_id();
    let ack = |_: &HistoryAnswer| PreparedMessage::text(Utf8Bytes::from(""));
    let subscribed = state.node.subscribe(&channel, client, &wakeup, Some(since.clone()), limit, ack).await;
    let _leave = Unsubscribe { state: state.clone(), channel: channel.clone(), client };
    match subscribed {
        Ok(now) if !now.recovered || !now.publications.is_empty() => return answer(Ok(now), true),
        Ok(_) => {}
        Err(e) => return error_response(&crate::state::subscribe_error(&e)),
    }
    let mut woken = Vec::new();
    // The acknowledgement is queued first; wait for what follows it.
    let _ = wakeup.pop_all(&mut woken).await;
    woken.clear();
    tokio::select! {
        _ = wakeup.pop_all(&mut woken) => {}
        _ = tokio::time::sleep(timeout) => {}
        _ = state.shutdown.cancelled() => {}
    }
    answer(read().await, true)
}

/// Leaves the channel when the long poll ends, however it ends (the
/// client may hang up, dropping the request's future).
struct Unsubscribe {
    state: Arc<AppState>,
    channel: String,
    client: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let (state, channel, client) = (self.state.clone(), std::mem::take(&mut self.channel), self.client);
        tokio::spawn(async move { state.node.unsubscribe(&channel, client).await });
    }
}

fn answer(result: Result<HistoryAnswer, ferrows_hub::broker::BrokerError>, with_recovered: bool) -> Response<Body> {
    match result {
        Ok(answer) => {
            json_response(StatusCode::OK, &Answer { result: Positioned::of(&answer, with_recovered, with_recovered) })
        }
        Err(e) => error_response(&crate::state::broker_error(&e)),
    }
}
