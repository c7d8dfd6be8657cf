//! Timeouts and connection caps over real sockets. Timeouts are set to one
//! second; the sweep runs once a second, so each fires within about two.
//! Reads are bounded at ten seconds, so a missing timeout fails, never hangs.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use percore::{App, Config, Rejection, Server};
use support::{Client, addr, get};

fn server(configure: impl FnOnce(&mut Config)) -> Server {
    let mut config = support::config();
    configure(&mut config);
    App::new()
        .get("/", async || "ok")
        .get("/slow", async || {
            glommio::timer::sleep(Duration::from_secs(5)).await;
            "late"
        })
        .get("/big", async || vec![b'x'; 32 << 20])
        .start(&config)
        .unwrap()
}

fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes.
fn read_all(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    stream
        .read_to_end(&mut text)
        .expect("closed within the read limit");
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn a_slow_head_gets_408_and_trickling_bytes_do_not_extend_it() {
    let server = server(|c| c.timeouts.header_secs = 1);
    let mut stream = raw(addr(&server));
    stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // A slowloris client sends a byte every 400 ms for longer than the read
    // limit; were each byte to extend the deadline, no 408 would come in time.
    let mut trickle = stream.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(400));
            if trickle.write_all(b"X").is_err() {
                break;
            }
        }
    });
    let reply = read_all(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert!(reply.contains("Connection: close"), "{reply}");
    drop(stream);
    trickler.join().unwrap();
    assert_eq!(server.rejections(Rejection::HeaderTimeout), 1);
    server.stop().unwrap();
}

#[test]
fn a_slow_body_gets_408() {
    let server = server(|c| c.timeouts.body_secs = 1);
    let mut stream = raw(addr(&server));
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let reply = read_all(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    // Error responses carry the security headers too.
    assert!(reply.contains("X-Content-Type-Options: nosniff"), "{reply}");
    assert_eq!(server.rejections(Rejection::BodyTimeout), 1);
    server.stop().unwrap();
}

#[test]
fn idle_keep_alive_connections_are_closed_quietly() {
    let server = server(|c| c.timeouts.keepalive_secs = 1);
    let mut client = Client::connect(addr(&server));
    assert_eq!(client.request(&get("/")).text(), "ok");
    let mut stream = client.into_stream();
    // Closed with no response: nothing was asked.
    assert_eq!(read_all(&mut stream), "");
    server.stop().unwrap();
}

#[test]
fn a_slow_handler_gets_504() {
    let server = server(|c| c.timeouts.request_secs = 1);
    let mut client = Client::connect(addr(&server));
    // The handler would answer 200 after 5 s; the timeout answers first.
    let reply = client.request(&get("/slow"));
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(server.rejections(Rejection::RequestTimeout), 1);
    server.stop().unwrap();
}

#[test]
fn a_client_that_does_not_read_is_dropped() {
    let server = server(|c| c.timeouts.send_secs = 1);
    let mut stream = raw(addr(&server));
    // Ask for 32 MiB and read nothing: the server's send cannot finish.
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // Waits for the server's own verdict (a counter it updates), bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.rejections(Rejection::SendTimeout) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.rejections(Rejection::SendTimeout), 1);
    server.stop().unwrap();
}

#[test]
fn the_last_allowed_request_is_answered_with_close() {
    let server = server(|c| c.limits.keepalive_requests = 3);
    let mut client = Client::connect(addr(&server));
    for _ in 0..2 {
        assert_eq!(client.request(&get("/")).header("connection"), None);
    }
    let last = client.request(&get("/"));
    assert_eq!(
        (last.text(), last.header("connection")),
        ("ok", Some("close"))
    );
    assert!(client.is_closed());
    server.stop().unwrap();
}

#[test]
fn connections_over_the_shard_cap_are_closed() {
    let server = server(|c| c.limits.max_connections = 2);
    let mut first = Client::connect(addr(&server));
    let mut second = Client::connect(addr(&server));
    assert_eq!(first.request(&get("/")).text(), "ok");
    assert_eq!(second.request(&get("/")).text(), "ok");
    let mut third = raw(addr(&server));
    let _ = third.write_all(&get("/"));
    let mut rest = Vec::new();
    // Closed without an answer (a reset is as good as an end of stream).
    let _ = third.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert_eq!(server.rejections(Rejection::ShardConnectionLimit), 1);
    drop(first);
    server.stop().unwrap();
}

#[test]
fn connections_over_the_per_client_cap_are_closed() {
    let server = server(|c| c.limits.max_connections_per_ip = 1);
    let connect_from = |ip: &str| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.connect(&addr(&server).into()).unwrap();
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };
    let mut a = connect_from("127.0.0.2");
    a.write_all(&get("/")).unwrap();
    let mut buf = [0u8; 512];
    assert!(support::read_some(&mut a, &mut buf).unwrap() > 0);
    // A second connection from the same address is refused…
    let mut again = connect_from("127.0.0.2");
    let _ = again.write_all(&get("/"));
    let mut rest = Vec::new();
    let _ = again.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // …one from another address is served.
    let mut b = connect_from("127.0.0.3");
    b.write_all(&get("/")).unwrap();
    assert!(support::read_some(&mut b, &mut buf).unwrap() > 0);
    assert_eq!(server.rejections(Rejection::ClientConnectionLimit), 1);
    server.stop().unwrap();
}

#[test]
fn hundreds_of_slow_clients_do_not_stop_normal_ones() {
    let server = server(|c| c.timeouts.header_secs = 30);
    // 300 connections, each holding a half-sent head.
    let slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = raw(addr(&server));
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();
    // Served now: were they queued behind the slow clients, they would wait
    // for the 30 s header timeout and fail the 10 s read limit.
    for _ in 0..20 {
        let mut client = Client::connect(addr(&server));
        assert_eq!(client.request(&get("/")).text(), "ok");
    }
    drop(slow);
    server.stop().unwrap();
}
