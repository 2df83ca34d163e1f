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

use flate2::{Compress, Compression, Decompress};

/// Streams kept per thread, of each kind: enough for a few connections
/// compressing at once on one thread.
const MAX_CACHED: usize = 4;

thread_local! {
    static COMPRESSORS: RefCell<Vec<(u32, u8, Box<Compress>)>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSORS: RefCell<Vec<(u8, Box<Decompress>)>> = const { RefCell::new(Vec::new()) };
}

/// A raw DEFLATE compressor at `level` with a `bits` window: a cached one
/// if this thread has one, else a new one.
pub(super) fn compressor(level: u32, bits: u8) -> Box<Compress> {
    let cached = COMPRESSORS
        .try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let index = cache.iter().position(|(l, b, _)| *l == level && *b == bits)?;
            Some(cache.swap_remove(index).2)
        })
        .ok()
        .flatten();
    cached.unwrap_or_else(|| Box::new(Compress::new_with_window_bits(Compression::new(level), false, bits)))
}

/// Takes back a compressor made by [`compressor`] with the same parameters.
pub(super) fn recycle_compressor(level: u32, bits: u8, mut stream: Box<Compress>) {
    stream.reset();
    let _ = COMPRESSORS.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() < MAX_CACHED {
            cache.push((level, bits, stream));
        }
    });
}

/// A raw DEFLATE decompressor with a `bits` window, cached or new.
pub(super) fn decompressor(bits: u8) -> Box<Decompress> {
    let cached = DECOMPRESSORS
        .try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let index = cache.iter().position(|(b, _)| *b == bits)?;
            Some(cache.swap_remove(index).1)
        })
        .ok()
        .flatten();
    cached.unwrap_or_else(|| Box::new(Decompress::new_with_window_bits(false, bits)))
}

/// Takes back a decompressor made by [`decompressor`] with the same window.
pub(super) fn recycle_decompressor(bits: u8, mut stream: Box<Decompress>) {
    stream.reset(false);
    let _ = DECOMPRESSORS.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() < MAX_CACHED {
            cache.push((bits, stream));
        }
    });
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
        DECOMPRESSORS.with(|cache| assert!(cache.borrow().len() <= MAX_CACHED));
    }
}
