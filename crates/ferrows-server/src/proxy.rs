//! The server's client of the application's backend: one JSON `POST` per
//! proxy request, over pooled keep-alive connections (HTTP or HTTPS).
//!
//! Every request is bounded: in time (`proxy_timeout`, retries included),
//! in number (`proxy_max_in_flight` per server: over it a request is
//! refused at once, not queued), and in what it may bring back
//! (`proxy_max_answer`). Only idempotent requests (connect, refresh,
//! subscribe) are sent again, after a failure on their way. Whatever goes
//! wrong comes out as error 111 ([`Error::Backend`], temporary), counted
//! in the metrics by proxy and outcome. Requests are signed when
//! `proxy_secret` is set ([`signature`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrows_hub::protocol::Error;
use ferrows_hub::protocol::proxy::{ProxyAnswer, ProxyKind, ProxyResult};
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::ProxySettings;
use crate::metrics::Metrics;

/// The header with the time a request was signed (seconds since the
/// Unix epoch), which the signature covers: a backend refuses old ones.
pub const TIMESTAMP_HEADER: &str = "x-ferrows-timestamp";
/// The header with a request's signature: `sha256=` and the hex of
/// HMAC-SHA256(`proxy_secret`, `TIMESTAMP.BODY`).
pub const SIGNATURE_HEADER: &str = "x-ferrows-signature";
/// The header naming the proxy a request is for (`connect`, `rpc`...),
/// for a backend that serves several on one URL.
pub const PROXY_HEADER: &str = "x-ferrows-proxy";

/// The pause before a request is sent again: long enough for a backend
/// that restarts to listen again, short next to `proxy_timeout`.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The signature of a request body at `timestamp` with `key`: what
/// [`SIGNATURE_HEADER`] carries.
pub fn signature(key: &ring::hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut context = ring::hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in tag.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The application's backend, as the proxies reach it.
pub(crate) struct Backend {
    client: HttpsClient,
    settings: ProxySettings,
    in_flight: Arc<Semaphore>,
    key: Option<ring::hmac::Key>,
    metrics: Arc<Metrics>,
}

/// Why an attempt failed, and whether it may be made again.
struct Failure {
    why: String,
    /// Failed on its way (refused, reset, a gateway's 502-504): the
    /// backend did not act on it.
    retryable: bool,
}

impl Backend {
    /// The backend of `settings`; `None` when no proxy is configured
    /// (`namespaced`: some namespace has a proxy URL of its own).
    pub(crate) fn new(
        settings: &ProxySettings,
        namespaced: bool,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, String> {
        if !settings.any() && !namespaced {
            return Ok(None);
        }
        let tls = match &settings.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("proxy_ca_file {}: {e}", path.display()))?;
                ferrows::tls::client_config_with_roots(&pem)
            }
            None => ferrows::tls::default_client_config(),
        }
        .map_err(|e| format!("the backend's TLS: {e}"))?;
        let mut tls = (*tls).clone();
        // The connector sets the protocols it speaks (HTTP/1.1).
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.max_in_flight)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        let key =
            settings.secret.as_ref().map(|secret| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()));
        Ok(Some(Self {
            client,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            settings: settings.clone(),
            key,
            metrics,
        }))
    }

    /// Whether `kind`'s proxy is configured.
    pub(crate) fn has(&self, kind: ProxyKind) -> bool {
        self.settings.url(kind).is_some()
    }

    /// Asks `kind`'s proxy (at `url`, else its configured URL) about
    /// `request`: the backend's answer, or error 111 when it gave none that
    /// can be used.
    pub(crate) async fn ask<R: ProxyResult>(
        &self,
        kind: ProxyKind,
        url: Option<&http::Uri>,
        request: &impl Serialize,
    ) -> Result<ProxyAnswer<R>, Error> {
        let outcome = self.ask_counted(kind, url, request).await;
        let label = match &outcome {
            Ok(ProxyAnswer::Result(_)) => "result",
            Ok(ProxyAnswer::Error(_)) => "error",
            Ok(ProxyAnswer::Disconnect { .. }) => "disconnect",
            Err(_) => "failed",
        };
        self.metrics.proxy_requests(kind.name(), label).inc();
        outcome
    }

    async fn ask_counted<R: ProxyResult>(
        &self,
        kind: ProxyKind,
        url: Option<&http::Uri>,
        request: &impl Serialize,
    ) -> Result<ProxyAnswer<R>, Error> {
        let Some(url) = url.or(self.settings.url(kind)) else {
            return Err(Error::NotFound(format!("no {} proxy", kind.name())));
        };
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            self.metrics.proxy_busy.inc();
            return Err(Error::Backend("the backend has too many requests in flight".into()));
        };
        self.metrics.proxy_in_flight.inc();
        let _in_flight = InFlight(&self.metrics);
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        let body = Bytes::from(serde_json::to_vec(request).expect("proxy requests serialize"));
        let attempts = if kind.idempotent() { 1 + self.settings.retries } else { 1 };
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            match tokio::time::timeout_at(deadline, self.attempt(kind, url, body.clone())).await {
                Ok(Ok(answer)) => break answer,
                Ok(Err(failure)) => {
                    let pause_ends = Instant::now() + RETRY_PAUSE;
                    if failure.retryable && attempt < attempts && pause_ends < deadline {
                        self.metrics.proxy_retries.inc();
                        tokio::time::sleep_until(pause_ends).await;
                        continue;
                    }
                    tracing::debug!(proxy = kind.name(), "backend: {}", failure.why);
                    return Err(Error::Backend(format!("the backend failed: {}", failure.why)));
                }
                Err(_) => {
                    tracing::debug!(proxy = kind.name(), "backend: no answer in time");
                    return Err(Error::Backend("the backend did not answer in time".into()));
                }
            }
        };
        self.metrics.proxy_latency.observe(started.elapsed().as_secs_f64());
        ProxyAnswer::read(&answer).map_err(|why| {
            tracing::warn!(proxy = kind.name(), "a malformed answer from the backend: {why}");
            Error::Backend(format!("a malformed answer from the backend: {why}"))
        })
    }

    /// One request and its answer's body (200 only).
    async fn attempt(&self, kind: ProxyKind, url: &http::Uri, body: Bytes) -> Result<Bytes, Failure> {
        let mut request = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("ferrows/", env!("CARGO_PKG_VERSION")))
            .header(PROXY_HEADER, kind.name());
        if let Some(key) = &self.key {
            let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let signed = signature(key, timestamp, &body);
            request = request
                .header(TIMESTAMP_HEADER, timestamp)
                .header(SIGNATURE_HEADER, HeaderValue::from_str(&signed).expect("hex is a header value"));
        }
        let request = request.body(Full::new(body)).expect("a valid request");
        let response = self.client.request(request).await.map_err(|e| Failure {
            why: format!("{e}{}", std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default()),
            // Sent again only when nothing reached the backend, or the
            // pooled connection it went on was already closed.
            retryable: e.is_connect() || is_closed_connection(&e),
        })?;
        let status = response.status();
        if status != StatusCode::OK {
            let retryable = matches!(status.as_u16(), 502..=504);
            return Err(Failure { why: format!("status {status}"), retryable });
        }
        let limit = self.settings.max_answer;
        match Limited::new(response.into_body(), limit).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Failure { why: format!("an answer over {limit} bytes (proxy_max_answer)"), retryable: false })
            }
            Err(e) => Err(Failure { why: format!("the answer broke off: {e}"), retryable: false }),
        }
    }
}

/// Whether a request failed because the keep-alive connection it was sent
/// on had been closed by the backend before it could answer (a backend
/// restart): nothing of it was processed.
fn is_closed_connection(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled())
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// Counts a request in flight until it ends.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.proxy_in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_the_hmac_of_timestamp_and_body() {
        // The value Python's `hmac.new(b"Jefe", b"1.what do ya want for
        // nothing?", hashlib.sha256).hexdigest()` gives.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, 1, b"what do ya want for nothing?"),
            "sha256=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
    }
}
