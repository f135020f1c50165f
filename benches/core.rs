//! Benchmarks of the sans-IO core on the request path: placing a key, choosing its replicas and
//! comparing or merging the clocks of their replies. Run with `cargo bench --bench core`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use pairdb::core::ring::{key_token, Member, Ring, DEFAULT_VIRTUAL_NODES};
use pairdb::core::vclock::VClock;

fn ring(c: &mut Criterion) {
    c.bench_function("key_token", |b| {
        b.iter(|| key_token(black_box("tenant-42"), black_box("user/1234/profile")))
    });

    let members =
        (0..10).map(|i| Member::new(format!("storage-{i}"), DEFAULT_VIRTUAL_NODES)).collect();
    let ring = Ring::new(1, members).expect("ten distinct members");
    let tokens: Vec<_> = (0..1024).map(|i| key_token("tenant-42", &format!("key-{i}"))).collect();
    let mut next = 0;
    c.bench_function("preference_list/10x150/n=3", |b| {
        b.iter(|| {
            next = (next + 1) % tokens.len();
            ring.preference_list(black_box(tokens[next]), 3).len()
        })
    });
}

fn vclock(c: &mut Criterion) {
    let clock = |pairs: [(&str, u64); 3]| {
        VClock::from_entries(pairs.into_iter().map(|(a, n)| (a.to_owned(), n)))
    };
    // Concurrent clocks: compare must walk both to the end.
    let a = clock([("coord-1/0", 7), ("coord-2/3", 2), ("coord-3/1", 9)]);
    let b = clock([("coord-1/0", 8), ("coord-2/3", 2), ("coord-3/1", 4)]);
    c.bench_function("vclock/compare/3", |bench| {
        bench.iter(|| black_box(&a).compare(black_box(&b)))
    });
    c.bench_function("vclock/clone_and_merge/3", |bench| {
        bench.iter(|| {
            let mut m = black_box(&a).clone();
            m.merge(black_box(&b));
            m
        })
    });
}

criterion_group!(benches, ring, vclock);
criterion_main!(benches);
