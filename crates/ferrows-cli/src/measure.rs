//! What the load generators measure with: a process's CPU time and
//! resident memory (Linux `/proc`), the clock publications are stamped
//! with, the open-file limit, and which publications a subscriber received.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;

/// Fails early, with the remedy, when the soft open-file limit cannot hold
/// the connections (raising it needs `setrlimit`, i.e. `ulimit -n` in the
/// shell that starts the command).
pub(crate) fn check_open_file_limit(needed: usize) -> anyhow::Result<()> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else { return Ok(()) };
    let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) else { return Ok(()) };
    let mut fields = line["Max open files".len()..].split_whitespace();
    let (Some(soft), Some(hard)) = (fields.next(), fields.next()) else { return Ok(()) };
    let Ok(soft) = soft.parse::<usize>() else { return Ok(()) }; // "unlimited"
    if soft < needed {
        let hard = hard.parse().unwrap_or(usize::MAX); // or "unlimited"
        if hard < needed {
            bail!("the open-file limit is {soft} (hard limit {hard}) but {needed} descriptors are needed");
        }
        bail!(
            "the open-file limit is {soft} but {needed} descriptors are needed: run `ulimit -n {}` first",
            needed.max(65536).min(hard)
        );
    }
    Ok(())
}

/// `/proc/PID/stat` counts CPU time in units of USER_HZ, 100 on Linux.
pub(crate) const CLOCK_TICKS: f64 = 100.0;

/// User + system CPU time of a process, in clock ticks (Linux).
pub(crate) fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 14th and 15th fields of the line.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

/// CPU time of a process, in ns (Linux): what its threads ran, from the
/// scheduler's accounting (`/proc/PID/task/*/schedstat`), far finer than
/// the clock ticks of [`cpu_ticks`] (10 ms), for small loads. Threads that
/// ended are not counted: for a server, whose threads live as long as it.
pub(crate) fn cpu_nanos(pid: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else { continue };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Resident memory of a process, in KiB (Linux).
pub(crate) fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Now, in µs since the Unix epoch (the time publications carry).
pub(crate) fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// What a receipt was: the first of its publication (in order or not), or
/// a repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receipt {
    First,
    /// The first, after a later publication arrived.
    FirstOutOfOrder,
    Duplicate,
}

impl Receipt {
    /// Counts a duplicate or a late receipt in; whether it was the first.
    pub(crate) fn counted(self, duplicated: &mut u64, out_of_order: &mut u64) -> bool {
        match self {
            Self::First => true,
            Self::FirstOutOfOrder => {
                *out_of_order += 1;
                true
            }
            Self::Duplicate => {
                *duplicated += 1;
                false
            }
        }
    }
}

/// Which publications a subscriber received.
#[derive(Default)]
pub(crate) struct Receipts {
    /// Every publication up to this one arrived, in order (while `seen`
    /// is not needed).
    contiguous: u64,
    /// Publications seen, by sequence number (bit n set: n received);
    /// made at the first one out of order.
    seen: Option<Vec<u64>>,
    highest: u64,
}

impl Receipts {
    /// Counts publication `seq` (1 to `planned`) in.
    pub(crate) fn first(&mut self, seq: u64, planned: u64) -> Receipt {
        if seq <= self.contiguous {
            return Receipt::Duplicate;
        }
        if seq == self.contiguous + 1 && self.seen.is_none() {
            self.contiguous = seq;
            self.highest = seq;
            return Receipt::First;
        }
        let seen = self.seen.get_or_insert_with(|| vec![0u64; (planned as usize + 1).div_ceil(64)]);
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if seen[word] & bit != 0 {
            return Receipt::Duplicate;
        }
        seen[word] |= bit;
        let late = seq < self.highest;
        self.highest = self.highest.max(seq);
        if late { Receipt::FirstOutOfOrder } else { Receipt::First }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_counted_once_in_and_out_of_sequence() {
        let mut receipts = Receipts::default();
        let (mut duplicated, mut out_of_order) = (0, 0);
        let firsts: Vec<bool> = [1, 2, 3, 3, 5, 4, 4, 1, 6, 10]
            .iter()
            .map(|&seq| receipts.first(seq, 10).counted(&mut duplicated, &mut out_of_order))
            .collect();
        assert_eq!(firsts, [true, true, true, false, true, true, false, false, true, true]);
        assert_eq!((duplicated, out_of_order), (3, 1));
        assert_eq!(receipts.highest, 10);
    }

    #[test]
    fn a_process_cpu_time_is_read_finer_than_its_ticks() {
        let start = cpu_nanos("self").expect("schedstat");
        let busy = std::time::Instant::now();
        while busy.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let spent = cpu_nanos("self").unwrap() - start;
        assert!(spent >= 20_000_000, "{spent} ns for 30 ms of work");
        assert!(cpu_ticks("self").is_some() && rss_kib("self").is_some());
    }
}
