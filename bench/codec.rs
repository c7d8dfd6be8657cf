//! Codec micro-benchmarks: request decode, response encode, and the whole
//! request path without a socket (decode → route → handler → encode).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use percore::Limits;
use percore::LocalService;
use percore::Status;
use percore::internals::{Decoded, Decoder};
use percore::internals::{ResponseContext, ResponseWriter};

/// A request as wrk sends it, with browser-like headers.
const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n";

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = REQUEST.to_vec();
    group.bench_function("request head", |b| {
        b.iter(|| match decoder.decode(black_box(&mut buf)) {
            Ok(Decoded::Complete(message)) => black_box(message.consumed),
            other => panic!("{other:?}"),
        });
    });
    let chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
400\r\n"
        .iter()
        .chain([b'a'; 1024].iter())
        .chain(b"\r\n0\r\n\r\n".iter())
        .copied()
        .collect::<Vec<u8>>();
    group.throughput(Throughput::Bytes(chunked.len() as u64));
    group.bench_function("chunked 1 KiB body", |b| {
        b.iter(|| {
            let mut buf = chunked.clone();
            match decoder.decode(black_box(&mut buf)) {
                Ok(Decoded::Complete(message)) => black_box(message.consumed),
                other => panic!("{other:?}"),
            }
        });
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let context = ResponseContext {
        date: *b"Sun, 06 Nov 1994 08:49:37 GMT",
        head_request: false,
        keep_alive: true,
        http10: false,
    };
    let mut out = Vec::with_capacity(4096);
    c.bench_function("encode plaintext response", |b| {
        b.iter(|| {
            out.clear();
            ResponseWriter::new(&mut out, context).send(
                Status::OK,
                Some("text/plain; charset=utf-8"),
                [],
                black_box(b"Hello, World!"),
            );
            black_box(out.len())
        });
    });
}

fn request_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("request path");
    let mut service = LocalService::new(percore::reference::app());
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, request, depth) in [
        (
            "plaintext",
            &b"GET /plaintext HTTP/1.1\r\nHost: b\r\n\r\n"[..],
            1,
        ),
        ("json", b"GET /json HTTP/1.1\r\nHost: b\r\n\r\n", 1),
        (
            "plaintext pipelined x16",
            b"GET /plaintext HTTP/1.1\r\nHost: b\r\n\r\n",
            16,
        ),
    ] {
        let batch = request.repeat(depth);
        group.throughput(Throughput::Elements(depth as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                futures_lite::future::block_on(service.serve(&batch, &mut out))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode, request_path);
criterion_main!(benches);
