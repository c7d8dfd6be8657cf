//! Graceful shutdown: a request in flight when the server stops is still
//! answered (with `Connection: close`), idle keep-alive connections close,
//! and under keep-alive load no request sent before SIGTERM fails.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use percore::App;
use support::{Client, addr, get};

#[test]
fn a_request_in_flight_finishes_and_idle_connections_close() {
    let config = support::config();
    let app = App::new().get("/", async || "ok").get("/slow", async || {
        glommio::timer::sleep(Duration::from_millis(500)).await;
        "finished"
    });
    let server = app.start(&config).unwrap();
    let mut idle = Client::connect(addr(&server));
    assert_eq!(idle.request(&get("/")).text(), "ok");
    let mut busy = Client::connect(addr(&server));
    busy.send(&get("/slow"));
    // The slow request is in flight once this later one on another
    // connection is answered (one shard serves both in order of arrival).
    assert_eq!(
        Client::connect(addr(&server)).request(&get("/")).text(),
        "ok"
    );
    let stopping = std::thread::spawn(move || server.stop());
    let reply = busy.read_reply(false);
    assert_eq!(reply.text(), "finished");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(busy.is_closed());
    assert!(idle.is_closed(), "an idle connection stayed open");
    stopping
        .join()
        .unwrap()
        .expect("drained within the graceful timeout");
}

#[test]
fn no_request_sent_before_sigterm_fails_under_keep_alive_load() {
    let (mut child, server, lines) = support::spawn_percore(&[]);
    let signalled = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(9));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (signalled, started) = (Arc::clone(&signalled), Arc::clone(&started));
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(server).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let request = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
                let mut answered = 0u32;
                let mut first = true;
                // Bounded: at most 200,000 requests per client.
                for _ in 0..200_000 {
                    let sent_before_signal = !signalled.load(Ordering::SeqCst);
                    if stream.write_all(request).is_err() {
                        assert!(!sent_before_signal, "a write failed before the signal");
                        break;
                    }
                    let mut reply = [0u8; 512];
                    let mut len = 0;
                    while !reply[..len].ends_with(b"Hello, World!") {
                        match support::read_some(&mut stream, &mut reply[len..]) {
                            Ok(0) | Err(_) => {
                                assert!(
                                    !sent_before_signal,
                                    "a request sent before the signal failed"
                                );
                                return answered;
                            }
                            Ok(n) => len += n,
                        }
                    }
                    answered += 1;
                    if first {
                        first = false;
                        started.wait();
                    }
                    if reply[..len].windows(17).any(|w| w == b"Connection: close") {
                        return answered;
                    }
                }
                answered
            })
        })
        .collect();
    // Every client has been answered once: the load is on.
    started.wait();
    signalled.store(true, Ordering::SeqCst);
    support::sigterm(&child);
    let answered: u32 = clients
        .into_iter()
        .map(|c| c.join().expect("no client saw a failure"))
        .sum();
    assert!(answered >= 8);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.collect();
    assert!(rest.iter().any(|l| l.contains("draining")), "{rest:?}");
}

#[test]
fn readiness_says_draining_once_the_drain_begins() {
    let config = support::config();
    let server = App::new().get("/", async || "ok").start(&config).unwrap();
    let mut ready = Client::connect(addr(&server));
    assert_eq!(
        ready.request(&get("/health/ready")).text(),
        r#"{"status":"ready"}"#
    );
    // `half` is mid-request (kept through the drain); `idle` is idle (closed
    // when the drain begins, which is how the test knows it has begun).
    let mut half = Client::connect(addr(&server));
    half.send(b"GET /health/ready HTTP/1.1\r\n");
    let mut idle = Client::connect(addr(&server));
    assert_eq!(idle.request(&get("/")).text(), "ok");
    let stopping = std::thread::spawn(move || server.stop());
    assert!(idle.is_closed());
    assert!(ready.is_closed());
    half.send(b"Host: a\r\n\r\n");
    let reply = half.read_reply(false);
    assert_eq!(
        (reply.status, reply.text()),
        (503, r#"{"status":"draining"}"#)
    );
    assert_eq!(reply.header("connection"), Some("close"));
    stopping.join().unwrap().unwrap();
}

#[test]
fn a_connection_made_before_the_drain_still_gets_its_first_request_answered() {
    let config = support::config();
    let server = App::new().get("/", async || "ok").start(&config).unwrap();
    // Connected (and accepted: the next connection's answer comes after it),
    // but its request is sent only once the drain has begun.
    let mut fresh = Client::connect(addr(&server));
    let mut idle = Client::connect(addr(&server));
    assert_eq!(idle.request(&get("/")).text(), "ok");
    let stopping = std::thread::spawn(move || server.stop());
    // The idle keep-alive connection closing shows the drain has begun.
    assert!(idle.is_closed());
    let reply = fresh.request(&get("/"));
    assert_eq!((reply.status, reply.text()), (200, "ok"));
    assert_eq!(reply.header("connection"), Some("close"));
    stopping.join().unwrap().unwrap();
}
