//! `examples/chat.rs` works as its comments say: two clients on one shard
//! hear each other's messages. (`cargo test` builds examples; alone, run
//! `cargo build --examples` first.)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// A masked text frame, as a client sends it.
fn text(payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut out = vec![0x81, 0x80 | u8::try_from(payload.len()).unwrap()];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// The payload of the next (unmasked, short) text frame from the server.
fn heard(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x81, "a text frame");
    let mut payload = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut payload).unwrap();
    payload
}

#[test]
fn two_clients_hear_each_other() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_percore"))
        .parent()
        .unwrap()
        .join("examples")
        .join("chat");
    assert!(binary.exists(), "{} not built", binary.display());
    let mut command = Command::new(&binary);
    command.args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"]);
    let spawned = support::spawn_ready(command);
    let join = |name: &str| {
        let mut stream = TcpStream::connect(spawned.addrs[0]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = support::websocket_handshake(&mut stream, "/chat");
        assert!(head.starts_with("HTTP/1.1 101 "), "{name}: {head}");
        stream
    };
    // Each is subscribed once their own message comes back to them.
    let mut ann = join("ann");
    ann.write_all(&text(b"ann here")).unwrap();
    assert_eq!(heard(&mut ann), b"ann here");
    let mut bob = join("bob");
    bob.write_all(&text(b"bob here")).unwrap();
    assert_eq!(heard(&mut bob), b"bob here");
    assert_eq!(heard(&mut ann), b"bob here");
    ann.write_all(&text(b"hi bob")).unwrap();
    assert_eq!(heard(&mut bob), b"hi bob");
    assert_eq!(heard(&mut ann), b"hi bob");
    // A drain closes both with 1001 ("going away"); neither answers, and
    // the server still exits in time, cleanly.
    let mut child = spawned.child;
    support::sigterm(&child);
    for stream in [&mut ann, &mut bob] {
        let mut close = [0u8; 4];
        stream.read_exact(&mut close).unwrap();
        assert_eq!(close[0], 0x88, "a close frame");
        assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1001);
    }
    assert!(child.wait().unwrap().success());
}
