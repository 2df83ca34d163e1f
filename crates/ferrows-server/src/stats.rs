//! The live statistics the demo shows: once a second, this node's client
//! count, message rate and subscriptions, pushed to the subscribers of
//! `$sys:stats` on this node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::state::AppState;

/// The channel statistics are pushed to.
pub(crate) const STATS_CHANNEL: &str = "$sys:stats";

pub(crate) fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = (Instant::now(), messages(&state));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = state.shutdown.cancelled() => return,
            }
            let now = (Instant::now(), messages(&state));
            let seconds = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
            let rate = (now.1.saturating_sub(last.1)) as f64 / seconds;
            last = now;
            if state.node.subscriber_count(STATS_CHANNEL) == 0 {
                continue;
            }
            let stats = json!({
                "clients": state.metrics.connections.get() + state.metrics.streams.get(),
                "messages_per_sec": (rate * 10.0).round() / 10.0,
                "subscriptions": state.metrics.subscriptions.get(),
            });
            state.node.deliver_local(STATS_CHANNEL, Bytes::from(stats.to_string()));
        }
    });
}

/// Messages in and out so far.
fn messages(state: &AppState) -> u64 {
    let metrics = &state.metrics;
    metrics.messages_in.get() + metrics.messages_out.get() + metrics.stream_events_out.get()
}
