//! Clients over plain HTTP, for those that cannot open a WebSocket (polls,
//! event streams, publishes): who they are, what a request asks for, and
//! the WebSocket's other commands over HTTP (`POST /api/client/publish`,
//! `GET /api/presence`, `GET /api/history`).
//!
//! The rules are the WebSocket's: the same token (from `Authorization:
//! Bearer` or `?token=`), the same permissions
//! ([`AppState::readable`], [`AppState::publishable`], with the backend
//! where a namespace asks it), the same origins. (The connect proxy is
//! the WebSocket's alone: an HTTP client brings a token.)

use std::sync::Arc;
use std::time::Duration;

use ferrows_hub::StreamPosition;
use ferrows_hub::protocol::stream::ChannelPositions;
use ferrows_hub::protocol::{Answer, ApiPublish, ClientInfo, Encoding, Error, check_idempotency_key};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::access::Asker;
use crate::answer::{Body, error_response, json_response};
use crate::auth::Claims;
use crate::config::NamespaceConfig;
use crate::state::AppState;

/// Longest display name kept (longer ones are cut), for WebSocket and
/// HTTP clients alike.
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// A client's display name: the token's, else the one it gave, cut to
/// [`MAX_NAME_CHARS`].
pub(crate) fn display_name(claims: &Claims, given: Option<String>) -> String {
    claims.name.clone().or(given).unwrap_or_default().chars().take(MAX_NAME_CHARS).collect()
}

/// Whether a browser request's `Origin` may use the server (any origin
/// when none is configured; requests without one come from programs, not
/// pages).
pub(crate) fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let allowed = &state.config.server.allowed_origins;
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

/// Lets the page of `origin` (allowed) read `response` (CORS), and answers
/// a preflight (`OPTIONS`) of the client routes.
pub(crate) fn cross_origin(origin: Option<HeaderValue>, mut response: Response<Body>) -> Response<Body> {
    let Some(origin) = origin else { return response };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, last-event-id"),
    );
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// The answer to a preflight.
pub(crate) fn preflight() -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Who sends a request: its token's claims.
pub(crate) fn identify(state: &AppState, headers: &HeaderMap, query_token: Option<&str>) -> Result<Claims, Error> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    state.auth.identify(bearer.or(query_token)).map_err(|e| Error::Unauthorized(e.0))
}

/// Which route reads a [`ChannelRequest`]: the parameters differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /api/poll`: takes `timeout`.
    Poll,
    /// `GET /api/stream`: takes `name`, and `Last-Event-ID`.
    Stream,
}

/// One channel a request asks for.
pub(crate) struct Asked {
    pub(crate) channel: String,
    /// Its namespace's options.
    pub(crate) namespace: NamespaceConfig,
    /// The position to go on from, if the client has one.
    pub(crate) since: Option<StreamPosition>,
}

/// What a poll or a stream asks for, checked: the client's claims and the
/// channels it may read, in the order asked.
pub(crate) struct ChannelRequest {
    pub(crate) claims: Claims,
    /// The client id it is known by (in presence, and to the backend).
    pub(crate) client: u64,
    pub(crate) channels: Vec<Asked>,
    /// How long a poll may wait for something new (zero: not at all).
    pub(crate) timeout: Duration,
    /// The display name a stream's client gave.
    pub(crate) name: Option<String>,
}

impl ChannelRequest {
    /// Reads and checks `request`'s query (and, for a stream, its
    /// `Last-Event-ID`, whose positions are newer than the query's).
    pub(crate) async fn read<B>(request: &Request<B>, state: &AppState, route: Route) -> Result<Self, Error> {
        let limits = &state.config.limits;
        let max = limits.max_request_channels;
        let query = request.uri().query().unwrap_or("");
        let (mut names, mut since, mut token, mut name, mut timeout) = (Vec::new(), Vec::new(), None, None, None);
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match (&*key, route) {
                ("channel", _) => names.push(value.into_owned()),
                ("since", _) => since.push(value.into_owned()),
                ("token", _) => token = Some(value.into_owned()),
                ("name", Route::Stream) => name = Some(value.into_owned()),
                ("timeout", Route::Poll) => timeout = Some(poll_timeout(&value, limits.max_long_poll)?),
                (other, _) => return Err(Error::BadRequest(format!("unknown parameter {other:?}"))),
            }
        }
        if names.len() > max {
            return Err(Error::LimitExceeded(format!("{} channels in one request, at most {max}", names.len())));
        }
        let since = ChannelPositions::parse(&since.join(","), max).map_err(Error::BadRequest)?;
        let resumed = match (route, request.headers().get("last-event-id")) {
            (Route::Stream, Some(id)) => {
                let id = id.to_str().map_err(|_| Error::BadRequest("Last-Event-ID is not text".into()))?;
                ChannelPositions::parse(id, max).map_err(|e| Error::BadRequest(format!("Last-Event-ID: {e}")))?
            }
            _ => ChannelPositions::default(),
        };
        let claims = identify(state, request.headers(), token.as_deref())?;
        let client = state.next_client_id();
        let client_id = state.client_id(client);
        let asker = Asker { client: &client_id, user: &claims.sub, grants: &claims.channels, meta: None };
        let mut channels: Vec<Asked> = Vec::with_capacity(names.len());
        for channel in names {
            if channels.iter().any(|asked| asked.channel == channel) {
                return Err(Error::BadRequest(format!("channel {channel:?} asked for twice")));
            }
            let namespace = state.readable(&asker, &channel).await.map_err(|r| r.into_error())?.clone();
            let since = resumed.get(&channel).or(since.get(&channel)).cloned().map(StreamPosition::from);
            channels.push(Asked { channel, namespace, since });
        }
        if let Some((stray, _)) = since.iter().find(|(channel, _)| !channels.iter().any(|a| a.channel == *channel)) {
            return Err(Error::BadRequest(format!("a position for {stray:?}, which is not asked for")));
        }
        Ok(Self { claims, client, channels, timeout: timeout.unwrap_or(Duration::ZERO), name })
    }
}

fn poll_timeout(value: &str, max: Duration) -> Result<Duration, Error> {
    let seconds: f64 = value.parse().map_err(|_| Error::BadRequest(format!("timeout {value:?} is not a number")))?;
    if !(0.0..=max.as_secs_f64()).contains(&seconds) {
        return Err(Error::BadRequest(format!("timeout must be between 0 and {} seconds", max.as_secs_f64())));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `POST /api/client/publish[?token=…&name=…]`: a client's publication over
/// HTTP, with the permissions of a WebSocket `publish`. The body is the
/// server API's (`{"channel", "data"}`), at most `max_message_size` bytes,
/// as a WebSocket client's message.
pub(crate) async fn publish(request: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    state.metrics.http_publishes.inc();
    let (mut token, mut name) = (None, None);
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match &*key {
            "token" => token = Some(value.into_owned()),
            "name" => name = Some(value.into_owned()),
            other => return error_response(&Error::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    let claims = match identify(&state, request.headers(), token.as_deref()) {
        Ok(claims) => claims,
        Err(error) => return error_response(&error),
    };
    let limits = &state.config.limits;
    let body = match crate::http::read_body(request, state.config.server.request_timeout, limits.max_message_size).await
    {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let publication = match Encoding::Json.decode::<ApiPublish>(&body) {
        Ok(publication) => publication,
        Err(e) => return error_response(&Error::BadRequest(e)),
    };
    if let Err(e) = check_idempotency_key(publication.idempotency_key.as_deref()) {
        return error_response(&Error::BadRequest(e));
    }
    let client = state.client_id(state.next_client_id());
    let asker = Asker { client: &client, user: &claims.sub, grants: &claims.channels, meta: None };
    let (namespace, data) = match state.publishable(&asker, &publication.channel, publication.data.0).await {
        Ok(decided) => decided,
        Err(refusal) => return error_response(&refusal.into_error()),
    };
    let name = display_name(&claims, name);
    let once = publication.idempotency_key.map(|key| crate::state::client_key(&claims.sub, &key));
    let info = ClientInfo { client, user: claims.sub, name }.to_info();
    match state.publish(&publication.channel, namespace, data, Some(info.0), once.as_deref()).await {
        Ok(result) => json_response(StatusCode::OK, &Answer { result }),
        Err(error) => error_response(&error),
    }
}

/// What `GET /api/presence` and `GET /api/history` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    Presence,
    History,
}

/// `GET /api/presence?channel=…` and `GET /api/history?channel=…[&limit=N]`:
/// a channel's presence or latest publications, with the permissions of
/// the WebSocket's `presence` and `history` (what a client without a
/// WebSocket loads a channel with).
pub(crate) async fn read(request: Request<Incoming>, state: Arc<AppState>, what: Read) -> Response<Body> {
    let (mut channel, mut token, mut limit) = (None, None, None);
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match (&*key, what) {
            ("channel", _) if channel.is_none() => channel = Some(value.into_owned()),
            ("token", _) => token = Some(value.into_owned()),
            ("limit", Read::History) => match value.parse::<usize>() {
                Ok(n) => limit = Some(n),
                Err(_) => return error_response(&Error::BadRequest(format!("limit {value:?} is not a number"))),
            },
            (other, _) => {
                return error_response(&Error::BadRequest(format!("unknown or repeated parameter {other:?}")));
            }
        }
    }
    let Some(channel) = channel else {
        return error_response(&Error::UnknownChannel("a channel is required".into()));
    };
    let claims = match identify(&state, request.headers(), token.as_deref()) {
        Ok(claims) => claims,
        Err(error) => return error_response(&error),
    };
    let client = state.client_id(state.next_client_id());
    let asker = Asker { client: &client, user: &claims.sub, grants: &claims.channels, meta: None };
    let namespace = match state.readable(&asker, &channel).await {
        Ok(namespace) => namespace,
        Err(refusal) => return error_response(&refusal.into_error()),
    };
    let answer = match what {
        Read::Presence => {
            state.presence(&channel, namespace).await.map(|result| json_response(StatusCode::OK, &Answer { result }))
        }
        Read::History => state
            .history(&channel, namespace, limit)
            .await
            .map(|result| json_response(StatusCode::OK, &Answer { result })),
    };
    answer.unwrap_or_else(|error| error_response(&error))
}

/// Whether a request is a CORS preflight.
pub(crate) fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}
