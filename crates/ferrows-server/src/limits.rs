//! Limits on what one client may take of the server: connections per
//! address ([`AddressTable`]) and commands per second per connection
//! ([`CommandRate`]). Both are small enough to be kept for every idle
//! connection (four bytes each in its session).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Where a connection is counted in the [`AddressTable`]: a slot number,
/// or none when addresses are not limited. Four bytes, not the address:
/// every idle session keeps one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressSlot(u32);

impl AddressSlot {
    /// Not counted (no limit, or a session made without a connection).
    pub(crate) const NONE: Self = Self(u32::MAX);
}

/// The key an address is counted under: the IPv4 address, or the /64
/// prefix of an IPv6 one (one host usually holds a whole /64, so counting
/// single IPv6 addresses would limit nothing).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

/// Open connections per client address (TCP connections: HTTP requests
/// and WebSockets alike), so that one host cannot take every socket of the
/// server.
#[derive(Debug)]
pub(crate) struct AddressTable {
    /// Connections per address; 0: no limit (nothing is counted).
    max: usize,
    inner: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    /// (address key, open connections); a slot is free when its count is 0.
    slots: Vec<(IpAddr, u32)>,
    by_address: HashMap<IpAddr, u32>,
    free: Vec<u32>,
}

impl AddressTable {
    /// A table allowing `max` connections per address (0: no limit).
    pub(crate) fn new(max: usize) -> Self {
        Self { max, inner: Mutex::new(Slots::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection from `ip`; `None` when that address already
    /// has the most it may have.
    pub(crate) fn enter(&self, ip: IpAddr) -> Option<AddressSlot> {
        if self.max == 0 {
            return Some(AddressSlot::NONE);
        }
        let key = address_key(ip);
        let mut inner = self.lock();
        if let Some(&slot) = inner.by_address.get(&key) {
            let count = &mut inner.slots[slot as usize].1;
            if *count as usize >= self.max {
                return None;
            }
            *count += 1;
            return Some(AddressSlot(slot));
        }
        let slot = match inner.free.pop() {
            Some(slot) => {
                inner.slots[slot as usize] = (key, 1);
                slot
            }
            None => {
                inner.slots.push((key, 1));
                (inner.slots.len() - 1) as u32
            }
        };
        inner.by_address.insert(key, slot);
        Some(AddressSlot(slot))
    }

    /// Counts one more connection where `slot` is counted, without the
    /// limit: a WebSocket taking over its HTTP connection's place (which
    /// leaves once the upgrade is done).
    pub(crate) fn share(&self, slot: AddressSlot) -> AddressSlot {
        if slot != AddressSlot::NONE {
            self.lock().slots[slot.0 as usize].1 += 1;
        }
        slot
    }

    /// A connection counted at `slot` closed.
    pub(crate) fn leave(&self, slot: AddressSlot) {
        if slot == AddressSlot::NONE {
            return;
        }
        let mut inner = self.lock();
        let (key, count) = &mut inner.slots[slot.0 as usize];
        *count -= 1;
        if *count == 0 {
            let key = *key;
            inner.by_address.remove(&key);
            inner.free.push(slot.0);
        }
    }

    /// Open connections counted for `ip` (for tests and metrics).
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> u32 {
        let inner = self.lock();
        inner.by_address.get(&address_key(ip)).map_or(0, |&slot| inner.slots[slot as usize].1)
    }
}

/// The clock of the command rate: 100 µs, so that a connection's state is
/// 32 bits (it wraps after 5 days: a command that comes exactly a multiple
/// of that after the last, within about a second, may be refused once) and
/// rates up to 10 000 commands per second are exact enough.
const TICK_MICROS: u32 = 100;
const TICKS_PER_SECOND: u32 = 1_000_000 / TICK_MICROS;

/// The command rate a connection is held to: `rate` per second on average,
/// with bursts of `burst` commands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimit {
    /// Ticks (of [`TICK_MICROS`]) one command uses of the allowance (1 s /
    /// rate).
    interval: u32,
    /// How far ahead of now the allowance may be used before commands are
    /// refused: the burst, less one command.
    tolerance: u32,
    /// How far ahead it may go (refused commands use it too) before the
    /// connection is closed: one more burst.
    flood: u32,
    started: Instant,
}

/// The answer to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Run it.
    Run,
    /// Over the rate: answer with an error, do not run it.
    Refuse,
    /// Still sending at full speed while refused: close the connection.
    Close,
}

impl RateLimit {
    /// `rate` commands per second (0: no limit), bursts of `burst`.
    /// `None` when there is no limit.
    pub(crate) fn new(rate: u32, burst: u32) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let interval = (TICKS_PER_SECOND / rate).max(1);
        let burst = burst.max(1);
        // Bounded so that the allowance never runs more than a few minutes
        // ahead (the clock below wraps after 5 days).
        let tolerance = interval.saturating_mul(burst - 1).min(60 * TICKS_PER_SECOND);
        let flood = tolerance.saturating_add(interval.saturating_mul(burst)).min(120 * TICKS_PER_SECOND);
        Some(Self { interval, tolerance, flood, started: Instant::now() })
    }

    /// Ticks since the limit was made, wrapping (after 5 days).
    fn now(&self) -> u32 {
        self.now_at(Instant::now())
    }

    fn now_at(&self, at: Instant) -> u32 {
        (at.saturating_duration_since(self.started).as_micros() / u128::from(TICK_MICROS)) as u32
    }
}

/// One connection's use of its command allowance: the generic cell rate
/// algorithm, whose whole state is the time (in ticks, wrapping)
/// at which the allowance is used up (the "theoretical arrival time").
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommandRate {
    used_until: u32,
}

impl CommandRate {
    /// A connection starting now, with its whole allowance.
    pub(crate) fn new(limit: Option<&RateLimit>) -> Self {
        Self { used_until: limit.map_or(0, RateLimit::now) }
    }

    /// Takes one command's share of the allowance.
    pub(crate) fn check(&mut self, limit: &RateLimit) -> Verdict {
        self.check_at(limit, limit.now())
    }

    fn check_at(&mut self, limit: &RateLimit, now: u32) -> Verdict {
        // How far ahead of now the allowance is used. Past what it can
        // reach (the flood bound and one command more) it is a time from
        // before the clock wrapped: as if unused.
        let ahead = self.used_until.wrapping_sub(now);
        let ahead = if ahead > limit.flood + limit.interval { 0 } else { ahead };
        // Refused commands use the allowance too: a client that does not
        // slow down goes on being refused, then closed.
        self.used_until = now.wrapping_add(ahead).wrapping_add(limit.interval);
        if ahead <= limit.tolerance {
            Verdict::Run
        } else if ahead <= limit.flood {
            Verdict::Refuse
        } else {
            Verdict::Close
        }
    }
}

#[cfg(test)]
fn ticks(d: std::time::Duration) -> u32 {
    (d.as_micros() / u128::from(TICK_MICROS)) as u32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn addresses_are_counted_up_to_the_limit() {
        let table = AddressTable::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = table.enter(a).unwrap();
        let second = table.enter(a).unwrap();
        assert_eq!(first, second, "one slot per address");
        assert!(table.enter(a).is_none(), "a third from the same address");
        assert!(table.enter(b).is_some(), "another address is counted apart");
        // A WebSocket takes over its HTTP connection's place.
        let ws = table.share(first);
        table.leave(first);
        assert_eq!(table.count(a), 2);
        table.leave(ws);
        table.leave(second);
        assert_eq!(table.count(a), 0);
        assert!(table.enter(a).is_some(), "room again once they closed");
        // The freed slot is used again, not a new one.
        assert_eq!(table.lock().slots.len(), 2);
    }

    #[test]
    fn ipv6_is_counted_per_64_prefix_and_mapped_ipv4_as_ipv4() {
        let table = AddressTable::new(1);
        assert!(table.enter("2001:db8::1".parse().unwrap()).is_some());
        assert!(table.enter("2001:db8::ffff:2".parse().unwrap()).is_none(), "same /64");
        assert!(table.enter("2001:db8:0:1::1".parse().unwrap()).is_some(), "another /64");
        assert!(table.enter("10.0.0.1".parse().unwrap()).is_some());
        assert!(table.enter("::ffff:10.0.0.1".parse().unwrap()).is_none(), "the same IPv4 host");
    }

    #[test]
    fn no_limit_counts_nothing() {
        let table = AddressTable::new(0);
        for _ in 0..10 {
            assert_eq!(table.enter("127.0.0.1".parse().unwrap()), Some(AddressSlot::NONE));
        }
        table.leave(AddressSlot::NONE);
        assert!(table.lock().slots.is_empty());
    }

    #[test]
    fn commands_run_in_bursts_then_are_refused_then_closed() {
        // 10 per second, bursts of 5.
        let limit = RateLimit::new(10, 5).unwrap();
        let mut rate = CommandRate { used_until: 0 };
        let t = ticks(Duration::from_secs(1));
        let verdicts: Vec<Verdict> = (0..12).map(|_| rate.check_at(&limit, t)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Run; 5], "the burst runs");
        assert_eq!(&verdicts[5..10], &[Verdict::Refuse; 5], "then one more burst is refused");
        assert_eq!(verdicts[10], Verdict::Close, "then the connection is closed");
    }

    #[test]
    fn a_client_at_the_rate_is_never_refused() {
        let limit = RateLimit::new(100, 1).unwrap();
        let mut rate = CommandRate { used_until: 0 };
        for i in 0..10_000u64 {
            let t = ticks(Duration::from_millis(10 * i + 1));
            assert_eq!(rate.check_at(&limit, t), Verdict::Run, "command {i}");
        }
    }

    #[test]
    fn the_allowance_comes_back_after_a_pause_and_across_the_clock_wrap() {
        let limit = RateLimit::new(10, 2).unwrap();
        let t = u32::MAX - 2_000;
        let mut rate = CommandRate { used_until: t };
        assert_eq!(rate.check_at(&limit, t), Verdict::Run);
        assert_eq!(rate.check_at(&limit, t), Verdict::Run);
        assert_eq!(rate.check_at(&limit, t), Verdict::Refuse);
        // 0.5 s later, past the wrap: the allowance is back.
        let later = t.wrapping_add(ticks(Duration::from_millis(500)));
        assert!(later < t, "the clock wrapped");
        assert_eq!(rate.check_at(&limit, later), Verdict::Run);
        // Six days later (the clock wrapped again meanwhile): unused, not
        // ahead.
        let much_later = later.wrapping_add(ticks(Duration::from_secs(6 * 86_400)));
        assert_eq!(rate.check_at(&limit, much_later), Verdict::Run);
        assert_eq!(rate.check_at(&limit, much_later), Verdict::Run);
    }

    #[test]
    fn no_rate_means_no_limit() {
        assert!(RateLimit::new(0, 10).is_none());
    }
}
