//! Every command, reply and push through both encodings, and the JSON
//! wire as `docs/protocol.md` shows it.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::stream::ChannelPositions;
use super::*;

fn commands() -> Vec<Command> {
    let json = |text: &str| Data(Bytes::copy_from_slice(text.as_bytes()));
    let methods = vec![
        Method::Connect(Connect { token: Some("t".into()), name: Some("al".into()), ..Connect::default() }),
        Method::Connect(Connect { data: Some(json(r#"{"device":"x"}"#)), ..Connect::default() }),
        Method::Connect(Connect {
            subs: [("news".to_owned(), Position { offset: 3, epoch: "e".into() })].into_iter().collect(),
            ..Connect::default()
        }),
        Method::Connect(Connect::default()),
        Method::Subscribe(Subscribe { channel: "a".into(), since: None, recover: false }),
        Method::Subscribe(Subscribe {
            channel: "chat:a".into(),
            since: Some(Position { offset: 3, epoch: "e".into() }),
            recover: true,
        }),
        Method::Unsubscribe(ChannelArg { channel: "a".into() }),
        Method::Publish(Publish { channel: "a".into(), data: json(r#"{"x":[1,2]}"#), idempotency_key: None }),
        Method::Publish(Publish { channel: "a".into(), data: json("1"), idempotency_key: Some("k-1".into()) }),
        Method::Presence(ChannelArg { channel: "a".into() }),
        Method::History(History { channel: "a".into(), limit: Some(5) }),
        Method::History(History { channel: "a".into(), limit: None }),
        Method::Rpc(Rpc { method: "chat.ban".into(), data: json(r#"{"user":"bob"}"#) }),
        Method::Rpc(Rpc { method: "m".into(), data: json("null") }),
        Method::Refresh(Refresh { token: "t2".into() }),
        Method::Ping,
    ];
    methods.into_iter().zip(1..).map(|(method, id)| Command { id, method }).collect()
}

fn info() -> Info {
    Info(Bytes::from_static(br#"{"client":"c1","user":"u","name":"\u00e9l"}"#))
}

fn publication(offset: u64, data: &'static [u8]) -> Pub {
    Pub { offset, data: Data(Bytes::from_static(data)), info: Some(info()) }
}

fn pushes() -> Vec<Push> {
    let push = |event| Push { channel: "chat:\"x\"".into(), event };
    vec![
        push(Event::Pub(publication(7, br#"{"t":"hi"}"#))),
        push(Event::Pub(Pub { offset: 8, data: Data(Bytes::from_static(b"[1]")), info: None })),
        push(Event::Join(info())),
        push(Event::Leave(info())),
        push(Event::Reset { position: Position { offset: 4, epoch: "e\"1".into() } }),
        push(Event::Subscribe(Positioned {
            position: Position { offset: 9, epoch: "e".into() },
            recovered: Some(true),
            publications: Some(vec![publication(9, b"[9]")]),
        })),
        push(Event::Unsubscribe),
    ]
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(encoding: Encoding, value: &T) {
    let bytes = encoding.encode(value);
    let back: T = encoding.decode(&bytes).unwrap_or_else(|e| panic!("{encoding:?} {value:?}: {e}"));
    assert_eq!(&back, value, "{encoding:?}");
}

#[test]
fn every_command_round_trips_in_both_encodings() {
    for encoding in Encoding::ALL {
        for command in commands() {
            let bytes = encoding.encode(&command);
            assert_eq!(encoding.decode_command(&bytes), Ok(command.clone()), "{encoding:?}");
        }
    }
}

#[test]
fn every_reply_round_trips_in_both_encodings() {
    let position = Position { offset: 44, epoch: "18f3a9c2b0".into() };
    for encoding in Encoding::ALL {
        let connected = Connected { client: "c".into(), user: "u".into(), ping: 25, expires: None, data: None };
        round_trip(encoding, &Reply::ok(1, connected.clone()));
        for data in [&b"{\"motd\":\"hi\"}"[..], b"\0\xff"] {
            let data = Some(Data(Bytes::copy_from_slice(data)));
            round_trip(encoding, &Reply::ok(1, Connected { data, expires: Some(60), ..connected.clone() }));
        }
        round_trip(encoding, &Reply::ok(10, Refreshed { expires: Some(3600) }));
        round_trip(encoding, &Reply::ok(10, Refreshed { expires: None }));
        round_trip(encoding, &Reply::ok(9, RpcResult { data: Data(Bytes::from_static(b"[1]")) }));
        round_trip(encoding, &Reply::ok(9, RpcResult { data: Data(Bytes::from_static(b"\xfe")) }));
        round_trip(
            encoding,
            &Reply::ok(2, Positioned { position: position.clone(), recovered: None, publications: None }),
        );
        let recovered = Positioned {
            position: position.clone(),
            recovered: Some(true),
            publications: Some(vec![publication(42, br#"{"text":"hi"}"#), publication(43, b"\"yo\"")]),
        };
        round_trip(encoding, &Reply::ok(3, recovered));
        round_trip(encoding, &Reply::ok(4, position.clone()));
        round_trip(encoding, &Reply::ok(5, Empty {}));
        let clients = [("c1".to_owned(), info())].into_iter().collect();
        round_trip(encoding, &Reply::ok(6, Presence { clients }));
        for error in Error::examples() {
            round_trip(encoding, &Reply::<Empty>::error(7, &error));
            round_trip(encoding, &Failure::from(&error));
        }
        round_trip(encoding, &Answer { result: position.clone() });
    }
}

#[test]
fn every_push_round_trips_in_both_encodings() {
    for encoding in Encoding::ALL {
        for push in pushes() {
            round_trip(encoding, &push);
            let encoded = Encoded::new(push.clone());
            let message = encoded.message(encoding);
            assert_eq!(message.kind() == ferrows_proto::DataKind::Binary, encoding.is_binary());
            assert!(Arc::ptr_eq(message, encoded.message(encoding)), "encoded once");
        }
    }
}

#[test]
fn the_json_wire_is_the_documented_one() {
    let text = |value: &dyn erased::Encode| String::from_utf8(value.json().to_vec()).unwrap();
    let pushes = pushes();
    assert_eq!(
        text(&pushes[0]),
        r#"{"push":{"channel":"chat:\"x\"","pub":{"offset":7,"data":{"t":"hi"},"info":{"client":"c1","user":"u","name":"\u00e9l"}}}}"#
    );
    assert_eq!(
        text(&pushes[2]),
        r#"{"push":{"channel":"chat:\"x\"","join":{"client":"c1","user":"u","name":"\u00e9l"}}}"#
    );
    assert_eq!(
        text(&pushes[4]),
        r#"{"push":{"channel":"chat:\"x\"","reset":{"position":{"offset":4,"epoch":"e\"1"}}}}"#
    );
    assert_eq!(text(&Reply::ok(8, Empty {})), r#"{"id":8,"result":{}}"#);
    assert_eq!(
        text(&Reply::<Empty>::error(3, &Error::PermissionDenied("no".into()))),
        r#"{"id":3,"error":{"code":103,"message":"no"}}"#
    );
    assert_eq!(
        text(&Reply::<Empty>::error(3, &Error::Unavailable("broker down".into()))),
        r#"{"id":3,"error":{"code":100,"message":"broker down","temporary":true}}"#
    );
    let command = Encoding::Json
        .decode_command(br#"{"subscribe":{"channel":"a","recover":true,"since":{"offset":3,"epoch":"e"}},"id":2}"#)
        .unwrap();
    assert_eq!(command.id, 2, "the id may come after the method");
}

/// Encoding values of different types through one list.
mod erased {
    pub(super) trait Encode {
        fn json(&self) -> bytes::Bytes;
    }

    impl<T: serde::Serialize> Encode for T {
        fn json(&self) -> bytes::Bytes {
            super::Encoding::Json.encode(self)
        }
    }
}

#[test]
fn data_crosses_encodings() {
    // A MessagePack client publishes bytes that are not JSON: a JSON
    // subscriber gets them in base64, never a broken message.
    let binary = Pub { offset: 1, data: Data(Bytes::from_static(&[0xff, 0x00, b'{'])), info: None };
    let json: serde_json::Value = serde_json::from_slice(&Encoding::Json.encode(&binary)).unwrap();
    assert_eq!(json, serde_json::json!({"offset": 1, "data_base64": "/wB7"}));
    round_trip(Encoding::Json, &binary);
    // JSON text with whitespace around it would lose it as a value: it
    // travels as bytes, unchanged.
    let spaced = Pub { offset: 1, data: Data(Bytes::from_static(b"1\n")), info: None };
    let json: serde_json::Value = serde_json::from_slice(&Encoding::Json.encode(&spaced)).unwrap();
    assert_eq!(json["data_base64"], "MQo=");
    round_trip(Encoding::Json, &spaced);
    // Bytes that are JSON text reach JSON subscribers as that value.
    let text = Pub { offset: 2, data: Data(Bytes::from_static(b"{\"a\": 1}")), info: None };
    let json: serde_json::Value = serde_json::from_slice(&Encoding::Json.encode(&text)).unwrap();
    assert_eq!(json["data"]["a"], 1);
    // What a JSON client publishes reaches MessagePack subscribers as the
    // bytes of its JSON text, and `info` as a map.
    let command = Encoding::Json.decode_command(br#"{"id":1,"publish":{"channel":"a","data":{"x": 1}}}"#).unwrap();
    let Method::Publish(publish) = command.method else { panic!() };
    let pushed = Pub { offset: 3, data: publish.data, info: Some(info()) };
    let value = rmpv::decode::read_value(&mut &Encoding::Msgpack.encode(&pushed)[..]).unwrap();
    let field = |name: &str| value.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some(name)).unwrap().1.clone();
    assert_eq!(field("data"), rmpv::Value::Binary(br#"{"x": 1}"#.to_vec()));
    assert!(field("info").is_map());
}

#[test]
fn bad_input_is_classified_in_both_encodings() {
    let msgpack = |value: serde_json::Value| Encoding::Msgpack.encode(&value);
    for encoding in Encoding::ALL {
        let encode = |value: serde_json::Value| match encoding {
            Encoding::Json => Bytes::from(value.to_string()),
            Encoding::Msgpack => msgpack(value),
        };
        let decode = |value: serde_json::Value| encoding.decode_command(&encode(value));
        let code = |value: serde_json::Value| match decode(value) {
            Err(ParseError::Reply { id: 1, error }) => error.code(),
            other => panic!("{encoding:?} {other:?}"),
        };
        use serde_json::json;
        assert_eq!(encoding.decode_command(b"\xc1 not a message"), Err(ParseError::NotAMap));
        assert_eq!(decode(json!([1, 2])), Err(ParseError::NotAMap));
        assert_eq!(decode(json!({"ping": {}})), Err(ParseError::NoId));
        assert_eq!(decode(json!({"id": 0, "ping": {}})), Err(ParseError::NoId));
        assert_eq!(decode(json!({"id": "1", "ping": {}})), Err(ParseError::NoId));
        assert_eq!(code(json!({"id": 1, "explode": {}})), 104);
        assert_eq!(code(json!({"id": 1})), 107);
        assert_eq!(code(json!({"id": 1, "ping": {}, "connect": {}})), 107);
        assert_eq!(code(json!({"id": 1, "subscribe": {"chan": "a"}})), 107);
        assert_eq!(code(json!({"id": 1, "publish": {"channel": "a"}})), 107);
        assert_eq!(code(json!({"id": 1, "publish": {"channel": 5, "data": 1}})), 107);
        assert_eq!(code(json!({"id": 1, "rpc": {"method": "a b", "data": 1}})), 107);
        assert_eq!(code(json!({"id": 1, "publish": {"channel": "a", "data": 1, "idempotency_key": "a b"}})), 107);
        assert_eq!(code(json!({"id": 1, "publish": {"channel": "a", "data": 1, "idempotency_key": ""}})), 107);
        assert_eq!(code(json!({"id": 1, "rpc": {"method": "m", "data": 1, "idempotency_key": "k"}})), 107);
        assert_eq!(code(json!({"id": 1, "rpc": {"method": "", "data": 1}})), 107);
        assert_eq!(code(json!({"id": 1, "rpc": {"method": "x".repeat(65), "data": 1}})), 107);
        assert_eq!(code(json!({"id": 1, "rpc": {"method": "m"}})), 107);
        assert_eq!(code(json!({"id": 1, "rpc": {"method": "m", "data": 1, "x": 2}})), 107);
    }
    // A method twice, or an id twice: refused in both encodings alike.
    let twice = br#"{"id":1,"publish":{"channel":"a","data":1},"publish":{"channel":"b","data":2}}"#;
    assert!(matches!(Encoding::Json.decode_command(twice), Err(ParseError::Reply { id: 1, .. })));
    assert_eq!(Encoding::Json.decode_command(br#"{"id":1,"id":2,"ping":{}}"#), Err(ParseError::NoId));
    let two_ids = vec![0x83, 0xa2, b'i', b'd', 0x01, 0xa2, b'i', b'd', 0x02, 0xa4, b'p', b'i', b'n', b'g', 0x80];
    assert_eq!(Encoding::Msgpack.decode_command(&two_ids), Err(ParseError::NoId));
    // MessagePack nesting is bounded.
    let mut deep = vec![0x81, 0xa2, b'i', b'd', 0x01, 0xa4, b'p', b'i', b'n', b'g'];
    deep.extend(std::iter::repeat_n(0x91, 100_000));
    deep.push(0xc0);
    assert!(Encoding::Msgpack.decode_command(&deep).is_err());
}

#[test]
fn errors_say_their_code_status_and_close() {
    for error in Error::examples() {
        assert!((100..=111).contains(&error.code()) || APPLICATION_CODES.contains(&error.code()), "{error:?}");
        assert!((400..=599).contains(&error.http_status()), "{error:?}");
        assert_eq!(error.temporary(), error.http_status() >= 429 && error.http_status() != 431, "{error:?}");
        if let Some(code) = error.close_code() {
            assert!(close::ALL.iter().any(|(c, _)| *c == code));
        }
    }
}

#[test]
fn docs_list_exactly_these_errors() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md")).unwrap();
    let table = doc.split("### Errors").nth(1).unwrap().split("###").next().unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|line| line.starts_with("| 1"))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let errors = Error::examples();
    assert_eq!(rows.len(), errors.len(), "one row per error");
    for (row, error) in rows.iter().zip(&errors) {
        let name = format!("{error:?}");
        let name = name.split(['(', ' ']).next().unwrap();
        assert_eq!(row[1], format!("`{name}`"));
        if let Error::Application { .. } = error {
            // A range, temporary and status as the backend says.
            assert_eq!(row[0], "1000-1999");
            assert_eq!(format!("{}..={}", APPLICATION_CODES.start(), APPLICATION_CODES.end()), "1000..=1999");
            assert_eq!((row[3], row[4]), ("as it says", "403 (503 if temporary)"));
            continue;
        }
        assert_eq!(row[0], error.code().to_string(), "{name}");
        assert_eq!(row[3], if error.temporary() { "yes" } else { "no" }, "{name}");
        assert_eq!(row[4], error.http_status().to_string(), "{name}");
        let close = error.close_code().map(|c| c.to_string());
        assert_eq!(row[5].split(' ').next().filter(|c| !c.is_empty()).map(str::to_owned), close, "{name}");
    }
    let closes = doc.split("### Close codes").nth(1).unwrap().split("##").next().unwrap();
    for (code, _) in close::ALL {
        assert!(closes.contains(&format!("| {code} |")), "close code {code} documented");
    }
}

#[test]
fn channel_positions_read_back_what_they_write() {
    let mut positions = ChannelPositions::default();
    positions.set("chat:lobby", Position { offset: 41, epoch: "18f3a9c2b0".into() });
    positions.set("a", Position { offset: 0, epoch: "e-1_x".into() });
    let text = positions.to_string();
    assert_eq!(text, "chat:lobby:41:18f3a9c2b0,a:0:e-1_x");
    assert_eq!(ChannelPositions::parse(&text, 2).unwrap(), positions);
    assert!(positions.advance("a", 7));
    assert!(!positions.advance("b", 7));
    assert_eq!(positions.get("a"), Some(&Position { offset: 7, epoch: "e-1_x".into() }));
    assert_eq!(ChannelPositions::parse("", 0).unwrap(), ChannelPositions::default());
}

#[test]
fn malformed_channel_positions_are_refused() {
    for bad in [
        "a",
        "a:1",
        ":1:e",
        "a:x:e",
        "a:-1:e",
        "a:1:",
        "a:1:e.f",
        "a:1:e f",
        "a:18446744073709551616:e",
        "\u{c}\0\0\0g:0:00",
        "a b:1:e",
        "a:1:e,a:2:e",
        &format!("a:1:{}", "e".repeat(65)),
    ] {
        assert!(ChannelPositions::parse(bad, 10).is_err(), "{bad:?}");
    }
    assert!(ChannelPositions::parse("a:1:e,b:1:e,c:1:e", 2).is_err(), "over the count");
}

#[test]
fn a_push_move_reads_the_same_from_its_head_as_whole() {
    let mut all = pushes();
    for channel in ["news", "chat:lobby", "a\\\"b", "é"] {
        all.push(Push { channel: channel.into(), event: Event::Pub(publication(u64::MAX, br#"{"k":"v"}"#)) });
        all.push(Push { channel: channel.into(), event: Event::Pub(publication(0, b"\xff\x00")) });
    }
    for push in all {
        let json = Encoding::Json.encode(&push);
        let read = stream::PushMove::of(&json);
        let expected = match &push.event {
            Event::Pub(p) => stream::PushMove::Pub { channel: push.channel.as_str().into(), offset: p.offset },
            Event::Reset { position } => {
                stream::PushMove::Reset { channel: push.channel.clone(), position: position.clone() }
            }
            // Event streams have no server-side subscriptions.
            Event::Join(_) | Event::Leave(_) | Event::Subscribe(_) | Event::Unsubscribe => stream::PushMove::None,
        };
        assert_eq!(read, expected, "{}", String::from_utf8_lossy(&json));
        if let (Event::Pub(_), false) = (&push.event, push.channel.contains(['\\', '"'])) {
            assert!(matches!(read, stream::PushMove::Pub { channel: std::borrow::Cow::Borrowed(_), .. }), "fast");
        }
    }
    assert_eq!(stream::PushMove::of(b"{\"push\":"), stream::PushMove::None);
    assert_eq!(stream::PushMove::of(br#"{"push":{"channel":"a","pub":{"offset":1}}"#), stream::PushMove::None);
}

#[test]
fn an_event_splits_its_data_at_line_ends_and_reads_back_whole() {
    use stream::{EventReader, StreamEvent, write_event};
    let mut positions = ChannelPositions::default();
    positions.set("a", Position { offset: 3, epoch: "e".into() });
    let mut out = bytes::BytesMut::new();
    write_event(&mut out, Some("x"), Some(&positions), b"{\"k\":\r\n1,\r\"j\":\n\n2}");
    assert_eq!(&out[..], b"event: x\nid: a:3:e\ndata: {\"k\":\ndata: 1,\ndata: \"j\":\ndata: \ndata: 2}\n\n");
    out.extend_from_slice(b": a comment\r\n\r\nid: b:1:e\r\n\r\ndata: {}\r\rdata:no space\n\n");
    // Read in pieces cut everywhere, CR LF across two of them included.
    for cut in 1..out.len() {
        let mut reader = EventReader::new(1024);
        let mut events = Vec::new();
        reader.feed(&out[..cut], &mut events).unwrap();
        reader.feed(&out[cut..], &mut events).unwrap();
        let expected = vec![
            StreamEvent { kind: "x".into(), id: Some("a:3:e".into()), data: "{\"k\":\n1,\n\"j\":\n\n2}".into() },
            StreamEvent { kind: "message".into(), id: None, data: "{}".into() },
            StreamEvent { kind: "message".into(), id: None, data: "no space".into() },
        ];
        assert_eq!(events, expected, "cut at {cut}");
        assert_eq!(reader.last_id(), Some("b:1:e"));
    }
    let mut reader = EventReader::new(8);
    assert!(reader.feed(b"data: 123456789", &mut Vec::new()).is_err(), "a line over the bound");
    // An event cut short (no blank line yet) does not move the last id.
    let mut reader = EventReader::new(64);
    reader.feed(b"id: a:1:e\ndata: {}\n", &mut Vec::new()).unwrap();
    assert_eq!(reader.last_id(), None);
    reader.feed(b"\n", &mut Vec::new()).unwrap();
    assert_eq!(reader.last_id(), Some("a:1:e"));
}
