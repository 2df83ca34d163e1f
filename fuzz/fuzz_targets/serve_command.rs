//! The `serve` protocol parser: any client message is classified without
//! a panic, and what the server builds from it is valid JSON.

#![no_main]

use ferrows_hub::protocol::{Command, Method, ParseError, error_reply, event_push, publication_push};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Command::parse(text) {
        Ok(command) => {
            assert!(command.id > 0);
            if let Method::Publish(publish) = command.method {
                // Publication data is copied raw into pushes: it must stay
                // valid JSON there.
                let push = publication_push(&publish.channel, 1, publish.data.get().as_bytes(), Some(b"{}"));
                serde_json::from_slice::<serde_json::Value>(&push).expect("pushes are JSON");
            }
        }
        Err(ParseError::Reply { id, code, message }) => {
            let reply = error_reply(id, code, &message);
            serde_json::from_str::<serde_json::Value>(&reply).expect("error replies are JSON");
        }
        Err(ParseError::NotJson | ParseError::NoId) => {}
    }
    let join = event_push(text, "join", b"{}");
    serde_json::from_slice::<serde_json::Value>(&join).expect("channel names are escaped");
});
