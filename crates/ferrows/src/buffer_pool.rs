//! A small per-thread cache of spare I/O buffers.
//!
//! An idle connection holds no buffer (its memory is a feature), so every
//! connection that goes quiet hands its read buffer and its output buffer
//! back, and takes one again when bytes arrive. Without a cache that is a
//! `free` and a `malloc` per request/response round trip, and glibc, seeing
//! a large free block at the top of the heap, gives it back to the kernel
//! (`brk`) only to fault it in again on the next read. The cache keeps a few
//! recently released buffers per thread, bounded in count and in bytes, so
//! busy connections reuse warm memory and the bound stays independent of
//! the number of connections.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;

/// Most buffers cached per thread: enough for the connections of one
/// thread that are busy at the same moment in a burst.
pub(crate) const MAX_CACHED_BUFFERS: usize = 16;
/// Most bytes of capacity cached per thread (1 MiB): what the cache may
/// hold on to when the whole server goes idle.
pub(crate) const MAX_CACHED_BYTES: usize = 1 << 20;
/// Buffers larger than this (grown for a large message) are freed, not
/// cached: they would crowd out the common sizes.
pub(crate) const MAX_CACHED_CAPACITY: usize = 256 << 10;
/// Buffers with less room than this are not worth a slot (and may be the
/// last scrap of an allocation that messages still use).
pub(crate) const MIN_CACHED_CAPACITY: usize = 1024;

#[derive(Default)]
struct Cache {
    buffers: Vec<BytesMut>,
    bytes: usize,
}

impl Drop for Cache {
    /// A thread that ends frees its cache.
    fn drop(&mut self) {
        CACHED_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Capacity held by the caches of all threads, for [`cached_buffer_bytes`].
static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of spare buffer capacity the per-thread caches hold now, summed
/// over every thread (at most [`MAX_CACHED_BYTES`] per thread that ever
/// ran a connection). For memory accounting: this memory is reused, not
/// leaked.
pub fn cached_buffer_bytes() -> usize {
    CACHED_BYTES.load(Ordering::Relaxed)
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// An empty buffer with room for at least `min_capacity` bytes: a cached
/// one when there is one.
pub(crate) fn take(min_capacity: usize) -> BytesMut {
    match take_cached() {
        Some(mut buffer) => {
            buffer.reserve(min_capacity);
            buffer
        }
        None => BytesMut::with_capacity(min_capacity),
    }
}

/// A cached buffer (empty, at least [`MIN_CACHED_CAPACITY`] of room), if
/// the cache has one.
pub(crate) fn take_cached() -> Option<BytesMut> {
    CACHE
        .try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let buffer = cache.buffers.pop()?;
            cache.bytes -= buffer.capacity();
            CACHED_BYTES.fetch_sub(buffer.capacity(), Ordering::Relaxed);
            Some(buffer)
        })
        .ok()
        .flatten()
}

/// Takes back a buffer its connection no longer needs. When no message
/// shares its allocation any more, the whole allocation is reclaimed first
/// (the consumed front included). It is cached within the cache's bounds;
/// anything else is simply dropped.
pub(crate) fn give(mut buffer: BytesMut) {
    buffer.clear();
    // Asking for one byte more than the handle's room makes `try_reclaim`
    // take back the consumed front of the allocation, which it can only do
    // when this handle is the allocation's last owner. Otherwise (frozen
    // messages still use the front) nothing changes: the room left is this
    // handle's alone either way, so caching it is sound.
    let _ = buffer.try_reclaim(buffer.capacity() + 1);
    let capacity = buffer.capacity();
    if !(MIN_CACHED_CAPACITY..=MAX_CACHED_CAPACITY).contains(&capacity) {
        return;
    }
    let _ = CACHE.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.buffers.len() < MAX_CACHED_BUFFERS && cache.bytes + buffer.capacity() <= MAX_CACHED_BYTES {
            cache.bytes += buffer.capacity();
            CACHED_BYTES.fetch_add(buffer.capacity(), Ordering::Relaxed);
            cache.buffers.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached() -> (usize, usize) {
        CACHE.with_borrow(|c| (c.buffers.len(), c.bytes))
    }

    fn drain() {
        CACHE.with_borrow_mut(|c| *c = Cache::default());
    }

    #[test]
    fn a_released_buffer_is_reused_without_allocating() {
        drain();
        let mut buffer = take(16 * 1024);
        buffer.extend_from_slice(b"request");
        let address = buffer.as_ptr();
        give(buffer);
        assert_eq!(cached().0, 1);
        let again = take(1024);
        assert_eq!(again.as_ptr(), address, "the same memory comes back");
        assert!(again.is_empty() && again.capacity() >= 16 * 1024);
        assert_eq!(cached(), (0, 0));
    }

    #[test]
    fn a_buffer_still_shared_by_a_message_is_not_cached() {
        drain();
        let mut buffer = take(4096);
        buffer.extend_from_slice(&[7; 4000]);
        let message = buffer.split_to(4000).freeze();
        give(buffer);
        assert_eq!(cached().0, 0, "96 spare bytes behind a live message");
        drop(message);
    }

    #[test]
    fn a_buffer_never_split_is_cached_as_it_is() {
        drain();
        give(BytesMut::with_capacity(4096));
        assert_eq!(cached(), (1, 4096));
        drain();
    }

    #[test]
    fn a_consumed_buffer_whose_messages_are_gone_is_reclaimed_whole() {
        drain();
        let mut buffer = take(4096);
        buffer.extend_from_slice(&[7; 4000]);
        drop(buffer.split_to(4000).freeze());
        give(buffer);
        let again = take(0);
        assert!(again.capacity() >= 4096, "capacity {}", again.capacity());
    }

    #[test]
    fn the_cache_is_bounded_in_count_bytes_and_size() {
        drain();
        give(BytesMut::with_capacity(MAX_CACHED_CAPACITY + 1));
        assert_eq!(cached().0, 0, "oversized buffers are freed");
        give(BytesMut::with_capacity(MIN_CACHED_CAPACITY - 1));
        assert_eq!(cached().0, 0, "scraps are freed");
        for _ in 0..MAX_CACHED_BUFFERS * 2 {
            give(BytesMut::with_capacity(1024));
        }
        assert_eq!(cached().0, MAX_CACHED_BUFFERS);
        drain();
        for _ in 0..MAX_CACHED_BUFFERS {
            give(BytesMut::with_capacity(MAX_CACHED_CAPACITY));
        }
        assert!(cached().1 <= MAX_CACHED_BYTES);
        assert_eq!(cached().0, MAX_CACHED_BYTES / MAX_CACHED_CAPACITY);
        drain();
    }
}
