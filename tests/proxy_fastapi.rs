//! percore in front of the seeds' own stack: a FastAPI app under gunicorn
//! with uvicorn workers (from PyPI; `.ci/run` installs them in its
//! virtualenv and sets `TEST_PYTHON_VENV`), bound to Unix sockets as
//! gunicorn's `bind = "unix:..."`. JSON, a streamed response, a large
//! upload, a WebSocket, and one of two gunicorns down.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use percore::config::{RouteConfig, ServerEntry, UpstreamConfig};
use percore::{App, Server};
use support::Client;

/// The virtualenv's `bin/` with gunicorn in it.
fn venv_bin() -> PathBuf {
    let venv = std::env::var("TEST_PYTHON_VENV").unwrap_or_else(|_| ".ci/.venv".to_owned());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(venv);
    let bin = venv.join("bin");
    assert!(
        bin.join("gunicorn").exists(),
        "gunicorn is not in {} (.ci/run installs fastapi, gunicorn and uvicorn there)",
        venv.display()
    );
    bin
}

/// gunicorn with two uvicorn workers on a Unix socket, stopped with its
/// workers when dropped.
struct Gunicorn {
    child: std::process::Child,
    socket: PathBuf,
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        // SIGQUIT: gunicorn's quick shutdown, which stops its workers too
        // (a SIGKILL would leave them running).
        support::signal(&self.child, libc::SIGQUIT);
        let _ = self.child.wait();
    }
}

impl Gunicorn {
    fn start(socket: &Path) -> Self {
        let _ = std::fs::remove_file(socket);
        let child = std::process::Command::new(venv_bin().join("gunicorn"))
            .args(["-k", "uvicorn.workers.UvicornWorker", "-w", "2"])
            .arg("-b")
            .arg(format!("unix:{}", socket.display()))
            .args([
                "--chdir",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support"),
            ])
            .args([
                "--graceful-timeout",
                "1",
                "--log-level",
                "warning",
                "fastapi_app:app",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("gunicorn runs");
        let gunicorn = Self {
            child,
            socket: socket.to_owned(),
        };
        // Ready once a request on the socket is answered (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&gunicorn.socket) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let _ = stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return gunicorn;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gunicorn did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn start_proxy(sockets: &[&Path]) -> Server {
    let mut config = support::config();
    config.upstream = vec![UpstreamConfig {
        name: "fastapi_app".into(),
        servers: sockets
            .iter()
            .map(|s| ServerEntry::Address(format!("unix:{}", s.display())))
            .collect(),
        ..UpstreamConfig::default()
    }];
    config.route = vec![RouteConfig {
        prefix: "/".into(),
        proxy: "fastapi_app".into(),
        max_body_bytes: Some(128 << 20),
        ..RouteConfig::default()
    }];
    config.log.request_id = true;
    App::new().start(&config).expect("the proxy starts")
}

fn json(reply: &support::Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("JSON: {}", reply.text()))
}

/// A masked client text frame (RFC 6455 §5.2), payload under 126 bytes.
fn text_frame(text: &str) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | u8::try_from(text.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame: its opcode and payload (under 126 bytes).
fn read_frame(stream: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    stream.read_exact(&mut payload).unwrap();
    (head[0] & 0x0f, payload)
}

#[test]
fn fastapi_under_gunicorn_is_served_through_percore() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gunicorn.sock");
    let _gunicorn = Gunicorn::start(&socket);
    let server = start_proxy(&[&socket]);
    let addr = support::addr(&server);
    let mut client = Client::connect(addr);

    // JSON, with the forwarding fields the app reads.
    let reply =
        client.request(b"GET /items/7 HTTP/1.1\r\nHost: api\r\nX-Request-ID: abc-1\r\n\r\n");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let item = json(&reply);
    assert_eq!(item["id"], 7);
    assert_eq!(item["x_forwarded_for"], "127.0.0.1");
    assert_eq!(item["x_forwarded_proto"], "http");
    assert_eq!(item["x_request_id"], "abc-1");
    assert_eq!(reply.header("x-request-id"), Some("abc-1"));
    // FastAPI's validation error passes through as it is.
    let reply = client.request(&support::get("/items/not-a-number"));
    assert_eq!(reply.status, 422);

    // A streamed response, chunked to the client, every line.
    let reply = client.request(&support::get("/stream?lines=200"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    let lines: Vec<String> = (0..200).map(|i| format!("line {i}\n")).collect();
    assert_eq!(reply.text(), lines.concat());

    // A large upload, streamed to the app as it arrives.
    let body: Vec<u8> = (0..(48u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
    let hex = digest.as_ref().iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    });
    client.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(&body);
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let stored = json(&reply);
    assert_eq!(stored["bytes"], body.len());
    assert_eq!(stored["sha256"], hex);

    // A WebSocket, tunnelled to uvicorn.
    let mut ws = std::net::TcpStream::connect(addr).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = support::websocket_handshake(&mut ws, "/ws");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains(support::WEBSOCKET_ACCEPT), "{head}");
    for text in ["hello", "percore in front"] {
        ws.write_all(&text_frame(text)).unwrap();
        let (opcode, payload) = read_frame(&mut ws);
        assert_eq!(opcode, 1);
        assert_eq!(String::from_utf8(payload).unwrap(), format!("echo: {text}"));
    }
    drop(ws);
    server.stop().unwrap();
}

#[test]
fn with_one_gunicorn_down_the_other_serves_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.sock");
    let gone = dir.path().join("gone.sock");
    let _gunicorn = Gunicorn::start(&live);
    let server = start_proxy(&[&gone, &live]);
    let mut client = Client::connect(support::addr(&server));
    for id in 0..20 {
        let reply = client.request(&support::get(&format!("/items/{id}")));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(json(&reply)["id"], id);
    }
    server.stop().unwrap();
}
