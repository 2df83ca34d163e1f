//! A channel's history under any sequence of appends, clock moves and
//! recoveries: offsets stay contiguous, bounds hold, and a recovery never
//! returns a gap or claims to fill one it cannot.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use ferrows_hub::{ChannelHistory, HistoryLimits, Recovery, StreamPosition};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Append { size: u8, with_info: bool },
    Advance { ms: u16 },
    Recover { offset: u16, other_epoch: bool, limit: u8 },
    Latest { limit: u8 },
}

#[derive(Debug, Arbitrary)]
struct Input {
    max_count: u8,
    max_bytes: u16,
    max_age_ms: u16,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let limits = HistoryLimits {
        max_count: input.max_count as usize,
        max_bytes: input.max_bytes as usize,
        max_age: Duration::from_millis(input.max_age_ms as u64),
    };
    let mut history = ChannelHistory::new("e".into(), limits);
    let mut now = 0u64;
    let mut top = 0u64;
    for op in input.ops {
        match op {
            Op::Append { size, with_info } => {
                let info = with_info.then(|| Bytes::from_static(b"{}"));
                let publication = history.append(Bytes::from(vec![b'x'; size as usize]), info, now);
                top += 1;
                assert_eq!(publication.offset, top);
                assert!(history.len() <= limits.max_count.max(0));
                assert!(history.bytes() <= limits.max_bytes);
            }
            Op::Advance { ms } => now += ms as u64,
            Op::Recover { offset, other_epoch, limit } => {
                let since = StreamPosition {
                    offset: offset as u64,
                    epoch: if other_epoch { "other".into() } else { "e".into() },
                };
                match history.recover(&since, limit as usize, now) {
                    Recovery::Recovered(missed) => {
                        assert!(!other_epoch && since.offset <= top);
                        let offsets: Vec<u64> = missed.iter().map(|p| p.offset).collect();
                        let expected: Vec<u64> = (since.offset + 1..=top).collect();
                        assert_eq!(offsets, expected, "exactly the gap, in order");
                    }
                    Recovery::NotRecoverable => {}
                }
            }
            Op::Latest { limit } => {
                let latest = history.latest(limit as usize, now);
                assert!(latest.len() <= limit as usize);
                assert!(latest.windows(2).all(|w| w[1].offset == w[0].offset + 1));
                if let Some(last) = latest.last() {
                    assert_eq!(last.offset, top);
                }
            }
        }
        assert_eq!(history.position().offset, top);
    }
});
