//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use bytes::BytesMut;
use ferrows_proto::config::{Config, Negotiated};
use ferrows_proto::deflate::DeflateConfig;
use ferrows_proto::frame::MAX_HEADER_LEN;
use ferrows_proto::{Connection, Event, ProtocolError, Role};

/// A tiny deterministic generator, seeded from the input, for decisions
/// that should not eat into the bytes under test (chunk sizes, how much
/// output the "transport" writes).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next value (splitmix64).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..=max`.
    pub fn upto(&mut self, max: usize) -> usize {
        (self.next_u64() % (max as u64 + 1)) as usize
    }
}

/// A limit between 1 byte and 64 KiB (quadratic, so small limits are as
/// easy to reach as large ones).
pub fn small_limit(byte: u8) -> usize {
    1 + byte as usize * byte as usize
}

/// A window size of 8 to 15 bits from the low three bits of `byte`.
pub fn window_bits(byte: u8) -> u8 {
    8 + (byte & 7)
}

/// Feeds `data` to a fresh connection in `role` and checks the invariants
/// every peer-controlled byte stream must keep.
///
/// Input layout: 5 bytes of settings (deflate parameters, frame and message
/// limits, chunking seed), then the bytes "read from the socket".
pub fn frame_stream(role: Role, data: &[u8]) {
    let [flags, bits, frame_limit, message_limit, seed, wire @ ..] = data else { return };
    let deflate = (flags & 1 != 0).then(|| DeflateConfig {
        server_no_context_takeover: flags & 2 != 0,
        client_no_context_takeover: flags & 4 != 0,
        server_max_window_bits: window_bits(bits >> 4),
        client_max_window_bits: window_bits(*bits),
    });
    let config = Config {
        max_frame_size: small_limit(*frame_limit),
        max_message_size: small_limit(*message_limit),
        accept_unmasked_frames: flags & 8 != 0,
        ..Config::default()
    };
    let max_frame_size = config.max_frame_size;
    let max_message_size = config.max_message_size;
    let mut conn = Connection::new(role, config, &Negotiated { deflate });
    assert_eq!(conn.is_compressed(), deflate.is_some());

    let mut rng = Rng::new(u64::from(*seed) | (wire.len() as u64) << 8);
    let max_chunk = match seed & 3 {
        0 => wire.len().max(1),
        1 => 1,
        2 => 16,
        _ => 4096,
    };
    let mut buf = BytesMut::new();
    let mut rest = wire;
    let mut fed = 0usize;
    let mut written = 0usize;
    let mut failed: Option<ProtocolError> = None;
    let mut closed = false;
    while !rest.is_empty() {
        let n = (1 + rng.upto(max_chunk - 1)).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        fed += n;
        buf.extend_from_slice(chunk);
        let before_events = failed.is_some() || closed;
        match conn.receive(&mut buf) {
            Ok(()) => {
                if failed.is_some() || closed {
                    assert!(buf.is_empty(), "input after the end must be discarded");
                }
            }
            Err(e) => {
                assert!(failed.is_none(), "an error is returned once, then input is discarded: {e:?}");
                assert!(!closed, "no error after the peer's Close: {e:?}");
                assert_eq!(conn.error(), Some(&e));
                assert!(conn.is_closed());
                assert!(conn.should_close_transport());
                assert!(conn.close_sent(), "a failure queues a Close frame");
                assert_ne!(e, ProtocolError::AbnormalClosure);
                failed = Some(e);
            }
        }
        // After `Ok`, what stays is a partial header or a partial frame kept
        // in place: never more. (After `Err` the rest of the input is left
        // as it was, and discarded by the next call.)
        assert!(
            failed.is_some() || buf.len() <= max_frame_size.max(125) + MAX_HEADER_LEN,
            "{} bytes buffered with a frame limit of {max_frame_size}",
            buf.len()
        );
        assert!(conn.read_hint(buf.len()) >= 1);
        while let Some(event) = conn.poll_event() {
            assert!(!before_events, "event after an error or the peer's Close: {event:?}");
            assert!(!closed, "event after the peer's Close: {event:?}");
            check_event(&event, max_message_size);
            if matches!(event, Event::Close(_)) {
                closed = true;
                assert!(conn.close_received());
                assert!(conn.close_sent(), "the peer's Close is echoed");
                assert!(conn.is_closed());
                if role == Role::Server {
                    assert!(conn.should_close_transport());
                }
            }
        }
        written += drain_some(&mut conn, &mut rng);
        // Pongs are at most 3x their Ping (a 2-byte Ping to a client becomes a
        // 6-byte masked Pong), plus one Close frame.
        let produced = written + conn.pending_output();
        assert!(produced <= 3 * fed + 131, "{produced} bytes of output for {fed} bytes of input");
    }
    let pending = conn.pending_output();
    match conn.receive_eof() {
        Ok(()) => assert!(failed.is_some() || closed),
        Err(e) => {
            assert!(failed.is_none() && !closed);
            assert_eq!(e, ProtocolError::AbnormalClosure);
            assert_eq!(conn.pending_output(), pending, "no Close frame on a dead transport");
            assert!(conn.should_close_transport());
        }
    }
    assert_eq!(conn.receive_eof(), Ok(()), "end of file is reported once");
    assert_eq!(conn.poll_event(), None);
    while conn.take_output().is_some() {}
    assert_eq!(conn.pending_output(), 0);
    conn.release_buffers();
}

/// What every event must satisfy whatever the input.
fn check_event(event: &Event, max_message_size: usize) {
    match event {
        Event::Text(text) => {
            assert!(std::str::from_utf8(text.as_bytes()).is_ok(), "Text event with invalid UTF-8");
            assert_eq!(text.as_str().len(), text.as_bytes().len());
            assert!(text.as_bytes().len() <= max_message_size);
        }
        Event::Binary(data) => assert!(data.len() <= max_message_size),
        Event::Ping(data) | Event::Pong(data) => assert!(data.len() <= 125),
        Event::Close(None) => {}
        Event::Close(Some(close)) => {
            assert!(close.code.is_allowed_on_wire(), "{}", close.code);
            assert!(close.reason.len() <= 123);
        }
    }
}

/// Writes a random amount of the pending output, as a socket that accepts
/// part of a vectored write would, and returns how much was written.
pub fn drain_some(conn: &mut Connection, rng: &mut Rng) -> usize {
    let pending = conn.pending_output();
    let listed: usize = conn.output_chunks().map(<[u8]>::len).sum();
    assert_eq!(listed, pending);
    assert!(conn.output_chunks().all(|c| !c.is_empty()));
    let n = rng.upto(pending);
    conn.advance_output(n);
    assert_eq!(conn.pending_output(), pending - n);
    n
}
