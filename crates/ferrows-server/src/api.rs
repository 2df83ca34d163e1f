//! The server API: what the application's backend asks of the service,
//! with its API key (`Authorization: apikey KEY`), as JSON `POST`s:
//! publish (one, or a batch), order a user's connections (subscribe,
//! unsubscribe, disconnect: on every node), and read channels, presence
//! and history.

use std::sync::Arc;

use bytes::Bytes;
use ferrows_hub::protocol::proxy::MAX_CLOSE_REASON;
use ferrows_hub::protocol::{
    Answer, ApiBatch, ApiChannel, ApiChannels, ApiDisconnect, ApiPublish, ApiUserChannel, BatchResults, ChannelList,
    Empty, Encoding, Error, Outcome, Published, check_idempotency_key, close,
};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::answer::{Body, error_response, json_response};
use crate::control::Order;
use crate::state::{AppState, SYSTEM_NAMESPACE, broker_error};

/// The routes of the server API (all `POST`).
pub(crate) const ROUTES: [&str; 8] = [
    "/api/publish",
    "/api/batch",
    "/api/subscribe",
    "/api/unsubscribe",
    "/api/disconnect",
    "/api/channels",
    "/api/presence",
    "/api/history",
];

/// Answers a server API request (`POST` on one of [`ROUTES`]).
pub(crate) async fn handle(request: Request<Incoming>, state: &Arc<AppState>) -> Response<Body> {
    if state.config.auth.api_key.is_none() {
        return error_response(&Error::NotFound("the server API is disabled (no --api-key)".into()));
    }
    if !api_key_ok(state, &request) {
        return error_response(&Error::Unauthorized("missing or wrong API key".into()));
    }
    let path = request.uri().path().to_owned();
    let limits = &state.config.limits;
    let body = match crate::http::read_body(request, state.config.server.request_timeout, limits.max_api_body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    match path.as_str() {
        "/api/batch" => batch(state, &body).await,
        "/api/publish" => answer(read::<ApiPublish>(&body).map(|p| publish_one(state, p))).await,
        "/api/subscribe" => {
            let order = read::<ApiUserChannel>(&body).and_then(|o| user_channel(state, o, true));
            answer(order.map(|order| ordered(state, order))).await
        }
        "/api/unsubscribe" => {
            let order = read::<ApiUserChannel>(&body).and_then(|o| user_channel(state, o, false));
            answer(order.map(|order| ordered(state, order))).await
        }
        "/api/disconnect" => {
            let order = read::<ApiDisconnect>(&body).and_then(disconnect);
            answer(order.map(|order| ordered(state, order))).await
        }
        "/api/channels" => answer(read::<ApiChannels>(&body).map(|_| channels(state))).await,
        "/api/presence" => answer(read::<ApiChannel>(&body).map(|c| presence(state, c))).await,
        "/api/history" => answer(read::<ApiChannel>(&body).map(|c| history(state, c))).await,
        _ => error_response(&Error::NotFound("not found".into())),
    }
}

/// The answer to a request read as `request`: its result, or the error of
/// reading it or of carrying it out.
async fn answer<F, R>(request: Result<F, Error>) -> Response<Body>
where
    F: Future<Output = Result<R, Error>>,
    R: Serialize,
{
    let outcome = match request {
        Ok(future) => future.await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(result) => json_response(StatusCode::OK, &Answer { result }),
        Err(error) => error_response(&error),
    }
}

/// A request body as `T` (an empty body as `{}`).
fn read<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    Encoding::Json.decode::<T>(body).map_err(Error::BadRequest)
}

fn api_key_ok(state: &AppState, request: &Request<Incoming>) -> bool {
    let Some(key) = &state.config.auth.api_key else { return false };
    let Some(given) = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, value)) = given.split_once(' ') else { return false };
    // Compared in constant time: the key is a secret.
    scheme.eq_ignore_ascii_case("apikey") && constant_time_eq(value.trim().as_bytes(), key.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn batch(state: &Arc<AppState>, body: &Bytes) -> Response<Body> {
    let publications = match read::<ApiBatch>(body) {
        Ok(batch) => batch.publications,
        Err(error) => return error_response(&error),
    };
    let max_batch = state.config.limits.max_api_batch;
    if publications.len() > max_batch {
        let message = format!("{} publications in one batch, at most {max_batch}", publications.len());
        return error_response(&Error::LimitExceeded(message));
    }
    let mut results = Vec::with_capacity(publications.len());
    for publication in publications {
        results.push(Outcome::from(publish_one(state, publication).await));
    }
    json_response(StatusCode::OK, &BatchResults { results })
}

async fn publish_one(state: &AppState, publication: ApiPublish) -> Result<Published, Error> {
    let namespace = state.channel_namespace(&publication.channel)?;
    check_idempotency_key(publication.idempotency_key.as_deref()).map_err(Error::BadRequest)?;
    let once = publication.idempotency_key.as_deref().map(crate::state::api_key);
    state.publish(&publication.channel, namespace, publication.data.0, None, once.as_deref()).await
}

/// A subscribe or unsubscribe order, checked: a user, and a channel of a
/// known namespace (not the server's own).
fn user_channel(state: &AppState, order: ApiUserChannel, subscribe: bool) -> Result<Order, Error> {
    if order.user.is_empty() {
        return Err(Error::BadRequest("a user is required (anonymous clients cannot be addressed)".into()));
    }
    state.channel_namespace(&order.channel)?;
    if crate::config::namespace_of(&order.channel) == SYSTEM_NAMESPACE {
        return Err(Error::PermissionDenied("the server's own channels".into()));
    }
    let ApiUserChannel { user, channel } = order;
    Ok(if subscribe { Order::Subscribe { user, channel } } else { Order::Unsubscribe { user, channel } })
}

/// A disconnect order, checked: a user, the code 4008 or one of the
/// application's, a reason that fits a Close frame.
fn disconnect(order: ApiDisconnect) -> Result<Order, Error> {
    if order.user.is_empty() {
        return Err(Error::BadRequest("a user is required (anonymous clients cannot be addressed)".into()));
    }
    let code = order.code.unwrap_or(close::DISCONNECTED);
    if code != close::DISCONNECTED && !close::APPLICATION.contains(&code) {
        return Err(Error::BadRequest(format!("code {code}: 4008, or 4500-4999")));
    }
    let reason = order.reason.unwrap_or_else(|| "disconnected".into());
    if reason.len() > MAX_CLOSE_REASON {
        return Err(Error::BadRequest(format!("a reason over {MAX_CLOSE_REASON} bytes")));
    }
    Ok(Order::Disconnect { user: order.user, code, reason })
}

/// Sends `order` to every node.
async fn ordered(state: &AppState, order: Order) -> Result<Empty, Error> {
    crate::control::send(state, &order).await?;
    Ok(Empty {})
}

/// The channels with subscribers on any node (clients' channels: not the
/// server's own).
async fn channels(state: &AppState) -> Result<ChannelList, Error> {
    let mut channels = state.broker().channels().await.map_err(|e| broker_error(&e))?;
    channels.retain(|channel| {
        crate::config::is_valid_channel(channel) && crate::config::namespace_of(channel) != SYSTEM_NAMESPACE
    });
    channels.sort_unstable();
    Ok(ChannelList { channels })
}

async fn presence(state: &AppState, asked: ApiChannel) -> Result<ferrows_hub::protocol::Presence, Error> {
    let namespace = state.channel_namespace(&asked.channel)?;
    state.presence(&asked.channel, namespace).await
}

async fn history(state: &AppState, asked: ApiChannel) -> Result<ferrows_hub::protocol::Positioned, Error> {
    let namespace = state.channel_namespace(&asked.channel)?;
    state.history(&asked.channel, namespace, asked.limit).await
}
