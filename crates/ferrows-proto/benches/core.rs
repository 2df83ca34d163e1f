//! Hot-path benchmarks of the protocol core: masking, UTF-8 validation,
//! frame header parse/encode, whole-message receive, deflate round trip.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrows_proto::config::{Config, Negotiated};
use ferrows_proto::deflate::{DeflateConfig, Deflater, Inflater};
use ferrows_proto::frame::{FrameHeader, OpCode, apply_mask};
use ferrows_proto::utf8::{Utf8Validator, validate_complete};
use ferrows_proto::{Connection, Role};

const SIZES: [usize; 4] = [20, 1024, 64 << 10, 1 << 20];

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in SIZES {
        let mut data = vec![0x5Au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut data), [1, 2, 3, 4], 0))
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    let text = "Hello, wörld! Καλημέρα κόσμε. こんにちは 🌍 ".repeat((1 << 20) / 50);
    for size in SIZES {
        let cut = text.floor_char_boundary(size);
        let data = &text.as_bytes()[..cut];
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("complete", size), data, |b, d| {
            b.iter(|| validate_complete(black_box(d)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("incremental_4k", size), data, |b, d| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for piece in d.chunks(4096) {
                    v.feed(black_box(piece)).unwrap();
                }
                v.finish().unwrap();
            })
        });
    }
    group.finish();
}

fn frame_header(c: &mut Criterion) {
    let header = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Binary,
        mask: Some([1, 2, 3, 4]),
        payload_len: 1024,
    };
    let encoded = header.encode();
    c.bench_function("frame/header_encode", |b| b.iter(|| black_box(black_box(&header).encode())));
    c.bench_function("frame/header_parse", |b| {
        b.iter(|| FrameHeader::parse(black_box(encoded.as_ref())).unwrap().unwrap())
    });
}

/// Many masked client frames through a server core: parse, unmask,
/// validate, emit events.
fn receive_messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("receive");
    for (size, count) in [(20usize, 1000usize), (1024, 1000), (64 << 10, 16)] {
        let mut client = Connection::new(Role::Client, Config::default(), &Negotiated::default());
        let text: String = "x".repeat(size);
        for _ in 0..count {
            client.send_text(text.as_str().into()).unwrap();
        }
        let mut wire = BytesMut::new();
        while let Some(chunk) = client.take_output() {
            wire.extend_from_slice(&chunk);
        }
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("text", format!("{count}x{size}")), &wire, |b, wire| {
            b.iter(|| {
                let mut server = Connection::new(Role::Server, Config::default(), &Negotiated::default());
                let mut buf = BytesMut::from(&wire[..]);
                server.receive(&mut buf).unwrap();
                let mut n = 0;
                while server.poll_event().is_some() {
                    n += 1;
                }
                assert_eq!(n, count);
            })
        });
    }
    group.finish();
}

fn send_messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("send");
    for size in [20usize, 1024, 64 << 10] {
        let payload = Bytes::from(vec![b'x'; size]);
        group.throughput(Throughput::Bytes(size as u64));
        for role in [Role::Server, Role::Client] {
            let mut conn = Connection::new(role, Config::default(), &Negotiated::default());
            group.bench_with_input(BenchmarkId::new(format!("{role:?}"), size), &payload, |b, p| {
                b.iter(|| {
                    conn.send_binary(p.clone()).unwrap();
                    let n = conn.pending_output();
                    conn.advance_output(n);
                })
            });
        }
    }
    group.finish();
}

fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_round_trip");
    let json = r#"{"channel":"chat:lobby","data":{"user":"alice","text":"hello there, how are you?"},"offset":1234}"#;
    for size in [100usize, 16 << 10] {
        let msg = json.repeat(size.div_ceil(json.len()));
        group.throughput(Throughput::Bytes(msg.len() as u64));
        for no_context in [false, true] {
            let config = DeflateConfig { server_no_context_takeover: no_context, ..Default::default() };
            let mut deflater = Deflater::new(15, config.server_no_context_takeover, 1);
            let mut inflater = Inflater::new(15, config.server_no_context_takeover);
            let name = if no_context { "no_context_takeover" } else { "context_takeover" };
            group.bench_with_input(BenchmarkId::new(name, size), msg.as_bytes(), |b, m| {
                let mut wire = BytesMut::new();
                let mut out = BytesMut::new();
                b.iter(|| {
                    wire.clear();
                    out.clear();
                    deflater.compress(m, &mut wire, true);
                    inflater.inflate(&wire, &mut out, usize::MAX / 2, true).unwrap();
                    assert_eq!(out.len(), m.len());
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, masking, utf8, frame_header, receive_messages, send_messages, deflate);
criterion_main!(benches);
