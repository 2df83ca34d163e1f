//! zlib streams kept per thread between messages.
//!
//! Without context takeover every message is compressed (or inflated) by a
//! fresh stream. Making one allocates and initialises zlib's state (about
//! 256 KiB to compress with a 15-bit window, 40 KiB to inflate) and
//! dropping it frees it: per message, that is most of the cost of a small
//! compressed message, and the allocator, asked again and again for blocks
//! that large, keeps the freed ones as resident memory. A stream that is
//! done with is reset (as good as new) and kept here for the thread's next
//! message, a few per parameter set.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::{Compress, Compression, Decompress};

/// Streams kept per thread, of each kind: enough for a few connections
/// compressing at once on one thread.
const MAX_CACHED: usize = 4;

/// Window sizes (base-2 log) counted apart by [`cached_streams`]: zlib's
/// are 9 to 15.
const WINDOWS: usize = 16;

/// Streams kept by the caches of all threads, by kind and window size.
static CACHED_COMPRESSORS: [AtomicUsize; WINDOWS] = [const { AtomicUsize::new(0) }; WINDOWS];
static CACHED_DECOMPRESSORS: [AtomicUsize; WINDOWS] = [const { AtomicUsize::new(0) }; WINDOWS];

/// The zlib streams the per-thread caches keep now, summed over every
/// thread: at most 4 of each kind per thread that ever compressed or
/// inflated. For memory accounting: these are reused, not leaked (a
/// compressor holds a few hundred KiB, depending on its window).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachedStreams {
    /// Compressors kept, indexed by window size (base-2 log).
    pub compressors: [usize; WINDOWS],
    /// Decompressors kept, indexed by window size (base-2 log).
    pub decompressors: [usize; WINDOWS],
}

/// What the zlib stream caches of all threads keep now.
pub fn cached_streams() -> CachedStreams {
    let load = |counts: &[AtomicUsize; WINDOWS]| std::array::from_fn(|bits| counts[bits].load(Ordering::Relaxed));
    CachedStreams { compressors: load(&CACHED_COMPRESSORS), decompressors: load(&CACHED_DECOMPRESSORS) }
}

/// One thread's kept streams of one kind, with their parameters; counted
/// in `counts` (by window size) while kept.
struct Kept<T: 'static> {
    streams: Vec<(u32, u8, Box<T>)>,
    counts: &'static [AtomicUsize; WINDOWS],
}

impl<T> Kept<T> {
    const fn new(counts: &'static [AtomicUsize; WINDOWS]) -> Self {
        Self { streams: Vec::new(), counts }
    }

    fn take(&mut self, level: u32, bits: u8) -> Option<Box<T>> {
        let index = self.streams.iter().position(|(l, b, _)| *l == level && *b == bits)?;
        self.counts[usize::from(bits) % WINDOWS].fetch_sub(1, Ordering::Relaxed);
        Some(self.streams.swap_remove(index).2)
    }

    fn keep(&mut self, level: u32, bits: u8, stream: Box<T>) {
        if self.streams.len() < MAX_CACHED {
            self.counts[usize::from(bits) % WINDOWS].fetch_add(1, Ordering::Relaxed);
            self.streams.push((level, bits, stream));
        }
    }
}

impl<T> Drop for Kept<T> {
    /// A thread that ends frees its streams.
    fn drop(&mut self) {
        for (_, bits, _) in &self.streams {
            self.counts[usize::from(*bits) % WINDOWS].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

thread_local! {
    static COMPRESSORS: RefCell<Kept<Compress>> = const { RefCell::new(Kept::new(&CACHED_COMPRESSORS)) };
    /// (The level of a decompressor is always 0.)
    static DECOMPRESSORS: RefCell<Kept<Decompress>> = const { RefCell::new(Kept::new(&CACHED_DECOMPRESSORS)) };
}

/// A raw DEFLATE compressor at `level` with a `bits` window: a cached one
/// if this thread has one, else a new one.
pub(super) fn compressor(level: u32, bits: u8) -> Box<Compress> {
    let cached = COMPRESSORS.try_with(|cache| cache.borrow_mut().take(level, bits)).ok().flatten();
    cached.unwrap_or_else(|| Box::new(Compress::new_with_window_bits(Compression::new(level), false, bits)))
}

/// Takes back a compressor made by [`compressor`] with the same parameters.
pub(super) fn recycle_compressor(level: u32, bits: u8, mut stream: Box<Compress>) {
    stream.reset();
    let _ = COMPRESSORS.try_with(|cache| cache.borrow_mut().keep(level, bits, stream));
}

/// A raw DEFLATE decompressor with a `bits` window, cached or new.
pub(super) fn decompressor(bits: u8) -> Box<Decompress> {
    let cached = DECOMPRESSORS.try_with(|cache| cache.borrow_mut().take(0, bits)).ok().flatten();
    cached.unwrap_or_else(|| Box::new(Decompress::new_with_window_bits(false, bits)))
}

/// Takes back a decompressor made by [`decompressor`] with the same window.
pub(super) fn recycle_decompressor(bits: u8, mut stream: Box<Decompress>) {
    stream.reset(false);
    let _ = DECOMPRESSORS.try_with(|cache| cache.borrow_mut().keep(0, bits, stream));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_streams_are_reused_by_parameters_and_bounded() {
        let first = compressor(6, 15);
        let address = &*first as *const Compress;
        recycle_compressor(6, 15, first);
        // Other parameters get a new stream; the same ones get it back.
        let other = compressor(1, 15);
        assert_ne!(&*other as *const Compress, address);
        let again = compressor(6, 15);
        assert_eq!(&*again as *const Compress, address);
        for _ in 0..MAX_CACHED + 3 {
            recycle_decompressor(12, decompressor(12));
        }
        let streams: Vec<_> = (0..MAX_CACHED + 3).map(|_| decompressor(12)).collect();
        for stream in streams {
            recycle_decompressor(12, stream);
        }
        DECOMPRESSORS.with(|cache| assert!(cache.borrow().streams.len() <= MAX_CACHED));
    }

    #[test]
    fn kept_streams_are_counted_until_their_thread_ends() {
        // On a thread of its own: the counts are the process's.
        std::thread::spawn(|| {
            let before = cached_streams();
            recycle_compressor(6, 13, compressor(6, 13));
            recycle_decompressor(11, decompressor(11));
            let kept = cached_streams();
            assert_eq!(kept.compressors[13], before.compressors[13] + 1);
            assert_eq!(kept.decompressors[11], before.decompressors[11] + 1);
            let taken = compressor(6, 13);
            assert_eq!(cached_streams().compressors[13], before.compressors[13]);
            drop(taken);
        })
        .join()
        .unwrap();
    }
}
