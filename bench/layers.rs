//! What middleware costs on the request path (no socket): /plaintext with
//! no layers; with one `from_fn` layer; with CORS, request IDs and that
//! layer together (a request from an allowed origin); and a chain of three
//! no-op layers.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_lite::future::block_on;
use percore::{Config, LocalService, Next, Request, ResponseWriter, from_fn};

fn pass() -> percore::Layer {
    from_fn(
        async |request: &mut Request<'_>, response: &mut ResponseWriter<'_>, next: Next<'_>| {
            next.run(request, response).await;
        },
    )
}

fn header_layer() -> percore::Layer {
    from_fn(
        async |request: &mut Request<'_>, response: &mut ResponseWriter<'_>, next: Next<'_>| {
            next.run(request, response).await;
            response.insert_header("X-Layer", b"1");
        },
    )
}

fn layers(c: &mut Criterion) {
    let mut group = c.benchmark_group("request path /plaintext, layers");
    let plain = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n";
    let cross = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\nOrigin: https://app.example\r\n\r\n";
    let mut cors = Config::default();
    cors.cors.allow_origins = vec!["https://app.example".into()];
    cors.log.request_id = true;
    let mut cors_only = Config::default();
    cors_only.cors.allow_origins = vec!["https://app.example".into()];
    let mut ids_only = Config::default();
    ids_only.log.request_id = true;
    let cases: [(&str, LocalService<()>, &[u8]); 6] = [
        ("none", LocalService::new(percore::reference::app()), plain),
        (
            "one from_fn layer",
            LocalService::new(percore::reference::app().layer(header_layer())),
            plain,
        ),
        (
            "CORS + request ID + one from_fn layer",
            LocalService::with_config(percore::reference::app().layer(header_layer()), &cors)
                .unwrap(),
            cross,
        ),
        (
            "CORS alone",
            LocalService::with_config(percore::reference::app(), &cors_only).unwrap(),
            cross,
        ),
        (
            "request ID alone",
            LocalService::with_config(percore::reference::app(), &ids_only).unwrap(),
            plain,
        ),
        (
            "three no-op layers",
            LocalService::new(
                percore::reference::app()
                    .layer(pass())
                    .layer(pass())
                    .layer(pass()),
            ),
            plain,
        ),
    ];
    let mut out = Vec::with_capacity(4096);
    for (name, mut service, request) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(block_on(service.serve(request, &mut out)))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
