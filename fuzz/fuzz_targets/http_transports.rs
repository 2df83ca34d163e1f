//! The parsers of the HTTP transports: positions as text (`since`, an
//! event's `id`, `Last-Event-ID`), the event stream reader, and the fast
//! reading of a push's stream position. Any input: no panic, positions that
//! read back as themselves, an event reader whose memory stays within its
//! line bound, and a push position read from its first bytes that is the
//! one a full decode gives.

#![no_main]

use ferrows_hub::protocol::stream::{ChannelPositions, EventReader, PushMove, write_event};
use ferrows_hub::protocol::{Encoding, Push};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    // Positions: what parses writes back to the same positions.
    if let Ok(positions) = ChannelPositions::parse(&text, 64) {
        assert!(positions.len() <= 64);
        let again = ChannelPositions::parse(&positions.to_string(), 64).expect("written positions read back");
        assert_eq!(again, positions);
        // As an event's id, they survive the stream's framing.
        let mut out = bytes::BytesMut::new();
        write_event(&mut out, None, Some(&positions), b"{}");
        let mut reader = EventReader::new(1 << 16);
        let mut events = Vec::new();
        reader.feed(&out, &mut events).expect("a written event reads back");
        assert_eq!(events.len(), 1);
        assert_eq!(reader.last_id(), Some(positions.to_string().as_str()));
    }
    // The event reader, fed in pieces cut where the first byte says.
    let mut reader = EventReader::new(256);
    let mut events = Vec::new();
    let cut = usize::from(pick).min(rest.len());
    if reader.feed(&rest[..cut], &mut events).is_ok() && reader.feed(&rest[cut..], &mut events).is_ok() {
        for event in &events {
            // Every character read comes from one byte at least (an
            // invalid one becomes U+FFFD).
            assert!(event.data.chars().count() <= rest.len());
        }
    }
    // A push's position from its first bytes, or decoded whole.
    let read = PushMove::of(rest);
    if let PushMove::Pub { channel, offset } = &read {
        if let Ok(Push { channel: full, event: ferrows_hub::protocol::Event::Pub(publication) }) =
            Encoding::Json.decode::<Push>(rest)
        {
            assert_eq!((channel.as_ref(), *offset), (full.as_str(), publication.offset));
        }
    }
});
