//! The opening handshake against hostile and unusual input: oversized heads
//! and header floods (431), requests trickled one byte at a time, garbage
//! and incomplete requests (400), wrong versions (426), and complete
//! handshakes whose negotiated extensions drive a connection pair.

mod support;

use bytes::BytesMut;
use ferrows_proto::config::{HandshakeLimits, Role};
use ferrows_proto::deflate::DeflateOptions;
use ferrows_proto::handshake::{
    ClientHandshake, ClientOptions, ServerOptions, accept_response, parse_request, parse_response, reject_response,
    validate_request, write_request, write_response,
};
use ferrows_proto::{Config, Connection, Event, HandshakeError, OpCode};
use support::{Pair, client_frame};

const GOOD: &str = "GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\
    \r\n";

/// Parses and validates a request head the way a server does; the error
/// of whichever step fails.
fn server_check(bytes: &[u8]) -> Result<(), HandshakeError> {
    let (request, _) = parse_request(bytes, &HandshakeLimits::default())?.expect("a complete head");
    validate_request(&request).map(|_| ())
}

fn status(error: &HandshakeError) -> u16 {
    let response = reject_response(error);
    assert_eq!(response.status(), error.http_status());
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(response.headers()["content-length"], response.body().len().to_string());
    response.status().as_u16()
}

#[test]
fn section_1_3_example_request_is_accepted() {
    let (request, len) = parse_request(GOOD.as_bytes(), &HandshakeLimits::default()).unwrap().unwrap();
    assert_eq!(len, GOOD.len());
    let upgrade = validate_request(&request).unwrap();
    let options = ServerOptions { subprotocols: vec!["chat".into()], deflate: None };
    let outcome = accept_response(&upgrade, &options);
    let mut wire = Vec::new();
    write_response(&outcome.response, &mut wire);
    let text = String::from_utf8(wire).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{text}");
    assert!(text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{text}");
    assert!(text.contains("sec-websocket-protocol: chat\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"));
}

#[test]
fn a_1_mib_header_line_gets_431() {
    let limits = HandshakeLimits::default();
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1 << 20));
    head.extend_from_slice(b"\r\n\r\n");
    let error = parse_request(&head, &limits).unwrap_err();
    assert_eq!(error, HandshakeError::HeadTooLarge);
    assert_eq!(status(&error), 431);
    // Arriving in pieces it is refused as soon as the buffer reaches the
    // limit: nobody needs to hold more than that.
    let mut buffer = Vec::new();
    for piece in head.chunks(1000) {
        buffer.extend_from_slice(piece);
        match parse_request(&buffer, &limits) {
            Ok(None) => assert!(buffer.len() < limits.max_size),
            Err(error) => {
                assert_eq!(error, HandshakeError::HeadTooLarge);
                assert!(buffer.len() >= limits.max_size && buffer.len() < limits.max_size + 1000);
                break;
            }
            Ok(Some(_)) => panic!("a 1 MiB head was accepted"),
        }
    }
    // The same for a response, on the client side.
    let mut head = b"HTTP/1.1 101 Switching Protocols\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1 << 20));
    assert_eq!(parse_response(&head, &limits).unwrap_err(), HandshakeError::HeadTooLarge);
}

#[test]
fn ten_thousand_header_lines_get_431() {
    let mut head = String::from("GET / HTTP/1.1\r\n");
    for i in 0..10_000 {
        head.push_str(&format!("X-{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    let error = parse_request(head.as_bytes(), &HandshakeLimits::default()).unwrap_err();
    assert_eq!(status(&error), 431);
    // Even when the size limit would allow it, the line count does not.
    let roomy = HandshakeLimits { max_size: 1 << 20, ..HandshakeLimits::default() };
    let error = parse_request(head.as_bytes(), &roomy).unwrap_err();
    assert_eq!(error, HandshakeError::TooManyHeaders);
    assert_eq!(status(&error), 431);
    let error = parse_response(format!("HTTP/1.1 101 OK\r\n{}", &head[16..]).as_bytes(), &roomy).unwrap_err();
    assert_eq!(error, HandshakeError::TooManyHeaders);
}

#[test]
fn header_count_limit_is_exact() {
    let limits = HandshakeLimits { max_size: 1 << 20, max_headers: 10 };
    let head = |lines: usize| {
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..lines {
            head.push_str(&format!("X-{i}: 1\r\n"));
        }
        head + "\r\n"
    };
    assert!(parse_request(head(10).as_bytes(), &limits).unwrap().is_some());
    assert_eq!(parse_request(head(11).as_bytes(), &limits).unwrap_err(), HandshakeError::TooManyHeaders);
}

#[test]
fn a_request_trickled_one_byte_at_a_time_parses() {
    let limits = HandshakeLimits::default();
    // The client's first frame follows the head in the same stream.
    let mut stream = GOOD.as_bytes().to_vec();
    stream.extend(client_frame(OpCode::Text, true, b"first"));
    let mut buffer = Vec::new();
    let mut parsed = None;
    for &byte in &stream {
        buffer.push(byte);
        if let Some(done) = parse_request(&buffer, &limits).unwrap() {
            parsed = Some(done);
            break;
        }
        assert!(buffer.len() < GOOD.len(), "a complete head must parse");
    }
    let (request, len) = parsed.expect("the head completed");
    assert_eq!(len, GOOD.len());
    assert_eq!(buffer.len(), GOOD.len(), "parsed exactly when the blank line completed");
    assert_eq!(request.uri(), "/chat");
    assert_eq!(request.headers()["origin"], "http://example.com");
    let upgrade = validate_request(&request).unwrap();
    assert_eq!(upgrade.subprotocols, ["chat", "superchat"]);
    // The bytes after the head belong to the WebSocket.
    let outcome = accept_response(&upgrade, &ServerOptions::default());
    let mut server = Connection::new(Role::Server, Config::default(), &outcome.negotiated);
    let mut rest = BytesMut::from(&stream[len..]);
    server.receive(&mut rest).unwrap();
    assert_eq!(server.poll_event(), Some(Event::Text("first".into())));
}

#[test]
fn a_response_trickled_one_byte_at_a_time_parses() {
    let client = ClientHandshake::new(&"ws://example.com/".parse().unwrap(), ClientOptions::default()).unwrap();
    let mut request = Vec::new();
    write_request(client.request(), &mut request);
    let (request, _) = parse_request(&request, &HandshakeLimits::default()).unwrap().unwrap();
    let outcome = accept_response(&validate_request(&request).unwrap(), &ServerOptions::default());
    let mut response = Vec::new();
    write_response(&outcome.response, &mut response);
    let mut buffer = Vec::new();
    for (i, &byte) in response.iter().enumerate() {
        buffer.push(byte);
        match parse_response(&buffer, &HandshakeLimits::default()).unwrap() {
            None => assert!(i + 1 < response.len()),
            Some((parsed, len)) => {
                assert_eq!(len, response.len());
                client.validate(parsed).unwrap();
                return;
            }
        }
    }
    panic!("the response never completed");
}

#[test]
fn garbage_gets_400() {
    let garbage: [&[u8]; 9] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"\x00\x00\x00\x00\r\n\r\n",
        b"hello world\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost example.com\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET /\xFF HTTP/1.1\r\n\r\n",
    ];
    for bytes in garbage {
        let error = server_check(bytes).unwrap_err();
        assert_eq!(status(&error), 400, "{bytes:?}: {error}");
    }
    // HTTP/1.0 parses but cannot upgrade.
    let error = server_check(GOOD.replacen("HTTP/1.1", "HTTP/1.0", 1).as_bytes()).unwrap_err();
    assert_eq!(error, HandshakeError::WrongHttpVersion);
    assert_eq!(status(&error), 400);
}

#[test]
fn missing_or_invalid_headers_get_400() {
    for header in ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key"] {
        let start = GOOD.find(&format!("{header}:")).unwrap();
        let end = start + GOOD[start..].find("\r\n").unwrap() + 2;
        let request = format!("{}{}", &GOOD[..start], &GOOD[end..]);
        let error = server_check(request.as_bytes()).unwrap_err();
        assert_eq!(status(&error), 400, "without {header}: {error}");
    }
    assert_eq!(status(&server_check(b"GET / HTTP/1.1\r\n\r\n").unwrap_err()), 400);
    for (from, to) in [
        ("Upgrade: websocket", "Upgrade: h2c"),
        ("Connection: Upgrade", "Connection: keep-alive"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
        ("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!!!"),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n",
        ),
    ] {
        let error = server_check(GOOD.replacen(from, to, 1).as_bytes()).unwrap_err();
        assert_eq!(status(&error), 400, "{to}: {error}");
    }
    // A malformed extension offer is refused too.
    let bad = GOOD.replacen(
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions: permessage-deflate;\r\nSec-WebSocket-Version",
        1,
    );
    assert_eq!(status(&server_check(bad.as_bytes()).unwrap_err()), 400);
}

#[test]
fn version_8_gets_426_with_version_13() {
    for version in ["8", "12", "14", "", "13, 8"] {
        let request = GOOD.replacen("Sec-WebSocket-Version: 13", &format!("Sec-WebSocket-Version: {version}"), 1);
        let error = server_check(request.as_bytes()).unwrap_err();
        assert_eq!(error, HandshakeError::UnsupportedVersion, "version {version:?}");
        let response = reject_response(&error);
        assert_eq!(response.status(), 426);
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        let mut wire = Vec::new();
        write_response(&response.map(|_| ()), &mut wire);
        let text = String::from_utf8(wire).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{text}");
        assert!(text.contains("sec-websocket-version: 13\r\n"), "{text}");
    }
    // No version at all is answered the same way.
    let start = GOOD.find("Sec-WebSocket-Version").unwrap();
    let error = server_check(format!("{}\r\n", &GOOD[..start]).as_bytes()).unwrap_err();
    assert_eq!(status(&error), 426);
}

#[test]
fn other_methods_get_405_with_allow_get() {
    for method in ["POST", "PUT", "HEAD", "CONNECT"] {
        let error = server_check(GOOD.replacen("GET", method, 1).as_bytes()).unwrap_err();
        assert_eq!(error, HandshakeError::MethodNotGet);
        let response = reject_response(&error);
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET");
    }
}

#[test]
fn negotiated_deflate_agrees_on_both_sides_and_drives_a_pair() {
    let offers = [
        DeflateOptions::default(),
        DeflateOptions { client_no_context_takeover: true, client_max_window_bits: 9, ..DeflateOptions::default() },
        DeflateOptions { server_no_context_takeover: true, server_max_window_bits: 10, ..DeflateOptions::default() },
    ];
    let policies = [
        DeflateOptions::default(),
        DeflateOptions { server_no_context_takeover: true, server_max_window_bits: 12, ..DeflateOptions::default() },
        DeflateOptions { client_max_window_bits: 11, client_no_context_takeover: true, ..DeflateOptions::default() },
    ];
    for offer in offers {
        for policy in policies {
            let options = ClientOptions { deflate: Some(offer), ..ClientOptions::default() };
            let client = ClientHandshake::new(&"ws://example.com/".parse().unwrap(), options).unwrap();
            let mut wire = Vec::new();
            write_request(client.request(), &mut wire);
            let (request, _) = parse_request(&wire, &HandshakeLimits::default()).unwrap().unwrap();
            let server_options = ServerOptions { deflate: Some(policy), ..ServerOptions::default() };
            let accepted = accept_response(&validate_request(&request).unwrap(), &server_options);
            let mut wire = Vec::new();
            write_response(&accepted.response, &mut wire);
            let (response, _) = parse_response(&wire, &HandshakeLimits::default()).unwrap().unwrap();
            let outcome = client.validate(response).unwrap();
            let (client_deflate, server_deflate) = (outcome.negotiated.deflate, accepted.negotiated.deflate);
            assert_eq!(client_deflate, server_deflate, "offer {offer:?} policy {policy:?}");
            let deflate = server_deflate.expect("permessage-deflate accepted");
            // What both sides agreed must actually work on the wire.
            let mut pair = Pair::deflate(deflate).chunked(&[5]);
            let message = "negotiated ".repeat(50);
            for _ in 0..3 {
                pair.client.conn.send_text(message.clone().into()).unwrap();
                pair.server.conn.send_text(message.clone().into()).unwrap();
            }
            pair.drive();
            let expected = vec![Event::Text(message.clone().into()); 3];
            assert_eq!(pair.server.events, expected);
            assert_eq!(pair.client.events, expected);
        }
    }
}
