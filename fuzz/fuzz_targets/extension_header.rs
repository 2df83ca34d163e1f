//! Arbitrary text as a `Sec-WebSocket-Extensions` value: it must format and
//! parse back to the same list, and the permessage-deflate negotiation of
//! both sides must agree with itself whatever the list holds.
//!
//! Input: one byte of server options, one of client options, then the
//! header value (UTF-8).

#![no_main]

use ferrows_fuzz::window_bits;
use ferrows_proto::deflate::{DeflateConfig, DeflateOptions, accept_offers, offer, validate_response};
use ferrows_proto::handshake::{format_extensions, parse_extensions};
use libfuzzer_sys::fuzz_target;

fn options(byte: u8) -> DeflateOptions {
    DeflateOptions {
        server_no_context_takeover: byte & 1 != 0,
        client_no_context_takeover: byte & 2 != 0,
        server_max_window_bits: window_bits(byte >> 2),
        client_max_window_bits: window_bits(byte >> 5),
    }
}

fn check_config(config: &DeflateConfig) {
    assert!((8..=15).contains(&config.server_max_window_bits), "{config:?}");
    assert!((8..=15).contains(&config.client_max_window_bits), "{config:?}");
}

fuzz_target!(|data: &[u8]| {
    let [server, client, text @ ..] = data else { return };
    let (server, client) = (options(*server), options(*client));

    // Our own offer is always accepted, and both sides then agree.
    let ours = offer(&client);
    let (config, answer) = accept_offers(std::slice::from_ref(&ours), &server).expect("our offer is acceptable");
    assert_eq!(validate_response(&[answer], &client), Ok(Some(config)));

    let Ok(text) = std::str::from_utf8(text) else { return };
    let Ok(list) = parse_extensions(text) else { return };
    let formatted = format_extensions(&list);
    let reparsed = parse_extensions(&formatted).expect("formatted extensions parse");
    assert_eq!(reparsed, list, "{text:?} formatted as {formatted:?}");
    assert_eq!(format_extensions(&reparsed), formatted);

    // The server side: whatever it accepts, its answer is one a client that
    // limits nothing accepts with the same parameters.
    if let Some((config, answer)) = accept_offers(&list, &server) {
        check_config(&config);
        assert!(config.server_max_window_bits <= server.server_max_window_bits);
        assert!(config.server_no_context_takeover >= server.server_no_context_takeover);
        assert!(config.client_no_context_takeover >= server.client_no_context_takeover);
        assert!(list.iter().any(|e| e.name.eq_ignore_ascii_case(&answer.name)));
        let answer_text = format_extensions(std::slice::from_ref(&answer));
        let answer_list = parse_extensions(&answer_text).expect("our answer parses");
        assert_eq!(answer_list, [answer]);
        assert_eq!(validate_response(&answer_list, &DeflateOptions::default()), Ok(Some(config)));
    }

    // The client side: a response it accepts never grants more than it
    // allowed.
    if let Ok(Some(config)) = validate_response(&list, &client) {
        check_config(&config);
        assert!(config.server_max_window_bits <= client.server_max_window_bits);
        assert!(config.client_max_window_bits <= client.client_max_window_bits);
        assert!(config.server_no_context_takeover >= client.server_no_context_takeover);
        assert!(config.client_no_context_takeover >= client.client_no_context_takeover);
        assert_eq!(list.len(), 1);
    }
});
