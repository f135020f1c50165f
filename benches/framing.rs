//! Benchmarks of gRPC message framing with prost on the request path: encoding a
//! `WriteKeyValueRequest` into its length-prefixed frame, and decoding it back the way the server
//! does (DATA chunks appended to a buffer, `framing::decode` after each, then prost). Sizes: a
//! typical 100-byte value and a 64 KiB one; the split cases cut the frame into HTTP/2 DATA frames
//! of h2's default 16 KiB (and the small one into three pieces), as a peer's writes arrive.
//! Run with `cargo bench --bench framing`.

use std::{hint::black_box, time::Duration};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pairdb::{
    proto::coordinator::{Consistency, WriteKeyValueRequest},
    rpc::framing::{self, DEFAULT_MAX_MESSAGE_BYTES},
};
use prost::Message;

/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which h2 keeps.
const DATA_FRAME_BYTES: usize = 16 * 1024;

fn request(value_bytes: usize) -> WriteKeyValueRequest {
    WriteKeyValueRequest {
        tenant_id: "tenant-42".into(),
        key: "user/1234/profile".into(),
        value: Bytes::from(vec![0xab; value_bytes]),
        consistency: Consistency::Quorum as i32,
        idempotency_key: "0b9f3c1e-5f0a-4c7d-9a53-2f7e0c6d1b84".into(),
        vector_clock: None,
    }
}

fn sizes() -> [(&'static str, WriteKeyValueRequest); 2] {
    [("100B", request(100)), ("64KiB", request(64 * 1024))]
}

/// The server's path: append each DATA chunk, try to take a message after each.
fn decode_chunks(chunks: &[Bytes]) -> WriteKeyValueRequest {
    let mut buf = BytesMut::new();
    let mut message = None;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        if let Some(m) = framing::decode(&mut buf, DEFAULT_MAX_MESSAGE_BYTES).expect("valid frame")
        {
            message = Some(m);
        }
    }
    WriteKeyValueRequest::decode(message.expect("a whole message")).expect("valid protobuf")
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing/encode");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for (name, req) in sizes() {
        let framed_len = framing::encode_to_bytes(&req).len();
        group.throughput(Throughput::Bytes(framed_len as u64));
        // What the client and server do per message: one fresh buffer.
        group.bench_with_input(BenchmarkId::new("to_bytes", name), &req, |b, req| {
            b.iter(|| framing::encode_to_bytes(black_box(req)))
        });
        // Into a reused buffer: the floor, prost's encoding alone plus the 5-byte prefix.
        let mut buf = BytesMut::with_capacity(framed_len);
        group.bench_with_input(BenchmarkId::new("reused_buffer", name), &req, |b, req| {
            b.iter(|| {
                buf.clear();
                framing::encode(black_box(req), &mut buf);
                buf.len()
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing/decode");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for (name, req) in sizes() {
        let framed = framing::encode_to_bytes(&req);
        group.throughput(Throughput::Bytes(framed.len() as u64));
        // The reference: copying the frame into a fresh buffer, which every decode below does
        // once; the rest is framing and prost.
        group.bench_with_input(BenchmarkId::new("copy_only", name), &framed, |b, framed| {
            b.iter(|| BytesMut::from(black_box(&framed[..])))
        });
        let whole = [framed.clone()];
        group.bench_with_input(BenchmarkId::new("one_frame", name), &whole, |b, chunks| {
            b.iter(|| decode_chunks(black_box(chunks)))
        });
        let len = framed.len();
        let cuts: Vec<usize> = if len > DATA_FRAME_BYTES {
            (0..len).step_by(DATA_FRAME_BYTES).chain([len]).collect()
        } else {
            // Three pieces, the first cutting the 5-byte prefix.
            vec![0, 3, len / 2, len]
        };
        let split: Vec<Bytes> = cuts.windows(2).map(|w| framed.slice(w[0]..w[1])).collect();
        let id = BenchmarkId::new(format!("split_{}", split.len()), name);
        group.bench_with_input(id, &split, |b, chunks| b.iter(|| decode_chunks(black_box(chunks))));
        assert_eq!(decode_chunks(&split), req);
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
