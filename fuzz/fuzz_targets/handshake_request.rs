//! Arbitrary bytes as a client's opening handshake, through the whole
//! server side: parse, validate, accept (with permessage-deflate) or reject,
//! and write the answer, which must parse back to the same response.

#![no_main]

use ferrows_proto::HandshakeError;
use ferrows_proto::config::HandshakeLimits;
use ferrows_proto::deflate::DeflateOptions;
use ferrows_proto::handshake::{
    ServerOptions, accept_key, accept_response, is_valid_key, parse_request, parse_response, reject_response,
    validate_request, write_response,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HandshakeLimits::default();
    let request = match parse_request(data, &limits) {
        Ok(None) => {
            assert!(data.len() < limits.max_size, "an incomplete head past the limit must be refused");
            return;
        }
        Ok(Some((request, len))) => {
            assert!(len <= data.len() && len <= limits.max_size);
            request
        }
        Err(error) => return reject(&error),
    };
    let upgrade = match validate_request(&request) {
        Ok(upgrade) => upgrade,
        Err(error) => return reject(&error),
    };
    assert!(is_valid_key(upgrade.key.as_bytes()));
    let strict = DeflateOptions {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: 9,
        client_max_window_bits: 8,
    };
    for deflate in [None, Some(DeflateOptions::default()), Some(strict)] {
        let options = ServerOptions { subprotocols: vec!["chat".into(), "superchat".into()], deflate };
        let outcome = accept_response(&upgrade, &options);
        let response = &outcome.response;
        assert_eq!(response.status().as_u16(), 101);
        assert_eq!(response.headers()["sec-websocket-accept"], accept_key(upgrade.key.as_bytes()).as_str());
        if let Some(protocol) = &outcome.subprotocol {
            assert!(upgrade.subprotocols.contains(protocol) && options.subprotocols.contains(protocol));
        }
        match (outcome.negotiated.deflate, deflate) {
            (None, _) => assert!(response.headers().get("sec-websocket-extensions").is_none()),
            (Some(_), None) => panic!("deflate agreed without being enabled"),
            (Some(agreed), Some(ours)) => {
                assert!(agreed.server_max_window_bits <= ours.server_max_window_bits);
                assert!((8..=15).contains(&agreed.server_max_window_bits));
                assert!((8..=15).contains(&agreed.client_max_window_bits));
                assert!(agreed.server_no_context_takeover >= ours.server_no_context_takeover);
                assert!(agreed.client_no_context_takeover >= ours.client_no_context_takeover);
            }
        }
        let mut wire = Vec::new();
        write_response(response, &mut wire);
        let (parsed, len) = parse_response(&wire, &HandshakeLimits { max_size: usize::MAX, ..limits })
            .expect("our own response parses")
            .expect("our own response is complete");
        assert_eq!(len, wire.len());
        assert_eq!(parsed.status(), response.status());
        assert_eq!(parsed.headers(), response.headers());
    }
});

fn reject(error: &HandshakeError) {
    let response = reject_response(error);
    assert_eq!(response.status(), error.http_status());
    assert!(response.status().is_client_error());
    assert_eq!(response.headers()["content-length"], response.body().len().to_string().as_str());
    let mut wire = Vec::new();
    write_response(&response.map(|_| ()), &mut wire);
    assert!(wire.ends_with(b"\r\n\r\n"));
}
