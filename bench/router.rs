//! Router lookup: a table the size of a small API, hit and miss.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use percore::Method;
use percore::internals::{Lookup, MAX_PARAMS, Router};

fn table() -> Router<u32> {
    let mut router = Router::new();
    let patterns = [
        "/",
        "/health",
        "/health/ready",
        "/metrics",
        "/plaintext",
        "/json",
        "/echo",
        "/users",
        "/users/me",
        "/users/{id}",
        "/users/{id}/posts",
        "/users/{id}/posts/{post}",
        "/orgs/{org}/repos/{repo}/issues/{number}",
        "/static/{*path}",
    ];
    for (i, pattern) in patterns.iter().enumerate() {
        router
            .insert(Method::Get, pattern, u32::try_from(i).unwrap())
            .unwrap();
    }
    router
}

fn lookup(c: &mut Criterion) {
    let router = table();
    let mut group = c.benchmark_group("router lookup");
    for path in [
        "/plaintext",
        "/users/42/posts/7",
        "/orgs/a/repos/b/issues/9",
        "/static/css/site.css",
        "/missing/path",
    ] {
        group.bench_function(path, |b| {
            b.iter(|| {
                let mut params = [("", ""); MAX_PARAMS];
                match router.lookup(Method::Get, black_box(path), &mut params) {
                    Lookup::Found(value, count) => black_box(*value as usize + count),
                    Lookup::MethodNotAllowed(_) => 1,
                    Lookup::NotFound => 0,
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
