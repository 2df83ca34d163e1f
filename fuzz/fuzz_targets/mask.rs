//! Masking in pieces at arbitrary split points equals masking byte by byte.

#![no_main]

use arbitrary::Arbitrary;
use ferrows_proto::frame::apply_mask;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    key: [u8; 4],
    /// Where in the payload the data starts.
    offset: u32,
    /// Lengths of the pieces, taken in turn (the last piece gets the rest).
    splits: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Input { key, offset, splits, data } = input;
    let offset = offset as usize;
    let expected: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[(offset + i) % 4]).collect();

    let mut pieces = data.clone();
    let mut done = 0;
    for split in splits {
        let n = (split as usize).min(pieces.len() - done);
        apply_mask(&mut pieces[done..done + n], key, offset + done);
        done += n;
    }
    apply_mask(&mut pieces[done..], key, offset + done);
    assert_eq!(pieces, expected);

    // Masking is its own inverse.
    apply_mask(&mut pieces, key, offset);
    assert_eq!(pieces, data);
});
