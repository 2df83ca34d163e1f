//! RFC 7692 (permessage-deflate) through the connection core: every
//! combination of context takeover and window bits, fragmented compressed
//! messages, RSV1 rules, decompression bombs, corrupt DEFLATE data and
//! UTF-8 checks on inflated text.

mod support;

use bytes::{Bytes, BytesMut};
use ferrows_proto::config::Config;
use ferrows_proto::deflate::{DeflateConfig, Deflater};
use ferrows_proto::{DataKind, Event, OpCode, ProtocolError, Role};
use support::{
    KEY, Pair, Side, WireFrame, b0, client_frame, decode_frames, frame, measure, pseudo_random, pseudo_text,
    server_fail_close,
};

fn text(s: &str) -> Event {
    Event::Text(s.into())
}

fn binary(b: &[u8]) -> Event {
    Event::Binary(Bytes::copy_from_slice(b))
}

fn deflate_all(bits: u8, no_context_takeover: bool) -> DeflateConfig {
    DeflateConfig {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    }
}

/// A server with permessage-deflate (default parameters) and `config`.
fn server_with(config: Config) -> Side {
    Side::new(Role::Server, config, Some(DeflateConfig::default()))
}

/// `message` compressed the way a sender does it (tail removed).
fn compress(message: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Deflater::new(15, true, 6).compress(message, &mut out, true);
    out.to_vec()
}

/// A masked frame with RSV1 set.
fn compressed_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(b0(opcode, fin, true), Some(KEY), payload)
}

/// Writes raw DEFLATE bit streams by hand (RFC 1951), to build inputs no
/// compressor would produce.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    count: u32,
}

impl Bits {
    /// A value of `count` bits, least significant bit first.
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += count;
        while self.count >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    /// A Huffman code of `len` bits, most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    /// Ends the message like a sync flush minus its `00 00 ff ff`: the
    /// header of an empty stored block, padded to a byte.
    fn finish(mut self) -> Vec<u8> {
        self.put(0, 3);
        if self.count > 0 {
            self.put(0, 8 - self.count);
        }
        self.out
    }
}

/// A compressed message that inflates to `1 + 258 * copies` zero bytes:
/// one fixed-Huffman block of a literal zero and `copies` matches of
/// length 258 at distance 1 (13 bits each, a ratio of about 160).
fn zeros_bomb(copies: usize) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.put(0, 1); // BFINAL
    bits.put(1, 2); // BTYPE: fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    for _ in 0..copies {
        bits.code(0xC5, 8); // length code 285: 258 bytes
        bits.code(0, 5); // distance code 0: 1 byte back
    }
    bits.code(0, 7); // end of block
    bits.finish()
}

mod parameters {
    use super::*;

    fn data_frames(wire: &[u8]) -> Vec<WireFrame> {
        decode_frames(wire).into_iter().filter(|f| f.opcode < 8).collect()
    }

    /// Sends the same messages both ways and checks what arrives and what
    /// the wire looks like.
    fn exchange(config: DeflateConfig, chunk: usize) {
        let repeated = pseudo_text(150, 1);
        let compressible: Vec<u8> = (0..3000u32).map(|i| (i % 17) as u8).collect();
        let split = "κόσμε".as_bytes();
        let mut pair = Pair::deflate(config).chunked(&[chunk, 1]);
        for side in [&mut pair.client, &mut pair.server] {
            let conn = &mut side.conn;
            assert!(conn.is_compressed());
            conn.send_text(repeated.clone().into()).unwrap();
            conn.send_text(repeated.clone().into()).unwrap();
            conn.send_binary(compressible.clone().into()).unwrap();
            conn.send_text("".into()).unwrap();
            conn.send_fragment(DataKind::Text, &split[..3], false).unwrap();
            conn.send_fragment(DataKind::Text, &split[3..7], false).unwrap();
            conn.send_fragment(DataKind::Text, &split[7..], true).unwrap();
        }
        pair.drive();
        let expected = [text(&repeated), text(&repeated), binary(&compressible), text(""), text("κόσμε")];
        assert_eq!(pair.server.events, expected, "{config:?}");
        assert_eq!(pair.client.events, expected, "{config:?}");
        assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());

        let sides = [
            (&pair.client.wire, config.client_no_context_takeover),
            (&pair.server.wire, config.server_no_context_takeover),
        ];
        for (wire, no_context_takeover) in sides {
            let frames = data_frames(wire);
            let flags: Vec<_> = frames.iter().map(|f| (f.opcode, f.fin, f.rsv)).collect();
            // RSV1 on the first frame of every message only; the empty
            // message goes uncompressed (compressing it would add a byte).
            assert_eq!(
                flags,
                [(1, true, 4), (1, true, 4), (2, true, 4), (1, true, 0), (1, false, 4), (0, false, 0), (0, true, 0)],
                "{config:?}"
            );
            let (first, second) = (&frames[0].payload, &frames[1].payload);
            assert!(first.len() < repeated.len(), "{config:?}");
            if no_context_takeover {
                assert_eq!(first, second, "without context takeover equal messages compress equally: {config:?}");
            } else {
                assert!(second.len() < first.len(), "context takeover shrinks a repeat: {config:?}");
            }
            assert!(frames[2].payload.len() < compressible.len() / 10);
            assert!(frames[3].payload.is_empty(), "an empty message goes uncompressed, as nothing");
        }
    }

    #[test]
    fn every_context_takeover_and_window_bits_combination() {
        for server_no_context_takeover in [false, true] {
            for client_no_context_takeover in [false, true] {
                for server_max_window_bits in 9..=15 {
                    for client_max_window_bits in 9..=15 {
                        let config = DeflateConfig {
                            server_no_context_takeover,
                            client_no_context_takeover,
                            server_max_window_bits,
                            client_max_window_bits,
                        };
                        exchange(config, usize::from(server_max_window_bits + client_max_window_bits));
                    }
                }
            }
        }
    }

    #[test]
    fn window_bits_8_sends_uncompressed_messages() {
        let config = DeflateConfig { server_max_window_bits: 8, ..DeflateConfig::default() };
        let mut pair = Pair::deflate(config);
        let message = pseudo_text(1000, 4);
        pair.client.conn.send_text(message.clone().into()).unwrap();
        pair.server.conn.send_text(message.clone().into()).unwrap();
        pair.server.conn.send_fragment(DataKind::Binary, b"ab", false).unwrap();
        pair.server.conn.send_fragment(DataKind::Binary, b"cd", true).unwrap();
        pair.drive();
        assert_eq!(pair.server.events, [text(&message)]);
        assert_eq!(pair.client.events, [text(&message), binary(b"abcd")]);
        assert!(data_frames(&pair.server.wire).iter().all(|f| f.rsv == 0), "zlib cannot use an 8-bit window");
        assert_eq!(data_frames(&pair.client.wire)[0].rsv, 4);
    }

    #[test]
    fn threshold_leaves_small_messages_uncompressed_without_breaking_the_context() {
        let config = Config { deflate_threshold: 100, ..Config::default() };
        let mut pair = Pair::with(config.clone(), config, Some(DeflateConfig::default())).chunked(&[3]);
        let big = pseudo_text(500, 5);
        let mut expected = Vec::new();
        for i in 0..6 {
            let small = format!("small {i}");
            pair.client.conn.send_text(big.clone().into()).unwrap();
            pair.client.conn.send_text(small.clone().into()).unwrap();
            expected.extend([text(&big), text(&small)]);
        }
        pair.drive();
        assert_eq!(pair.server.events, expected);
        let rsv: Vec<u8> = data_frames(&pair.client.wire).iter().map(|f| f.rsv).collect();
        assert_eq!(rsv, [4, 0].repeat(6));
    }

    #[test]
    fn compressed_messages_fragmented_by_max_send_frame_size() {
        let config = Config { max_send_frame_size: 7, ..Config::default() };
        for deflate in [deflate_all(15, false), deflate_all(9, true)] {
            let mut pair = Pair::with(config.clone(), config.clone(), Some(deflate)).chunked(&[1]);
            let message = pseudo_text(10_000, 6);
            let noise = pseudo_random(2000, 7);
            for side in [&mut pair.client, &mut pair.server] {
                side.conn.send_text(message.clone().into()).unwrap();
                side.conn.send_ping(b"between").unwrap();
                side.conn.send_binary(noise.clone().into()).unwrap();
            }
            pair.drive();
            for side in [&pair.client, &pair.server] {
                assert_eq!(
                    side.events_without_pongs(),
                    [text(&message), Event::Ping("between".into()), binary(&noise)]
                );
                let frames = data_frames(&side.wire);
                assert!(frames.len() > 100);
                assert!(frames.iter().all(|f| f.payload.len() <= 7));
                let starts: Vec<_> = frames.iter().filter(|f| f.opcode != 0).map(|f| f.rsv).collect();
                // The noise would grow if compressed: it goes uncompressed.
                assert_eq!(starts, [4, 0]);
                assert!(frames.iter().filter(|f| f.opcode == 0).all(|f| f.rsv == 0));
            }
        }
    }

    #[test]
    fn control_frames_interleaved_in_a_compressed_fragmented_message() {
        let compressed = compress(pseudo_text(3000, 8).as_bytes());
        let (a, b) = compressed.split_at(compressed.len() / 2);
        let mut wire = compressed_frame(OpCode::Text, false, a);
        wire.extend(client_frame(OpCode::Ping, true, b"p"));
        wire.extend(client_frame(OpCode::Continuation, true, b));
        let mut server = server_with(Config::default());
        server.inject_chunked(&wire, &[11]).unwrap();
        assert_eq!(server.events, [Event::Ping("p".into()), text(&pseudo_text(3000, 8))]);
        assert_eq!(server.flush(), [0x8A, 0x01, b'p']);
    }
}

mod rsv1 {
    use super::*;

    #[test]
    fn rsv1_on_a_continuation_fails_with_1002() {
        let compressed = compress(b"hello hello hello");
        let mut server = server_with(Config::default());
        server.inject(&compressed_frame(OpCode::Text, false, &compressed[..4])).unwrap();
        let result = server.inject(&compressed_frame(OpCode::Continuation, true, &compressed[4..]));
        assert_eq!(result, Err(ProtocolError::ReservedBitSet));
        assert_eq!(server.flush(), server_fail_close(&ProtocolError::ReservedBitSet));
        assert!(server.events.is_empty());
        // Also on a continuation of an uncompressed message.
        let mut server = server_with(Config::default());
        server.inject(&client_frame(OpCode::Text, false, b"plain")).unwrap();
        let result = server.inject(&compressed_frame(OpCode::Continuation, true, &compressed));
        assert_eq!(result, Err(ProtocolError::ReservedBitSet));
    }

    #[test]
    fn rsv1_on_a_control_frame_fails_with_1002() {
        for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            let mut server = server_with(Config::default());
            assert_eq!(server.inject(&compressed_frame(opcode, true, b"")), Err(ProtocolError::ReservedBitSet));
            assert_eq!(server.flush(), server_fail_close(&ProtocolError::ReservedBitSet));
        }
    }

    #[test]
    fn rsv1_without_negotiation_fails_with_1002() {
        let mut server = Side::server();
        let result = server.inject(&compressed_frame(OpCode::Text, true, &compress(b"hello")));
        assert_eq!(result, Err(ProtocolError::ReservedBitSet));
        assert_eq!(server.flush(), server_fail_close(&ProtocolError::ReservedBitSet));
        let mut client = Side::client();
        let result = client.inject(&frame(0xC1, None, &compress(b"hello")));
        assert_eq!(result, Err(ProtocolError::ReservedBitSet));
    }

    #[test]
    fn uncompressed_messages_are_allowed_when_negotiated() {
        let mut server = server_with(Config::default());
        server.inject(&client_frame(OpCode::Text, true, b"plain")).unwrap();
        server.inject(&compressed_frame(OpCode::Text, true, &compress(b"packed"))).unwrap();
        server.inject(&client_frame(OpCode::Binary, true, b"plain")).unwrap();
        assert_eq!(server.events, [text("plain"), text("packed"), binary(b"plain")]);
    }

    #[test]
    fn rfc7692_section_7_2_3_examples() {
        // "Hello" compressed, in one frame and in two fragments.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut client = Side::new(Role::Client, Config::default(), Some(DeflateConfig::default()));
        client.inject(&[&[0xc1, 0x07][..], &hello].concat()).unwrap();
        client.inject(&[&[0x41, 0x03][..], &hello[..3], &[0x80, 0x04], &hello[3..]].concat()).unwrap();
        // A message compressed with a stored (uncompressed) block.
        client.inject(&[0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]).unwrap();
        assert_eq!(client.events, [text("Hello"), text("Hello"), text("Hello")]);
        // Two messages sharing the context: the second refers to the first.
        let mut client = Side::new(Role::Client, Config::default(), Some(DeflateConfig::default()));
        client.inject(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap();
        client.inject(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap();
        assert_eq!(client.events, [text("Hello"), text("Hello")]);
    }
}

mod limits {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn bomb_server() -> Side {
        server_with(Config { max_message_size: LIMIT, ..Config::default() })
    }

    #[test]
    fn the_handmade_stream_inflates_to_zeros() {
        // 4064 copies: 1 + 258 * 4064 = 1_048_513 bytes, just under 1 MiB.
        let mut server = bomb_server();
        server.inject(&compressed_frame(OpCode::Binary, true, &zeros_bomb(4064))).unwrap();
        assert_eq!(server.events, [binary(&vec![0; 1 + 258 * 4064])]);
        // One more copy is over the limit.
        let mut server = bomb_server();
        let result = server.inject(&compressed_frame(OpCode::Binary, true, &zeros_bomb(4065)));
        assert_eq!(result, Err(ProtocolError::MessageTooLarge { limit: LIMIT }));
    }

    #[test]
    fn a_100_mib_deflate_bomb_is_cut_at_max_message_size() {
        let payload = zeros_bomb((100 << 20) / 258);
        assert!(payload.len() < 700 << 10, "{} bytes inflate to 100 MiB", payload.len());
        let mut server = bomb_server();
        server.inbox.extend_from_slice(&compressed_frame(OpCode::Binary, true, &payload));
        let (result, stats) = measure(|| server.conn.receive(&mut server.inbox));
        let error = ProtocolError::MessageTooLarge { limit: LIMIT };
        assert_eq!(result, Err(error.clone()));
        assert_eq!(server.flush(), server_fail_close(&error));
        assert_eq!(server.wire[2..4], [0x03, 0xF1]);
        // The inflated message never grew far past the limit.
        assert!(stats.largest <= 2 * LIMIT + (64 << 10), "largest allocation {} bytes", stats.largest);
        assert!(stats.peak_live <= 3 * LIMIT, "peak {} bytes", stats.peak_live);
        assert!(server.conn.poll_event().is_none());
    }

    #[test]
    fn a_fragmented_deflate_bomb_is_cut_at_the_fragment_that_crosses_the_limit() {
        let payload = zeros_bomb((100 << 20) / 258);
        let mut wire = Vec::new();
        let pieces: Vec<&[u8]> = payload.chunks(4096).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
            wire.extend(frame(b0(opcode, i == pieces.len() - 1, i == 0), Some(KEY), piece));
        }
        let mut server = bomb_server();
        server.inbox.extend_from_slice(&wire);
        let (result, stats) = measure(|| server.conn.receive(&mut server.inbox));
        assert_eq!(result, Err(ProtocolError::MessageTooLarge { limit: LIMIT }));
        assert!(stats.largest <= 2 * LIMIT + (64 << 10), "largest allocation {} bytes", stats.largest);
        assert!(stats.peak_live <= 3 * LIMIT, "peak {} bytes", stats.peak_live);
    }

    #[test]
    fn inflated_size_counts_not_wire_size() {
        let limit = 64 << 10;
        let config = Config { max_message_size: limit, ..Config::default() };
        let mut pair = Pair::with(Config::default(), config, Some(DeflateConfig::default()));
        pair.client.conn.send_binary(vec![0; limit].into()).unwrap();
        pair.client.conn.send_binary(vec![0; limit + 1].into()).unwrap();
        pair.drive();
        assert!(pair.client.wire.len() < limit / 50, "{} bytes on the wire", pair.client.wire.len());
        assert_eq!(pair.server.events, [binary(&vec![0; limit])], "exactly the limit is accepted");
        assert_eq!(pair.server.errors, [ProtocolError::MessageTooLarge { limit }]);
        let frames = decode_frames(&pair.server.wire);
        assert_eq!(frames.last().unwrap().close().unwrap().0, 1009);
        assert_eq!(pair.client.events.len(), 1);
    }
}

mod corrupt_data {
    use super::*;

    fn fails_with_1002(payloads: &[&[u8]]) {
        let mut wire = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let opcode = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
            wire.extend(frame(b0(opcode, i == payloads.len() - 1, i == 0), Some(KEY), payload));
        }
        let mut server = server_with(Config::default());
        assert_eq!(server.inject(&wire), Err(ProtocolError::InflateFailed), "{payloads:?}");
        assert_eq!(server.flush(), server_fail_close(&ProtocolError::InflateFailed));
        assert_eq!(server.wire[2..4], [0x03, 0xEA]);
        assert!(server.events.is_empty());
    }

    #[test]
    fn reserved_block_type() {
        fails_with_1002(&[&[0xFF; 16]]);
        fails_with_1002(&[&[0x07]]);
    }

    #[test]
    fn distance_too_far_back() {
        let mut bits = Bits::default();
        bits.put(0, 1);
        bits.put(1, 2);
        bits.code(0x30 + u32::from(b'a'), 8); // one literal
        bits.code(1, 7); // length code 257: 3 bytes
        bits.code(5, 5); // distance code 5: 7 or 8 bytes back
        bits.put(0, 1);
        bits.code(0, 7);
        fails_with_1002(&[&bits.finish()]);
    }

    #[test]
    fn stored_block_with_bad_lengths() {
        fails_with_1002(&[&[0x00, 0x05, 0x00, 0x00, 0x00, b'h', b'e', b'l', b'l', b'o']]);
    }

    #[test]
    fn corruption_in_a_later_fragment() {
        // The first fragment ends at a sync flush, where a new block starts:
        // the second fragment's first byte is a block header of the
        // reserved type.
        let mut first = BytesMut::new();
        Deflater::new(15, false, 6).compress(pseudo_text(2000, 9).as_bytes(), &mut first, false);
        fails_with_1002(&[&first, &[0xFF; 8], b"rest"]);
        fails_with_1002(&[&first, &[0x07]]);
    }
}

mod utf8 {
    use super::*;

    fn invalid_text_endings() -> Vec<Vec<u8>> {
        let body = pseudo_text(3000, 10).into_bytes();
        [&b"\xFF"[..], b"\xC3", b"\xE2\x82", b"\xF0\x9D\x84"].iter().map(|end| [&body[..], end].concat()).collect()
    }

    #[test]
    fn text_invalid_only_in_its_last_byte_fails_with_1007_compressed_or_not() {
        for message in invalid_text_endings() {
            let plain = client_frame(OpCode::Text, true, &message);
            let packed = compressed_frame(OpCode::Text, true, &compress(&message));
            for wire in [plain, packed] {
                let mut server = server_with(Config::default());
                assert_eq!(server.inject_chunked(&wire, &[100]), Err(ProtocolError::InvalidUtf8));
                assert_eq!(server.flush(), server_fail_close(&ProtocolError::InvalidUtf8));
                assert_eq!(server.wire[2..4], [0x03, 0xEF]);
                assert!(server.events.is_empty());
            }
            // And through a pair, as binary (which does not care), both ways.
            let mut pair = Pair::deflate(DeflateConfig::default()).chunked(&[13]);
            pair.client.conn.send_binary(message.clone().into()).unwrap();
            pair.server.conn.send_binary(message.clone().into()).unwrap();
            pair.drive();
            assert_eq!(pair.server.events, [binary(&message)]);
            assert_eq!(pair.client.events, [binary(&message)]);
        }
    }

    #[test]
    fn invalid_compressed_text_fails_before_the_rest_arrives() {
        // A sender that flushed "ok \xFF" and has more to come.
        let mut deflater = Deflater::new(15, false, 6);
        let mut head = BytesMut::new();
        deflater.compress(b"ok \xFF", &mut head, false);
        let mut tail = BytesMut::new();
        deflater.compress(pseudo_text(5000, 11).as_bytes(), &mut tail, true);
        // In one frame whose rest has not arrived.
        let wire = compressed_frame(OpCode::Text, true, &[&head[..], &tail[..]].concat());
        let header = 2 + 2 + 4;
        let mut server = server_with(Config::default());
        assert_eq!(server.inject(&wire[..header + head.len()]), Err(ProtocolError::InvalidUtf8));
        assert_eq!(server.flush(), server_fail_close(&ProtocolError::InvalidUtf8));
        // In a first fragment whose continuation has not arrived.
        let mut server = server_with(Config::default());
        let result = server.inject(&compressed_frame(OpCode::Text, false, &head));
        assert_eq!(result, Err(ProtocolError::InvalidUtf8));
    }
}

/// Incompressible messages go out uncompressed (RSV1 clear) and the
/// connection keeps working with context takeover afterwards; frames of a
/// compressed message may exceed the frame limit by an eighth.
#[test]
fn incompressible_messages_and_the_frame_limit() {
    for no_context in [false, true] {
        let deflate = DeflateConfig {
            server_no_context_takeover: no_context,
            client_no_context_takeover: no_context,
            ..DeflateConfig::default()
        };
        let mut pair = Pair::deflate(deflate);
        let text = pseudo_text(20_000, 1);
        let noise = pseudo_random(100_000, 2);
        pair.client.conn.send_text(text.as_str().into()).unwrap();
        pair.client.conn.send_binary(noise.clone().into()).unwrap();
        pair.client.conn.send_text(text.as_str().into()).unwrap();
        let wire = pair.client.flush();
        let frames = decode_frames(&wire);
        assert_eq!(frames.iter().map(|f| f.rsv == 0b100).collect::<Vec<_>>(), vec![true, false, true]);
        pair.server.inject(&wire).unwrap();
        assert_eq!(
            pair.server.take_events(),
            vec![Event::Text(text.as_str().into()), Event::Binary(noise.into()), Event::Text(text.as_str().into())]
        );
    }
    // A compressed frame a little over the frame limit is accepted ...
    let config = Config { max_frame_size: 1000, ..Config::default() };
    let mut server = Side::new(Role::Server, config.clone(), Some(DeflateConfig::default()));
    let mut deflater = Deflater::new(15, false, 1);
    let mut body = BytesMut::new();
    deflater.compress(&pseudo_random(990, 3), &mut body, true);
    assert!(body.len() > 1000 && body.len() <= 1125, "{}", body.len());
    server.inject(&frame(b0(OpCode::Binary, true, true), Some(KEY), &body)).unwrap();
    assert_eq!(server.take_events().len(), 1);
    // ... an uncompressed one is not.
    let mut server = Side::new(Role::Server, config, Some(DeflateConfig::default()));
    let err = server.inject(&frame(b0(OpCode::Binary, true, false), Some(KEY), &[0u8; 1001])).unwrap_err();
    assert_eq!(err, ProtocolError::FrameTooLarge { size: 1001, limit: 1000 });
}
