//! The outgoing byte queue: a list of shared chunks followed by a growable
//! tail, so small frames are coalesced and large payloads go out without a
//! copy, all in one vectored write.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this long are queued as their own chunk (no copy);
/// shorter ones are copied into the tail, where they join their header.
pub(crate) const ZERO_COPY_MIN: usize = 2048;

#[derive(Debug, Default)]
pub(crate) struct Output {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl Output {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Lets `write` append to the tail directly (no intermediate buffer).
    pub(crate) fn write_with(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let before = self.tail.len();
        write(&mut self.tail);
        self.len += self.tail.len() - before;
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    pub(crate) fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    pub(crate) fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.chunks.iter().map(|c| &c[..]).chain(std::iter::once(&self.tail[..]).filter(|t| !t.is_empty()))
    }

    pub(crate) fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advanced past the queued output");
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= n => {
                    n -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    n = 0;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        if self.len == 0 {
            self.tail.clear();
        }
    }

    pub(crate) fn take(&mut self) -> Option<Bytes> {
        let chunk = match self.chunks.pop_front() {
            Some(chunk) => chunk,
            None if !self.tail.is_empty() => self.tail.split().freeze(),
            None => return None,
        };
        self.len -= chunk.len();
        Some(chunk)
    }

    /// Gives up the tail's memory when nothing is queued (idle
    /// connections): returns the buffer, empty, for reuse.
    pub(crate) fn release(&mut self) -> BytesMut {
        if self.len != 0 {
            return BytesMut::new();
        }
        self.chunks = VecDeque::new();
        std::mem::take(&mut self.tail)
    }

    /// Whether the tail has no memory of its own (see [`Output::provide`]).
    pub(crate) fn wants_buffer(&self) -> bool {
        self.tail.capacity() == 0
    }

    /// Installs an empty buffer as the tail, if the tail has none.
    pub(crate) fn provide(&mut self, mut buffer: BytesMut) {
        if self.wants_buffer() {
            buffer.clear();
            self.tail = buffer;
        }
    }
}
