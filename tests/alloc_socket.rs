//! Zero allocations per request over a real socket, on the `io_uring` path:
//! the whole process (shard included) is watched while a keep-alive client
//! sends requests. The client itself allocates nothing (fixed buffers).
//! One test per binary, so no other test allocates meanwhile.
//!
//! The shard polls its ring for a while before sleeping; each sleep and
//! wake-up goes through glommio, which allocates. A long poll keeps this
//! one-client test from sleeping between requests. glommio also re-arms its
//! preemption timers every 100 ms or so, allocating a few bytes each time:
//! those depend on time, not requests, so the bound below is one allocation
//! per hundred requests plus forty a second of the run — a single
//! allocation per request would be dozens of times over it.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are atomics that never allocate.
#[allow(unsafe_code, reason = "a global allocator is an unsafe trait")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Sends `request` and reads exactly `reply.len()` bytes into `reply`.
fn exchange(stream: &mut TcpStream, request: &[u8], reply: &mut [u8]) {
    stream.write_all(request).unwrap();
    stream.read_exact(reply).unwrap();
}

#[test]
fn plaintext_and_json_over_a_socket_allocate_nothing_per_request() {
    const REQUESTS: u64 = 2000;
    let mut config = support::config();
    config.server.idle_poll_us = 20_000; // see the module doc
    let server = percore::reference::app().start(&config).unwrap();
    for (request, body) in [
        (
            &b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            &b"Hello, World!"[..],
        ),
        (
            b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n",
            br#"{"message":"Hello, World!"}"#,
        ),
    ] {
        let mut stream = TcpStream::connect(support::addr(&server)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Learn the response size (fixed for these routes) from the first one.
        stream.write_all(request).unwrap();
        let mut first = [0u8; 512];
        let mut length = 0;
        while !first[..length].ends_with(body) {
            length += support::read_some(&mut stream, &mut first[length..]).unwrap();
        }
        let mut reply = [0u8; 512];
        let reply = &mut reply[..length];
        for _ in 0..200 {
            exchange(&mut stream, request, reply);
        }
        ALLOCATIONS.store(0, Ordering::SeqCst);
        let started = std::time::Instant::now();
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..REQUESTS {
            exchange(&mut stream, request, reply);
        }
        COUNTING.store(false, Ordering::SeqCst);
        assert!(reply.ends_with(body));
        let counted = ALLOCATIONS.load(Ordering::SeqCst);
        // Time-driven allocations (timers; a sleep and wake-up when a busy
        // machine keeps the client away past the poll) grow with the run's
        // length, not with requests: allow 40 a second on top.
        let allowed = REQUESTS / 100 + 40 * (started.elapsed().as_secs() + 1);
        assert!(
            counted < allowed,
            "{counted} allocations in {REQUESTS} requests (allowed {allowed})"
        );
    }
    server.stop().unwrap();
}
