//! Property tests: frame headers round-trip, arbitrary message sequences
//! survive any chunking of the byte stream in both directions (with and
//! without permessage-deflate, with forced fragmentation), and arbitrary
//! input never panics a connection (server or client) nor makes it report
//! more events than it got frames.

mod support;

use bytes::Bytes;
use ferrows_proto::config::Config;
use ferrows_proto::deflate::DeflateConfig;
use ferrows_proto::frame::{FrameHeader, MAX_HEADER_LEN};
use ferrows_proto::{CloseCode, CloseFrame, Connection, DataKind, Event, OpCode, ProtocolError, Role};
use proptest::prelude::*;
use proptest::sample::Index;
use support::{KEY, Pair, Side, decode_frames, frame, pseudo_random, pseudo_text};

const OPCODES: [OpCode; 6] =
    [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong];

fn header() -> impl Strategy<Value = FrameHeader> {
    let len = prop_oneof![
        0u64..=125,
        126u64..=0xFFFF,
        0x1_0000u64..(1 << 63),
        prop::sample::select(vec![0, 125, 126, 127, 0xFFFF, 0x1_0000, (1 << 63) - 1]),
    ];
    (any::<[bool; 4]>(), prop::sample::select(OPCODES.to_vec()), any::<Option<[u8; 4]>>(), len).prop_map(
        |([fin, rsv1, rsv2, rsv3], opcode, mask, len)| {
            // Control frames are never fragmented nor over 125 bytes.
            let (fin, payload_len) = if opcode.is_control() { (true, len % 126) } else { (fin, len) };
            FrameHeader { fin, rsv1, rsv2, rsv3, opcode, mask, payload_len }
        },
    )
}

/// One message of a test sequence; contents are derived from `seed` so
/// large messages cost proptest nothing to generate or shrink.
#[derive(Debug, Clone)]
enum Message {
    Text {
        len: usize,
        seed: u64,
    },
    Binary {
        len: usize,
        seed: u64,
        compressible: bool,
    },
    Ping {
        len: usize,
        seed: u64,
    },
    /// Sent piece by piece with `send_fragment`, cut at these points.
    Streamed {
        text: bool,
        len: usize,
        seed: u64,
        cuts: Vec<Index>,
    },
}

fn message() -> impl Strategy<Value = Message> {
    let len = prop_oneof![3 => 0usize..200, 1 => 0usize..70_000];
    prop_oneof![
        3 => (len.clone(), any::<u64>()).prop_map(|(len, seed)| Message::Text { len, seed }),
        3 => (len.clone(), any::<u64>(), any::<bool>())
            .prop_map(|(len, seed, compressible)| Message::Binary { len, seed, compressible }),
        1 => (0usize..=125, any::<u64>()).prop_map(|(len, seed)| Message::Ping { len, seed }),
        1 => (any::<bool>(), len, any::<u64>(), prop::collection::vec(any::<Index>(), 0..4))
            .prop_map(|(text, len, seed, cuts)| Message::Streamed { text, len, seed, cuts }),
    ]
}

fn binary_payload(len: usize, seed: u64, compressible: bool) -> Vec<u8> {
    if compressible { (0..len).map(|i| (i as u64 % (seed % 13 + 1)) as u8).collect() } else { pseudo_random(len, seed) }
}

/// Sends `message` on `conn`; returns the event the peer must see.
fn send(conn: &mut Connection, message: &Message) -> Event {
    match message {
        Message::Text { len, seed } => {
            let text = pseudo_text(*len, *seed);
            conn.send_text(text.clone().into()).unwrap();
            Event::Text(text.into())
        }
        Message::Binary { len, seed, compressible } => {
            let data = binary_payload(*len, *seed, *compressible);
            conn.send_binary(data.clone().into()).unwrap();
            Event::Binary(data.into())
        }
        Message::Ping { len, seed } => {
            let payload = pseudo_random(*len, *seed);
            conn.send_ping(&payload).unwrap();
            Event::Ping(payload.into())
        }
        Message::Streamed { text, len, seed, cuts } => {
            let (kind, data) = match text {
                true => (DataKind::Text, pseudo_text(*len, *seed).into_bytes()),
                false => (DataKind::Binary, binary_payload(*len, *seed, true)),
            };
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut start = 0;
            for cut in cuts {
                conn.send_fragment(kind, &data[start..cut], false).unwrap();
                start = cut;
            }
            conn.send_fragment(kind, &data[start..], true).unwrap();
            match kind {
                DataKind::Text => Event::Text(String::from_utf8(data).unwrap().into()),
                DataKind::Binary => Event::Binary(data.into()),
            }
        }
    }
}

fn deflate_config() -> impl Strategy<Value = Option<DeflateConfig>> {
    prop::option::of((any::<bool>(), any::<bool>(), 8u8..=15, 8u8..=15).prop_map(|(snct, cnct, sbits, cbits)| {
        DeflateConfig {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }))
}

fn send_frame_size() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(usize::MAX), 1 => 1usize..16, 1 => 16usize..5000]
}

fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => Just(vec![1]),
        2 => prop::collection::vec(1usize..3000, 1..6),
    ]
}

fn pongs(events: &[Event]) -> Vec<Bytes> {
    events.iter().filter_map(|e| if let Event::Pong(p) = e { Some(p.clone()) } else { None }).collect()
}

fn pings(expected: &[Event]) -> Vec<Bytes> {
    expected.iter().filter_map(|e| if let Event::Ping(p) = e { Some(p.clone()) } else { None }).collect()
}

/// Counts the complete frames at the start of `bytes` (whatever their
/// validity): the most events a receiver may report for them.
fn complete_frames(mut bytes: &[u8]) -> usize {
    let mut count = 0;
    loop {
        let [_, b1, ..] = *bytes else { return count };
        let (len, mut pos) = match b1 & 0x7F {
            126 if bytes.len() >= 4 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => (u64::from_be_bytes(bytes[2..10].try_into().unwrap()), 10),
            126 | 127 => return count,
            n => (u64::from(n), 2),
        };
        if b1 & 0x80 != 0 {
            pos += 4;
        }
        let end = (pos as u64).saturating_add(len);
        if (bytes.len() as u64) < end {
            return count;
        }
        count += 1;
        bytes = &bytes[end as usize..];
    }
}

/// A piece of hostile input: raw bytes, or a frame with any first byte.
#[derive(Debug, Clone)]
enum Piece {
    Raw(Vec<u8>),
    Frame { b0: u8, masked: bool, payload: Vec<u8> },
}

fn piece() -> impl Strategy<Value = Piece> {
    let b0 = prop_oneof![
        1 => any::<u8>(),
        3 => prop::sample::select(vec![0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0xC2, 0x41, 0xC0]),
    ];
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "[a-zé€ ]{0,40}".prop_map(String::into_bytes),
        (1000u16..5000, "[a-z]{0,10}").prop_map(|(code, reason)| {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            payload
        }),
    ];
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Piece::Raw),
        6 => (b0, prop::bool::weighted(0.9), payload).prop_map(|(b0, masked, payload)| Piece::Frame { b0, masked, payload }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frame_header_round_trips(header in header()) {
        let encoded = header.encode();
        let bytes = encoded.as_ref();
        let parsed = FrameHeader::parse(bytes).unwrap().unwrap();
        prop_assert_eq!(parsed.header, header);
        prop_assert_eq!(parsed.len, bytes.len());
        for cut in 0..bytes.len() {
            prop_assert_eq!(FrameHeader::parse(&bytes[..cut]).unwrap(), None);
        }
        // The crate's encoder agrees with a frame built by hand.
        if header.payload_len < 200 && !header.rsv2 && !header.rsv3 {
            let payload = vec![0x5A; header.payload_len as usize];
            let b0 = (u8::from(header.fin) << 7) | (u8::from(header.rsv1) << 6) | header.opcode.as_u8();
            let by_hand = frame(b0, header.mask, &payload);
            prop_assert_eq!(&by_hand[..bytes.len()], bytes);
        }
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics_and_accepts_only_canonical_headers(
        bytes in prop::collection::vec(any::<u8>(), 0..20)
    ) {
        if let Ok(Some(parsed)) = FrameHeader::parse(&bytes) {
            prop_assert!(parsed.len <= MAX_HEADER_LEN);
            let encoded = parsed.header.encode();
            prop_assert_eq!(encoded.as_ref(), &bytes[..parsed.len]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn message_sequences_survive_any_chunking(
        deflate in deflate_config(),
        client_frame_size in send_frame_size(),
        server_frame_size in send_frame_size(),
        chunks in chunking(),
        to_server in prop::collection::vec(message(), 0..6),
        to_client in prop::collection::vec(message(), 0..6),
    ) {
        let client_config = Config { max_send_frame_size: client_frame_size, ..Config::default() };
        let server_config = Config { max_send_frame_size: server_frame_size, ..Config::default() };
        let mut pair = Pair::with(client_config, server_config, deflate).chunked(&chunks);
        let mut for_server: Vec<Event> = to_server.iter().map(|m| send(&mut pair.client.conn, m)).collect();
        let mut for_client: Vec<Event> = to_client.iter().map(|m| send(&mut pair.server.conn, m)).collect();
        pair.drive();
        pair.client.conn.send_close(Some(CloseCode::NORMAL), "done").unwrap();
        pair.drive();

        prop_assert!(pair.client.errors.is_empty(), "client errors {:?}", pair.client.errors);
        prop_assert!(pair.server.errors.is_empty(), "server errors {:?}", pair.server.errors);
        // Every Ping came back as a Pong, in order.
        prop_assert_eq!(pongs(&pair.client.events), pings(&for_server));
        prop_assert_eq!(pongs(&pair.server.events), pings(&for_client));
        // Everything else arrived identical and in order, then the Close.
        for_server.push(Event::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: "done".into() })));
        for_client.push(Event::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: String::new() })));
        prop_assert_eq!(pair.server.events_without_pongs(), for_server);
        prop_assert_eq!(pair.client.events_without_pongs(), for_client);
        prop_assert!(pair.client.conn.is_closed() && pair.server.conn.is_closed());
        prop_assert!(pair.server.conn.should_close_transport());
        // Data frames respect the sender's frame size (`send_fragment`
        // sends each piece as one frame, whatever its size).
        let checks = [(&pair.client.wire, client_frame_size, &to_server), (&pair.server.wire, server_frame_size, &to_client)];
        for (wire, max, sent) in checks {
            if sent.iter().any(|m| matches!(m, Message::Streamed { .. })) {
                continue;
            }
            for f in decode_frames(wire) {
                prop_assert!(f.opcode >= 8 || f.payload.len() <= max.max(1));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics_nor_invents_events(
        client in any::<bool>(),
        pieces in prop::collection::vec(piece(), 0..24),
        chunks in chunking(),
        deflate in deflate_config(),
        small_limits in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        for piece in &pieces {
            match piece {
                Piece::Raw(bytes) => wire.extend_from_slice(bytes),
                // Mostly masked for a server, mostly unmasked for a client.
                Piece::Frame { b0, masked, payload } => {
                    wire.extend(frame(*b0, (*masked != client).then_some(KEY), payload));
                }
            }
        }
        let config = if small_limits {
            Config { max_frame_size: 100, max_message_size: 200, ..Config::default() }
        } else {
            Config::default()
        };
        let role = if client { Role::Client } else { Role::Server };
        let mut side = Side::new(role, config, deflate);
        let _ = side.inject_chunked(&wire, &chunks);
        let eof = side.eof();

        prop_assert!(side.events.len() <= complete_frames(&wire), "{} events", side.events.len());
        // One error at most, reported once.
        prop_assert!(side.errors.len() <= 1);
        prop_assert!(side.conn.is_closed());
        let output = decode_frames(&side.flush());
        prop_assert!(output.iter().all(|f| f.mask.is_some() == client && f.fin && f.rsv == 0));
        // The answers: a Pong per Ping, in order, then at most one Close, last.
        let answered: Vec<&[u8]> = output.iter().filter(|f| f.opcode == 0xA).map(|f| &f.payload[..]).collect();
        let pinged: Vec<&[u8]> =
            side.events.iter().filter_map(|e| if let Event::Ping(p) = e { Some(&p[..]) } else { None }).collect();
        prop_assert_eq!(answered, pinged);
        let closes: Vec<usize> = (0..output.len()).filter(|&i| output[i].opcode == 0x8).collect();
        prop_assert!(output.iter().all(|f| f.opcode == 0x8 || f.opcode == 0xA));
        prop_assert!(closes.len() <= 1 && closes.iter().all(|&i| i == output.len() - 1));
        match side.conn.error() {
            Some(ProtocolError::AbnormalClosure) => {
                prop_assert_eq!(eof, Err(ProtocolError::AbnormalClosure));
                prop_assert!(closes.is_empty());
            }
            Some(error) => {
                prop_assert_eq!(side.errors.first(), Some(error));
                let (code, _) = output[closes[0]].close().unwrap();
                prop_assert_eq!(code, error.close_code().0);
            }
            None => {
                prop_assert!(side.conn.close_received());
                prop_assert!(matches!(side.events.last(), Some(Event::Close(_))));
            }
        }
    }
}
