//! The rate limiter's cost: one GCRA check in a table (key present), a new
//! key in a full table (eviction), and the whole request path with every
//! request checked against without.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_lite::future::block_on;
use percore::internals::{Gcra, Table};
use percore::{Config, LocalService};

fn table(c: &mut Criterion) {
    let gcra = Gcra::new(1e9, 1_000_000);
    let mut group = c.benchmark_group("limiter table");
    let mut table = Table::new(100_000);
    for key in 0..100_000u64 {
        table.check(u128::from(key), &gcra, 1);
    }
    let mut now = 1u64;
    group.bench_function("check, key present (100k keys)", |b| {
        b.iter(|| {
            now += 1_000;
            black_box(table.check(black_box(42_424), &gcra, now))
        });
    });
    let mut next = 100_000u64;
    group.bench_function("check, new key evicting (full table)", |b| {
        b.iter(|| {
            next += 1;
            black_box(table.check(u128::from(next), &gcra, next))
        });
    });
    group.finish();
}

fn request_path(c: &mut Criterion) {
    let request = b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut limited = Config::default();
    limited.rate_limit.enabled = true;
    limited.rate_limit.policy = vec![percore::config::PolicyConfig {
        name: "bench".into(),
        rate: 1e9,
        burst: 1_000_000,
        routes: Vec::new(),
        ..percore::config::PolicyConfig::default()
    }];
    let mut group = c.benchmark_group("request path /plaintext");
    for (name, config) in [
        ("rate limit off", Config::default()),
        ("rate limit on", limited),
    ] {
        let mut service = LocalService::with_config(percore::reference::app(), &config).unwrap();
        service.set_peer("127.0.0.2:40000".parse().unwrap());
        let mut out = Vec::with_capacity(4096);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(block_on(service.serve(request, &mut out)))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, table, request_path);
criterion_main!(benches);
