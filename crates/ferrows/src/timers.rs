//! The driver's clock: keepalive pings, dead-peer detection, idle and
//! close-handshake timeouts. One `Sleep` is armed for the earliest deadline
//! and only exists while some deadline does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::config::WebSocketConfig;

/// What a passed deadline asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send a keepalive Ping.
    Ping,
    /// The peer did not answer the Ping in time: it is dead.
    PongMissing,
    /// No data either way for the idle timeout: close.
    Idle,
    /// The peer did not finish the closing handshake in time.
    CloseTimeout,
}

#[derive(Debug)]
pub(crate) struct Timers {
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    idle_timeout: Option<Duration>,
    close_timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    last_received: Instant,
    last_data: Instant,
    ping_sent: Option<Instant>,
    close_started: Option<Instant>,
}

impl Timers {
    pub(crate) fn new(config: &WebSocketConfig) -> Self {
        let now = Instant::now();
        Self {
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            idle_timeout: config.idle_timeout,
            close_timeout: config.close_timeout,
            sleep: None,
            last_received: now,
            last_data: now,
            ping_sent: None,
            close_started: None,
        }
    }

    /// Bytes arrived: the peer is alive.
    pub(crate) fn on_receive(&mut self) {
        if self.ping_interval.is_some() {
            self.last_received = Instant::now();
            self.ping_sent = None;
        }
    }

    /// A data message went either way.
    pub(crate) fn on_data(&mut self) {
        if self.idle_timeout.is_some() {
            self.last_data = Instant::now();
        }
    }

    pub(crate) fn on_ping_sent(&mut self) {
        self.ping_sent = Some(Instant::now());
    }

    /// The closing handshake started (either side).
    pub(crate) fn on_close_started(&mut self) {
        if self.close_started.is_none() {
            self.close_started = Some(Instant::now());
        }
    }

    /// Data was last sent at `at` (tracked by the writing side).
    pub(crate) fn on_data_sent(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.last_data = self.last_data.max(at);
        }
    }

    /// Whether the idle timeout is in use (the writer's clock is needed).
    pub(crate) fn tracks_idle(&self) -> bool {
        self.idle_timeout.is_some()
    }

    fn next_deadline(&self) -> Option<(Instant, Due)> {
        if let Some(started) = self.close_started {
            // While closing, only the close deadline matters.
            return Some((started + self.close_timeout, Due::CloseTimeout));
        }
        let keepalive = self.ping_interval.map(|interval| match self.ping_sent {
            Some(sent) => (sent + self.pong_timeout, Due::PongMissing),
            None => (self.last_received + interval, Due::Ping),
        });
        let idle = self.idle_timeout.map(|t| (self.last_data + t, Due::Idle));
        match (keepalive, idle) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Polls the earliest deadline; `Ready` with what is due once it passed.
    /// Arms the timer (registering `cx`) otherwise.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Due> {
        let Some((deadline, due)) = self.next_deadline() else {
            self.sleep = None;
            return Poll::Pending;
        };
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(due),
            Poll::Pending => Poll::Pending,
        }
    }
}
