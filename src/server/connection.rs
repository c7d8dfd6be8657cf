//! The connection loop: admit a connection, complete its TLS handshake,
//! then drive its protocol over its transport until the protocol closes it.
//!
//! The loop is thin and knows no HTTP. A [`Protocol`] says what it needs
//! next ([`Step`]: read, work, send, close); the loop does that I/O under
//! the connection's two timers and reports the outcome back. HTTP/1.1 is
//! the [`Conn`](super::conn::Conn) state machine; another protocol (HTTP/2,
//! a WebSocket, a tunnel) is another implementation of the same trait.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::conn::Conn;
use super::deadline::{Expired, Registered, Timer};
use super::exchange::{Origin, log_refusal};
use crate::http::status::Status;
use crate::observe::counters::Rejection;
use crate::route::pooled::BlockPool;
use crate::server::Role;
use crate::server::shard::ShardContext;
use crate::transport::{BodyIo, BufferPool, Io, TlsStream, Transport};

/// What a protocol asks of the connection loop next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for the peer to send into [`Protocol::input`], under `timer`.
    /// `idle`: the connection is between requests, so a draining shard may
    /// end the wait.
    Read { timer: ReadTimer, idle: bool },
    /// Run [`Protocol::work`] (answer what arrived, produce the next piece
    /// of a stream) within `limit`.
    Work { limit: Option<Duration> },
    /// Send [`Protocol::output`] within `limit`.
    Send { limit: Option<Duration> },
    /// Send what [`Protocol::output`] holds (a response head, or
    /// nothing), then the next part of [`Protocol::file_part`] straight
    /// from the file (the transport splices), within `limit`.
    SendFile { limit: Option<Duration> },
    /// Hand the connection to [`Protocol::tunnel`] (after a `101`), with
    /// no limit: it runs until the connection should end.
    Tunnel,
    /// End the connection.
    Close(Close),
}

/// The reading timer of a [`Step::Read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadTimer {
    /// The deadline already running holds (a slow request keeps the
    /// deadline of its first byte).
    Running,
    /// A new wait: restart the timer with this limit (`None`: no limit).
    Restart(Option<Duration>),
}

/// How a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// A clean close (TLS `close_notify`, then FIN).
    Quiet,
    /// After a refusal the peer may still be sending into: end the sending
    /// side, then read and discard for a while (nginx's `lingering_close`).
    Linger,
    /// An abortive close (RST): the peer stopped taking what was sent.
    Reset,
}

/// How a read ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// This many bytes were added after the input already held.
    Bytes(usize),
    /// The peer closed its sending side.
    End,
    /// The input would outgrow its ceiling.
    TooLarge,
    /// The read failed (reset, TLS error).
    Failed,
    /// The reading timer expired (or the drain ended an idle wait).
    Expired,
}

/// How a send ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// All of the output was sent.
    Done,
    /// The send failed.
    Failed,
    /// The send timer expired: the peer stopped reading.
    Expired,
}

/// The connection's transport and timers, lent to a protocol's work so a
/// handler can read a body while it arrives.
pub(crate) struct Wire<'a, 'd> {
    pub(crate) io: &'a mut dyn BodyIo,
    pub(crate) watch: &'a Registered<'d>,
    pub(crate) pool: &'a BufferPool,
}

/// A protocol on one connection, as the loop drives it: a state machine
/// that owns its buffers and says what it needs next.
pub(crate) trait Protocol {
    /// What to do next.
    fn step(&mut self) -> Step;
    /// The buffer to read into, the bytes it holds, and its ceiling.
    fn input(&mut self) -> (&mut Vec<u8>, usize, usize);
    /// The outcome of a [`Step::Read`].
    fn received(&mut self, outcome: Received);
    /// The work of a [`Step::Work`]; with `wire`, the work may read a
    /// body that arrives while its handler runs.
    fn work(&mut self, wire: Option<Wire<'_, '_>>) -> impl Future<Output = ()>;
    /// The work ran past its limit (its future has been dropped).
    fn work_expired(&mut self);
    /// The takeover of a [`Step::Tunnel`], over `wire` (without one, it
    /// only ends the connection).
    fn tunnel(&mut self, wire: Option<Wire<'_, '_>>) -> impl Future<Output = ()>;
    /// The bytes a [`Step::Send`] (or the start of a [`Step::SendFile`])
    /// sends; the loop leaves it empty.
    fn output(&mut self) -> &mut Vec<u8>;
    /// The outcome of a [`Step::Send`].
    fn sent(&mut self, outcome: Sent);
    /// The file, offset and length a [`Step::SendFile`] sends from.
    fn file_part(&self) -> Option<(std::rc::Rc<std::os::fd::OwnedFd>, u64, usize)> {
        None
    }
    /// The outcome of a [`Step::SendFile`]: bytes sent (0: the file ended
    /// early), or how it failed.
    fn file_sent(&mut self, outcome: Result<usize, Sent>) {
        let _ = outcome;
    }
    /// The connection has ended: give the buffers back.
    fn release(&mut self);
}

/// Serves one connection until its protocol closes it.
///
/// The connection is set up before the task starts, so the task holds
/// only what it uses while the connection lives (every idle connection
/// holds this future; see the size test in `conn`).
pub(crate) fn serve_connection<S: 'static>(
    shard: Rc<ShardContext<S>>,
    mut transport: Transport,
    peer: Option<SocketAddr>,
    role: Role,
) -> impl Future<Output = ()> {
    shard.metrics.accepted();
    // This connection keeps the limits and timeouts in force now.
    let settings = shard.settings();
    let origin = Origin::of(peer, role);
    let mut conn = Conn::new(Rc::clone(&shard), settings, origin);
    async move {
        let Some(_admitted) = shard.gate.admit(
            conn.origin().peer,
            conn.rules(),
            &shard.counters,
            shard.index,
        ) else {
            // Closed without a response; logged as nginx's limit_conn would be.
            log_refusal(
                &shard,
                conn.origin().peer,
                Status::SERVICE_UNAVAILABLE,
                0,
                &[],
            );
            return;
        };
        let watch = shard.deadlines.register();
        if conn.origin().tls {
            // Boxed: the handshake is once per connection and large.
            match Box::pin(handshake(&shard, transport, &watch)).await {
                Some(tls) => transport = tls,
                None => return,
            }
        }
        if transport.chose_h2() {
            // Boxed: HTTP/2's futures are not every connection's.
            return Box::pin(serve_h2(&shard, conn.origin(), transport, &watch)).await;
        }
        conn.returns_buffers(transport.returns_idle_buffers());
        conn.splices(transport.splices());
        drive(
            &mut conn,
            &mut transport,
            &watch,
            &shard.blocks,
            &shard.pool,
        )
        .await;
    }
}

/// Serves a connection that chose HTTP/2 by ALPN, then closes it.
async fn serve_h2<S: 'static>(
    shard: &Rc<ShardContext<S>>,
    origin: Origin,
    mut transport: Transport,
    watch: &Registered<'_>,
) {
    shard.metrics.http2_connection();
    let pool = &shard.pool;
    super::h2::serve(shard, origin, &mut transport, pool, watch, Vec::new()).await;
    transport.shutdown(pool).await;
}

/// The I/O loop: does what `protocol` asks, each wait under its timer,
/// until it closes; then closes the transport as asked.
///
/// Timeouts: the `Reading` timer covers waits for the peer, the `Working`
/// timer the protocol's work and each send. The work and each send are
/// placed in a pooled block: their futures are large, and inline they
/// would make every idle connection's task as large.
pub(crate) async fn drive<P: Protocol, T: Io>(
    protocol: &mut P,
    io: &mut T,
    watch: &Registered<'_>,
    blocks: &BlockPool,
    pool: &BufferPool,
) {
    let close = loop {
        match protocol.step() {
            Step::Read { timer, idle } => {
                if let ReadTimer::Restart(limit) = timer {
                    watch.arm(Timer::Reading, limit);
                    watch.set_idle(idle);
                }
                let (buf, filled, max) = protocol.input();
                let outcome = match watch
                    .guard(Timer::Reading, io.read_into(buf, filled, max, pool))
                    .await
                {
                    Ok(Ok(0)) => Received::End,
                    Ok(Ok(read)) => Received::Bytes(read),
                    Ok(Err(error)) if error.kind() == std::io::ErrorKind::OutOfMemory => {
                        Received::TooLarge
                    }
                    Ok(Err(_)) => Received::Failed,
                    Err(Expired) => Received::Expired,
                };
                if idle {
                    watch.set_idle(false);
                }
                protocol.received(outcome);
            }
            Step::Work { limit } => {
                watch.arm(Timer::Working, limit);
                let wire = Wire { io, watch, pool };
                let done = watch
                    .guard(
                        Timer::Working,
                        blocks.place_with(|| protocol.work(Some(wire))),
                    )
                    .await;
                watch.disarm(Timer::Working);
                if done.is_err() {
                    protocol.work_expired();
                }
            }
            Step::Tunnel => {
                // Boxed, not in a pooled block: the takeover's future is
                // small and lives as long as the connection (a WebSocket).
                let wire = Wire { io, watch, pool };
                Box::pin(protocol.tunnel(Some(wire))).await;
            }
            Step::Send { limit } => {
                watch.arm(Timer::Working, limit);
                let send = blocks.place(io.write_all(protocol.output(), pool));
                let outcome = match watch.guard(Timer::Working, send).await {
                    Ok(Ok(())) => Sent::Done,
                    Ok(Err(_)) => Sent::Failed,
                    // The send was cancelled with its future.
                    Err(Expired) => Sent::Expired,
                };
                watch.disarm(Timer::Working);
                protocol.sent(outcome);
            }
            Step::SendFile { limit } => {
                let Some((file, offset, len)) = protocol.file_part() else {
                    protocol.file_sent(Err(Sent::Failed));
                    continue;
                };
                watch.arm(Timer::Working, limit);
                // Boxed: the splice future is bigger than the rest of the
                // connection's, and every idle connection would carry it.
                let splice = Box::pin(io.send_file(protocol.output(), &file, offset, len));
                let outcome = match watch.guard(Timer::Working, splice).await {
                    Ok(Ok(sent)) => Ok(sent),
                    Ok(Err(_)) => Err(Sent::Failed),
                    Err(Expired) => Err(Sent::Expired),
                };
                protocol.output().clear();
                watch.disarm(Timer::Working);
                protocol.file_sent(outcome);
            }
            Step::Close(close) => break close,
        }
    };
    if close == Close::Reset {
        io.reset_on_close();
    }
    io.shutdown(pool).await;
    if close == Close::Linger {
        let (buf, _, _) = protocol.input();
        Box::pin(linger(io, pool, watch, buf)).await;
    }
    protocol.release();
}

/// Most a lingering close reads and discards.
const LINGER_BYTES: usize = 16 << 20;

/// How long a lingering close waits for the peer to stop sending.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);

/// A lingering close (nginx's `lingering_close`): after a refusal sent
/// while the peer may still be sending its request, end the sending side
/// (a FIN after the response) and read and discard what still comes, for
/// a bounded time and amount, so the close does not answer unread bytes
/// with a reset that could destroy the response before the peer reads it.
async fn linger<T: Io>(io: &mut T, pool: &BufferPool, watch: &Registered<'_>, buf: &mut Vec<u8>) {
    io.shutdown_write();
    watch.disarm(Timer::Working);
    watch.arm(Timer::Reading, Some(LINGER_TIME));
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match watch.guard(Timer::Reading, io.discard(buf, pool)).await {
            Ok(Ok(read)) if read > 0 => discarded += read,
            _ => break,
        }
    }
}

/// Wraps a new connection in TLS and completes its handshake within the
/// handshake timeout; `None` when it fails (counted) or TLS is not set up.
async fn handshake<S>(
    shard: &ShardContext<S>,
    transport: Transport,
    watch: &Registered<'_>,
) -> Option<Transport> {
    let Transport::Plain(plain) = transport else {
        return None;
    };
    let tls = shard.settings().tls.clone()?;
    let connection = rustls::ServerConnection::new(tls.config).ok()?;
    let mut stream = Box::new(TlsStream::new(plain, connection));
    watch.arm(Timer::Reading, Some(tls.handshake_timeout));
    let done = watch
        .guard(Timer::Reading, stream.handshake(&shard.pool))
        .await;
    watch.disarm(Timer::Reading);
    if matches!(done, Ok(Ok(()))) {
        shard.metrics.tls_handshake();
        Some(Transport::Tls(stream))
    } else {
        shard.counters.count(Rejection::TlsHandshake);
        None
    }
}
