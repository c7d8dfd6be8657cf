//! HTTP/2 on one connection (RFC 9113, HPACK RFC 7541), framed by percore
//! itself: TLS connections that chose `h2` by ALPN, and plain ones that
//! open with the HTTP/2 preface when `http2.cleartext` is on.
//!
//! The connection's task is the **wire**: it reads what the socket brings
//! into one buffer and gives it to the [`session::Session`], which judges
//! each complete frame and queues what to send; it writes what was queued
//! (a read waiting on the peer is put aside whenever there is output, so
//! sending never waits for the peer to speak). Each request the session
//! accepts runs in a task of its own ([`stream`]), answered through the
//! same HTTP/1.1 state machine as every other request (and so the same
//! routes, layers, limits, rate limits, timeouts and access log) in
//! memory; it takes its body from the session and sends its response
//! through it.
//!
//! The connection ends when the session is done: after a GOAWAY (a drain,
//! an idle timeout, the request budget, the client's own) once its streams
//! are done; or once its output is sent after a connection error; or at
//! once when the socket fails or the client closes it.

mod hpack;
mod request;
mod session;
mod stream;

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use super::deadline::{Expired, Registered, Timer};
use super::exchange::Origin;
use super::shard::ShardContext;
use crate::transport::{BodyIo, BufferPool, Takeover};
pub(crate) use session::PREFACE;
use session::Session;

/// Most bytes read from the socket at once (more when a frame is larger).
const READ_MAX: usize = 64 << 10;

/// A plain connection handed to HTTP/2 after its first bytes were the
/// preface (h2c with prior knowledge).
pub(crate) struct Cleartext<S> {
    pub(crate) shard: Rc<ShardContext<S>>,
    pub(crate) origin: Origin,
}

impl<S: 'static> Takeover for Cleartext<S> {
    fn run<'a>(
        self: Box<Self>,
        io: &'a mut dyn BodyIo,
        pool: &'a BufferPool,
        early: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            let watch = self.shard.deadlines.register();
            serve(&self.shard, self.origin, io, pool, &watch, early).await;
        })
    }
}

/// What the wire waited for.
enum Woke {
    Read(io::Result<usize>),
    Output,
}

/// Serves HTTP/2 on a connection until it ends; `early` is what already
/// arrived (the preface, for h2c).
pub(crate) async fn serve<S: 'static>(
    shard: &Rc<ShardContext<S>>,
    origin: Origin,
    io: &mut dyn BodyIo,
    pool: &BufferPool,
    watch: &Registered<'_>,
    early: Vec<u8>,
) {
    let settings = shard.settings();
    let rules = settings.rules;
    let session = Rc::new(RefCell::new(Session::new(
        &settings.http2,
        rules.keepalive_requests,
    )));
    let origin = Origin {
        http2: true,
        ..origin
    };
    let most = READ_MAX.max(settings.http2.max_frame_bytes as usize + 9);
    let mut out = Vec::new();
    let mut filled = early.len();
    let mut buf = early;
    let mut idle_armed = false;
    let mut read_by = ReadBy::default();
    if filled > 0 {
        filled = take_input(shard, origin, &session, &mut buf, filled);
    }
    loop {
        session.borrow_mut().take_out(&mut out);
        if !out.is_empty() {
            watch.arm(Timer::Working, rules.send);
            let sent = watch
                .guard(Timer::Working, io.write_now(&mut out, pool))
                .await;
            watch.disarm(Timer::Working);
            out.clear();
            if !matches!(sent, Ok(Ok(()))) {
                session.borrow_mut().broken();
                break;
            }
            session.borrow_mut().sent();
            continue;
        }
        if session.borrow().done() {
            break;
        }
        // Between streams the keep-alive timer runs, and a drain may end
        // the wait; with streams open, their own timers do.
        let streams = session.borrow().streams();
        if streams == 0 && !idle_armed {
            read_by.idle = watch.after(rules.keepalive);
            idle_armed = true;
            if filled == 0 {
                // An idle connection keeps no buffers of its own.
                out = Vec::new();
                buf = Vec::new();
                session.borrow_mut().release();
            }
        } else if streams > 0 {
            (read_by.idle, idle_armed) = (None, false);
        }
        let partial = session.borrow().partial(&buf[..filled]);
        read_by.arm(watch, rules.header, partial);
        watch.set_idle(true);
        if shard.draining.get() && !session.borrow().going_away() {
            session.borrow_mut().go_away();
            continue;
        }
        let woke = watch
            .guard(
                Timer::Reading,
                futures_lite::future::or(
                    async { Woke::Read(io.read_more(&mut buf, filled, most, pool).await) },
                    async {
                        output(&session).await;
                        Woke::Output
                    },
                ),
            )
            .await;
        watch.set_idle(false);
        match woke {
            Ok(Woke::Output) => {}
            Ok(Woke::Read(Ok(read))) if read > 0 => {
                filled = take_input(shard, origin, &session, &mut buf, filled + read);
            }
            Ok(Woke::Read(_)) => {
                // The client closed (or the socket failed): nothing it
                // asked for can be answered.
                session.borrow_mut().broken();
                break;
            }
            Err(Expired) => {
                if read_by.too_slow(watch) {
                    tracing::debug!(shard = shard.index, "HTTP/2 frame not finished in time");
                    session.borrow_mut().broken();
                    break;
                }
                // Idle too long, or the shard drains: GOAWAY, then the
                // connection ends once its streams are done.
                let mut state = session.borrow_mut();
                if state.going_away() {
                    // Asked before and still here: the peer keeps the
                    // connection open with nothing to do.
                    state.broken();
                    break;
                }
                state.go_away();
                read_by.idle = watch.after(rules.keepalive);
                idle_armed = true;
            }
        }
    }
    report(shard, &session.borrow());
}

/// Counts and logs the connection error a session ended with.
fn report<S>(shard: &ShardContext<S>, session: &Session) {
    let Some(code) = session.error() else {
        return;
    };
    shard.metrics.http2_error();
    if code == session::ENHANCE_YOUR_CALM {
        tracing::debug!(shard = shard.index, "HTTP/2 frame flood; connection ended");
    } else {
        tracing::debug!(
            shard = shard.index,
            code,
            "HTTP/2 protocol error; connection ended"
        );
    }
}

/// Gives the session the `filled` bytes read, spawns a task for each
/// request it accepted, and keeps what is left of a frame at the start of
/// `buf`; returns how much that is.
fn take_input<S: 'static>(
    shard: &Rc<ShardContext<S>>,
    origin: Origin,
    session: &Rc<RefCell<Session>>,
    buf: &mut [u8],
    filled: usize,
) -> usize {
    let (used, fresh) = {
        let mut state = session.borrow_mut();
        let used = state.receive(&buf[..filled]);
        (used, state.take_fresh())
    };
    for fresh in fresh {
        if session.borrow_mut().was_reset(fresh.id) {
            continue;
        }
        shard.metrics.http2_request();
        let open = stream::Open::new(Rc::clone(session), fresh.id);
        glommio::spawn_local(stream::answer(Rc::clone(shard), origin, fresh, open)).detach();
    }
    buf.copy_within(used..filled, 0);
    filled - used
}

/// When the wire's wait for the peer ends, on the coarse clock: the
/// earlier of the GOAWAY of an idle connection and the header timeout of a
/// frame or header block the peer began and owes the rest of (as nginx's
/// `client_header_timeout`).
#[derive(Default)]
struct ReadBy {
    idle: Option<u32>,
    partial: Option<u32>,
}

impl ReadBy {
    /// A frame or header block begun and not finished in the header
    /// timeout: a slow client, to be closed.
    fn too_slow(&self, watch: &Registered<'_>) -> bool {
        self.partial.is_some_and(|at| watch.now() >= at)
    }

    /// Follows whether the peer is in the middle of something, and arms
    /// the reading timer at the earlier end.
    fn arm(&mut self, watch: &Registered<'_>, header: Option<std::time::Duration>, partial: bool) {
        match (partial, self.partial) {
            (true, None) => self.partial = watch.after(header).or(Some(u32::MAX)),
            (false, Some(_)) => self.partial = None,
            _ => {}
        }
        let at = match (self.idle, self.partial) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        watch.arm_at(Timer::Reading, at);
    }
}

/// Waits until the session queued something or is done.
async fn output(session: &Rc<RefCell<Session>>) {
    poll_fn(|cx| {
        let mut state = session.borrow_mut();
        if state.has_output() || state.done() {
            return Poll::Ready(());
        }
        state.wait_output(cx.waker());
        Poll::Pending
    })
    .await;
}
