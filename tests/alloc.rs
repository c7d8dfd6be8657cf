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
    /// Bytes held: allocated minus freed, while counting.
    static HELD: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are thread-local cells that never allocate.
#[allow(unsafe_code, reason = "a global allocator is an unsafe trait")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        hold(layout.size(), 0);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        hold(0, layout.size());
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        hold(new_size, layout.size());
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn hold(gained: usize, freed: usize) {
    if COUNTING.with(Cell::get) {
        let delta =
            i64::try_from(gained).unwrap_or(i64::MAX) - i64::try_from(freed).unwrap_or(i64::MAX);
        HELD.with(|n| n.set(n.get() + delta));
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
/// output of the last one.
fn serve_each(service: &mut LocalService<()>, request: &[u8], requests: usize, out: &mut Vec<u8>) {
    for _ in 0..requests {
        out.clear();
        let (consumed, close) = block_on(service.serve(request, out));
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
        // Warm up: buffers reach their working size.
        serve_each(&mut service, request, 10, &mut out);
        assert!(out.ends_with(body), "{}", String::from_utf8_lossy(&out));
        let counted = allocations(|| serve_each(&mut service, request, 1000, &mut out));
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
    serve_each(&mut service, &batch, 10, &mut out);
    assert_eq!(
        out.windows(13).filter(|w| w == b"Hello, World!").count(),
        16
    );
    let counted = allocations(|| serve_each(&mut service, &batch, 100, &mut out));
    assert_eq!(counted, 0);
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the two tests above against a counter that never counts.
    let counted = allocations(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(counted, 1);
}

#[test]
fn rate_limited_requests_allocate_nothing_once_the_key_exists() {
    let mut config = percore::Config::default();
    config.rate_limit.enabled = true;
    config.rate_limit.policy = vec![percore::config::PolicyConfig {
        name: "default".into(),
        rate: 1e9,
        burst: 1_000_000,
        routes: Vec::new(),
        ..percore::config::PolicyConfig::default()
    }];
    let mut service = LocalService::with_config(percore::reference::app(), &config).unwrap();
    service.set_peer("127.0.0.2:5000".parse().unwrap());
    let request = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut out = Vec::with_capacity(4096);
    serve_each(&mut service, request, 10, &mut out);
    assert!(
        out.windows(10).any(|w| w == b"RateLimit:"),
        "the fields are sent"
    );
    let allocated = allocations(|| serve_each(&mut service, request, 1_000, &mut out));
    assert_eq!(allocated, 0, "allocations over 1,000 rate-limited requests");
}

#[test]
fn a_rate_limit_key_costs_under_a_hundred_bytes() {
    let gcra = percore::internals::Gcra::new(10.0, 20);
    let keys = 100_000u64;
    HELD.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let mut table = percore::internals::Table::new(100_000);
    for key in 0..keys {
        table.check(u128::from(key) << 32, &gcra, 1 + key);
    }
    COUNTING.with(|c| c.set(false));
    let held = HELD.with(Cell::get);
    #[allow(clippy::cast_precision_loss, reason = "a byte count")]
    let per_key = held as f64 / keys as f64;
    eprintln!("rate-limit table: {per_key:.1} bytes per key with {keys} keys");
    assert_eq!(table.len(), 100_000);
    assert!(per_key < 100.0, "{per_key} bytes per key");
}

#[test]
fn a_chain_of_no_op_layers_allocates_nothing_per_request() {
    use percore::{Next, Request, ResponseWriter, from_fn};
    let pass = || {
        from_fn(
            async |request: &mut Request<'_>, response: &mut ResponseWriter<'_>, next: Next<'_>| {
                next.run(request, response).await;
            },
        )
    };
    let app = percore::reference::app()
        .layer(pass())
        .layer(pass())
        .layer(pass());
    let mut service = LocalService::new(app);
    let request = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut out = Vec::with_capacity(4096);
    serve_each(&mut service, request, 10, &mut out);
    assert!(out.ends_with(b"Hello, World!"));
    let counted = allocations(|| serve_each(&mut service, request, 1000, &mut out));
    assert_eq!(
        counted, 0,
        "allocations for 1000 requests through three layers"
    );
}
