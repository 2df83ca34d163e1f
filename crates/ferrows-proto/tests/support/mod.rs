//! Shared support for the integration tests.
//!
//! * [`Side`]: one [`Connection`] with the read buffer, event log and wire log
//!   a driver would keep; tests [`Side::inject`] exact wire bytes and read the
//!   exact bytes it answers with [`Side::flush`].
//! * [`Pair`]: a deterministic two-party simulator (a client and a server
//!   `Side`) that moves output between them, optionally chopped into chunks of
//!   given sizes to simulate short writes and short reads.
//! * Frame builders that do not go through the code under test ([`frame`],
//!   [`client_frame`], [`server_frame`]) and an independent wire decoder
//!   ([`decode_frames`]).
//! * [`measure`]: a thread-local allocation meter (this module installs a
//!   counting global allocator in every test binary that uses it).
#![allow(dead_code, unreachable_pub)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use ferrows_proto::config::{Config, Negotiated};
use ferrows_proto::connection::encode_frame;
use ferrows_proto::deflate::DeflateConfig;
use ferrows_proto::{Connection, Event, OpCode, ProtocolError, Role};

/// The masking key of RFC 6455 section 5.7's examples, used for every frame
/// the tests build as a client.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One endpoint as a driver sees it.
#[derive(Debug)]
pub struct Side {
    /// The connection under test.
    pub conn: Connection,
    /// Bytes read from the transport and not yet consumed.
    pub inbox: BytesMut,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Every error `receive`/`receive_eof` returned, in order.
    pub errors: Vec<ProtocolError>,
    /// Every byte this side wrote, in order.
    pub wire: Vec<u8>,
}

impl Side {
    /// A side in `role` with `config` and, optionally, negotiated deflate.
    pub fn new(role: Role, config: Config, deflate: Option<DeflateConfig>) -> Self {
        let conn = Connection::new(role, config, &Negotiated { deflate });
        Self { conn, inbox: BytesMut::new(), events: Vec::new(), errors: Vec::new(), wire: Vec::new() }
    }

    /// A server with the default configuration.
    pub fn server() -> Self {
        Self::new(Role::Server, Config::default(), None)
    }

    /// A client with the default configuration.
    pub fn client() -> Self {
        Self::new(Role::Client, Config::default(), None)
    }

    /// Appends `bytes` to the read buffer, lets the connection process
    /// them and collects the events.
    pub fn inject(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.inbox.extend_from_slice(bytes);
        let result = self.conn.receive(&mut self.inbox);
        if let Err(error) = &result {
            self.errors.push(error.clone());
        }
        self.collect();
        result
    }

    /// [`inject`](Self::inject) in pieces of the given sizes (cycled);
    /// returns the first error.
    pub fn inject_chunked(&mut self, bytes: &[u8], sizes: &[usize]) -> Result<(), ProtocolError> {
        let mut first_error = Ok(());
        let mut rest = bytes;
        let mut sizes = sizes.iter().copied().cycle();
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            if let Err(error) = self.inject(piece)
                && first_error.is_ok()
            {
                first_error = Err(error);
            }
        }
        first_error
    }

    /// The transport reached end of file.
    pub fn eof(&mut self) -> Result<(), ProtocolError> {
        let result = self.conn.receive_eof();
        if let Err(error) = &result {
            self.errors.push(error.clone());
        }
        self.collect();
        result
    }

    fn collect(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            self.events.push(event);
        }
    }

    /// Writes out everything queued, as one vectored write.
    pub fn flush(&mut self) -> Vec<u8> {
        self.flush_upto(usize::MAX)
    }

    /// One short write of at most `max` bytes (like a socket that accepts
    /// only part of a vectored write).
    pub fn flush_upto(&mut self, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in self.conn.output_chunks() {
            let n = chunk.len().min(max - out.len());
            out.extend_from_slice(&chunk[..n]);
            if out.len() == max {
                break;
            }
        }
        self.conn.advance_output(out.len());
        self.wire.extend_from_slice(&out);
        out
    }

    /// Takes the events collected so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The data and control events, without the Pongs.
    pub fn events_without_pongs(&self) -> Vec<Event> {
        self.events.iter().filter(|e| !matches!(e, Event::Pong(_))).cloned().collect()
    }
}

/// A client and a server connected by a simulated transport.
#[derive(Debug)]
pub struct Pair {
    /// The client end.
    pub client: Side,
    /// The server end.
    pub server: Side,
    /// Sizes of the pieces the transport moves (cycled); empty moves
    /// everything at once.
    chunks: Vec<usize>,
    next_chunk: usize,
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pair {
    /// Both ends with the default configuration and no extension.
    pub fn new() -> Self {
        Self::with(Config::default(), Config::default(), None)
    }

    /// Both ends with permessage-deflate negotiated as `deflate`.
    pub fn deflate(deflate: DeflateConfig) -> Self {
        Self::with(Config::default(), Config::default(), Some(deflate))
    }

    /// Both ends with their own configuration and the same negotiated
    /// extensions.
    pub fn with(client: Config, server: Config, deflate: Option<DeflateConfig>) -> Self {
        Self {
            client: Side::new(Role::Client, client, deflate),
            server: Side::new(Role::Server, server, deflate),
            chunks: Vec::new(),
            next_chunk: 0,
        }
    }

    /// Moves bytes in pieces of these sizes (cycled, each at least 1):
    /// every piece is one short write on one side and one read on the other.
    pub fn chunked(mut self, sizes: &[usize]) -> Self {
        self.chunks = sizes.iter().map(|&n| n.max(1)).collect();
        self
    }

    fn chunk(&mut self) -> usize {
        if self.chunks.is_empty() {
            return usize::MAX;
        }
        let n = self.chunks[self.next_chunk % self.chunks.len()];
        self.next_chunk += 1;
        n
    }

    /// Moves what the client has queued to the server; returns the count.
    pub fn client_to_server(&mut self) -> usize {
        let mut moved = 0;
        while self.client.conn.pending_output() > 0 {
            let n = self.chunk();
            let bytes = self.client.flush_upto(n);
            moved += bytes.len();
            let _ = self.server.inject(&bytes);
        }
        moved
    }

    /// Moves what the server has queued to the client; returns the count.
    pub fn server_to_client(&mut self) -> usize {
        let mut moved = 0;
        while self.server.conn.pending_output() > 0 {
            let n = self.chunk();
            let bytes = self.server.flush_upto(n);
            moved += bytes.len();
            let _ = self.client.inject(&bytes);
        }
        moved
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub fn drive(&mut self) {
        for _ in 0..1000 {
            if self.client_to_server() + self.server_to_client() == 0 {
                return;
            }
        }
        panic!("the two sides never went quiet");
    }
}

/// A frame built by hand: `b0` is the whole first byte (FIN, RSV1-3 and
/// the opcode, any value), the length takes its shortest form, and the
/// payload is masked with `mask` if given. Independent of the crate's own
/// encoder.
pub fn frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// First header byte for `opcode` with FIN and RSV1 as given.
pub fn b0(opcode: OpCode, fin: bool, rsv1: bool) -> u8 {
    (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.as_u8()
}

/// A frame as a client sends it (masked with [`KEY`]).
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(b0(opcode, fin, false), Some(KEY), payload)
}

/// A frame as a server sends it (unmasked).
pub fn server_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(b0(opcode, fin, false), None, payload)
}

/// A masked frame made with the crate's public `encode_frame` (for
/// checking that it agrees with [`frame`]).
pub fn encoded(opcode: OpCode, fin: bool, rsv1: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(opcode, fin, rsv1, mask, payload, &mut out);
    out.to_vec()
}

/// A Close payload: code and reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// The exact unmasked Close frame a server sends for `code` and `reason`.
pub fn server_close(code: u16, reason: &str) -> Vec<u8> {
    frame(0x88, None, &close_payload(code, reason))
}

/// The exact Close frame a server sends when `error` fails the
/// connection: the error's code and its description as the reason.
pub fn server_fail_close(error: &ProtocolError) -> Vec<u8> {
    let mut reason = error.to_string();
    reason.truncate(123);
    server_close(error.close_code().0, &reason)
}

/// One frame decoded from the wire by [`decode_frames`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    /// FIN bit.
    pub fin: bool,
    /// RSV1-3 as the bits 0b100, 0b010, 0b001.
    pub rsv: u8,
    /// The raw opcode.
    pub opcode: u8,
    /// The masking key, if the frame was masked.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl WireFrame {
    /// Code and reason of a Close frame.
    pub fn close(&self) -> Option<(u16, String)> {
        assert_eq!(self.opcode, 0x8, "not a Close frame");
        match self.payload.as_slice() {
            [] => None,
            [hi, lo, reason @ ..] => {
                Some((u16::from_be_bytes([*hi, *lo]), String::from_utf8(reason.to_vec()).expect("UTF-8 reason")))
            }
            _ => panic!("one-byte close payload"),
        }
    }
}

/// Decodes a byte stream into whole frames (written independently of the
/// crate's parser). Panics on a truncated or non-minimal frame.
pub fn decode_frames(mut bytes: &[u8]) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "truncated header");
        let (b0, b1) = (bytes[0], bytes[1]);
        let mut pos = 2;
        let len = match b1 & 0x7F {
            126 => {
                let n = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
                assert!(n >= 126, "non-minimal 16-bit length");
                pos = 4;
                n
            }
            127 => {
                let n = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
                assert!(n > 0xFFFF && n >> 63 == 0, "non-minimal 64-bit length");
                pos = 10;
                n as usize
            }
            n => n as usize,
        };
        let mask = (b1 & 0x80 != 0).then(|| {
            let key: [u8; 4] = bytes[pos..pos + 4].try_into().unwrap();
            pos += 4;
            key
        });
        assert!(bytes.len() >= pos + len, "truncated payload");
        let mut payload = bytes[pos..pos + len].to_vec();
        if let Some(key) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        frames.push(WireFrame { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x7, opcode: b0 & 0x0F, mask, payload });
        bytes = &bytes[pos + len..];
    }
    frames
}

/// Deterministic pseudo-random bytes (xorshift64*), for payloads.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Deterministic text of exactly `len` bytes mixing one- to four-byte
/// UTF-8 sequences (padded with ASCII at the end).
pub fn pseudo_text(len: usize, seed: u64) -> String {
    const PIECES: [&str; 8] = ["a", "hello ", "é", "€", "𝄞", "κόσμε", " ", "\u{7FF}"];
    let mut out = String::with_capacity(len);
    for r in pseudo_random(len, seed) {
        let piece = PIECES[r as usize % PIECES.len()];
        if out.len() + piece.len() > len {
            break;
        }
        out.push_str(piece);
    }
    while out.len() < len {
        out.push('z');
    }
    out
}

/// Allocation statistics of the current thread during [`measure`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocStats {
    /// Highest number of bytes allocated (net of frees) at any moment.
    pub peak_live: usize,
    /// Size of the largest single allocation or reallocation.
    pub largest: usize,
}

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(delta: isize, size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let live = LIVE.get() + delta;
            LIVE.set(live);
            PEAK.set(PEAK.get().max(live));
            LARGEST.set(LARGEST.get().max(size));
        }
    });
}

/// Runs `f` and reports what it allocated on this thread.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, AllocStats) {
    LIVE.set(0);
    PEAK.set(0);
    LARGEST.set(0);
    ARMED.set(true);
    let result = f();
    ARMED.set(false);
    (result, AllocStats { peak_live: PEAK.get().max(0) as usize, largest: LARGEST.get() })
}

/// The system allocator, counting what the current thread allocates while
/// [`measure`] runs.
struct CountingAllocator;

// SAFETY: every method forwards to `System` with the same arguments; the
// bookkeeping only touches const-initialised thread-locals of `Copy` types
// (no allocation, no destructor) and never the memory itself.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize, layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize, layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as isize), 0);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size as isize - layout.size() as isize, new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;
