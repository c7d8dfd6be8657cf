//! The connection state machine and its loop over a scripted transport:
//! no socket, no ring, no sleeping. A script lists what the peer sends;
//! a read past the script (or a `Hang`) waits forever, and the test moves
//! the shard's deadline clock forward to fire the timers.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future::{block_on, pending, poll_once};

use super::{Conn, Phase};
use crate::config::{Config, ConnectionRules};
use crate::http::response::Response;
use crate::http::status::Status;
use crate::observe::counters::Rejection;
use crate::route::extract::Bytes;
use crate::server::connection::drive;
use crate::server::exchange::Origin;
use crate::server::shard::{Settings, ShardContext};
use crate::transport::{BufferPool, Io, place};

/// What the peer does next.
enum Peer {
    /// Sends these bytes.
    Sends(&'static [u8]),
    /// Sends nothing more, and does not close.
    Hangs,
    /// Closes its sending side.
    Closes,
}

/// A transport that plays a script: reads take the next entry, writes are
/// recorded (or never complete, for a peer that stopped reading).
#[derive(Default)]
struct Script {
    peer: VecDeque<Peer>,
    /// Each completed write, in order.
    writes: Vec<Vec<u8>>,
    /// How many bytes had been written when each read began.
    written_at_read: Vec<usize>,
    /// Writes never complete.
    stalls_writes: bool,
    reset: Cell<bool>,
    shut_write: Cell<bool>,
    shut_down: bool,
    returns_buffers: bool,
    /// Runs as each write completes.
    on_write: Option<Box<dyn Fn()>>,
}

impl Script {
    fn new(peer: impl IntoIterator<Item = Peer>) -> Self {
        Self {
            peer: peer.into_iter().collect(),
            returns_buffers: true,
            ..Self::default()
        }
    }

    fn written(&self) -> Vec<u8> {
        self.writes.concat()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.written()).into_owned()
    }

    fn responses(&self) -> usize {
        self.text().matches("HTTP/1.1 ").count()
    }
}

impl Io for Script {
    fn returns_idle_buffers(&self) -> bool {
        self.returns_buffers
    }

    async fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &BufferPool,
    ) -> io::Result<usize> {
        self.written_at_read
            .push(self.writes.iter().map(Vec::len).sum());
        match self.peer.pop_front() {
            Some(Peer::Sends(bytes)) => place(buf, filled, max, pool, bytes),
            Some(Peer::Closes) => Ok(0),
            Some(Peer::Hangs) | None => pending().await,
        }
    }

    async fn write_all(&mut self, out: &mut Vec<u8>, _: &BufferPool) -> io::Result<()> {
        if self.stalls_writes {
            pending::<()>().await;
        }
        self.writes.push(std::mem::take(out));
        if let Some(hook) = &self.on_write {
            hook();
        }
        Ok(())
    }

    async fn discard(&mut self, buf: &mut Vec<u8>, pool: &BufferPool) -> io::Result<usize> {
        let max = buf.len().max(4096);
        self.read_into(buf, 0, max, pool).await
    }

    async fn shutdown(&mut self, _: &BufferPool) {
        self.shut_down = true;
    }

    fn reset_on_close(&self) {
        self.reset.set(true);
    }

    fn shutdown_write(&self) {
        self.shut_write.set(true);
    }
}

/// Every timeout armed (one second each: which one fired is told by the
/// phase it fired in and by the counters).
fn rules() -> ConnectionRules {
    let second = Some(Duration::from_secs(1));
    ConnectionRules {
        header: second,
        body: second,
        keepalive: second,
        request: second,
        send: second,
        keepalive_requests: 0,
        ..ConnectionRules::default()
    }
}

fn app() -> crate::App<()> {
    crate::App::new()
        .get("/", async || "hi")
        .post("/echo", async |Bytes(body): Bytes| body)
        .get("/hang", async || {
            pending::<()>().await;
            "never"
        })
        .get("/stream", async || {
            let pieces = vec![b"first,".to_vec(), b"second".to_vec()];
            Response::new(Status::OK).stream(futures_lite::stream::iter(pieces))
        })
}

fn shard_with(rules: ConnectionRules) -> Rc<ShardContext<()>> {
    let settings = Settings {
        rules,
        ..Settings::of(&Config::default(), 1, true)
    };
    Rc::new(ShardContext::new(0, Arc::new(app().into()), settings, ()))
}

/// A keep-alive request for `/`.
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A shard under `rules`, a new connection on it, and a peer that does
/// what `peer` says.
fn connection(
    rules: ConnectionRules,
    peer: impl IntoIterator<Item = Peer>,
) -> (Rc<ShardContext<()>>, Conn<()>, Script) {
    let shard = shard_with(rules);
    let conn = conn(&shard);
    (shard, conn, Script::new(peer))
}

fn conn(shard: &Rc<ShardContext<()>>) -> Conn<()> {
    let origin = Origin {
        peer: None,
        tls: false,
        redirect: None,
        http2: false,
    };
    let mut conn = Conn::new(Rc::clone(shard), shard.settings(), origin);
    conn.returns_buffers(true);
    conn
}

/// Drives `conn` over `script` until the loop waits (asserted), runs
/// `meanwhile`, and polls once more: whether the connection then ended.
fn wait_then(
    shard: &ShardContext<()>,
    conn: &mut Conn<()>,
    script: &mut Script,
    meanwhile: impl FnOnce(),
) -> bool {
    let watch = shard.deadlines.register();
    let mut driven = pin!(drive(conn, script, &watch, &shard.blocks, &shard.pool));
    assert!(block_on(poll_once(&mut driven)).is_none(), "the loop waits");
    meanwhile();
    block_on(poll_once(&mut driven)).is_some()
}

/// Drives `conn` over `script` to its end. Whenever the loop waits, the
/// deadline clock moves an hour on, firing any armed timer. Returns how
/// many times it had to.
fn run(shard: &ShardContext<()>, conn: &mut Conn<()>, script: &mut Script) -> u64 {
    let watch = shard.deadlines.register();
    let start = Instant::now();
    shard.deadlines.sweep(start);
    let mut driven = pin!(drive(conn, script, &watch, &shard.blocks, &shard.pool));
    for hour in 0..20 {
        if block_on(poll_once(&mut driven)).is_some() {
            return hour;
        }
        shard
            .deadlines
            .sweep(start + Duration::from_secs(3600 * (hour + 1)));
    }
    panic!("the connection did not end after 20 timeouts");
}

#[test]
fn keep_alive_answers_each_request_and_ends_with_the_peer() {
    let (shard, mut conn, mut script) =
        connection(rules(), [Peer::Sends(GET), Peer::Sends(GET), Peer::Closes]);
    assert_eq!(run(&shard, &mut conn, &mut script), 0, "no timer fired");
    assert_eq!(script.writes.len(), 2, "{}", script.text());
    assert!(script.writes.iter().all(|w| w.ends_with(b"\r\n\r\nhi")));
    assert_eq!(conn.phase(), Phase::Closing(super::Close::Quiet));
    assert!(script.shut_down);
}

#[test]
fn pipelined_requests_are_answered_in_one_send() {
    let shard = shard_with(rules());
    let mut conn = conn(&shard);
    let three = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut script = Script::new([Peer::Sends(three), Peer::Closes]);
    run(&shard, &mut conn, &mut script);
    assert_eq!(script.writes.len(), 1);
    assert_eq!(script.responses(), 3);
}

#[test]
fn a_request_split_across_reads_is_answered_once_whole() {
    let (shard, mut conn, mut script) = connection(
        rules(),
        [
            Peer::Sends(b"POST /echo HTTP/1.1\r\nHo"),
            Peer::Sends(b"st: x\r\nContent-Length: 5\r\n\r\nab"),
            Peer::Sends(b"cdeGET / HTTP/1.1\r\n"),
            Peer::Sends(b"Host: x\r\n\r\n"),
            Peer::Closes,
        ],
    );
    run(&shard, &mut conn, &mut script);
    assert_eq!(script.writes.len(), 2, "{}", script.text());
    assert!(script.writes[0].ends_with(b"abcde"));
    assert!(script.writes[1].ends_with(b"hi"));
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_read() {
    let (shard, mut conn, mut script) = connection(rules(), [
        Peer::Sends(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        ),
        Peer::Sends(b"abc"),
        Peer::Closes,
    ]);
    run(&shard, &mut conn, &mut script);
    let text = script.text();
    assert!(
        text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
        "{text}"
    );
    // The interim response was sent before the body was read.
    assert_eq!(
        script.written_at_read[1],
        b"HTTP/1.1 100 Continue\r\n\r\n".len()
    );
    assert!(text.ends_with("abc"));
}

#[test]
fn a_draining_shard_closes_between_requests_without_reading() {
    let (shard, mut conn, mut script) = connection(rules(), [Peer::Sends(GET), Peer::Sends(GET)]);
    // The drain begins while the first request is answered: its response
    // says close, and the second request is never read.
    shard.draining.set(true);
    assert_eq!(run(&shard, &mut conn, &mut script), 0);
    assert_eq!(script.responses(), 1);
    assert!(
        script.text().contains("connection: close\r\n")
            || script.text().contains("Connection: close\r\n")
    );
    assert_eq!(script.peer.len(), 1, "the second request was not read");
}

#[test]
fn the_drain_ends_an_idle_keep_alive_wait() {
    let (shard, mut conn, mut script) = connection(
        ConnectionRules {
            keepalive: None,
            ..rules()
        },
        [Peer::Sends(GET), Peer::Hangs],
    );
    let ended = wait_then(&shard, &mut conn, &mut script, || {
        shard.draining.set(true);
        shard.deadlines.drain();
    });
    assert!(ended, "the drain ended the wait");
    assert_eq!(script.responses(), 1);
    assert_eq!(shard.counters.get(Rejection::HeaderTimeout), 0);
}

#[test]
fn a_drain_that_begins_during_a_send_closes_before_the_next_read() {
    let (shard, mut conn, mut script) = connection(
        ConnectionRules {
            keepalive: None,
            ..rules()
        },
        [Peer::Sends(GET), Peer::Hangs],
    );
    // The response was written keep-alive; the drain's wake-up finds the
    // connection busy sending, so only the step after the send can see it.
    let draining = Rc::clone(&shard);
    script.on_write = Some(Box::new(move || {
        draining.draining.set(true);
        draining.deadlines.drain();
    }));
    assert_eq!(
        run(&shard, &mut conn, &mut script),
        0,
        "closed without a timeout"
    );
    assert_eq!(script.responses(), 1);
    assert!(
        !script
            .text()
            .to_ascii_lowercase()
            .contains("connection: close")
    );
    assert_eq!(script.peer.len(), 1, "no second read");
}

#[test]
fn a_slow_head_gets_408_and_a_lingering_close() {
    let (shard, mut conn, mut script) =
        connection(rules(), [Peer::Sends(b"GET / HTTP/1.1\r\nHo"), Peer::Hangs]);
    // One timeout for the head, one for the lingering close.
    assert_eq!(run(&shard, &mut conn, &mut script), 2);
    assert!(
        script.text().starts_with("HTTP/1.1 408 "),
        "{}",
        script.text()
    );
    assert_eq!(shard.counters.get(Rejection::HeaderTimeout), 1);
    assert!(script.shut_down);
}

#[test]
fn a_slow_body_gets_408_counted_as_a_body_timeout() {
    let (shard, mut conn, mut script) = connection(
        rules(),
        [
            Peer::Sends(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"),
            Peer::Hangs,
        ],
    );
    run(&shard, &mut conn, &mut script);
    assert!(
        script.text().starts_with("HTTP/1.1 408 "),
        "{}",
        script.text()
    );
    assert_eq!(shard.counters.get(Rejection::BodyTimeout), 1);
    assert_eq!(shard.counters.get(Rejection::HeaderTimeout), 0);
}

#[test]
fn an_idle_keep_alive_connection_times_out_silently() {
    let (shard, mut conn, mut script) = connection(rules(), [Peer::Sends(GET), Peer::Hangs]);
    assert_eq!(run(&shard, &mut conn, &mut script), 1);
    assert_eq!(script.responses(), 1, "nothing after the one response");
    assert_eq!(shard.counters.get(Rejection::HeaderTimeout), 0);
}

#[test]
fn a_connection_that_sends_nothing_is_closed_and_counted() {
    let (shard, mut conn, mut script) = connection(rules(), [Peer::Hangs]);
    assert_eq!(run(&shard, &mut conn, &mut script), 1);
    assert!(script.writes.is_empty());
    assert_eq!(shard.counters.get(Rejection::HeaderTimeout), 1);
}

#[test]
fn a_handler_past_its_time_gets_504_after_earlier_responses() {
    let (shard, mut conn, mut script) = connection(
        rules(),
        [
            Peer::Sends(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /hang HTTP/1.1\r\nHost: x\r\n\r\n"),
            Peer::Hangs,
        ],
    );
    assert_eq!(run(&shard, &mut conn, &mut script), 1);
    let text = script.text();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("HTTP/1.1 504 "), "{text}");
    assert_eq!(shard.counters.get(Rejection::RequestTimeout), 1);
    assert_eq!(conn.phase(), Phase::Closing(super::Close::Quiet));
}

#[test]
fn a_peer_that_stops_reading_is_reset_after_the_send_timeout() {
    let (shard, mut conn, mut script) =
        connection(rules(), [Peer::Sends(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")]);
    script.stalls_writes = true;
    assert_eq!(run(&shard, &mut conn, &mut script), 1);
    assert_eq!(shard.counters.get(Rejection::SendTimeout), 1);
    assert_eq!(conn.phase(), Phase::Closing(super::Close::Reset));
    assert!(script.reset.get(), "the close is abortive");
}

#[test]
fn a_streamed_body_is_sent_chunked_piece_by_piece() {
    let shard = shard_with(rules());
    let mut conn = conn(&shard);
    let mut script = Script::new([
        Peer::Sends(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"),
        Peer::Sends(GET),
        Peer::Closes,
    ]);
    run(&shard, &mut conn, &mut script);
    let text = script.text();
    assert!(
        text.contains("transfer-encoding: chunked") || text.contains("Transfer-Encoding: chunked"),
        "{text}"
    );
    assert!(
        text.contains("\r\n6\r\nfirst,\r\n6\r\nsecond\r\n0\r\n\r\nHTTP/1.1 200 OK"),
        "{text}"
    );
    // Head, two pieces, the last chunk, then the next response.
    assert_eq!(script.writes.len(), 5);
}

#[test]
fn the_last_request_of_the_budget_is_answered_with_close() {
    let (shard, mut conn, mut script) = connection(
        ConnectionRules {
            keepalive_requests: 2,
            ..rules()
        },
        [Peer::Sends(GET), Peer::Sends(GET), Peer::Sends(GET)],
    );
    run(&shard, &mut conn, &mut script);
    assert_eq!(script.responses(), 2);
    assert_eq!(script.peer.len(), 1, "the third request was not read");
}

#[test]
fn broken_framing_is_refused_and_the_close_lingers() {
    let (shard, mut conn, mut script) = connection(
        rules(),
        [
            Peer::Sends(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            ),
            Peer::Sends(b"more of what the peer still sends"),
            Peer::Closes,
        ],
    );
    assert_eq!(run(&shard, &mut conn, &mut script), 0);
    assert!(
        script.text().starts_with("HTTP/1.1 400 "),
        "{}",
        script.text()
    );
    // The lingering close read what followed the refusal, to the end.
    assert!(script.peer.is_empty());
    assert!(script.shut_write.get(), "the sending side ended first");
    assert!(!script.reset.get());
}

#[test]
fn an_idle_connection_holds_no_buffers() {
    let (shard, mut conn, mut script) = connection(rules(), [Peer::Sends(GET), Peer::Hangs]);
    assert!(!wait_then(&shard, &mut conn, &mut script, || {}));
    assert_eq!(conn.phase(), Phase::Idle);
    assert_eq!(conn.buf.capacity(), 0);
    assert_eq!(conn.out.capacity(), 0);
    assert_eq!(conn.decoder.header_capacity(), 0);
    // Over a transport that cannot lend them, the connection keeps them.
    let mut keeps = Conn::new(Rc::clone(&shard), shard.settings(), conn.origin);
    let mut script = Script::new([Peer::Sends(GET), Peer::Hangs]);
    assert!(!wait_then(&shard, &mut keeps, &mut script, || {}));
    assert!(keeps.buf.capacity() > 0);
}

/// The size of what `f` returns, without calling it.
fn size_of_output<A, B, C, D, R>(_: impl FnOnce(A, B, C, D) -> R) -> usize {
    std::mem::size_of::<R>()
}

#[test]
fn an_idle_connection_task_stays_within_its_size_budget() {
    // Every open connection holds this future; the idle keep-alive budget
    // (under 1 KiB per connection, bench/README.md) rests on it. 776 bytes
    // before the state machine, 768 with it (rustc 1.9x, x86-64).
    const BUDGET: usize = 800;
    let size = size_of_output(crate::server::connection::serve_connection::<()>);
    assert!(
        size <= BUDGET,
        "the connection future is {size} bytes, over {BUDGET}"
    );
}
