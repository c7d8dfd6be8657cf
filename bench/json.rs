//! JSON: serializing the /json message and an echo body into a reused
//! buffer, and parsing the echo body in place.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use percore::reference::{Echo, Message};

fn serialize(c: &mut Criterion) {
    let mut out = Vec::with_capacity(1024);
    c.bench_function("serialize /json message", |b| {
        b.iter(|| {
            out.clear();
            simd_json::serde::to_writer(
                &mut out,
                black_box(&Message {
                    message: "Hello, World!",
                }),
            )
            .unwrap();
            black_box(out.len())
        });
    });
    let echo = Echo {
        message: "hello".repeat(10),
        count: Some(42),
        tags: vec!["a".into(), "bb".into(), "ccc".into()],
    };
    c.bench_function("serialize echo body", |b| {
        b.iter(|| {
            out.clear();
            simd_json::serde::to_writer(&mut out, black_box(&echo)).unwrap();
            black_box(out.len())
        });
    });
    let body = simd_json::serde::to_vec(&echo).unwrap();
    c.bench_function("parse echo body in place", |b| {
        b.iter(|| {
            let mut input = body.clone();
            let parsed: Echo = simd_json::serde::from_slice(black_box(&mut input)).unwrap();
            black_box(parsed.tags.len())
        });
    });
}

criterion_group!(benches, serialize);
criterion_main!(benches);
