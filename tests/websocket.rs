//! WebSocket handlers (RFC 6455) through Python's `websockets` client
//! (`tests/support/ws_client.py`), and hand-made frames for what a polite
//! client never sends (Autobahn's case groups, by hand): bad handshakes,
//! text and close reasons that are not UTF-8, reserved bits and opcodes,
//! unmasked and over-long control frames, broken fragmentation and close
//! frames; and control frames between fragments, which must work.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use percore::App;
use percore::ws::{Message, WebSocketUpgrade};

fn app() -> App {
    App::new()
        .get("/echo", async |upgrade: WebSocketUpgrade| {
            let chat = upgrade.protocols().iter().any(|p| p == "chat");
            let response = upgrade
                .max_message_bytes(64 << 10)
                .on_upgrade(async |socket| {
                    while let Some(message) = socket.recv().await {
                        let echo = match message {
                            Message::Text(_) | Message::Binary(_) => message,
                            _ => continue,
                        };
                        if socket.send(echo).await.is_err() {
                            break;
                        }
                    }
                });
            if chat {
                response.protocol("chat")
            } else {
                response
            }
        })
        .get("/quiet", async |upgrade: WebSocketUpgrade| {
            upgrade
                .ping_every(Duration::from_secs(1))
                .on_upgrade(async |socket| while socket.recv().await.is_some() {})
        })
        .get("/bye", async |upgrade: WebSocketUpgrade| {
            upgrade.on_upgrade(async |socket| {
                let _ = socket.send(Message::Text("bye".into())).await;
            })
        })
}

#[test]
fn pythons_websockets_client_talks_to_a_handler() {
    let server = app().start(&support::config()).unwrap();
    let out = Command::new(support::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/ws_client.py"
        ))
        .arg(support::addr(&server).port().to_string())
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = [
        "text: héllo, wörld",
        "binary: 0001ff",
        "fragmented: fragmented",
        "large: 60000",
        "ping: answered",
        "close: 1000 done",
        "oversize: 1009",
        "server says: bye",
        "server closed: 1000",
        "subprotocol: chat",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    server.stop().unwrap();
}

/// Opens a WebSocket on `/echo` by hand; the stream after the `101`.
fn open(server: &percore::Server) -> TcpStream {
    open_at(server, "/echo")
}

fn open_at(server: &percore::Server, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(support::addr(server)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = support::websocket_handshake(&mut stream, path);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains(support::WEBSOCKET_ACCEPT), "{head}");
    stream
}

/// A client frame: FIN, `opcode`, masked with a fixed key (or not).
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let len = u8::try_from(payload.len()).unwrap();
    assert!(len < 126);
    if masked {
        let key = [1u8, 2, 3, 4];
        out.push(0x80 | len);
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.push(len);
        out.extend_from_slice(payload);
    }
    out
}

/// A masked ping with a 126-byte payload (the 16-bit length form).
fn long_ping() -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut out = vec![0x89, 0x80 | 0x7e, 0, 126];
    out.extend_from_slice(&key);
    out.extend((0..126).map(|i| b'p' ^ key[i % 4]));
    out
}

/// The close code of the close frame the server sends next.
fn close_code(stream: &mut TcpStream) -> u16 {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    stream.read_exact(&mut payload).unwrap();
    u16::from_be_bytes([payload[0], payload[1]])
}

/// Every case of the frame-by-frame script after the Autobahn suite's
/// groups (`tests/support/ws_conformance.py`) against the echo route.
#[test]
fn the_autobahn_style_cases_pass() {
    let server = app().start(&support::config()).unwrap();
    let port = support::addr(&server).port().to_string();
    support::all_cases_pass("ws_conformance.py", &[&port, "/echo"], 137);
    server.stop().unwrap();
}

#[test]
fn broken_frames_are_closed_with_their_code() {
    let server = app().start(&support::config()).unwrap();
    for (name, bytes, code) in [
        (
            "text that is not UTF-8",
            frame(0x81, &[0xff, 0xfe], true),
            1007,
        ),
        ("a reserved bit", frame(0xc1, b"x", true), 1002),
        ("an unknown opcode", frame(0x83, b"x", true), 1002),
        ("an unmasked frame", frame(0x81, b"x", false), 1002),
        ("a fragmented ping", frame(0x09, b"x", true), 1002),
        (
            "a continuation with nothing to continue",
            frame(0x80, b"x", true),
            1002,
        ),
        (
            "a new message inside a fragmented one",
            [frame(0x01, b"a", true), frame(0x81, b"b", true)].concat(),
            1002,
        ),
        ("a ping longer than 125 bytes", long_ping(), 1002),
        (
            "a close with a one-byte body",
            frame(0x88, &[0x03], true),
            1002,
        ),
        (
            "a close with the reserved code 1005",
            frame(0x88, &1005u16.to_be_bytes(), true),
            1002,
        ),
        (
            "a close whose reason is not UTF-8",
            frame(0x88, &[0x03, 0xe8, 0xff, 0xfe], true),
            1007,
        ),
    ] {
        let mut stream = open(&server);
        stream.write_all(&bytes).unwrap();
        assert_eq!(close_code(&mut stream), code, "{name}");
    }
    server.stop().unwrap();
}

#[test]
fn control_frames_may_come_between_fragments() {
    let server = app().start(&support::config()).unwrap();
    let mut stream = open(&server);
    let bytes = [
        frame(0x01, b"frag", true),
        frame(0x89, b"hey", true),
        frame(0x00, b"men", true),
        frame(0x80, b"ted", true),
    ]
    .concat();
    stream.write_all(&bytes).unwrap();
    // The pong first (it answers a frame that came before the message
    // ended), then the whole message.
    let mut pong = [0u8; 5];
    stream.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\x8a\x03hey");
    let mut echo = [0u8; 12];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x0afragmented");
    server.stop().unwrap();
}

#[test]
fn bad_handshakes_are_refused() {
    let server = app().start(&support::config()).unwrap();
    let mut client = support::Client::connect(support::addr(&server));
    let plain = client.request(&support::get("/echo"));
    assert_eq!(plain.status, 426);
    let old = client.request(
        b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert_eq!(old.status, 426);
    assert_eq!(old.header("sec-websocket-version"), Some("13"));
    let keyless = client.request(
        b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n",
    );
    assert_eq!(keyless.status, 400);
    server.stop().unwrap();
}

#[test]
fn a_drain_closes_open_websockets_with_1001() {
    let server = app().start(&support::config()).unwrap();
    let mut stream = open(&server);
    // Echoed: the session is running.
    stream.write_all(&frame(0x81, b"hi", true)).unwrap();
    let mut echo = [0u8; 4];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x02hi");
    let stopping = std::thread::spawn(move || server.stop());
    assert_eq!(close_code(&mut stream), 1001);
    // Our close reply ends the handshake; the server closes and stops.
    stream
        .write_all(&frame(0x88, &1001u16.to_be_bytes(), true))
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    stopping
        .join()
        .unwrap()
        .expect("the drain finished in time");
}

#[test]
fn a_silent_peer_is_pinged_and_closed_when_it_stays_silent() {
    let server = app().start(&support::config()).unwrap();
    let mut stream = open_at(&server, "/quiet");
    let mut ping = [0u8; 2];
    // A ping after a silent interval; the pong counts as hearing from
    // the peer, so the next silent interval brings another ping.
    stream.read_exact(&mut ping).unwrap();
    assert_eq!(ping, [0x89, 0], "an empty ping");
    stream.write_all(&frame(0x8a, b"", true)).unwrap();
    stream.read_exact(&mut ping).unwrap();
    assert_eq!(ping, [0x89, 0], "a second ping after the pong");
    // Silent through that ping's interval too: the connection ends.
    let mut rest = Vec::new();
    let ended = stream.read_to_end(&mut rest);
    assert!(
        ended.is_ok() || ended.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server kept a silent connection open"
    );
    server.stop().unwrap();
}
