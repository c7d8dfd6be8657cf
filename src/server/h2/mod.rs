//! HTTP/2 on one connection (RFC 9113, HPACK RFC 7541), with the `h2`
//! crate: TLS connections that chose `h2` by ALPN, and plain ones that
//! open with the HTTP/2 preface when `http2.cleartext` is on.
//!
//! Two halves run in the connection's task, sharing a [`Pipe`]:
//!
//! - the **wire** moves bytes between the connection's transport and the
//!   pipe: what arrives goes in for `h2` to read, what `h2` wrote goes out
//!   (a read waiting on the peer is put aside whenever there is output,
//!   so sending never waits for the peer to speak);
//! - the **session** is `h2`'s connection over the pipe: it accepts
//!   streams and runs each in a task of its own ([`stream`]), which
//!   answers it through the same HTTP/1.1 state machine (and so the same
//!   routes, layers, limits, rate limits, timeouts and access log) in
//!   memory.
//!
//! The connection ends when the session does: a GOAWAY after a drain, an
//! idle timeout or the request budget, once open streams are done; or at
//! once on a protocol error, the peer's close or a failed send.

mod guard;
mod hpack;
mod stream;

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::deadline::{Expired, Registered, Timer};
use super::exchange::Origin;
use super::shard::ShardContext;
use crate::config::Http2Config;
use crate::transport::{BodyIo, BufferPool, Takeover, wake};

/// The client preface of a connection with prior knowledge (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most bytes `h2` may have written and the wire not sent yet; then its
/// writes wait (backpressure from a slow reader).
const OUT_MAX: usize = 256 << 10;

/// Most bytes read from the socket at once.
const READ_MAX: usize = 64 << 10;

/// What the two halves share.
#[derive(Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a one-way flag of its own, set by one half for the other"
)]
struct Pipe {
    /// Arrived and not read by `h2` yet: `inbound[read..]`.
    inbound: Vec<u8>,
    read: usize,
    /// The peer closed its side (or the socket failed).
    ended: bool,
    /// Written by `h2`, not sent yet.
    outbound: Vec<u8>,
    /// The socket failed: writes fail from now on.
    broken: bool,
    /// The session is over: the wire sends what is left and stops.
    done: bool,
    /// The session should send GOAWAY and finish its streams.
    goaway: bool,
    /// `h2` waits for input, or for room to write.
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The session waits for anything (a stream, a GOAWAY request).
    session: Option<Waker>,
    /// The wire waits for output.
    wire: Option<Waker>,
    /// Streams open now.
    streams: usize,
}

/// `h2`'s end of the pipe.
struct Duplex(Rc<RefCell<Pipe>>);

impl tokio::io::AsyncRead for Duplex {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.0.borrow_mut();
        let pipe = &mut *pipe;
        let waiting = &pipe.inbound[pipe.read..];
        if !waiting.is_empty() {
            let take = waiting.len().min(buf.remaining());
            buf.put_slice(&waiting[..take]);
            pipe.read += take;
            if pipe.read == pipe.inbound.len() {
                pipe.inbound.clear();
                pipe.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if pipe.ended {
            // Nothing put: the end of the stream.
            return Poll::Ready(Ok(()));
        }
        pipe.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl tokio::io::AsyncWrite for Duplex {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.0.borrow_mut();
        if pipe.broken {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if pipe.outbound.len() >= OUT_MAX {
            pipe.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        pipe.outbound.extend_from_slice(buf);
        wake(&mut pipe.wire);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The wire sends whatever is written as soon as it can.
        let pipe = self.0.borrow();
        if pipe.broken {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

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
    let mut guard = guard::Guard::new(&settings.http2);
    if let Err(code) = guard.admit(&early) {
        // Wrong from the first bytes: this side's (empty) SETTINGS, which
        // must come first, then the GOAWAY.
        let mut out = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        out.extend(guard.goaway(code));
        refuse(shard, io, pool, watch, code, out).await;
        return;
    }
    let pipe = Rc::new(RefCell::new(Pipe {
        inbound: early,
        ..Pipe::default()
    }));
    let budget = settings.rules.keepalive_requests;
    let session = session(shard, origin, (&settings.http2, budget), &pipe);
    let wire = wire(shard, (io, pool), watch, &pipe, guard);
    futures_lite::future::zip(session, wire).await;
}

/// The `h2` server settings of `config`.
fn builder(config: &Http2Config) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(config.max_header_list_bytes)
        .header_table_size(config.header_table_bytes)
        .initial_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .max_frame_size(config.max_frame_bytes)
        .max_pending_accept_reset_streams(config.max_pending_resets)
        .max_local_error_reset_streams(Some(config.max_error_resets))
        .max_send_buffer_size(64 << 10);
    builder
}

/// The session half: `h2`'s connection, accepting streams until it ends.
async fn session<S: 'static>(
    shard: &Rc<ShardContext<S>>,
    origin: Origin,
    (config, budget): (&Http2Config, u32),
    pipe: &Rc<RefCell<Pipe>>,
) {
    if let Ok(mut connection) = builder(config)
        .handshake::<_, Bytes>(Duplex(Rc::clone(pipe)))
        .await
    {
        let mut served = 0u32;
        let mut going_away = false;
        loop {
            let next = poll_fn(|cx| {
                let mut state = pipe.borrow_mut();
                if state.goaway && !going_away {
                    going_away = true;
                    connection.graceful_shutdown();
                }
                state.session = Some(cx.waker().clone());
                drop(state);
                connection.poll_accept(cx)
            })
            .await;
            match next {
                Some(Ok((request, respond))) => {
                    served += 1;
                    shard.metrics.http2_request();
                    if budget != 0 && served >= budget && !going_away {
                        going_away = true;
                        connection.graceful_shutdown();
                    }
                    pipe.borrow_mut().streams += 1;
                    let task = stream::answer(
                        Rc::clone(shard),
                        origin,
                        request,
                        respond,
                        Open(Rc::clone(pipe)),
                    );
                    glommio::spawn_local(task).detach();
                }
                Some(Err(error)) => {
                    tracing::debug!(shard = shard.index, %error, "HTTP/2 connection ended");
                    if !error.is_go_away() && !error.is_io() {
                        shard.metrics.http2_error();
                    }
                    break;
                }
                None => break,
            }
        }
    }
    let mut state = pipe.borrow_mut();
    state.done = true;
    wake(&mut state.wire);
}

/// A stream counted as open while it lives.
struct Open(Rc<RefCell<Pipe>>);

impl Drop for Open {
    fn drop(&mut self) {
        let mut pipe = self.0.borrow_mut();
        pipe.streams -= 1;
        if pipe.streams == 0 {
            // An idle timer may start now.
            wake(&mut pipe.wire);
        }
    }
}

/// What the wire waited for.
enum Woke {
    Read(io::Result<usize>),
    Output,
}

/// The wire half: socket to pipe and pipe to socket, until the session is
/// done and everything it wrote is sent, or the socket fails.
async fn wire<S>(
    shard: &ShardContext<S>,
    (io, pool): (&mut dyn BodyIo, &BufferPool),
    watch: &Registered<'_>,
    pipe: &Rc<RefCell<Pipe>>,
    mut guard: guard::Guard,
) {
    let rules = shard.settings().rules;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut idle_armed = false;
    let mut read_by = ReadBy::default();
    loop {
        {
            let mut state = pipe.borrow_mut();
            if state.outbound.is_empty() {
                if state.done {
                    return;
                }
            } else {
                std::mem::swap(&mut out, &mut state.outbound);
                wake(&mut state.writer);
            }
        }
        if !out.is_empty() {
            watch.arm(Timer::Working, rules.send);
            let sent = watch
                .guard(Timer::Working, io.write_now(&mut out, pool))
                .await;
            watch.disarm(Timer::Working);
            out.clear();
            if !matches!(sent, Ok(Ok(()))) {
                fail(pipe);
                return;
            }
            continue;
        }
        // Between streams the keep-alive timer runs, and a drain may end
        // the wait; with streams open, their own timers do.
        let streams = pipe.borrow().streams;
        if streams == 0 && !idle_armed {
            read_by.idle = watch.after(rules.keepalive);
            idle_armed = true;
            // An idle connection keeps no buffers of its own.
            out = Vec::new();
            buf = Vec::new();
            release_idle(pipe);
        } else if streams > 0 {
            (read_by.idle, idle_armed) = (None, false);
        }
        read_by.arm(watch, rules.header, guard.partial());
        watch.set_idle(true);
        if shard.draining.get() {
            ask_goaway(pipe);
        }
        let ended = pipe.borrow().ended;
        let woke = watch
            .guard(
                Timer::Reading,
                futures_lite::future::or(
                    async {
                        if ended {
                            std::future::pending::<()>().await;
                        }
                        Woke::Read(io.read_more(&mut buf, 0, READ_MAX, pool).await)
                    },
                    async {
                        output(pipe).await;
                        Woke::Output
                    },
                ),
            )
            .await;
        watch.set_idle(false);
        match woke {
            Ok(Woke::Output) => {}
            Ok(Woke::Read(Ok(read))) if read > 0 => {
                if let Err(code) = guard.admit(&buf[..read]) {
                    // A flood of cheap frames (ENHANCE_YOUR_CALM), or an
                    // error `h2` would name otherwise: GOAWAY, then close.
                    fail(pipe);
                    refuse(shard, io, pool, watch, code, guard.goaway(code)).await;
                    return;
                }
                let mut state = pipe.borrow_mut();
                state.inbound.extend_from_slice(&buf[..read]);
                wake(&mut state.reader);
            }
            Ok(Woke::Read(_)) => {
                let mut state = pipe.borrow_mut();
                state.ended = true;
                wake(&mut state.reader);
                wake(&mut state.session);
            }
            Err(Expired) => {
                if read_by.too_slow(watch) {
                    tracing::debug!(shard = shard.index, "HTTP/2 frame not finished in time");
                    fail(pipe);
                    return;
                }
                // Idle too long, or the shard drains: GOAWAY, then the
                // session ends once its streams are done.
                if pipe.borrow().goaway {
                    // Asked before and still here: the peer keeps the
                    // connection open with nothing to do.
                    fail(pipe);
                    return;
                }
                ask_goaway(pipe);
                read_by.idle = watch.after(rules.keepalive);
                idle_armed = true;
            }
        }
    }
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

/// Ends a connection the frame screen refused: `out` (its GOAWAY) is sent
/// within the send timeout, and the connection closes.
async fn refuse<S>(
    shard: &ShardContext<S>,
    io: &mut dyn BodyIo,
    pool: &BufferPool,
    watch: &Registered<'_>,
    code: u32,
    mut out: Vec<u8>,
) {
    shard.metrics.http2_error();
    if code == guard::ENHANCE_YOUR_CALM {
        tracing::debug!(shard = shard.index, "HTTP/2 frame flood; connection ended");
    } else {
        tracing::debug!(
            shard = shard.index,
            code,
            "HTTP/2 protocol error; connection ended"
        );
    }
    watch.arm(Timer::Working, shard.settings().rules.send);
    let _ = watch
        .guard(Timer::Working, io.write_now(&mut out, pool))
        .await;
}

/// Frees the pipe's buffers when they are empty.
fn release_idle(pipe: &Rc<RefCell<Pipe>>) {
    let mut state = pipe.borrow_mut();
    if state.inbound.is_empty() {
        state.inbound = Vec::new();
    }
    if state.outbound.is_empty() {
        state.outbound = Vec::new();
    }
}

/// Waits until the session wrote something or is done.
async fn output(pipe: &Rc<RefCell<Pipe>>) {
    poll_fn(|cx| {
        let mut state = pipe.borrow_mut();
        if !state.outbound.is_empty() || state.done {
            return Poll::Ready(());
        }
        state.wire = Some(cx.waker().clone());
        Poll::Pending
    })
    .await;
}

/// Asks the session for a GOAWAY.
fn ask_goaway(pipe: &Rc<RefCell<Pipe>>) {
    let mut state = pipe.borrow_mut();
    if !state.goaway {
        state.goaway = true;
        wake(&mut state.session);
    }
}

/// The socket failed: the session's reads end and its writes fail.
fn fail(pipe: &Rc<RefCell<Pipe>>) {
    let mut state = pipe.borrow_mut();
    state.ended = true;
    state.broken = true;
    wake(&mut state.reader);
    wake(&mut state.writer);
    wake(&mut state.session);
}
