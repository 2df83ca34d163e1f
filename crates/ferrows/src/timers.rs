//! The driver's clock: keepalive pings, dead-peer detection, idle and
//! close-handshake timeouts. One `Sleep` is armed for the earliest deadline
//! and only exists while some deadline does.

use std::future::Future;
use std::num::NonZeroU32;
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

/// A duration in 4 bytes: whole milliseconds, rounded up to at least one
/// and capped at `u32::MAX` ms (49.7 days, which no timeout needs to exceed).
#[derive(Debug, Clone, Copy)]
struct Millis(NonZeroU32);

impl Millis {
    fn new(duration: Duration) -> Self {
        let ms = duration.as_nanos().div_ceil(1_000_000).clamp(1, u32::MAX.into());
        Self(NonZeroU32::new(ms as u32).expect("clamped to at least 1"))
    }

    fn get(self) -> Duration {
        Duration::from_millis(self.0.get().into())
    }
}

/// The timeouts of one connection, kept small: every connection carries
/// them, and most never start a clock (no keepalive, no idle timeout, not
/// closing). The clock is boxed and made only when a deadline exists.
#[derive(Debug)]
pub(crate) struct Timers {
    ping_interval: Option<Millis>,
    pong_timeout: Millis,
    idle_timeout: Option<Millis>,
    close_timeout: Millis,
    clock: Option<Box<Clock>>,
}

/// What the deadlines are measured from, and the armed `Sleep`.
#[derive(Debug)]
struct Clock {
    sleep: Option<Pin<Box<Sleep>>>,
    last_received: Instant,
    last_data: Instant,
    ping_sent: Option<Instant>,
    close_started: Option<Instant>,
}

impl Clock {
    fn new() -> Box<Self> {
        let now = Instant::now();
        Box::new(Self { sleep: None, last_received: now, last_data: now, ping_sent: None, close_started: None })
    }
}

impl Timers {
    pub(crate) fn new(config: &WebSocketConfig) -> Self {
        let ping_interval = config.ping_interval.map(Millis::new);
        let idle_timeout = config.idle_timeout.map(Millis::new);
        Self {
            ping_interval,
            pong_timeout: Millis::new(config.pong_timeout),
            idle_timeout,
            close_timeout: Millis::new(config.close_timeout),
            clock: (ping_interval.is_some() || idle_timeout.is_some()).then(Clock::new),
        }
    }

    /// Bytes arrived: the peer is alive.
    pub(crate) fn on_receive(&mut self) {
        if let (Some(_), Some(clock)) = (self.ping_interval, &mut self.clock) {
            clock.last_received = Instant::now();
            clock.ping_sent = None;
        }
    }

    /// A data message went either way.
    pub(crate) fn on_data(&mut self) {
        if let (Some(_), Some(clock)) = (self.idle_timeout, &mut self.clock) {
            clock.last_data = Instant::now();
        }
    }

    /// A keepalive Ping went out (from the WebSocket, or from its parked
    /// form).
    pub(crate) fn on_ping_sent(&mut self) {
        if let Some(clock) = &mut self.clock {
            clock.ping_sent = Some(Instant::now());
        }
    }

    /// The closing handshake started (either side).
    pub(crate) fn on_close_started(&mut self) {
        let clock = self.clock.get_or_insert_with(Clock::new);
        if clock.close_started.is_none() {
            clock.close_started = Some(Instant::now());
        }
    }

    /// Data was last sent at `at` (tracked by the writing side).
    pub(crate) fn on_data_sent(&mut self, at: Option<Instant>) {
        if let (Some(at), Some(clock)) = (at, &mut self.clock) {
            clock.last_data = clock.last_data.max(at);
        }
    }

    /// Whether the idle timeout is in use (the writer's clock is needed).
    pub(crate) fn tracks_idle(&self) -> bool {
        self.idle_timeout.is_some()
    }

    /// When the next deadline passes, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next_deadline().map(|(at, _)| at)
    }

    /// What is due now, if a deadline passed.
    pub(crate) fn due_now(&self) -> Option<Due> {
        self.next_deadline().filter(|(at, _)| *at <= Instant::now()).map(|(_, due)| due)
    }

    /// Frees the armed `Sleep`, for a holder that watches
    /// [`deadline`](Self::deadline) itself; the next [`poll`](Self::poll)
    /// arms one again.
    pub(crate) fn disarm(&mut self) {
        if let Some(clock) = &mut self.clock {
            clock.sleep = None;
        }
    }

    fn next_deadline(&self) -> Option<(Instant, Due)> {
        let clock = self.clock.as_deref()?;
        if let Some(started) = clock.close_started {
            // While closing, only the close deadline matters.
            return Some((started + self.close_timeout.get(), Due::CloseTimeout));
        }
        let keepalive = self.ping_interval.map(|interval| match clock.ping_sent {
            Some(sent) => (sent + self.pong_timeout.get(), Due::PongMissing),
            None => (clock.last_received + interval.get(), Due::Ping),
        });
        let idle = self.idle_timeout.map(|t| (clock.last_data + t.get(), Due::Idle));
        match (keepalive, idle) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Polls the earliest deadline; `Ready` with what is due once it passed.
    /// Arms the timer (registering `cx`) otherwise.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Due> {
        let Some((deadline, due)) = self.next_deadline() else {
            if let Some(clock) = &mut self.clock {
                clock.sleep = None;
            }
            return Poll::Pending;
        };
        let clock = self.clock.as_mut().expect("a deadline needs the clock");
        poll_sleep_until(&mut clock.sleep, deadline, cx).map(|()| due)
    }
}

/// Polls the timer in `slot` for `deadline`: made on first use, moved when
/// the deadline moved, so one allocation serves every deadline in turn.
pub(crate) fn poll_sleep_until(
    slot: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let sleep = match slot {
        Some(sleep) => {
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            sleep
        }
        None => slot.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    sleep.as_mut().poll(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(Millis::new(Duration::ZERO).get(), Duration::from_millis(1));
        assert_eq!(Millis::new(Duration::from_micros(1500)).get(), Duration::from_millis(2));
        assert_eq!(Millis::new(Duration::from_secs(20)).get(), Duration::from_secs(20));
        assert_eq!(Millis::new(Duration::MAX).get(), Duration::from_millis(u32::MAX.into()));
    }

    #[test]
    fn no_clock_until_a_deadline_exists() {
        let mut timers = Timers::new(&WebSocketConfig::default());
        assert!(timers.clock.is_none(), "defaults arm nothing");
        timers.on_receive();
        timers.on_data();
        assert!(timers.clock.is_none());
        timers.on_close_started();
        assert!(matches!(timers.next_deadline(), Some((_, Due::CloseTimeout))));
    }

    #[test]
    fn timers_stay_small() {
        // Every connection carries them: four 4-byte timeouts and a pointer.
        assert!(std::mem::size_of::<Timers>() <= 24, "{}", std::mem::size_of::<Timers>());
    }
}
