//! permessage-deflate decompression of arbitrary bytes under a small output
//! limit, and compression round trips of arbitrary data.
//!
//! Input: a byte of settings (window bits, context takeover, level), a byte
//! for the output limit, a seed for split points, then the data: inflated
//! as it is, and compressed then inflated (which must give it back).

#![no_main]

use bytes::BytesMut;
use ferrows_fuzz::{Rng, small_limit, window_bits};
use ferrows_proto::ProtocolError;
use ferrows_proto::deflate::{Deflater, Inflater};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [settings, limit, seed, data @ ..] = data else { return };
    let bits = window_bits(*settings);
    let no_context_takeover = settings & 8 != 0;
    let level = u32::from(settings >> 4) % 10;
    let limit = small_limit(*limit);
    let mut rng = Rng::new(u64::from(*seed) << 32 | data.len() as u64);
    inflate_arbitrary(data, bits, no_context_takeover, limit, &mut rng);
    round_trip(data, bits.max(9), no_context_takeover, level, &mut rng);
});

/// Arbitrary input, in pieces, ending a message at random points.
fn inflate_arbitrary(data: &[u8], bits: u8, no_context_takeover: bool, limit: usize, rng: &mut Rng) {
    let mut inflater = Inflater::new(bits, no_context_takeover);
    let mut out = BytesMut::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(rng.upto(rest.len()));
        rest = tail;
        let last = rest.is_empty() || rng.next_u64().is_multiple_of(4);
        match inflater.inflate(piece, &mut out, limit, last) {
            Ok(()) => assert!(out.len() <= limit, "Ok with {} bytes over a limit of {limit}", out.len()),
            Err(ProtocolError::MessageTooLarge { limit: reported }) => {
                assert_eq!(reported, limit);
                assert!(out.len() <= limit + 1, "{} bytes held for a limit of {limit}", out.len());
                return;
            }
            Err(ProtocolError::InflateFailed) => return,
            Err(other) => panic!("unexpected inflate error {other:?}"),
        }
        assert!(out.capacity() <= 2 * limit + 8192, "capacity {} for a limit of {limit}", out.capacity());
        if last {
            out.clear();
        }
    }
}

/// The data as up to three messages, each compressed in pieces and inflated
/// with a limit of exactly its length.
fn round_trip(data: &[u8], bits: u8, no_context_takeover: bool, level: u32, rng: &mut Rng) {
    let mut deflater = Deflater::new(bits, no_context_takeover, level);
    let mut inflater = Inflater::new(bits, no_context_takeover);
    let mut rest = data;
    for i in 0..3 {
        let (message, tail) = rest.split_at(if i == 2 { rest.len() } else { rng.upto(rest.len()) });
        rest = tail;
        let mut wire = BytesMut::new();
        let mut pieces = message;
        loop {
            let (piece, tail) = pieces.split_at(rng.upto(pieces.len()));
            pieces = tail;
            deflater.compress(piece, &mut wire, pieces.is_empty());
            if pieces.is_empty() {
                break;
            }
        }
        assert!(!wire.is_empty(), "a compressed message has at least one byte");
        let mut out = BytesMut::new();
        let mut wire = &wire[..];
        loop {
            let (piece, tail) = wire.split_at(rng.upto(wire.len()));
            wire = tail;
            inflater.inflate(piece, &mut out, message.len(), wire.is_empty()).expect("our own output inflates");
            if wire.is_empty() {
                break;
            }
        }
        assert_eq!(&out[..], message);
    }
}
