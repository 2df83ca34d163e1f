//! A publication push in each encoding: its bytes on the wire and what
//! encoding it costs (once per publication per node and encoding, however
//! many subscribers). CBOR is measured beside them as the alternative
//! binary encoding that was not chosen.
//!
//! `cargo bench -p ferrows-hub --bench encoding`

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ferrows_hub::protocol::{Data, Encoding, Event, Info, Pub, Push};

/// A chat message as the demo publishes it, with its publisher's info.
fn chat_push() -> Push {
    let data = br#"{"text":"Hello everyone, the build is green again"}"#;
    let info = br#"{"client":"5f0c2a9e1b7d4c3a","user":"alice","name":"Alice"}"#;
    let publication =
        Pub { offset: 1_234_567, data: Data(Bytes::from_static(data)), info: Some(Info(Bytes::from_static(info))) };
    Push { channel: "chat:lobby".into(), event: Event::Pub(publication) }
}

/// A 1 KiB binary payload from the server API (no info).
fn binary_push() -> Push {
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let publication = Pub { offset: 42, data: Data(Bytes::from(data)), info: None };
    Push { channel: "telemetry:device-17".into(), event: Event::Pub(publication) }
}

fn cbor(push: &Push) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(push, &mut out).expect("CBOR encodes");
    out
}

fn encoding(c: &mut Criterion) {
    for (name, push) in [("chat", chat_push()), ("binary-1KiB", binary_push())] {
        let json = Encoding::Json.encode(&push).len();
        let msgpack = Encoding::Msgpack.encode(&push).len();
        println!("{name}: bytes json {json} msgpack {msgpack} cbor {}", cbor(&push).len());
        c.bench_function(&format!("{name}/json"), |b| b.iter(|| Encoding::Json.encode(black_box(&push))));
        c.bench_function(&format!("{name}/msgpack"), |b| b.iter(|| Encoding::Msgpack.encode(black_box(&push))));
        c.bench_function(&format!("{name}/cbor"), |b| b.iter(|| cbor(black_box(&push))));
    }
}

criterion_group!(benches, encoding);
criterion_main!(benches);
