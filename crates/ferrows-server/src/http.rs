//! HTTP: the routes of the server, over hyper (HTTP/1.1, upgrades to
//! WebSocket on `/ws`), with or without TLS.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferrows_hub::protocol::Error;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::answer::{Body, error_body, error_response, json_response, respond};
use crate::http_client::{Read, cross_origin, is_preflight, origin_allowed, preflight};
use crate::limits::{AddressSlot, CommandRate, Verdict};
use crate::session::Handshake;
use crate::sse::StreamWatch;
use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../demo/index.html");
const APP_JS: &str = include_str!("../demo/app.js");
const STYLE_CSS: &str = include_str!("../demo/style.css");
const CLIENT_JS: &str = include_str!("../demo/ferrows.js");
const MSGPACK_JS: &str = include_str!("../demo/msgpack.js");

pub(crate) async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<AppState>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(slot) = state.addresses.enter(peer.ip()) else {
            refused_by_address(&state, peer);
            tokio::spawn(refuse(tcp, tls.is_some()));
            continue;
        };
        let counted = Counted { state: state.clone(), slot };
        let (state, tls) = (state.clone(), tls.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_connection(tcp, peer, tls, state, counted).await {
                tracing::debug!(%peer, "connection: {e}");
            }
        });
    }
}

/// A connection counted for its address until it closes.
struct Counted {
    state: Arc<AppState>,
    slot: AddressSlot,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.state.addresses.leave(self.slot);
    }
}

/// Counts (and the first time, explains) a connection refused because its
/// address has too many open.
fn refused_by_address(state: &AppState, peer: std::net::SocketAddr) {
    static EXPLAINED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    state.metrics.refused_by_address.inc();
    if !EXPLAINED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            limit = state.config.limits.max_connections_per_address,
            "connections refused: max_connections_per_address reached for this address \
             (behind a reverse proxy, set it to 0 and limit at the proxy)"
        );
    } else {
        tracing::debug!(%peer, "connection refused: max_connections_per_address");
    }
}

/// How long a refused connection is kept to take our answer: 1 s, so
/// that refusals cost the server little even in a flood.
const REFUSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers a connection over `max_connections_per_address` at once, before
/// its request (HTTP allows an early answer), without hyper: 429 with
/// `Retry-After`, then its end, reading what the client still sends for at
/// most [`REFUSE_LINGER`] so that the answer is not lost to a reset. Over
/// TLS the connection is only closed: answering would need a handshake.
async fn refuse(mut tcp: TcpStream, tls: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tls {
        return;
    }
    let error = Error::TooManyRequests("too many connections from this address".into());
    let body = error_body(&error);
    let head = format!(
        "HTTP/1.1 {} Too Many Requests\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
         retry-after: 10\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        error.http_status(),
        body.len()
    );
    let answer = [head.as_bytes(), &body].concat();
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Serves one HTTP connection: its requests, and the WebSocket it may turn
/// into; counted for its address until it ends.
async fn serve_connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    counted: Counted,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    let head_timeout = state.config.server.request_timeout;
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(head_timeout)
        // hyper's smallest buffer is 8 KiB.
        .max_buf_size(state.config.limits.max_request_head_size.max(8192));
    let slot = counted.slot;
    let connection = PerConnection {
        watch: StreamWatch::default(),
        rate: Arc::new(Mutex::new(CommandRate::new(state.command_rate.as_ref()))),
    };
    let watch = connection.watch.clone();
    let service = service_fn(move |request| {
        let (state, connection) = (state.clone(), connection.clone());
        async move { Ok::<_, Infallible>(route(request, state, Client { peer, slot }, connection).await) }
    });
    match tls {
        Some(acceptor) => {
            let stream = tokio::time::timeout(head_timeout, acceptor.accept(tcp)).await??;
            serve_until_overflow(&builder, stream, service, &watch).await?;
        }
        None => serve_until_overflow(&builder, tcp, service, &watch).await?,
    }
    drop(counted);
    Ok(())
}

/// Serves a connection over `io` (its own type: an upgrade hands it on as
/// it is) until it ends, or until the event stream it carries overflows.
async fn serve_until_overflow<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    watch: &StreamWatch,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::select! {
        served = connection => served,
        () = watch.overflowed() => Ok(()),
    }
}

/// What the requests of one HTTP connection share.
#[derive(Clone)]
struct PerConnection {
    /// The event stream it may carry: closed with the connection when it
    /// overflows (a client that does not read).
    watch: StreamWatch,
    /// The command rate of its requests to the client routes: the
    /// WebSocket's rule (per connection), each request a command.
    rate: Arc<Mutex<CommandRate>>,
}

/// Where a request comes from.
#[derive(Clone, Copy)]
struct Client {
    peer: std::net::SocketAddr,
    /// Where its connection is counted for its address.
    slot: AddressSlot,
}

/// The routes of clients without a WebSocket: the origin and command rate
/// rules apply, and pages of other origins may read their answers (CORS).
const CLIENT_ROUTES: [&str; 5] = ["/api/poll", "/api/stream", "/api/client/publish", "/api/presence", "/api/history"];

async fn route(
    request: Request<Incoming>,
    state: Arc<AppState>,
    client: Client,
    connection: PerConnection,
) -> Response<Body> {
    // hyper bounds what it buffers of a head near this size; the exact
    // rule is here, for every route.
    if head_size(&request) > state.config.limits.max_request_head_size {
        return error_response(&Error::HeadTooLarge);
    }
    // The server API takes POST on /api/presence and /api/history; clients
    // GET them.
    let api = request.method() == Method::POST && crate::api::ROUTES.contains(&request.uri().path());
    if CLIENT_ROUTES.contains(&request.uri().path()) && !api {
        if !origin_allowed(&state, request.headers()) {
            return error_response(&Error::PermissionDenied("origin not allowed".into()));
        }
        let origin = request.headers().get(header::ORIGIN).cloned();
        if let Some(limit) = &state.command_rate
            && !is_preflight(&request)
        {
            let verdict = connection.rate.lock().unwrap_or_else(|p| p.into_inner()).check(limit);
            if verdict != Verdict::Run {
                state.metrics.commands_over_rate.inc();
                let error = Error::TooManyRequests("too many requests, slow down".into());
                let mut refusal = error_response(&error);
                if verdict == Verdict::Close {
                    // Asking on at full speed while refused: as a
                    // WebSocket client would be, closed.
                    state.metrics.command_floods.inc();
                    refusal.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                return cross_origin(origin, refusal);
            }
        }
        let answer = match (request.method(), request.uri().path()) {
            _ if is_preflight(&request) => preflight(),
            (&Method::GET, "/api/poll") => crate::poll::handle(request, state).await,
            (&Method::GET, "/api/stream") => crate::sse::handle(request, state, connection.watch).await,
            (&Method::POST, "/api/client/publish") => crate::http_client::publish(request, state).await,
            (&Method::GET, "/api/presence") => crate::http_client::read(request, state, Read::Presence).await,
            (&Method::GET, "/api/history") => crate::http_client::read(request, state, Read::History).await,
            _ => error_response(&Error::MethodNotAllowed),
        };
        return cross_origin(origin, answer);
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        (&Method::GET, "/demo/app.js") => respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        (&Method::GET, "/demo/style.css") => respond(StatusCode::OK, "text/css; charset=utf-8", STYLE_CSS),
        (&Method::GET, "/ferrows.js") => respond(StatusCode::OK, "text/javascript; charset=utf-8", CLIENT_JS),
        (&Method::GET, "/msgpack.js") => respond(StatusCode::OK, "text/javascript; charset=utf-8", MSGPACK_JS),
        // Every method: the handshake's own rule answers the others (405).
        (_, "/ws") => websocket(request, &state, client),
        (&Method::POST, path) if crate::api::ROUTES.contains(&path) => crate::api::handle(request, &state).await,
        (&Method::GET, "/healthz") => health(&state),
        (&Method::GET, "/metrics") => {
            let health = state.broker().health();
            state.metrics.broker_up.set(i64::from(health.connected));
            respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render())
        }
        (_, "/" | "/healthz" | "/metrics") => error_response(&Error::MethodNotAllowed),
        (_, path) if crate::api::ROUTES.contains(&path) => error_response(&Error::MethodNotAllowed),
        _ => error_response(&Error::NotFound("not found".into())),
    }
}

/// The size of a request's head as sent: the request line and the header
/// lines with their line ends.
fn head_size<B>(request: &Request<B>) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + " HTTP/1.1\r\n".len() + 1;
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    line + headers + 2
}

fn health(state: &AppState) -> Response<Body> {
    let broker = state.broker().health();
    let shutting_down = state.shutdown.is_cancelled();
    let ok = broker.connected && !shutting_down;
    let status = if ok {
        "ok"
    } else if shutting_down {
        "shutting down"
    } else {
        "broker unavailable"
    };
    let body = Health {
        status,
        broker: BrokerHealth { kind: broker.kind, connected: broker.connected, detail: broker.detail.as_deref() },
        connections: state.metrics.connections.get(),
    };
    json_response(if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

/// `GET /healthz`'s answer.
#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    broker: BrokerHealth<'a>,
    connections: i64,
}

#[derive(Serialize)]
struct BrokerHealth<'a> {
    kind: &'a str,
    connected: bool,
    detail: Option<&'a str>,
}

fn websocket(mut request: Request<Incoming>, state: &Arc<AppState>, client: Client) -> Response<Body> {
    if state.shutdown.is_cancelled() {
        return error_response(&Error::Unavailable("shutting down".into()));
    }
    // An invalid handshake gets the answer `ferrows::accept_with` gives.
    let (response, handover) = match ferrows::hyper_upgrade::upgrade_handover::<_, Body>(&mut request, &state.websocket)
    {
        Ok(accepted) => accepted,
        Err(e) => return ferrows::hyper_upgrade::reject(&e),
    };
    if !origin_allowed(state, request.headers()) {
        return error_response(&Error::PermissionDenied("origin not allowed".into()));
    }
    if state.metrics.connections.get() as usize >= state.config.limits.max_connections {
        return error_response(&Error::ServerFull);
    }
    let handshake = connect_proxy_handshake(state, &request, client.peer);
    // Boxed: the task keeps what it captured for its whole life, and the
    // upgrade's state (a copy of the WebSocket configuration, hyper's
    // upgrade handle) is needed only until the connection is handed over.
    let handover = Box::pin(handover);
    // The WebSocket is counted for its address from now on, while its HTTP
    // connection still is (which stops counting once hyper lets go of it).
    let address = state.addresses.share(client.slot);
    state.tasks.spawn({
        let state = state.clone();
        async move {
            match handover.await {
                Ok(handover) => spawn_session(handover, state, address, handshake),
                Err(e) => {
                    state.addresses.leave(address);
                    tracing::debug!("upgrade failed: {e}");
                }
            }
        }
    });
    response
}

/// Runs the session in a task of its own over the connection's own stream
/// (plain TCP or TLS), not over hyper's boxed `Upgraded`: each stream type
/// gets a task sized for it (a TLS session is far larger).
fn spawn_session(
    handover: ferrows::hyper_upgrade::Handover,
    state: Arc<AppState>,
    address: AddressSlot,
    handshake: Option<Box<Handshake>>,
) {
    use crate::session::run;
    let tasks = state.tasks.clone();
    let handover = match handover.downcast::<TcpStream>() {
        Ok(ws) => return drop(tasks.spawn(run(Box::new(ws), state, address, handshake))),
        Err(handover) => handover,
    };
    match handover.downcast::<tokio_rustls::server::TlsStream<TcpStream>>() {
        Ok(ws) => drop(tasks.spawn(run(Box::new(ws), state, address, handshake))),
        Err(handover) => drop(tasks.spawn(run(Box::new(handover.into_websocket()), state, address, handshake))),
    }
}

/// What the connect proxy will see of an opening handshake: the client's
/// address and the headers `proxy_headers` names. Nothing where there is
/// no connect proxy.
fn connect_proxy_handshake<B>(
    state: &AppState,
    request: &Request<B>,
    peer: std::net::SocketAddr,
) -> Option<Box<Handshake>> {
    let proxy = &state.config.proxy;
    proxy.connect_url.as_ref()?;
    let mut headers = std::collections::BTreeMap::new();
    // (Lowercase since the server started.)
    for name in &proxy.headers {
        let values: Vec<&str> =
            request.headers().get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok()).collect();
        if !values.is_empty() {
            headers.insert(name.clone(), values.join(", "));
        }
    }
    Some(Box::new(Handshake { attempts: 0, address: peer.ip().to_string(), headers }))
}

/// A server API request's body, whole: at most `limit` bytes, sent
/// within `timeout`; otherwise the answer that says why (413, 408, or 400
/// for a body that breaks HTTP's framing).
pub(crate) async fn read_body(
    request: Request<Incoming>,
    timeout: std::time::Duration,
    limit: usize,
) -> Result<Bytes, Response<Body>> {
    match tokio::time::timeout(timeout, Limited::new(request.into_body(), limit).collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(error_response(&Error::LimitExceeded(format!("body over {limit} bytes"))))
        }
        Ok(Err(e)) => Err(error_response(&Error::BadRequest(format!("malformed body: {e}")))),
        Err(_) => Err(error_response(&Error::RequestTimeout)),
    }
}
