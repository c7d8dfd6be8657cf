//! Which rustls crypto provider percore uses, measured: a full TLS 1.3
//! handshake (ECDSA P-256 certificate), a resumed one, and bulk
//! encryption, in memory (client and server both in this thread), with
//! aws-lc-rs and with ring.

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

struct Pair {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

fn pair(provider: CryptoProvider) -> Pair {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(provider);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Pair {
        client: Arc::new(client),
        server: Arc::new(server),
    }
}

/// Moves bytes both ways until neither side has anything to say.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buffer = Vec::with_capacity(32 * 1024);
    loop {
        let mut moved = false;
        while client.wants_write() {
            buffer.clear();
            client.write_tls(&mut buffer).unwrap();
            let mut pending = &buffer[..];
            while !pending.is_empty() {
                server.read_tls(&mut pending).unwrap();
                server.process_new_packets().unwrap();
            }
            moved = true;
        }
        while server.wants_write() {
            buffer.clear();
            server.write_tls(&mut buffer).unwrap();
            let mut pending = &buffer[..];
            while !pending.is_empty() {
                client.read_tls(&mut pending).unwrap();
                client.process_new_packets().unwrap();
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn handshake(pair: &Pair) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::clone(&pair.client), name).unwrap();
    let mut server = ServerConnection::new(Arc::clone(&pair.server)).unwrap();
    pump(&mut client, &mut server);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    (client, server)
}

/// The providers with their default key exchange (aws-lc-rs prefers the
/// post-quantum hybrid X25519MLKEM768 when both sides have it) and with
/// X25519 alone (what an OpenSSL 3.0 client such as wrk's offers).
fn providers() -> [(&'static str, CryptoProvider); 3] {
    let x25519_only = CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    [
        (
            "aws-lc-rs (X25519MLKEM768)",
            rustls::crypto::aws_lc_rs::default_provider(),
        ),
        ("aws-lc-rs (X25519)", x25519_only),
        ("ring (X25519)", rustls::crypto::ring::default_provider()),
    ]
}

fn handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("TLS 1.3 handshake, ECDSA P-256");
    for (name, provider) in providers() {
        let full = pair(provider);
        group.bench_function(format!("{name}: full"), |b| {
            b.iter(|| {
                // A client without sessions each time: a full handshake.
                let fresh = Pair {
                    client: Arc::new({
                        let mut config = (*full.client).clone();
                        config.resumption = rustls::client::Resumption::disabled();
                        config
                    }),
                    server: Arc::clone(&full.server),
                };
                black_box(handshake(&fresh))
            });
        });
        group.bench_function(format!("{name}: resumed"), |b| {
            let (mut client, mut server) = handshake(&full);
            // Tickets arrive after the handshake.
            server.writer().write_all(b"x").unwrap();
            pump(&mut client, &mut server);
            b.iter(|| black_box(handshake(&full)));
        });
    }
    group.finish();
}

fn bulk(c: &mut Criterion) {
    let mut group = c.benchmark_group("TLS 1.3 bulk, server encrypts 16 KiB (one record)");
    group.throughput(Throughput::Bytes(16 * 1024));
    let data = vec![7u8; 16 * 1024];
    for (name, provider) in providers() {
        let pair = pair(provider);
        let (mut client, mut server) = handshake(&pair);
        let mut sink = vec![0u8; 16 * 1024];
        group.bench_function(name, |b| {
            b.iter(|| {
                server.writer().write_all(&data).unwrap();
                pump(&mut client, &mut server);
                let mut read = 0;
                while read < data.len() {
                    match client.reader().read(&mut sink[read..]) {
                        Ok(n) => read += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            pump(&mut client, &mut server);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                black_box(read)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, handshakes, bulk);
criterion_main!(benches);
