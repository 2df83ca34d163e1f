//! HTTP polling and long polling (`GET /api/poll`): the channels' history
//! read over plain HTTP, for clients that cannot open a WebSocket.
//!
//! Answers always come from the history, so a polling client sees the
//! same publications, in the same order, as a WebSocket subscriber. A long
//! poll with nothing new waits for the channel's next event (a
//! [`Watch`](ferrows_hub::node::Watch): no queue, no subscriber), then
//! reads the history again.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use ferrows_hub::StreamPosition;
use ferrows_hub::broker::{HistoryAnswer, HistoryQuery};
use ferrows_hub::protocol::{Answer, Error, Positioned};

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
    let first = read().await;
    if timeout.is_zero() || !nothing_new(&first) {
        return answer(first, true);
    }
    if state.shutdown.is_cancelled() {
        return error_response(&Error::Unavailable("shutting down".into()));
    }
    // Long poll: wait for the channel's next event, then read again, until
    // something new or the deadline. The watch keeps the node on the
    // channel at the broker; each wait is enabled before its read, so a
    // publication between the two is not missed. Other events (join,
    // leave) wake it too: it reads, finds nothing, and waits on.
    let deadline = tokio::time::Instant::now() + timeout;
    let watch = match state.node.watch(&channel).await {
        Ok(watch) => watch,
        Err(e) => return error_response(&crate::state::broker_error(&e)),
    };
    loop {
        let mut changed = std::pin::pin!(watch.changed());
        changed.as_mut().enable();
        let read = read().await;
        if !nothing_new(&read) {
            return answer(read, true);
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => return answer(read, true),
            _ = state.shutdown.cancelled() => return answer(read, true),
        }
    }
}

/// Whether a read since a position found nothing after it (a long poll
/// then waits).
fn nothing_new(read: &Result<HistoryAnswer, ferrows_hub::broker::BrokerError>) -> bool {
    matches!(read, Ok(answer) if answer.recovered && answer.publications.is_empty())
}

fn answer(result: Result<HistoryAnswer, ferrows_hub::broker::BrokerError>, with_recovered: bool) -> Response<Body> {
    match result {
        Ok(answer) => {
            json_response(StatusCode::OK, &Answer { result: Positioned::of(&answer, with_recovered, with_recovered) })
        }
        Err(e) => error_response(&crate::state::broker_error(&e)),
    }
}
