//! The `serve` protocol's command decoders (JSON and MessagePack, the
//! first byte picks): any client message is classified without a panic;
//! a command read back from its encoding is the same command; and what the
//! server builds from it (error replies, the pushes of its data, in both
//! encodings) encodes and decodes again.

#![no_main]

use bytes::Bytes;
use ferrows_hub::protocol::{Empty, Encoding, Event, Info, Method, ParseError, Pub, Push, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&pick, message)) = input.split_first() else { return };
    let encoding = Encoding::ALL[usize::from(pick) % Encoding::ALL.len()];
    match encoding.decode_command(message) {
        Ok(command) => {
            assert!(command.id > 0);
            let again = encoding.decode_command(&encoding.encode(&command)).expect("a command reads back");
            assert_eq!(again, command);
            if let Method::Publish(publish) = command.method {
                let info = Some(Info(Bytes::from_static(br#"{"client":"c"}"#)));
                let event = Event::Pub(Pub { offset: 1, data: publish.data, info });
                let push = Push { channel: publish.channel, event };
                for encoding in Encoding::ALL {
                    let back: Push = encoding.decode(&encoding.encode(&push)).expect("pushes read back");
                    assert_eq!(back, push);
                }
            }
        }
        Err(ParseError::Reply { id, error }) => {
            for encoding in Encoding::ALL {
                let reply = encoding.encode(&Reply::<Empty>::error(id, &error));
                encoding.decode::<Reply<Empty>>(&reply).expect("error replies read back");
            }
        }
        Err(ParseError::NotAMap | ParseError::NoId) => {}
    }
    // Any text as a channel name is escaped in every encoding.
    let channel = String::from_utf8_lossy(message).into_owned();
    let join = Push { channel, event: Event::Join(Info(Bytes::from_static(b"{}"))) };
    for encoding in Encoding::ALL {
        assert_eq!(encoding.decode::<Push>(&encoding.encode(&join)).expect("joins read back"), join);
    }
});
