//! Fan-out: one `PreparedMessage` sent to many connections with different
//! negotiations; compressed once per window size, shared bytes otherwise.

mod support;

use ferrows_proto::deflate::DeflateConfig;
use ferrows_proto::{DataKind, Event, PreparedMessage};
use support::{Pair, decode_frames, pseudo_text};

fn deflate(server_no_context_takeover: bool, server_max_window_bits: u8) -> DeflateConfig {
    DeflateConfig { server_no_context_takeover, server_max_window_bits, ..DeflateConfig::default() }
}

#[test]
fn one_message_many_receivers() {
    let text = pseudo_text(5000, 7);
    let prepared = PreparedMessage::text(text.as_str().into());
    let mut pairs: Vec<(Pair, bool)> = Vec::new();
    for _ in 0..3 {
        pairs.push((Pair::new(), false));
        pairs.push((Pair::deflate(deflate(true, 15)), true));
        pairs.push((Pair::deflate(deflate(true, 10)), true));
        pairs.push((Pair::deflate(deflate(false, 15)), false));
    }
    for (pair, compressed) in &mut pairs {
        pair.server.conn.send_prepared(&prepared).unwrap();
        let wire = pair.server.flush();
        let frames = decode_frames(&wire);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].rsv == 0b100, *compressed, "compressed only without context takeover");
        pair.client.inject(&wire).unwrap();
        assert_eq!(pair.client.take_events(), vec![Event::Text(text.as_str().into())]);
    }
    // Twelve receivers, two window sizes: two compressions.
    assert_eq!(prepared.compressions(), 2);
}

#[test]
fn prepared_frames_are_shared_not_copied() {
    let prepared = PreparedMessage::new(DataKind::Binary, vec![3u8; 100_000].into(), 1);
    let mut pair = Pair::new();
    pair.server.conn.send_prepared(&prepared).unwrap();
    let chunk = pair.server.conn.take_output().unwrap();
    assert_eq!(chunk.as_ptr(), prepared.plain_frame().as_ptr(), "the queued frame is the prepared bytes");
}

#[test]
fn clients_mask_prepared_messages() {
    let prepared = PreparedMessage::binary(vec![9u8; 300].into());
    let mut pair = Pair::new();
    pair.client.conn.send_prepared(&prepared).unwrap();
    pair.drive();
    assert_eq!(pair.server.take_events(), vec![Event::Binary(vec![9u8; 300].into())]);
}
