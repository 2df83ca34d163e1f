//! The history of one channel: the last publications, bounded by count,
//! bytes and age, each with a stream position (offset + epoch) so a client
//! that reconnects can ask for what it missed.
//!
//! The epoch names one incarnation of the stream: it changes when the
//! history is lost (a node restarts with the in-memory broker, a Redis key
//! expires), so a client holding an offset from an earlier epoch learns that
//! its gap cannot be filled instead of getting a wrong answer.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

/// The clock of publication times: milliseconds since the Unix epoch (0
/// if the system clock is before it). Brokers that keep history in this
/// process and the node's local channels read it here.
pub(crate) fn now_ms() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where a publication stands in its channel's stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    /// 1 for the first publication of an epoch, then +1 each.
    pub offset: u64,
    /// The incarnation of the stream.
    pub epoch: String,
}

/// One publication as kept in history and delivered to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its offset in the channel's stream.
    pub offset: u64,
    /// The payload (a JSON value, as bytes).
    pub data: Bytes,
    /// Who published it (a JSON object, as bytes), when a client did.
    pub info: Option<Bytes>,
    /// Milliseconds since the Unix epoch when it was published.
    pub time_ms: u64,
}

impl Publication {
    /// Bytes it holds (what history limits count).
    pub fn size(&self) -> usize {
        self.data.len() + self.info.as_ref().map_or(0, Bytes::len)
    }
}

/// Bounds of a channel's history. Whichever bound is reached first trims
/// the oldest publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Publications kept. Default 100: enough to bridge a reconnect after a
    /// network blip on a busy chat room.
    pub max_count: usize,
    /// Payload bytes kept. Default 1 MiB, so one channel's history cannot
    /// grow past that however large its publications.
    pub max_bytes: usize,
    /// Age after which publications are dropped. Default 5 minutes: longer
    /// gaps are better served by reloading the application's state.
    pub max_age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self { max_count: 100, max_bytes: 1 << 20, max_age: Duration::from_secs(300) }
    }
}

/// The answer to "what did I miss since this position?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Everything after the position, in order (possibly nothing).
    Recovered(Vec<Publication>),
    /// The gap cannot be filled: a different epoch, or publications after
    /// the position were already trimmed.
    NotRecoverable,
}

/// The history of one channel.
#[derive(Debug, Clone)]
pub struct ChannelHistory {
    epoch: String,
    /// Offset of the last publication (0 before the first).
    top: u64,
    entries: VecDeque<Publication>,
    bytes: usize,
    limits: HistoryLimits,
}

impl ChannelHistory {
    /// An empty history in a new `epoch`.
    pub fn new(epoch: String, limits: HistoryLimits) -> Self {
        Self { epoch, top: 0, entries: VecDeque::new(), bytes: 0, limits }
    }

    /// The position of the latest publication (offset 0 if none yet).
    pub fn position(&self) -> StreamPosition {
        StreamPosition { offset: self.top, epoch: self.epoch.clone() }
    }

    /// The epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Publications kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes kept now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a publication made at `now_ms` and trims to the limits.
    pub fn append(&mut self, data: Bytes, info: Option<Bytes>, now_ms: u64) -> Publication {
        self.top += 1;
        let publication = Publication { offset: self.top, data, info, time_ms: now_ms };
        self.bytes += publication.size();
        self.entries.push_back(publication.clone());
        self.trim(now_ms);
        publication
    }

    /// Changes the limits (a namespace's configuration); they apply from
    /// the next append or trim.
    pub fn set_limits(&mut self, limits: HistoryLimits) {
        self.limits = limits;
    }

    /// Drops what is over the limits at `now_ms`.
    pub fn trim(&mut self, now_ms: u64) {
        let max_age_ms = self.limits.max_age.as_millis() as u64;
        while let Some(oldest) = self.entries.front() {
            let too_many = self.entries.len() > self.limits.max_count;
            let too_big = self.bytes > self.limits.max_bytes;
            let too_old = now_ms.saturating_sub(oldest.time_ms) > max_age_ms;
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= oldest.size();
            self.entries.pop_front();
        }
    }

    /// What a client at `since` missed, at most `limit` publications (the
    /// oldest first). `NotRecoverable` if the epoch differs, the offset is
    /// in the future, or publications after it were trimmed.
    pub fn recover(&mut self, since: &StreamPosition, limit: usize, now_ms: u64) -> Recovery {
        self.trim(now_ms);
        if since.epoch != self.epoch || since.offset > self.top {
            return Recovery::NotRecoverable;
        }
        if since.offset == self.top {
            return Recovery::Recovered(Vec::new());
        }
        let first_kept = self.entries.front().map_or(self.top + 1, |p| p.offset);
        if since.offset + 1 < first_kept {
            return Recovery::NotRecoverable;
        }
        let skip = (since.offset + 1 - first_kept) as usize;
        let missed: Vec<Publication> = self.entries.iter().skip(skip).take(limit).cloned().collect();
        if missed.len() < (self.top - since.offset) as usize {
            // More was missed than the caller may receive at once.
            return Recovery::NotRecoverable;
        }
        Recovery::Recovered(missed)
    }

    /// The latest `limit` publications, oldest first.
    pub fn latest(&mut self, limit: usize, now_ms: u64) -> Vec<Publication> {
        self.trim(now_ms);
        let skip = self.entries.len().saturating_sub(limit);
        self.entries.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(max_count: usize, max_bytes: usize, max_age_s: u64) -> ChannelHistory {
        let limits = HistoryLimits { max_count, max_bytes, max_age: Duration::from_secs(max_age_s) };
        ChannelHistory::new("e1".into(), limits)
    }

    fn pos(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition { offset, epoch: epoch.into() }
    }

    fn offsets(r: Recovery) -> Option<Vec<u64>> {
        match r {
            Recovery::Recovered(p) => Some(p.iter().map(|p| p.offset).collect()),
            Recovery::NotRecoverable => None,
        }
    }

    #[test]
    fn offsets_count_up_and_recovery_returns_the_gap() {
        let mut h = history(10, 1 << 20, 60);
        for i in 0..5 {
            assert_eq!(h.append(Bytes::from(format!("{i}")), None, 1000).offset, i + 1);
        }
        assert_eq!(h.position(), pos(5, "e1"));
        assert_eq!(offsets(h.recover(&pos(2, "e1"), 100, 1000)), Some(vec![3, 4, 5]));
        assert_eq!(offsets(h.recover(&pos(5, "e1"), 100, 1000)), Some(vec![]));
        assert_eq!(offsets(h.recover(&pos(0, "e1"), 100, 1000)), Some(vec![1, 2, 3, 4, 5]));
    }

    #[test]
    fn wrong_epoch_or_future_offset_is_not_recoverable() {
        let mut h = history(10, 1 << 20, 60);
        h.append(Bytes::from_static(b"x"), None, 0);
        assert_eq!(h.recover(&pos(1, "other"), 100, 0), Recovery::NotRecoverable);
        assert_eq!(h.recover(&pos(7, "e1"), 100, 0), Recovery::NotRecoverable);
    }

    #[test]
    fn bounded_by_count_bytes_and_age() {
        let mut h = history(3, 1 << 20, 60);
        for _ in 0..10 {
            h.append(Bytes::from_static(b"abc"), None, 0);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(offsets(h.recover(&pos(7, "e1"), 100, 0)), Some(vec![8, 9, 10]));
        assert_eq!(h.recover(&pos(6, "e1"), 100, 0), Recovery::NotRecoverable);

        let mut h = history(100, 10, 60);
        for _ in 0..10 {
            h.append(Bytes::from_static(b"abcd"), None, 0);
        }
        assert_eq!((h.len(), h.bytes()), (2, 8));

        let mut h = history(100, 1 << 20, 60);
        h.append(Bytes::from_static(b"old"), None, 0);
        h.append(Bytes::from_static(b"new"), None, 50_000);
        assert_eq!(offsets(h.recover(&pos(0, "e1"), 100, 70_000)), None, "offset 1 aged out");
        assert_eq!(offsets(h.recover(&pos(1, "e1"), 100, 70_000)), Some(vec![2]));
        assert_eq!(h.latest(10, 200_000), vec![]);
    }

    #[test]
    fn a_gap_larger_than_the_limit_is_not_recovered_partially() {
        let mut h = history(100, 1 << 20, 60);
        for _ in 0..20 {
            h.append(Bytes::from_static(b"x"), None, 0);
        }
        assert_eq!(h.recover(&pos(0, "e1"), 5, 0), Recovery::NotRecoverable);
        assert_eq!(offsets(h.recover(&pos(15, "e1"), 5, 0)), Some(vec![16, 17, 18, 19, 20]));
    }
}
