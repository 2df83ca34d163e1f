//! RFC 6455 conformance of the connection core, one module per section of
//! the RFC. Most tests inject exact wire bytes into one side and assert the
//! exact bytes it answers with; the others run a client and a server
//! against each other through the [`support::Pair`] simulator.

mod support;

use bytes::Bytes;
use ferrows_proto::config::Config;
use ferrows_proto::{CloseCode, CloseFrame, DataKind, Event, OpCode, ProtocolError, Role, UsageError};
use support::{
    KEY, Pair, Side, b0, client_frame, close_payload, decode_frames, encoded, frame, measure, pseudo_random,
    pseudo_text, server_close, server_fail_close, server_frame,
};

fn text(s: &str) -> Event {
    Event::Text(s.into())
}

fn binary(b: &[u8]) -> Event {
    Event::Binary(Bytes::copy_from_slice(b))
}

fn close(code: u16, reason: &str) -> Event {
    Event::Close(Some(CloseFrame { code: CloseCode(code), reason: reason.into() }))
}

/// Injects `bytes` into a fresh default server and checks that it fails
/// with `error` and answers exactly with the matching Close frame.
fn server_fails_with(bytes: &[u8], error: ProtocolError) -> Side {
    let mut server = Side::server();
    assert_eq!(server.inject(bytes), Err(error.clone()));
    assert_eq!(server.flush(), server_fail_close(&error), "close frame for {error:?}");
    assert_eq!(server.conn.error(), Some(&error));
    assert!(server.conn.is_closed());
    assert!(server.conn.should_close_transport());
    server
}

mod section_5_2_base_framing {
    use super::*;

    #[test]
    fn section_5_7_single_frame_examples() {
        // A single-frame unmasked text message, to a client.
        let mut client = Side::client();
        client.inject(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(client.events, [text("Hello")]);

        // A single-frame masked text message, to a server.
        let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(client_frame(OpCode::Text, true, b"Hello"), wire);
        assert_eq!(encoded(OpCode::Text, true, false, Some(KEY), b"Hello"), wire);
        let mut server = Side::server();
        server.inject(&wire).unwrap();
        assert_eq!(server.events, [text("Hello")]);
        assert!(server.flush().is_empty());
    }

    #[test]
    fn section_5_7_fragmented_example() {
        let mut client = Side::client();
        client.inject(&[0x01, 0x03, 0x48, 0x65, 0x6c]).unwrap();
        assert!(client.events.is_empty(), "no event before the last fragment");
        client.inject(&[0x80, 0x02, 0x6c, 0x6f]).unwrap();
        assert_eq!(client.events, [text("Hello")]);
    }

    #[test]
    fn section_5_7_ping_examples() {
        // Masked Ping to a server: the unmasked Pong of the example.
        let mut server = Side::server();
        server.inject(&[0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]).unwrap();
        assert_eq!(server.flush(), [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(server.events, [Event::Ping(Bytes::from_static(b"Hello"))]);

        // Unmasked Ping to a client: a masked Pong.
        let mut client = Side::client();
        client.inject(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        let frames = decode_frames(&client.flush());
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].fin, frames[0].opcode, frames[0].rsv), (true, 0xA, 0));
        assert!(frames[0].mask.is_some());
        assert_eq!(frames[0].payload, b"Hello");
    }

    #[test]
    fn section_5_7_length_form_examples() {
        // 256 bytes in the 16-bit form, 64 KiB in the 64-bit form.
        let mut client = Side::client();
        let mut wire = vec![0x82, 0x7E, 0x01, 0x00];
        wire.extend_from_slice(&[0xAB; 256]);
        wire.extend_from_slice(&[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
        wire.extend_from_slice(&[0xCD; 65536]);
        client.inject(&wire).unwrap();
        assert_eq!(client.events, [binary(&[0xAB; 256]), binary(&[0xCD; 65536])]);
    }

    #[test]
    fn encode_frame_agrees_with_hand_built_frames() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = pseudo_random(len, len as u64);
            for opcode in [OpCode::Continuation, OpCode::Text, OpCode::Binary] {
                for fin in [false, true] {
                    for rsv1 in [false, true] {
                        for mask in [None, Some(KEY), Some([0xFF, 0, 0x80, 1])] {
                            assert_eq!(
                                encoded(opcode, fin, rsv1, mask, &payload),
                                frame(b0(opcode, fin, rsv1), mask, &payload),
                                "{opcode:?} len {len} fin {fin} rsv1 {rsv1} mask {mask:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_length_form_boundary_through_a_pair() {
        let sizes = [0, 1, 125, 126, 127, 65535, 65536, 70000];
        let mut pair = Pair::new();
        for (i, &len) in sizes.iter().enumerate() {
            pair.client.conn.send_binary(pseudo_random(len, i as u64).into()).unwrap();
            pair.server.conn.send_text(pseudo_text(len, i as u64).into()).unwrap();
        }
        pair.drive();
        let to_server: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| binary(&pseudo_random(n, i as u64))).collect();
        let to_client: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| text(&pseudo_text(n, i as u64))).collect();
        assert_eq!(pair.server.events, to_server);
        assert_eq!(pair.client.events, to_client);
        // The header sizes on the wire: 2, 4 or 10 bytes plus the mask.
        let server_wire = decode_frames(&pair.server.wire);
        assert_eq!(server_wire.iter().map(|f| f.payload.len()).collect::<Vec<_>>(), sizes);
        let header_bytes = pair.server.wire.len() - sizes.iter().sum::<usize>();
        assert_eq!(header_bytes, 2 * 3 + 4 * 3 + 10 * 2);
        let client_header_bytes = pair.client.wire.len() - sizes.iter().sum::<usize>();
        assert_eq!(client_header_bytes, header_bytes + 4 * sizes.len());
    }

    #[test]
    fn header_and_payload_split_at_every_byte() {
        let payload = pseudo_text(70000, 3);
        let wire = client_frame(OpCode::Text, true, payload.as_bytes());
        let mut server = Side::server();
        server.inject_chunked(&wire, &[1]).unwrap();
        assert_eq!(server.events, [text(&payload)]);
        // Every split of a short frame in two reads.
        let wire = client_frame(OpCode::Binary, true, &[1, 2, 3, 4, 5, 6, 7]);
        for cut in 0..=wire.len() {
            let mut server = Side::server();
            server.inject(&wire[..cut]).unwrap();
            server.inject(&wire[cut..]).unwrap();
            assert_eq!(server.events, [binary(&[1, 2, 3, 4, 5, 6, 7])], "cut at {cut}");
        }
    }

    #[test]
    fn many_frames_in_one_read() {
        let mut wire = Vec::new();
        for i in 0..100u8 {
            wire.extend(client_frame(OpCode::Binary, true, &[i; 3]));
        }
        let mut server = Side::server();
        server.inject(&wire).unwrap();
        assert_eq!(server.events, (0..100u8).map(|i| binary(&[i; 3])).collect::<Vec<_>>());
        assert!(server.inbox.is_empty());
    }

    #[test]
    fn empty_messages() {
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Text, true, b"")).unwrap();
        server.inject(&client_frame(OpCode::Binary, true, b"")).unwrap();
        server.inject(&client_frame(OpCode::Text, false, b"")).unwrap();
        server.inject(&client_frame(OpCode::Continuation, true, b"")).unwrap();
        assert_eq!(server.events, [text(""), binary(b""), text("")]);
    }

    #[test]
    fn reserved_opcodes_fail_with_1002() {
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            let server = server_fails_with(&frame(0x80 | op, Some(KEY), b""), ProtocolError::ReservedOpcode(op));
            assert_eq!(server.wire[..4], [0x88, server.wire.len() as u8 - 2, 0x03, 0xEA]);
        }
    }

    #[test]
    fn reserved_bits_fail_with_1002() {
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            server_fails_with(&frame(0x81 | rsv, Some(KEY), b"x"), ProtocolError::ReservedBitSet);
            server_fails_with(&frame(0x89 | rsv, Some(KEY), b"x"), ProtocolError::ReservedBitSet);
        }
    }

    #[test]
    fn non_minimal_lengths_fail_with_1002() {
        // Five bytes in the 16-bit form.
        let mut wire = vec![0x82, 0x80 | 126, 0, 5];
        wire.extend_from_slice(&KEY);
        server_fails_with(&wire, ProtocolError::NonMinimalLength);
        // 200 bytes in the 64-bit form.
        let mut wire = vec![0x82, 0x80 | 127];
        wire.extend_from_slice(&200u64.to_be_bytes());
        server_fails_with(&wire, ProtocolError::NonMinimalLength);
    }

    #[test]
    fn failure_discards_everything_after() {
        let mut wire = frame(0x83, Some(KEY), b"");
        wire.extend(client_frame(OpCode::Text, true, b"after"));
        let mut server = server_fails_with(&wire, ProtocolError::ReservedOpcode(3));
        server.inject(&client_frame(OpCode::Ping, true, b"later")).unwrap();
        assert!(server.events.is_empty());
        assert!(server.flush().is_empty());
        assert_eq!(server.errors.len(), 1, "the error is returned once");
    }
}

mod section_5_3_masking {
    use super::*;

    #[test]
    fn server_rejects_unmasked_frames() {
        const REASON: &[u8] = b"frame masking does not match the sender's role";
        let mut expected = vec![0x88, 2 + REASON.len() as u8, 0x03, 0xEA];
        expected.extend_from_slice(REASON);
        for wire in [server_frame(OpCode::Text, true, b"hi"), server_frame(OpCode::Ping, true, b"")] {
            let server = server_fails_with(&wire, ProtocolError::BadMasking);
            assert_eq!(server.wire, expected);
        }
    }

    #[test]
    fn client_rejects_masked_frames() {
        let mut client = Side::client();
        assert_eq!(client.inject(&client_frame(OpCode::Text, true, b"hi")), Err(ProtocolError::BadMasking));
        let frames = decode_frames(&client.flush());
        assert_eq!(frames.len(), 1);
        assert!(frames[0].mask.is_some(), "a client masks its Close too");
        assert_eq!(frames[0].close(), Some((1002, ProtocolError::BadMasking.to_string())));
        assert!(client.events.is_empty());
        assert!(client.conn.should_close_transport(), "a failed client closes the transport itself");
    }

    #[test]
    fn accept_unmasked_frames_relaxes_the_rule() {
        let config = Config { accept_unmasked_frames: true, ..Config::default() };
        let mut server = Side::new(Role::Server, config.clone(), None);
        server.inject(&server_frame(OpCode::Text, true, b"plain")).unwrap();
        server.inject(&client_frame(OpCode::Text, true, b"masked")).unwrap();
        assert_eq!(server.events, [text("plain"), text("masked")]);
        let mut client = Side::new(Role::Client, config, None);
        client.inject(&client_frame(OpCode::Text, true, b"masked")).unwrap();
        assert_eq!(client.events, [text("masked")]);
    }

    #[test]
    fn client_masks_every_frame_and_server_never_does() {
        let mut pair = Pair::new();
        for i in 0..8 {
            pair.client.conn.send_text(pseudo_text(100, i).into()).unwrap();
            pair.server.conn.send_binary(pseudo_random(3000, i).into()).unwrap();
        }
        pair.client.conn.send_ping(b"p").unwrap();
        pair.client.conn.send_pong(b"q").unwrap();
        pair.client.conn.send_close(Some(CloseCode::NORMAL), "").unwrap();
        pair.drive();
        let client_frames = decode_frames(&pair.client.wire);
        assert_eq!(client_frames.len(), 11);
        let keys: Vec<[u8; 4]> = client_frames.iter().map(|f| f.mask.expect("client frames are masked")).collect();
        assert!(keys.iter().any(|k| *k != keys[0]), "masking keys are fresh per frame");
        let server_frames = decode_frames(&pair.server.wire);
        assert!(server_frames.iter().all(|f| f.mask.is_none()));
        assert_eq!(server_frames.len(), 8 + 1 + 1, "8 messages, the Pong, the Close echo");
        assert!(pair.client.conn.is_closed() && pair.server.conn.is_closed());
    }

    #[test]
    fn unmasking_is_right_at_every_offset() {
        let payload = pseudo_random(1000, 9);
        let wire = client_frame(OpCode::Binary, true, &payload);
        for sizes in [&[1][..], &[2], &[3], &[5, 1, 7], &[999]] {
            let mut server = Side::server();
            server.inject_chunked(&wire, sizes).unwrap();
            assert_eq!(server.events, [binary(&payload)], "chunks {sizes:?}");
        }
        // Fragments streamed at odd offsets.
        let mut wire = client_frame(OpCode::Binary, false, &payload[..333]);
        wire.extend(client_frame(OpCode::Continuation, true, &payload[333..]));
        let mut server = Side::server();
        server.inject_chunked(&wire, &[3, 5]).unwrap();
        assert_eq!(server.events, [binary(&payload)]);
    }
}

mod section_5_4_fragmentation {
    use super::*;

    #[test]
    fn text_fragments_split_inside_code_points() {
        let whole = "κόσμε€𝄞".as_bytes();
        for a in 0..=whole.len() {
            for b in a..=whole.len() {
                let mut wire = client_frame(OpCode::Text, false, &whole[..a]);
                wire.extend(client_frame(OpCode::Continuation, false, &whole[a..b]));
                wire.extend(client_frame(OpCode::Continuation, true, &whole[b..]));
                let mut server = Side::server();
                server.inject(&wire).unwrap();
                assert_eq!(server.events, [text("κόσμε€𝄞")], "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn binary_fragments_including_empty_ones() {
        let mut wire = client_frame(OpCode::Binary, false, b"");
        wire.extend(client_frame(OpCode::Continuation, false, b"ab"));
        wire.extend(client_frame(OpCode::Continuation, false, b""));
        wire.extend(client_frame(OpCode::Continuation, true, b"c"));
        let mut server = Side::server();
        server.inject_chunked(&wire, &[1]).unwrap();
        assert_eq!(server.events, [binary(b"abc")]);
    }

    #[test]
    fn continuation_without_a_message_fails_with_1002() {
        server_fails_with(&client_frame(OpCode::Continuation, true, b"x"), ProtocolError::UnexpectedContinuation);
        server_fails_with(&client_frame(OpCode::Continuation, false, b""), ProtocolError::UnexpectedContinuation);
        // After a complete message, too.
        let mut wire = client_frame(OpCode::Text, true, b"done");
        wire.extend(client_frame(OpCode::Continuation, true, b"more"));
        let server = server_fails_with(&wire, ProtocolError::UnexpectedContinuation);
        assert_eq!(server.events, [text("done")]);
    }

    #[test]
    fn new_message_inside_a_fragmented_one_fails_with_1002() {
        for second in [OpCode::Text, OpCode::Binary] {
            let mut wire = client_frame(OpCode::Text, false, b"one");
            wire.extend(client_frame(second, true, b"two"));
            let server = server_fails_with(&wire, ProtocolError::ExpectedContinuation);
            assert!(server.events.is_empty());
        }
    }

    #[test]
    fn max_send_frame_size_fragments_outgoing_messages() {
        let config = Config { max_send_frame_size: 10, ..Config::default() };
        let mut pair = Pair::with(config.clone(), config, None);
        let message = pseudo_text(35, 1);
        pair.server.conn.send_text(message.clone().into()).unwrap();
        pair.client.conn.send_binary(pseudo_random(10, 2).into()).unwrap();
        pair.drive();
        assert_eq!(pair.client.events, [text(&message)]);
        assert_eq!(pair.server.events, [binary(&pseudo_random(10, 2))]);
        let frames = decode_frames(&pair.server.wire);
        let shape: Vec<_> = frames.iter().map(|f| (f.opcode, f.fin, f.payload.len())).collect();
        assert_eq!(shape, [(0x1, false, 10), (0x0, false, 10), (0x0, false, 10), (0x0, true, 5)]);
        // A message of exactly the frame size is not fragmented.
        assert_eq!(decode_frames(&pair.client.wire).len(), 1);
    }

    #[test]
    fn send_fragment_streams_a_message() {
        let mut pair = Pair::new();
        pair.client.conn.send_fragment(DataKind::Text, "κό".as_bytes(), false).unwrap();
        // Nothing else may start until the message ends.
        assert_eq!(pair.client.conn.send_text("x".into()), Err(UsageError::FragmentOrder));
        assert_eq!(pair.client.conn.send_binary(Bytes::new()), Err(UsageError::FragmentOrder));
        // Control frames may be interleaved.
        pair.client.conn.send_ping(b"mid").unwrap();
        pair.client.conn.send_fragment(DataKind::Text, &"σμε".as_bytes()[..3], false).unwrap();
        pair.client.conn.send_fragment(DataKind::Text, &"σμε".as_bytes()[3..], true).unwrap();
        pair.client.conn.send_text("next".into()).unwrap();
        pair.drive();
        assert_eq!(pair.server.events, [Event::Ping(Bytes::from_static(b"mid")), text("κόσμε"), text("next")]);
        let opcodes: Vec<_> = decode_frames(&pair.client.wire).iter().map(|f| (f.opcode, f.fin)).collect();
        assert_eq!(opcodes, [(0x1, false), (0x9, true), (0x0, false), (0x0, true), (0x1, true)]);
    }
}

mod section_5_5_control_frames {
    use super::*;

    #[test]
    fn ping_is_answered_with_a_pong_of_the_same_payload() {
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Ping, true, b"hi")).unwrap();
        assert_eq!(server.flush(), [0x8A, 0x02, b'h', b'i']);
        assert_eq!(server.events, [Event::Ping(Bytes::from_static(b"hi"))]);
        // Empty and maximal payloads.
        server.inject(&client_frame(OpCode::Ping, true, b"")).unwrap();
        assert_eq!(server.flush(), [0x8A, 0x00]);
        let big = pseudo_random(125, 1);
        server.inject(&client_frame(OpCode::Ping, true, &big)).unwrap();
        assert_eq!(server.flush(), server_frame(OpCode::Pong, true, &big));
    }

    #[test]
    fn pings_split_byte_by_byte_are_answered_in_order() {
        let mut wire = Vec::new();
        for i in 0..10u8 {
            wire.extend(client_frame(OpCode::Ping, true, &[i; 5]));
        }
        let mut server = Side::server();
        server.inject_chunked(&wire, &[1]).unwrap();
        let expected: Vec<u8> = (0..10u8).flat_map(|i| server_frame(OpCode::Pong, true, &[i; 5])).collect();
        assert_eq!(server.flush(), expected);
    }

    #[test]
    fn pong_is_not_answered() {
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Pong, true, b"beat")).unwrap();
        assert_eq!(server.events, [Event::Pong(Bytes::from_static(b"beat"))]);
        assert!(server.flush().is_empty());
    }

    #[test]
    fn control_frames_over_125_bytes_fail_with_1002() {
        for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            let mut payload = close_payload(1000, "");
            payload.resize(126, b'a');
            server_fails_with(&client_frame(opcode, true, &payload), ProtocolError::BadControlFrame);
        }
    }

    #[test]
    fn fragmented_control_frames_fail_with_1002() {
        for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            server_fails_with(&client_frame(opcode, false, b""), ProtocolError::BadControlFrame);
        }
    }

    #[test]
    fn control_frames_interleaved_in_a_fragmented_message() {
        let mut wire = client_frame(OpCode::Text, false, b"Hel");
        wire.extend(client_frame(OpCode::Ping, true, b"x"));
        wire.extend(client_frame(OpCode::Continuation, false, b"l"));
        wire.extend(client_frame(OpCode::Pong, true, b"y"));
        wire.extend(client_frame(OpCode::Continuation, true, b"o"));
        for sizes in [&[usize::MAX][..], &[1], &[4]] {
            let mut server = Side::server();
            server.inject_chunked(&wire, sizes).unwrap();
            assert_eq!(
                server.events,
                [Event::Ping(Bytes::from_static(b"x")), Event::Pong(Bytes::from_static(b"y")), text("Hello")]
            );
            assert_eq!(server.flush(), [0x8A, 0x01, b'x']);
        }
    }

    #[test]
    fn close_inside_a_fragmented_message_ends_it() {
        let mut wire = client_frame(OpCode::Text, false, b"Hel");
        wire.extend(client_frame(OpCode::Close, true, &close_payload(1000, "")));
        wire.extend(client_frame(OpCode::Continuation, true, b"lo"));
        let mut server = Side::server();
        server.inject(&wire).unwrap();
        assert_eq!(server.events, [close(1000, "")]);
        assert_eq!(server.flush(), [0x88, 0x02, 0x03, 0xE8]);
    }

    #[test]
    fn ping_through_a_pair_returns_a_pong() {
        let mut pair = Pair::new().chunked(&[1]);
        pair.client.conn.send_ping(b"are you there").unwrap();
        pair.server.conn.send_ping(b"").unwrap();
        pair.drive();
        assert_eq!(pair.client.events, [Event::Ping(Bytes::new()), Event::Pong(Bytes::from_static(b"are you there"))]);
        assert_eq!(pair.server.events, [Event::Ping(Bytes::from_static(b"are you there")), Event::Pong(Bytes::new())]);
    }

    #[test]
    fn oversized_control_payloads_are_usage_errors() {
        let mut conn = Side::client().conn;
        assert_eq!(conn.send_ping(&[0; 126]), Err(UsageError::ControlPayloadTooLarge));
        assert_eq!(conn.send_pong(&[0; 126]), Err(UsageError::ControlPayloadTooLarge));
        assert_eq!(conn.send_close(Some(CloseCode::NORMAL), &"r".repeat(124)), Err(UsageError::ControlPayloadTooLarge));
        assert_eq!(conn.pending_output(), 0);
        conn.send_ping(&[0; 125]).unwrap();
        conn.send_close(Some(CloseCode::NORMAL), &"r".repeat(123)).unwrap();
    }
}

mod section_5_6_data {
    use super::*;

    #[test]
    fn text_and_binary_both_ways() {
        let mut pair = Pair::new().chunked(&[7, 1, 300]);
        pair.client.conn.send_text("from the client: κόσμε".into()).unwrap();
        pair.client.conn.send_binary(Bytes::from_static(&[0, 0xFF, 0xC0])).unwrap();
        pair.server.conn.send_message(DataKind::Binary, Bytes::from_static(b"\xFF")).unwrap();
        pair.server.conn.send_message(DataKind::Text, Bytes::from_static("€".as_bytes())).unwrap();
        pair.drive();
        assert_eq!(pair.server.events, [text("from the client: κόσμε"), binary(&[0, 0xFF, 0xC0])]);
        assert_eq!(pair.client.events, [binary(b"\xFF"), text("€")]);
    }

    #[test]
    fn invalid_utf8_fails_with_1007() {
        for bad in [&b"ab\xFFcd"[..], b"\xC0\xAF", b"\xED\xA0\x80", b"\xF4\x90\x80\x80", b"ok\xE2\x82"] {
            let server = server_fails_with(&client_frame(OpCode::Text, true, bad), ProtocolError::InvalidUtf8);
            assert_eq!(server.wire[2..4], [0x03, 0xEF], "{bad:?}");
            assert!(server.events.is_empty());
        }
        // The same bytes are fine in a binary message.
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Binary, true, b"ab\xFFcd")).unwrap();
        assert_eq!(server.events, [binary(b"ab\xFFcd")]);
    }

    #[test]
    fn invalid_utf8_fails_before_the_rest_of_the_frame_arrives() {
        let mut payload = b"a\xFFb".to_vec();
        payload.resize(100, b'z');
        let wire = client_frame(OpCode::Text, true, &payload);
        let mut server = Side::server();
        // Header (2 + 4 bytes) and the first three payload bytes only.
        assert_eq!(server.inject(&wire[..9]), Err(ProtocolError::InvalidUtf8));
        assert_eq!(server.flush(), server_fail_close(&ProtocolError::InvalidUtf8));
        // A sequence that no continuation can make right: a surrogate.
        let mut payload = b"abc\xED\xA0".to_vec();
        payload.resize(100, 0x80);
        let wire = client_frame(OpCode::Text, true, &payload);
        let mut server = Side::server();
        server.inject(&wire[..10]).unwrap();
        assert_eq!(server.inject(&wire[10..11]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn invalid_utf8_fails_before_the_next_fragment_arrives() {
        let mut server = Side::server();
        assert_eq!(server.inject(&client_frame(OpCode::Text, false, b"ok \xC1")), Err(ProtocolError::InvalidUtf8));
        assert_eq!(server.flush(), server_fail_close(&ProtocolError::InvalidUtf8));
        // Also in the middle of a streamed fragment.
        let mut payload = b"ok \xFE".to_vec();
        payload.resize(50, b'.');
        let mut wire = client_frame(OpCode::Text, false, b"first ");
        wire.extend(client_frame(OpCode::Continuation, true, &payload));
        let mut server = Side::server();
        assert_eq!(server.inject(&wire[..wire.len() - 40]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn code_point_unfinished_at_the_end_of_the_message_fails_at_fin() {
        let euro = "€".as_bytes();
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Text, false, &euro[..2])).unwrap();
        server.inject(&client_frame(OpCode::Continuation, true, &euro[2..])).unwrap();
        assert_eq!(server.events, [text("€")]);
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Text, false, &euro[..2])).unwrap();
        assert_eq!(server.inject(&client_frame(OpCode::Continuation, true, b"")), Err(ProtocolError::InvalidUtf8));
        assert!(server.events.is_empty());
    }

    #[test]
    fn text_through_every_small_chunking() {
        let message = pseudo_text(5000, 77);
        for size in 1..=9 {
            let mut pair = Pair::new().chunked(&[size]);
            pair.client.conn.send_text(message.clone().into()).unwrap();
            pair.server.conn.send_text(message.clone().into()).unwrap();
            pair.drive();
            assert_eq!(pair.server.events, [text(&message)], "chunk {size}");
            assert_eq!(pair.client.events, [text(&message)], "chunk {size}");
        }
    }
}

mod section_7_closing {
    use super::*;

    const INVALID_CODES: [u16; 12] = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
    const VALID_CODES: [u16; 16] =
        [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];

    #[test]
    fn client_initiated_closing_handshake() {
        let mut pair = Pair::new();
        pair.client.conn.send_close(Some(CloseCode::NORMAL), "bye").unwrap();
        assert!(pair.client.conn.close_sent());
        pair.client_to_server();
        assert_eq!(pair.server.events, [close(1000, "bye")]);
        assert!(pair.server.conn.close_received() && pair.server.conn.close_sent());
        assert!(pair.server.conn.is_closed());
        // The echo keeps the code.
        assert_eq!(pair.server.flush_upto(usize::MAX), [0x88, 0x02, 0x03, 0xE8]);
        assert!(pair.server.conn.should_close_transport(), "the server closes TCP first");
        pair.client.inject(&[0x88, 0x02, 0x03, 0xE8]).unwrap();
        assert_eq!(pair.client.events, [close(1000, "")]);
        assert!(pair.client.conn.is_closed());
        assert!(!pair.client.conn.should_close_transport(), "the client waits for the server to close TCP");
        // The server closing TCP is not abnormal.
        assert_eq!(pair.client.eof(), Ok(()));
        assert_eq!(pair.server.eof(), Ok(()));
        assert!(pair.client.errors.is_empty() && pair.server.errors.is_empty());
    }

    #[test]
    fn server_initiated_closing_handshake() {
        let mut pair = Pair::new();
        pair.server.conn.send_close(Some(CloseCode::GOING_AWAY), "restart").unwrap();
        assert_eq!(pair.server.conn.pending_output(), 11);
        pair.server_to_client();
        assert_eq!(pair.client.events, [close(1001, "restart")]);
        assert!(pair.client.conn.is_closed());
        assert!(!pair.client.conn.should_close_transport());
        assert!(!pair.server.conn.should_close_transport(), "the server waits for the echo");
        pair.client_to_server();
        let echo = decode_frames(&pair.client.wire);
        assert_eq!(echo.len(), 1);
        assert_eq!(echo[0].close(), Some((1001, String::new())));
        assert_eq!(pair.server.events, [close(1001, "")]);
        assert!(pair.server.conn.should_close_transport());
    }

    #[test]
    fn empty_close_is_echoed_empty() {
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Close, true, b"")).unwrap();
        assert_eq!(server.events, [Event::Close(None)]);
        assert_eq!(server.flush(), [0x88, 0x00]);
        assert!(server.conn.should_close_transport());
    }

    #[test]
    fn echo_carries_the_same_code() {
        for code in VALID_CODES {
            let mut server = Side::server();
            server.inject(&client_frame(OpCode::Close, true, &close_payload(code, "why"))).unwrap();
            assert_eq!(server.events, [close(code, "why")]);
            assert_eq!(server.flush(), server_close(code, ""), "code {code}");
        }
    }

    #[test]
    fn invalid_close_codes_fail_with_1002() {
        for code in INVALID_CODES {
            let wire = client_frame(OpCode::Close, true, &close_payload(code, ""));
            let server = server_fails_with(&wire, ProtocolError::InvalidCloseCode(code));
            assert_eq!(server.wire[2..4], [0x03, 0xEA]);
            assert!(server.events.is_empty(), "no Close event for code {code}");
            assert!(!server.conn.close_received());
        }
    }

    #[test]
    fn close_with_a_one_byte_payload_fails_with_1002() {
        server_fails_with(&client_frame(OpCode::Close, true, &[0x03]), ProtocolError::CloseFrameTooShort);
    }

    #[test]
    fn invalid_utf8_reason_fails_with_1007() {
        let mut payload = close_payload(1000, "");
        payload.extend_from_slice(b"bad \xFF reason");
        let server = server_fails_with(&client_frame(OpCode::Close, true, &payload), ProtocolError::InvalidUtf8);
        assert_eq!(server.wire[2..4], [0x03, 0xEF]);
        // A reason cut inside a code point is invalid too.
        let mut payload = close_payload(1000, "");
        payload.extend_from_slice(&"€".as_bytes()[..2]);
        server_fails_with(&client_frame(OpCode::Close, true, &payload), ProtocolError::InvalidUtf8);
        // A reason of 123 bytes of multi-byte text is fine.
        let reason = "€".repeat(41);
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Close, true, &close_payload(4000, &reason))).unwrap();
        assert_eq!(server.events, [close(4000, &reason)]);
    }

    #[test]
    fn data_after_close_is_ignored() {
        let mut wire = client_frame(OpCode::Close, true, &close_payload(1000, ""));
        wire.extend(client_frame(OpCode::Text, true, b"too late"));
        wire.extend(client_frame(OpCode::Ping, true, b"too late"));
        let mut server = Side::server();
        server.inject(&wire).unwrap();
        server.inject(&client_frame(OpCode::Binary, true, b"later still")).unwrap();
        server.inject(&[0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(server.events, [close(1000, "")]);
        assert_eq!(server.flush(), [0x88, 0x02, 0x03, 0xE8]);
        assert!(server.errors.is_empty());
    }

    #[test]
    fn data_still_arrives_after_our_close() {
        let mut pair = Pair::new();
        pair.server.conn.send_close(Some(CloseCode::NORMAL), "").unwrap();
        pair.client.conn.send_text("in flight".into()).unwrap();
        pair.client_to_server();
        pair.drive();
        assert_eq!(pair.server.events, [text("in flight"), close(1000, "")]);
        assert_eq!(pair.client.events, [close(1000, "")]);
        assert!(pair.server.conn.should_close_transport());
    }

    #[test]
    fn ping_after_our_close_is_not_answered() {
        let mut server = Side::server();
        server.conn.send_close(None, "").unwrap();
        assert_eq!(server.flush(), [0x88, 0x00]);
        server.inject(&client_frame(OpCode::Ping, true, b"?")).unwrap();
        assert_eq!(server.events, [Event::Ping(Bytes::from_static(b"?"))]);
        assert!(server.flush().is_empty());
    }

    #[test]
    fn simultaneous_close() {
        let mut pair = Pair::new();
        pair.client.conn.send_close(Some(CloseCode::NORMAL), "c").unwrap();
        pair.server.conn.send_close(Some(CloseCode::GOING_AWAY), "s").unwrap();
        pair.drive();
        assert_eq!(decode_frames(&pair.client.wire).len(), 1, "no second Close from the client");
        assert_eq!(pair.server.wire, server_close(1001, "s"), "no second Close from the server");
        assert_eq!(pair.server.events, [close(1000, "c")]);
        assert_eq!(pair.client.events, [close(1001, "s")]);
        assert!(pair.client.conn.is_closed() && pair.server.conn.is_closed());
        assert!(pair.server.conn.should_close_transport() && !pair.client.conn.should_close_transport());
    }

    #[test]
    fn sending_after_close_is_a_usage_error() {
        let check = |conn: &mut ferrows_proto::Connection| {
            let before = conn.pending_output();
            assert_eq!(conn.send_text("x".into()), Err(UsageError::AlreadyClosing));
            assert_eq!(conn.send_binary(Bytes::new()), Err(UsageError::AlreadyClosing));
            assert_eq!(conn.send_message(DataKind::Binary, Bytes::new()), Err(UsageError::AlreadyClosing));
            assert_eq!(conn.send_fragment(DataKind::Text, b"x", true), Err(UsageError::AlreadyClosing));
            assert_eq!(conn.send_ping(b""), Err(UsageError::AlreadyClosing));
            assert_eq!(conn.send_pong(b""), Err(UsageError::AlreadyClosing));
            assert_eq!(conn.send_close(Some(CloseCode::NORMAL), ""), Err(UsageError::AlreadyClosing));
            assert_eq!(conn.pending_output(), before, "nothing queued");
        };
        // After our own Close.
        let mut client = Side::client();
        client.conn.send_close(Some(CloseCode::NORMAL), "").unwrap();
        check(&mut client.conn);
        // After echoing the peer's Close.
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Close, true, b"")).unwrap();
        check(&mut server.conn);
        // After a protocol error.
        let mut server = Side::server();
        server.inject(&[0x83, 0x80, 0, 0, 0, 0]).unwrap_err();
        check(&mut server.conn);
    }

    #[test]
    fn send_close_checks_code_and_reason() {
        let mut conn = Side::server().conn;
        for code in INVALID_CODES {
            assert_eq!(conn.send_close(Some(CloseCode(code)), ""), Err(UsageError::InvalidCloseCode(code)));
        }
        assert_eq!(conn.send_close(None, "reason without code"), Err(UsageError::InvalidCloseCode(1005)));
        assert_eq!(conn.pending_output(), 0);
        assert!(!conn.close_sent());
    }

    #[test]
    fn error_after_our_close_sends_no_second_close() {
        let mut server = Side::server();
        server.conn.send_close(Some(CloseCode::NORMAL), "").unwrap();
        assert_eq!(server.flush(), [0x88, 0x02, 0x03, 0xE8]);
        assert_eq!(server.inject(&server_frame(OpCode::Text, true, b"unmasked")), Err(ProtocolError::BadMasking));
        assert!(server.flush().is_empty());
        assert!(server.conn.should_close_transport());
    }

    #[test]
    fn should_close_transport_per_role() {
        for role in [Role::Client, Role::Server] {
            let mut side = Side::new(role, Config::default(), None);
            assert!(!side.conn.should_close_transport(), "{role:?} open");
            side.conn.send_close(Some(CloseCode::NORMAL), "").unwrap();
            assert!(!side.conn.should_close_transport(), "{role:?} after our Close");
            let peer_close = match role {
                Role::Client => server_frame(OpCode::Close, true, b""),
                Role::Server => client_frame(OpCode::Close, true, b""),
            };
            side.inject(&peer_close).unwrap();
            assert!(side.conn.is_closed());
            assert_eq!(side.conn.should_close_transport(), role == Role::Server, "{role:?} closed");
        }
    }

    #[test]
    fn eof_without_close_is_an_abnormal_closure() {
        for role in [Role::Client, Role::Server] {
            let mut side = Side::new(role, Config::default(), None);
            let result = side.eof();
            assert_eq!(result, Err(ProtocolError::AbnormalClosure));
            assert_eq!(ProtocolError::AbnormalClosure.close_code(), CloseCode::ABNORMAL);
            assert_eq!(side.conn.pending_output(), 0, "1006 is never sent");
            assert!(side.conn.should_close_transport(), "{role:?}");
            assert_eq!(side.conn.error(), Some(&ProtocolError::AbnormalClosure));
            // Once only.
            assert_eq!(side.eof(), Ok(()));
        }
        // In the middle of a message, and after our own Close.
        let mut server = Side::server();
        server.inject(&client_frame(OpCode::Text, false, b"half")).unwrap();
        assert_eq!(server.eof(), Err(ProtocolError::AbnormalClosure));
        assert!(server.events.is_empty());
        let mut server = Side::server();
        server.conn.send_close(Some(CloseCode::NORMAL), "").unwrap();
        assert_eq!(server.eof(), Err(ProtocolError::AbnormalClosure));
    }
}

mod section_10_limits {
    use super::*;

    fn limited(max_frame_size: usize, max_message_size: usize) -> Side {
        Side::new(Role::Server, Config { max_frame_size, max_message_size, ..Config::default() }, None)
    }

    fn header(b0: u8, len: u64) -> Vec<u8> {
        let mut wire = vec![b0, 0x80 | 127];
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(&KEY);
        wire
    }

    #[test]
    fn a_2_pow_63_byte_announcement_fails_without_allocating() {
        let mut server = Side::server();
        let (result, stats) = measure(|| server.inject(&header(0x82, 1 << 63)));
        assert_eq!(result, Err(ProtocolError::NonMinimalLength));
        assert_eq!(server.flush(), server_fail_close(&ProtocolError::NonMinimalLength));
        assert!(stats.largest < 4096, "largest allocation {} bytes", stats.largest);

        // The largest legal announcement is over the frame limit: 1009.
        let mut server = Side::server();
        let (result, stats) = measure(|| server.inject(&header(0x82, u64::MAX >> 1)));
        let error = ProtocolError::FrameTooLarge { size: u64::MAX >> 1, limit: 16 << 20 };
        assert_eq!(result, Err(error.clone()));
        assert_eq!(server.flush(), server_fail_close(&error));
        assert_eq!(server.wire[2..4], [0x03, 0xF1]);
        assert!(stats.largest < 4096, "largest allocation {} bytes", stats.largest);

        // The same to a client, unmasked.
        let mut client = Side::client();
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        assert_eq!(client.inject(&wire), Err(error));
    }

    #[test]
    fn frame_over_max_frame_size_fails_with_1009_at_its_header() {
        let mut server = limited(1000, 1 << 20);
        let wire = client_frame(OpCode::Binary, true, &[7; 1001]);
        // Only the header has arrived.
        let error = ProtocolError::FrameTooLarge { size: 1001, limit: 1000 };
        assert_eq!(server.inject(&wire[..8]), Err(error.clone()));
        assert_eq!(server.flush(), server_fail_close(&error));
        // Exactly the limit is fine, for data and as a fragment.
        let mut server = limited(1000, 1 << 20);
        server.inject(&client_frame(OpCode::Binary, true, &[7; 1000])).unwrap();
        server.inject(&client_frame(OpCode::Text, false, &[b'a'; 1000])).unwrap();
        server.inject(&client_frame(OpCode::Continuation, true, &[b'b'; 1000])).unwrap();
        assert_eq!(server.events.len(), 2);
        assert!(server.errors.is_empty());
    }

    #[test]
    fn message_over_max_message_size_in_one_frame_fails_with_1009() {
        let mut server = limited(1 << 20, 1000);
        let wire = client_frame(OpCode::Text, true, &[b'a'; 1001]);
        let error = ProtocolError::MessageTooLarge { limit: 1000 };
        assert_eq!(server.inject(&wire[..8]), Err(error.clone()));
        assert_eq!(server.flush(), server_fail_close(&error));
    }

    #[test]
    fn fragmented_message_fails_at_the_header_of_the_fragment_that_crosses_the_limit() {
        let fragments = |last: usize| {
            let mut wire = client_frame(OpCode::Binary, false, &[1; 400]);
            wire.extend(client_frame(OpCode::Ping, true, &[0; 125]));
            wire.extend(client_frame(OpCode::Continuation, false, &[2; 400]));
            wire.extend(client_frame(OpCode::Continuation, true, &vec![3; last]));
            wire
        };
        // 400 + 400 + 200 = 1000: fine (control frames do not count).
        let mut server = limited(1 << 20, 1000);
        server.inject(&fragments(200)).unwrap();
        assert_eq!(server.events.len(), 2);
        // 400 + 400 + 201: refused once the third header is in, before its payload.
        let wire = fragments(201);
        let header_end = wire.len() - 201;
        let mut server = limited(1 << 20, 1000);
        server.inject(&wire[..header_end - 1]).unwrap();
        assert_eq!(
            server.inject(&wire[header_end - 1..header_end]),
            Err(ProtocolError::MessageTooLarge { limit: 1000 })
        );
        assert_eq!(server.events, [Event::Ping(Bytes::from_static(&[0; 125]))]);
        let frames = decode_frames(&server.flush());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].close(), Some((1009, ProtocolError::MessageTooLarge { limit: 1000 }.to_string())));
    }

    #[test]
    fn the_limit_is_per_message() {
        let mut server = limited(1 << 20, 1000);
        for i in 0..5u8 {
            server.inject(&client_frame(OpCode::Binary, false, &[i; 500])).unwrap();
            server.inject(&client_frame(OpCode::Continuation, true, &[i; 500])).unwrap();
        }
        assert_eq!(server.events.len(), 5);
    }

    #[test]
    fn too_big_message_through_a_pair() {
        let server_config = Config { max_message_size: 1000, ..Config::default() };
        let mut pair = Pair::with(Config::default(), server_config, None).chunked(&[100]);
        pair.client.conn.send_text("small".into()).unwrap();
        pair.client.conn.send_binary(vec![0; 2000].into()).unwrap();
        pair.drive();
        assert_eq!(pair.server.events, [text("small")]);
        assert_eq!(pair.server.errors, [ProtocolError::MessageTooLarge { limit: 1000 }]);
        assert_eq!(pair.client.events, [close(1009, &ProtocolError::MessageTooLarge { limit: 1000 }.to_string())]);
        assert!(pair.server.conn.should_close_transport());
        assert!(pair.client.conn.is_closed() && !pair.client.conn.should_close_transport());
    }
}

/// Idle halves that keep nothing between messages can be dropped and made
/// again from the agreed extensions (what a parked connection keeps).
#[test]
fn idle_halves_without_context_takeover_can_be_made_again() {
    use ferrows_proto::Connection;
    use ferrows_proto::config::Negotiated;
    use ferrows_proto::deflate::DeflateConfig;

    let agreed = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 12,
        client_max_window_bits: 10,
    };
    for role in [Role::Server, Role::Client] {
        let (rx, tx) = Connection::new(role, Config::default(), &Negotiated { deflate: Some(agreed) }).split();
        assert_eq!(Connection::renewal(&rx, &tx).map(|n| n.deflate), Some(Some(agreed)), "{role:?}");
        let (rx, tx) = Connection::new(role, Config::default(), &Negotiated::default()).split();
        assert_eq!(Connection::renewal(&rx, &tx).map(|n| n.deflate), Some(None), "{role:?}");
        // Either direction taking its context over: the halves are kept.
        for takeover in [
            DeflateConfig { server_no_context_takeover: false, ..agreed },
            DeflateConfig { client_no_context_takeover: false, ..agreed },
        ] {
            let (rx, tx) = Connection::new(role, Config::default(), &Negotiated { deflate: Some(takeover) }).split();
            assert!(Connection::renewal(&rx, &tx).is_none(), "{role:?} {takeover:?}");
        }
        // Output waiting: not idle.
        let (rx, mut tx) = Connection::new(role, Config::default(), &Negotiated { deflate: Some(agreed) }).split();
        tx.send_text("waiting".into()).unwrap();
        assert!(Connection::renewal(&rx, &tx).is_none(), "{role:?}");
    }
}
