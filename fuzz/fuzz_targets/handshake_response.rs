//! Arbitrary bytes as the server's answer to a client handshake that offers
//! subprotocols and (usually) permessage-deflate: parse, then validate.
//!
//! Input: one byte of flags, one of window bits, then the response. The key
//! is random, so one flag overwrites `Sec-WebSocket-Accept` with the right
//! value to let the fuzzer reach the subprotocol and extension checks.

#![no_main]

use ferrows_fuzz::window_bits;
use ferrows_proto::config::HandshakeLimits;
use ferrows_proto::deflate::DeflateOptions;
use ferrows_proto::handshake::{ClientHandshake, ClientOptions, accept_key, parse_response};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, bits, wire @ ..] = data else { return };
    let deflate = (flags & 1 != 0).then(|| DeflateOptions {
        server_no_context_takeover: flags & 4 != 0,
        client_no_context_takeover: flags & 8 != 0,
        server_max_window_bits: window_bits(bits >> 4),
        client_max_window_bits: window_bits(*bits),
    });
    let subprotocols = vec!["chat".to_owned(), "superchat".to_owned()];
    let options = ClientOptions { subprotocols: subprotocols.clone(), deflate, ..Default::default() };
    let uri = "ws://example.com:8080/chat?room=1".parse().expect("valid URI");
    let handshake = ClientHandshake::new(&uri, options).expect("valid options");
    let limits = HandshakeLimits::default();
    let mut response = match parse_response(wire, &limits) {
        Ok(Some((response, len))) => {
            assert!(len <= wire.len() && len <= limits.max_size);
            response
        }
        Ok(None) => {
            assert!(wire.len() < limits.max_size);
            return;
        }
        Err(_) => return,
    };
    if flags & 2 != 0 {
        let key = handshake.request().headers()["sec-websocket-key"].as_bytes();
        let accept = HeaderValue::from_str(&accept_key(key)).expect("base64 is a valid header value");
        response.headers_mut().insert("sec-websocket-accept", accept);
    }
    let Ok(outcome) = handshake.validate(response) else { return };
    assert_eq!(outcome.response.status().as_u16(), 101);
    if let Some(protocol) = &outcome.subprotocol {
        assert!(subprotocols.contains(protocol), "unoffered subprotocol {protocol:?} accepted");
    }
    match (outcome.negotiated.deflate, deflate) {
        (None, _) => {}
        (Some(_), None) => panic!("unoffered permessage-deflate accepted"),
        (Some(agreed), Some(ours)) => {
            assert!((8..=15).contains(&agreed.server_max_window_bits));
            assert!(agreed.server_max_window_bits <= ours.server_max_window_bits);
            assert!((8..=15).contains(&agreed.client_max_window_bits));
            assert!(agreed.client_max_window_bits <= ours.client_max_window_bits);
            assert!(agreed.server_no_context_takeover >= ours.server_no_context_takeover);
            assert!(agreed.client_no_context_takeover >= ours.client_no_context_takeover);
        }
    }
});
