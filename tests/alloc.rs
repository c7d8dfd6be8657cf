//! The request path allocates nothing per request on /plaintext and /json:
//! a counting global allocator watches this thread while the reference app
//! answers requests through `LocalService` (decode, route, handler, encode).
//! Socket I/O is not part of this path; glommio's own allocations are
//! measured in the benchmarks instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use futures_lite::future::block_on;
use percore::LocalService;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are thread-local cells that never allocate.
#[allow(unsafe_code, reason = "a global allocator is an unsafe trait")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `work` on this thread.
fn allocations(work: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    work();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Serves `requests` copies of `request` one after another on one
/// connection, as a keep-alive client would send them; `out` holds the
/// output of the last one. `input` is scratch space the size of `request`.
fn serve_each(
    service: &mut LocalService<()>,
    request: &[u8],
    requests: usize,
    input: &mut [u8],
    out: &mut Vec<u8>,
) {
    for _ in 0..requests {
        input.copy_from_slice(request);
        out.clear();
        let (consumed, close) = block_on(service.serve(input, out));
        assert_eq!((consumed, close), (request.len(), false));
    }
}

#[test]
fn plaintext_and_json_allocate_nothing_per_request() {
    let mut service = LocalService::new(percore::reference::app());
    let mut out = Vec::with_capacity(4096);
    for (request, body) in [
        (
            &b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n"[..],
            &b"Hello, World!"[..],
        ),
        (
            b"GET /json HTTP/1.1\r\nHost: bench\r\n\r\n",
            br#"{"message":"Hello, World!"}"#,
        ),
    ] {
        let mut input = request.to_vec();
        // Warm up: buffers reach their working size.
        serve_each(&mut service, request, 10, &mut input, &mut out);
        assert!(out.ends_with(body), "{}", String::from_utf8_lossy(&out));
        let counted = allocations(|| serve_each(&mut service, request, 1000, &mut input, &mut out));
        assert_eq!(
            counted,
            0,
            "allocations for 1000 requests of {}",
            String::from_utf8_lossy(request)
        );
    }
}

#[test]
fn pipelined_batches_allocate_nothing() {
    let mut service = LocalService::new(percore::reference::app());
    let batch = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n".repeat(16);
    let mut out = Vec::with_capacity(8192);
    let mut input = batch.clone();
    serve_each(&mut service, &batch, 10, &mut input, &mut out);
    assert_eq!(
        out.windows(13).filter(|w| w == b"Hello, World!").count(),
        16
    );
    let counted = allocations(|| serve_each(&mut service, &batch, 100, &mut input, &mut out));
    assert_eq!(counted, 0);
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the two tests above against a counter that never counts.
    let counted = allocations(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(counted, 1);
}
