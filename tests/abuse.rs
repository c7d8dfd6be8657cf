//! After abusive clients leave — garbage, half-sent heads, oversized
//! requests, smuggling attempts, abrupt resets — the server's descriptors
//! return to their baseline and it still serves. Alone in its binary: it
//! counts this process's descriptors.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use support::{Client, addr, get, start};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Sends `bytes`, half-closes, and reads until the server closes.
fn abuse(server: &percore::Server, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr(server)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

#[test]
fn descriptors_return_to_baseline_after_abuse() {
    let server = start(percore::reference::app(), 1);
    abuse(&server, &get("/plaintext"));
    let baseline = open_descriptors();
    let oversized = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20_000));
    let payloads: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02garbage\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Half: ".to_vec(),
        oversized.into_bytes(),
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial".to_vec(),
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n".to_vec(),
        Vec::new(),
    ];
    for _ in 0..20 {
        for payload in &payloads {
            abuse(&server, payload);
        }
        // An abrupt reset, with a request half-sent.
        let stream = TcpStream::connect(addr(&server)).unwrap();
        let _ = (&stream).write_all(b"GET / HTTP/1.1\r\n");
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
    }
    // A served request after all that: the shard is alive and has seen
    // every earlier connection end.
    let mut client = Client::connect(addr(&server));
    assert_eq!(client.request(&get("/plaintext")).text(), "Hello, World!");
    let mut stream = client.into_stream();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    drop(stream);
    assert_eq!(open_descriptors(), baseline, "descriptors leaked");
    server.stop().unwrap();
}
