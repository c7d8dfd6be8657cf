//! Abuse that once left traces: clients that stop reading (no socket may
//! outlive its connection), early refusals (the client must get the whole
//! answer and a FIN), and running out of file descriptors.
#![allow(unsafe_code, reason = "setrlimit in the child before exec")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use percore::config::IoPath;
use percore::{Config, Rejection, Server};
use support::addr;

/// Sockets in `/proc/net/tcp` and `tcp6` whose local port is `port`, in
/// state ESTABLISHED (01): the server's side of its connections.
fn established_on(port: u16) -> usize {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"01") {
                count += 1;
            }
        }
    }
    count
}

fn echo_server(configure: impl FnOnce(&mut Config)) -> Server {
    let mut config = support::config();
    configure(&mut config);
    percore::reference::app().start(&config).unwrap()
}

/// A client with a tiny receive window that pipelines `requests` large
/// `POST /echo`s and never reads; its writes give up after two seconds
/// once the server stops reading too.
fn non_reader(addr: SocketAddr, requests: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let body = format!(r#"{{"message":"{}"}}"#, "x".repeat(512 * 1024));
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..requests {
        if stream.write_all(request.as_bytes()).is_err() {
            break;
        }
    }
    stream
}

/// Waits, bounded, for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn no_socket_outlives_a_send_timeout(io: IoPath) {
    let server = echo_server(|c| {
        c.limits.max_connections = 10;
        c.timeouts.send_secs = 1;
        // Whether a connection ends in a send timeout or, when the kernel
        // took its responses whole, waiting for the rest of a request the
        // client gave up writing, depends on timing: every way ends soon.
        c.timeouts.body_secs = 2;
        c.timeouts.keepalive_secs = 2;
        c.server.io = io;
    });
    let addr = addr(&server);
    let clients: Vec<TcpStream> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| scope.spawn(move || non_reader(addr, 8)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every connection ends (most in a send timeout) and then holds no
    // socket: nothing ESTABLISHED on the server's port, though every
    // client still holds its end open.
    eventually("no orphaned socket", || established_on(addr.port()) == 0);
    assert!(server.rejections(Rejection::SendTimeout) >= 1);
    drop(clients);
    server.stop().unwrap();
}

#[test]
fn no_socket_outlives_a_send_timeout_on_the_ring() {
    no_socket_outlives_a_send_timeout(IoPath::Uring);
}

#[test]
fn no_socket_outlives_a_send_timeout_on_glommio_streams() {
    no_socket_outlives_a_send_timeout(IoPath::Glommio);
}

/// Reads what the server sends until it closes; whether it closed with a
/// FIN (end of stream) rather than a reset.
fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match support::read_some(stream, &mut buffer) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, false),
            Err(e) => panic!("reading the refusal: {e}"),
        }
    }
}

fn an_early_refusal_is_read_whole_and_ends_with_a_fin(io: IoPath) {
    let server = echo_server(|c| {
        c.limits.max_body_bytes = 1024;
        c.server.io = io;
    });
    let mut stream = TcpStream::connect(addr(&server)).unwrap();
    // A body far over the limit, sent while the server has already answered.
    let head = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4000000\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < 4_000_000 && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let (reply, fin) = read_to_close(&mut stream);
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.ends_with('}'), "the refusal was cut: {text}");
    assert!(fin, "the refusal ended with a reset, not a FIN");
    let _ = sender.join();
    server.stop().unwrap();
}

#[test]
fn an_early_refusal_is_read_whole_and_ends_with_a_fin_on_the_ring() {
    an_early_refusal_is_read_whole_and_ends_with_a_fin(IoPath::Uring);
}

#[test]
fn an_early_refusal_is_read_whole_and_ends_with_a_fin_on_glommio_streams() {
    an_early_refusal_is_read_whole_and_ends_with_a_fin(IoPath::Glommio);
}

/// `percore serve` under an open-files limit of `limit`, once it listens;
/// its standard error lines so far, and the rest as they come.
fn percore_with_nofile(limit: u64) -> support::Spawned<impl Iterator<Item = String>> {
    use std::os::unix::process::CommandExt;
    let mut command = support::percore_serve(&["--listen", "127.0.0.1:0"]);
    command.stdout(std::process::Stdio::null());
    // SAFETY: runs in the forked child before exec and only calls
    // setrlimit (async-signal-safe) with a valid struct.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    support::spawn_ready(command)
}

/// Sends a GET and reads the answer: `Some(status)`, or `None` when the
/// server closed the connection instead. Panics when neither happens
/// within five seconds: a client left hanging.
fn ask(stream: &mut TcpStream) -> Option<u16> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if stream
        .write_all(b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n")
        .is_err()
    {
        return None;
    }
    let mut reply = [0u8; 256];
    match support::read_some(stream, &mut reply) {
        Ok(0) => None,
        Ok(n) => std::str::from_utf8(&reply[..n])
            .ok()?
            .get(9..12)?
            .parse()
            .ok(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("a client was left hanging: {e}"),
    }
}

#[test]
fn a_low_descriptor_limit_caps_connections_and_never_leaves_clients_hanging() {
    let started = Instant::now();
    let support::Spawned {
        mut child,
        addrs,
        preamble,
        lines,
        ..
    } = percore_with_nofile(64);
    let addr = addrs[0];
    let caps = preamble
        .iter()
        .find(|l| l.contains("connection caps per shard"))
        .unwrap_or_else(|| panic!("no caps line: {preamble:?}"));
    let cap: usize = caps
        .split("max_connections=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{caps}"));
    assert!(cap > 0 && cap < 64, "{caps}");
    assert!(
        preamble
            .iter()
            .any(|l| l.contains("more than the open-files limit allows"))
    );
    // Far more clients than descriptors: each is served or refused at once.
    let mut held = Vec::new();
    let mut served = 0;
    for _ in 0..120 {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            continue;
        };
        if ask(&mut stream) == Some(200) {
            served += 1;
            held.push(stream);
        }
    }
    assert_eq!(served, cap, "served {served} with a cap of {cap}");
    // Once they go, fresh clients are served again.
    drop(held);
    eventually("a fresh client served", || {
        TcpStream::connect(addr).is_ok_and(|mut s| ask(&mut s) == Some(200))
    });
    support::sigterm(&child);
    assert!(child.wait().unwrap().success());
    let refusal_lines = lines.filter(|l| l.contains("connection refused")).count();
    let seconds = usize::try_from(started.elapsed().as_secs()).unwrap() + 2;
    assert!(
        refusal_lines <= seconds,
        "{refusal_lines} refusal lines in {seconds} s"
    );
}

/// The shard's pooled bytes, as `/metrics` reports them.
fn pooled_bytes(server: &Server) -> u64 {
    let text = support::Client::connect(addr(server))
        .request(&support::get("/metrics"))
        .text()
        .to_owned();
    support::sample(&text, r#"percore_pooled_bytes{shard="0"}"#)
}

#[test]
fn the_pools_give_a_burst_back() {
    let server = support::start(percore::reference::app(), 1);
    let baseline = pooled_bytes(&server);
    // 300 clients each send half a request head, so each connection holds
    // its buffers at once; then they all finish, are answered and leave.
    let mut clients: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = TcpStream::connect(addr(&server)).unwrap();
            stream.write_all(b"GET /plaintext HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();
    for stream in &mut clients {
        stream
            .write_all(b"Host: a\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    for mut stream in clients {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        assert!(reply.ends_with(b"Hello, World!"));
    }
    let after_burst = pooled_bytes(&server);
    assert!(
        after_burst > baseline + (256 << 10),
        "the burst left {after_burst} bytes pooled (from {baseline}): it did not hold buffers at once"
    );
    // Two trims (5 s apart) free what no connection takes meanwhile;
    // watched for at most 30 s.
    let started = Instant::now();
    let mut now = after_burst;
    while now > 64 << 10 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(250));
        now = pooled_bytes(&server);
    }
    assert!(
        now <= 64 << 10,
        "still {now} bytes pooled after 30 s (from {after_burst} after the burst)"
    );
    server.stop().unwrap();
}
