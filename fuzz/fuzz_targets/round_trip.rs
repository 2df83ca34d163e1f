//! A client and a server connection, with whatever permessage-deflate they
//! negotiate, exchange arbitrary messages, fragments and control frames in
//! both directions over a transport that delivers arbitrary amounts. Every
//! message must arrive intact and in order, and the closing handshake must
//! complete.

#![no_main]

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use ferrows_fuzz::window_bits;
use ferrows_proto::config::{Config, Negotiated};
use ferrows_proto::deflate::{DeflateOptions, accept_offers, offer, validate_response};
use ferrows_proto::{CloseCode, CloseFrame, Connection, DataKind, Event, Role, UsageError, Utf8Bytes};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Text { from_client: bool, text: String },
    Binary { from_client: bool, data: Vec<u8> },
    Fragment { from_client: bool, binary: bool, data: Vec<u8>, fin: bool },
    Ping { from_client: bool, data: Vec<u8> },
    Pong { from_client: bool, data: Vec<u8> },
    Deliver { to_client: bool, max: u16 },
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Client offer (`None`: no permessage-deflate) and server policy.
    client_deflate: Option<u8>,
    server_deflate: Option<u8>,
    client_max_send_frame: u16,
    server_max_send_frame: u16,
    deflate_threshold: u8,
    deflate_level: u8,
    ops: Vec<Op>,
    /// Who starts the closing handshake at the end.
    client_closes: bool,
}

fn deflate_options(byte: u8) -> DeflateOptions {
    DeflateOptions {
        server_no_context_takeover: byte & 1 != 0,
        client_no_context_takeover: byte & 2 != 0,
        server_max_window_bits: window_bits(byte >> 2),
        client_max_window_bits: window_bits(byte >> 5),
    }
}

/// One endpoint, the bytes on their way to it, and the events it must see.
struct Side {
    conn: Connection,
    inbox: BytesMut,
    expected: VecDeque<Event>,
    /// The fragmented message it is sending: kind and payload so far.
    fragments: Option<(DataKind, Vec<u8>)>,
}

impl Side {
    fn new(role: Role, max_send_frame: u16, input: &Input, negotiated: &Negotiated) -> Self {
        let config = Config {
            max_send_frame_size: if max_send_frame == 0 { usize::MAX } else { max_send_frame.into() },
            deflate_threshold: input.deflate_threshold.into(),
            deflate_level: u32::from(input.deflate_level % 10),
            ..Config::default()
        };
        let conn = Connection::new(role, config, negotiated);
        Self { conn, inbox: BytesMut::new(), expected: VecDeque::new(), fragments: None }
    }
}

/// Moves up to `max` bytes of `from`'s output to `to` and checks what `to`
/// makes of them. Pings `to` answers become Pongs `from` must see.
fn deliver(from: &mut Side, to: &mut Side, max: usize) -> usize {
    let mut moved = 0;
    while moved < max {
        let Some(chunk) = from.conn.output_chunks().next() else { break };
        let n = chunk.len().min(max - moved);
        to.inbox.extend_from_slice(&chunk[..n]);
        from.conn.advance_output(n);
        moved += n;
    }
    to.conn.receive(&mut to.inbox).expect("our own frames are valid");
    while let Some(event) = to.conn.poll_event() {
        let expected = to.expected.pop_front();
        assert_eq!(Some(&event), expected.as_ref(), "{:?} received", to.conn.role());
        if let Event::Ping(payload) = event {
            from.expected.push_back(Event::Pong(payload));
        }
    }
    moved
}

fn flush(client: &mut Side, server: &mut Side) {
    loop {
        let moved = deliver(client, server, usize::MAX) + deliver(server, client, usize::MAX);
        if moved == 0 {
            break;
        }
    }
}

fn send(side: &mut Side, peer: &mut Side, op: Op) {
    let busy = side.fragments.is_some();
    let ping = matches!(op, Op::Ping { .. });
    match op {
        Op::Text { text, .. } => {
            let result = side.conn.send_text(text.as_str().into());
            if busy {
                assert_eq!(result, Err(UsageError::FragmentOrder));
            } else {
                result.expect("text can be sent");
                peer.expected.push_back(Event::Text(Utf8Bytes::from(text)));
            }
        }
        Op::Binary { data, .. } => {
            let result = side.conn.send_binary(data.clone().into());
            if busy {
                assert_eq!(result, Err(UsageError::FragmentOrder));
            } else {
                result.expect("binary can be sent");
                peer.expected.push_back(Event::Binary(data.into()));
            }
        }
        Op::Fragment { binary, data, fin, .. } => {
            // The first fragment sets the kind. Each fragment of a text
            // message is a whole string here, so the message stays valid
            // UTF-8 at every split.
            let kind = if binary { DataKind::Binary } else { DataKind::Text };
            let (kind, mut payload) = side.fragments.take().unwrap_or((kind, Vec::new()));
            let data = match kind {
                DataKind::Binary => data,
                DataKind::Text => String::from_utf8_lossy(&data).into_owned().into_bytes(),
            };
            side.conn.send_fragment(kind, &data, fin).expect("fragments can be sent");
            payload.extend_from_slice(&data);
            if fin {
                let payload = Bytes::from(payload);
                peer.expected.push_back(match kind {
                    DataKind::Binary => Event::Binary(payload),
                    DataKind::Text => Event::Text(Utf8Bytes::try_from_bytes(payload).expect("whole strings")),
                });
            } else {
                side.fragments = Some((kind, payload));
            }
        }
        Op::Ping { data, .. } | Op::Pong { data, .. } => {
            let result = if ping { side.conn.send_ping(&data) } else { side.conn.send_pong(&data) };
            if data.len() > 125 {
                assert_eq!(result, Err(UsageError::ControlPayloadTooLarge));
            } else {
                result.expect("control frames can be sent");
                let payload = Bytes::from(data);
                peer.expected.push_back(if ping { Event::Ping(payload) } else { Event::Pong(payload) });
            }
        }
        Op::Deliver { .. } => unreachable!("not a send"),
    }
}

fuzz_target!(|input: Input| {
    let negotiated = match (input.client_deflate, input.server_deflate) {
        (Some(client), Some(server)) => {
            let (client, server) = (deflate_options(client), deflate_options(server));
            let (server_config, answer) = accept_offers(&[offer(&client)], &server).expect("our offer is acceptable");
            let client_config = validate_response(&[answer], &client).expect("our answer is valid");
            assert_eq!(client_config, Some(server_config));
            Negotiated { deflate: Some(server_config) }
        }
        _ => Negotiated::default(),
    };
    let mut client = Side::new(Role::Client, input.client_max_send_frame, &input, &negotiated);
    let mut server = Side::new(Role::Server, input.server_max_send_frame, &input, &negotiated);
    let client_closes = input.client_closes;
    for op in input.ops {
        match op {
            Op::Deliver { to_client: true, max } => _ = deliver(&mut server, &mut client, max.into()),
            Op::Deliver { to_client: false, max } => _ = deliver(&mut client, &mut server, max.into()),
            Op::Text { from_client, .. }
            | Op::Binary { from_client, .. }
            | Op::Fragment { from_client, .. }
            | Op::Ping { from_client, .. }
            | Op::Pong { from_client, .. } => {
                if from_client {
                    send(&mut client, &mut server, op);
                } else {
                    send(&mut server, &mut client, op);
                }
            }
        }
    }
    flush(&mut client, &mut server);
    assert!(client.expected.is_empty() && server.expected.is_empty());

    // The closing handshake: the closer's reason arrives, the code is echoed.
    let (closer, other) = if client_closes { (&mut client, &mut server) } else { (&mut server, &mut client) };
    closer.conn.send_close(Some(CloseCode::NORMAL), "bye").expect("first Close");
    other.expected.push_back(Event::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: "bye".into() })));
    closer.expected.push_back(Event::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: String::new() })));
    flush(&mut client, &mut server);
    assert!(client.expected.is_empty() && server.expected.is_empty());
    for side in [&client, &server] {
        assert!(side.conn.is_closed() && side.conn.error().is_none());
    }
    assert!(server.conn.should_close_transport());
    assert!(!client.conn.should_close_transport(), "the client waits for the server to close");
});
