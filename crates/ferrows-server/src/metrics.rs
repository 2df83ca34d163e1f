//! Prometheus metrics of a server (`GET /metrics`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The server's metrics; cloned handles update the same values.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_accepted: Counter,
    /// Channel subscriptions of WebSocket and event-stream clients now.
    pub subscriptions: Gauge,
    /// Client messages received.
    pub messages_in: Counter,
    /// Payload bytes of client messages received.
    pub bytes_in: Counter,
    /// Messages sent to clients (replies and pushes).
    pub messages_out: Counter,
    /// Payload bytes of messages sent to clients.
    pub bytes_out: Counter,
    /// Of `messages_out`, those the fan-out wrote itself into an idle
    /// connection's socket (no task woken).
    pub direct_out: Counter,
    /// Publications accepted (clients and server API).
    pub publications: Counter,
    /// Seconds from publish to the last local subscriber's queue.
    pub fanout_latency: Histogram,
    /// Clients disconnected because their send queue overflowed.
    pub slow_consumers: Counter,
    /// Whether the broker is reachable (1) or not (0).
    pub broker_up: Gauge,
    /// Times the broker reconnected (each followed by a history read of
    /// every channel with subscribers here).
    pub broker_reconnects: Counter,
    /// HTTP polling requests answered.
    pub poll_requests: Counter,
    /// Long polls waiting for something new now.
    pub long_polls: Gauge,
    /// Open Server-Sent Events streams.
    pub streams: Gauge,
    /// Event streams opened since start.
    pub streams_opened: Counter,
    /// Events sent on event streams (publications and the others).
    pub stream_events_out: Counter,
    /// Bytes sent on event streams (the events' text).
    pub stream_bytes_out: Counter,
    /// Publications over HTTP from clients (`POST /api/client/publish`),
    /// whatever their outcome.
    pub http_publishes: Counter,
    /// Commands answered with an error.
    pub command_errors: Counter,
    /// Connections refused because their address had too many open.
    pub refused_by_address: Counter,
    /// Commands refused (error 110) because the client sent too many.
    pub commands_over_rate: Counter,
    /// Clients closed (4006) for sending on at full speed while refused.
    pub command_floods: Counter,
    /// Proxy requests to the backend, by proxy and outcome (`result`,
    /// `error`, `disconnect`: what it answered; `failed`: error 111).
    proxy_requests: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Proxy requests waiting for the backend now.
    pub proxy_in_flight: Gauge,
    /// Proxy requests refused at once: `proxy_max_in_flight` were waiting.
    pub proxy_busy: Counter,
    /// Proxy requests sent again after failing on their way.
    pub proxy_retries: Counter,
    /// Seconds from a proxy request to its answer (answers only).
    pub proxy_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ferrows` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ferrows");
        let metrics = Self {
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            subscriptions: Gauge::default(),
            messages_in: Counter::default(),
            bytes_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            direct_out: Counter::default(),
            publications: Counter::default(),
            // 50 µs to ~1.6 s.
            fanout_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            slow_consumers: Counter::default(),
            broker_up: Gauge::default(),
            broker_reconnects: Counter::default(),
            poll_requests: Counter::default(),
            long_polls: Gauge::default(),
            streams: Gauge::default(),
            streams_opened: Counter::default(),
            stream_events_out: Counter::default(),
            stream_bytes_out: Counter::default(),
            http_publishes: Counter::default(),
            command_errors: Counter::default(),
            refused_by_address: Counter::default(),
            commands_over_rate: Counter::default(),
            command_floods: Counter::default(),
            proxy_requests: Family::default(),
            proxy_in_flight: Gauge::default(),
            proxy_busy: Counter::default(),
            proxy_retries: Counter::default(),
            // 100 µs to ~3.3 s, past the default proxy timeout.
            proxy_latency: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register("connections", "Open WebSocket connections", metrics.connections.clone());
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted",
            metrics.connections_accepted.clone(),
        );
        registry.register(
            "subscriptions",
            "Channel subscriptions of WebSocket and event-stream clients",
            metrics.subscriptions.clone(),
        );
        registry.register("messages_in", "Messages received from clients", metrics.messages_in.clone());
        registry.register("bytes_in", "Payload bytes received from clients", metrics.bytes_in.clone());
        registry.register("messages_out", "Messages sent to clients", metrics.messages_out.clone());
        registry.register("bytes_out", "Payload bytes sent to clients", metrics.bytes_out.clone());
        registry.register(
            "direct_out",
            "Messages the fan-out wrote itself into an idle connection's socket (counted in messages_out too)",
            metrics.direct_out.clone(),
        );
        registry.register("publications", "Publications accepted", metrics.publications.clone());
        registry.register(
            "fanout_latency_seconds",
            "Time from publish to the last local subscriber's queue",
            metrics.fanout_latency.clone(),
        );
        registry.register(
            "slow_consumers",
            "Clients disconnected because their send queue overflowed",
            metrics.slow_consumers.clone(),
        );
        registry.register("broker_up", "Whether the broker is reachable", metrics.broker_up.clone());
        registry.register(
            "broker_reconnects",
            "Times the broker reconnected (every channel's history read again)",
            metrics.broker_reconnects.clone(),
        );
        registry.register("poll_requests", "HTTP polling requests answered", metrics.poll_requests.clone());
        registry.register("long_polls", "Long polls waiting for something new", metrics.long_polls.clone());
        registry.register("streams", "Open Server-Sent Events streams", metrics.streams.clone());
        registry.register("streams_opened", "Server-Sent Events streams opened", metrics.streams_opened.clone());
        registry.register("stream_events_out", "Events sent on event streams", metrics.stream_events_out.clone());
        registry.register("stream_bytes_out", "Bytes sent on event streams", metrics.stream_bytes_out.clone());
        registry.register(
            "http_publishes",
            "Publications of clients over HTTP (POST /api/client/publish), whatever their outcome",
            metrics.http_publishes.clone(),
        );
        registry.register("command_errors", "Commands answered with an error", metrics.command_errors.clone());
        registry.register(
            "refused_by_address",
            "Connections refused (429) because their address had max_connections_per_address open",
            metrics.refused_by_address.clone(),
        );
        registry.register(
            "commands_over_rate",
            "Commands refused (error 110) because the client sent more than command_rate per second",
            metrics.commands_over_rate.clone(),
        );
        registry.register(
            "command_floods",
            "Clients closed (4006) for sending on at full speed while their commands were refused",
            metrics.command_floods.clone(),
        );
        registry.register(
            "proxy_requests",
            "Proxy requests to the backend, by proxy and outcome (failed: error 111 for the client)",
            metrics.proxy_requests.clone(),
        );
        registry.register("proxy_in_flight", "Proxy requests waiting for the backend", metrics.proxy_in_flight.clone());
        registry.register(
            "proxy_busy",
            "Proxy requests refused at once (error 111) because proxy_max_in_flight were waiting",
            metrics.proxy_busy.clone(),
        );
        registry.register(
            "proxy_retries",
            "Idempotent proxy requests sent again after failing on their way",
            metrics.proxy_retries.clone(),
        );
        registry.register(
            "proxy_latency_seconds",
            "Time from a proxy request to the backend's answer",
            metrics.proxy_latency.clone(),
        );
        Self { registry, ..metrics }
    }

    /// The counter of `proxy`'s requests that ended with `outcome`.
    pub fn proxy_requests(&self, proxy: &'static str, outcome: &'static str) -> Counter {
        self.proxy_requests.get_or_create(&vec![("proxy", proxy), ("outcome", outcome)]).clone()
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_the_histogram() {
        let metrics = Metrics::new();
        metrics.connections.inc();
        metrics.messages_in.inc_by(3);
        metrics.fanout_latency.observe(0.001);
        let text = metrics.render();
        assert!(text.contains("ferrows_connections 1"), "{text}");
        assert!(text.contains("ferrows_messages_in_total 3"), "{text}");
        assert!(text.contains("ferrows_fanout_latency_seconds_count 1"), "{text}");
        assert!(text.contains("ferrows_slow_consumers_total 0"), "{text}");
    }
}
