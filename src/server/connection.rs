//! The connection loop: read into one reused buffer, answer every complete
//! (pipelined) request in it, send all the responses with one write.
//!
//! [`serve_buffered`] is the whole request path without a socket: decode,
//! route, call the handler, encode. The socket loop and [`LocalService`]
//! (tests, benches) both drive it.

use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::StreamExt;

use super::deadline::{Expired, Registered, Timer};
use super::exchange::{Origin, error_writer, log_refusal, serve_buffered};
use crate::config::ConnectionRules;
use crate::http::parse::{Decoder, Limits};
use crate::http::status::Status;
use crate::http::write::{BodyStream, CONTINUE, LAST_CHUNK, encode_chunk};
use crate::observe::counters::Rejection;
use crate::server::Role;
use crate::server::shard::ShardContext;
use crate::transport::{READ_BUFFER, TlsStream, Transport};

/// What a connection is waiting for from its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// The first byte of a request.
    Idle,
    /// The rest of a request head.
    Head,
    /// The rest of a request body.
    Body,
}

impl Wait {
    /// How long this wait may last: the keep-alive timeout between requests,
    /// the header timeout for a request's head (and a new connection's first
    /// byte), the body timeout for its body.
    fn limit(self, rules: &ConnectionRules, served_any: bool) -> Option<std::time::Duration> {
        match self {
            Wait::Idle if served_any => rules.keepalive,
            Wait::Idle | Wait::Head => rules.header,
            Wait::Body => rules.body,
        }
    }
}

/// Serves one connection until the peer closes, an error, a timeout, or
/// `Connection: close`.
///
/// The read buffer holds `buf[start..filled]` unanswered bytes. On the ring
/// transport both buffers go back to the shard's pool whenever no request
/// is half-read, so an idle connection holds neither. Timeouts: `reading`
/// covers the wait for a request (idle, head, body), `working` the handler
/// and the send (one [`Timer`] each); a slow request keeps the deadline of
/// its first byte.
#[allow(
    clippy::too_many_lines,
    reason = "the connection loop reads best as one piece: read, work, send, settle"
)]
pub(crate) async fn serve<S: 'static>(
    shard: Rc<ShardContext<S>>,
    mut transport: Transport,
    peer: Option<SocketAddr>,
    role: Role,
) {
    let shard = &*shard;
    shard.metrics.accepted();
    // This connection keeps the limits and timeouts in force now.
    let settings = shard.settings();
    let rules = &settings.rules;
    let Some(_admitted) = shard.gate.admit(peer, rules, &shard.counters, shard.index) else {
        // Closed without a response; logged as nginx's limit_conn would be.
        log_refusal(shard, peer, Status::SERVICE_UNAVAILABLE, 0, &[]);
        return;
    };
    let watch = shard.deadlines.register();
    if role == Role::Tls {
        // Boxed: the handshake is once per connection and large.
        match Box::pin(handshake(shard, transport, &watch)).await {
            Some(tls) => transport = tls,
            None => return,
        }
    }
    let lends = transport.lends_buffers();
    let mut decoder = Decoder::new(settings.limits);
    let mut io = Buffers::default();
    let mut budget = match rules.keepalive_requests {
        0 => u32::MAX,
        cap => cap,
    };
    let mut served_any = false;
    let mut armed_for: Option<Wait> = None;
    // The close follows a refusal the peer may still be sending into.
    let mut lingering = false;
    loop {
        let wait = io.wait(&decoder);
        // A draining shard closes keep-alive connections between requests;
        // a new one that has not sent its first request yet gets to send it
        // (within the header timeout) and is answered with close.
        let between_requests = wait == Wait::Idle && served_any;
        if between_requests && shard.draining.get() {
            break;
        }
        if armed_for != Some(wait) {
            watch.arm(Timer::Reading, wait.limit(rules, served_any));
            watch.set_idle(between_requests);
            armed_for = Some(wait);
        }
        let read = transport.read_into(
            &mut io.buf,
            io.filled,
            buffer_ceiling(settings.limits),
            &shard.pool,
        );
        let read = match watch.guard(Timer::Reading, read).await {
            Ok(Ok(0)) => break,
            Ok(Ok(read)) => read,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::OutOfMemory => {
                // Rare paths are boxed so they do not enlarge every connection's task.
                Box::pin(reject_oversized(&mut transport, shard, &mut io.out)).await;
                log_refusal(
                    shard,
                    peer,
                    Status::PAYLOAD_TOO_LARGE,
                    0,
                    &io.buf[io.start..io.filled],
                );
                lingering = true;
                break;
            }
            Ok(Err(_)) => break,
            // Woken by the drain, not by a timeout.
            Err(Expired) if between_requests && shard.draining.get() => break,
            Err(Expired) => {
                lingering = Box::pin(time_out(
                    wait,
                    served_any,
                    &mut transport,
                    shard,
                    &mut io.out,
                ))
                .await;
                if lingering {
                    let input = &io.buf[io.start..io.filled];
                    log_refusal(shard, peer, Status::REQUEST_TIMEOUT, 0, input);
                }
                break;
            }
        };
        io.filled += read;
        watch.set_idle(false);
        io.prepare(shard, &mut decoder);
        watch.arm(Timer::Working, rules.request);
        // Placed in a pooled block: the work future is large, and inline it
        // would make every idle connection's task as large.
        let input = &mut io.buf[io.start..io.filled];
        let origin = Origin::of(peer, role);
        let work = serve_buffered(shard, &mut decoder, input, &mut io.out, origin, &mut budget);
        let Ok(batch) = watch.guard(Timer::Working, shard.blocks.place(work)).await else {
            Box::pin(answer_late(
                shard,
                &watch,
                &mut transport,
                &mut io.out,
                peer,
            ))
            .await;
            break;
        };
        if batch.consumed > 0 {
            served_any = true;
            armed_for = None;
        }
        io.start += batch.consumed;
        if !batch.close && decoder.take_continue() {
            io.out.extend_from_slice(CONTINUE);
        }
        if !io.out.is_empty() {
            watch.arm(Timer::Working, rules.send);
            // Placed like the work: a send future is large to carry while idle.
            let send = shard
                .blocks
                .place(transport.write_all(&mut io.out, &shard.pool));
            match watch.guard(Timer::Working, send).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(Expired) => {
                    // The send was cancelled with its future; the peer
                    // stopped reading, so the socket is reset rather than
                    // left holding what it could not deliver.
                    shard.counters.count(Rejection::SendTimeout);
                    transport.reset_on_close();
                    break;
                }
            }
        }
        watch.disarm(Timer::Working);
        if let Some(log) = &shard.access {
            log.flush();
        }
        if let Some((stream, chunked)) = batch.stream
            && (Box::pin(send_stream(
                &mut transport,
                &shard.pool,
                &mut io.out,
                stream,
                chunked,
            ))
            .await
            .is_err()
                || !chunked)
        {
            break;
        }
        if batch.close {
            lingering = batch.refused;
            break;
        }
        io.settle(shard, &mut decoder, lends);
    }
    transport.shutdown(&shard.pool).await;
    if lingering {
        Box::pin(linger(&mut transport, shard, &watch, &mut io.buf)).await;
    }
    io.release(shard, &mut decoder);
}

/// Most a lingering close reads and discards.
const LINGER_BYTES: usize = 16 << 20;

/// How long a lingering close waits for the peer to stop sending.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A lingering close (nginx's `lingering_close`): after a refusal sent
/// while the peer may still be sending its request, end the sending side
/// (a FIN after the response) and read and discard what still comes, for
/// a bounded time and amount, so the close does not answer unread bytes
/// with a reset that could destroy the response before the peer reads it.
async fn linger<S>(
    transport: &mut Transport,
    shard: &ShardContext<S>,
    watch: &Registered<'_>,
    buf: &mut Vec<u8>,
) {
    transport.shutdown_write();
    watch.disarm(Timer::Working);
    watch.arm(Timer::Reading, Some(LINGER_TIME));
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let read = transport.discard(buf, &shard.pool);
        match watch.guard(Timer::Reading, read).await {
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

/// A connection's buffers: unanswered input `buf[start..filled]`, and the
/// responses not yet sent.
#[derive(Default)]
struct Buffers {
    buf: Vec<u8>,
    out: Vec<u8>,
    start: usize,
    filled: usize,
}

impl Buffers {
    /// What the connection waits for next.
    fn wait(&self, decoder: &Decoder) -> Wait {
        if decoder.in_progress() {
            Wait::Body
        } else if self.start < self.filled {
            Wait::Head
        } else {
            Wait::Idle
        }
    }

    /// Takes an output buffer and a header table from the pool if lent out.
    fn prepare<S>(&mut self, shard: &ShardContext<S>, decoder: &mut Decoder) {
        if self.out.capacity() == 0 {
            self.out = shard.pool.take_write();
        }
        if decoder.header_capacity() == 0 {
            decoder.lend_header_table(shard.pool.take_headers());
        }
    }

    /// After a batch: with nothing left unanswered, lend the buffers back
    /// (ring path); otherwise keep the partial request at the front, so the
    /// buffer only grows for requests that need it.
    fn settle<S>(&mut self, shard: &ShardContext<S>, decoder: &mut Decoder, lends: bool) {
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
            if lends {
                shard.pool.put_read(std::mem::take(&mut self.buf));
                shard.pool.put_write(std::mem::take(&mut self.out));
                shard.pool.put_headers(decoder.take_header_table());
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.filled, 0);
            (self.start, self.filled) = (0, self.filled - self.start);
        }
    }

    /// Gives everything back to the pool when the connection ends.
    fn release<S>(&mut self, shard: &ShardContext<S>, decoder: &mut Decoder) {
        shard.pool.put_read(std::mem::take(&mut self.buf));
        shard.pool.put_write(std::mem::take(&mut self.out));
        shard.pool.put_headers(decoder.take_header_table());
    }
}

/// Answers 504 for a handler that ran past its time, then the connection
/// closes (the handler's future has been dropped).
async fn answer_late<S>(
    shard: &ShardContext<S>,
    watch: &Registered<'_>,
    transport: &mut Transport,
    out: &mut Vec<u8>,
    peer: Option<SocketAddr>,
) {
    shard.counters.count(Rejection::RequestTimeout);
    tracing::warn!(
        shard = shard.index,
        ?peer,
        "handler ran past timeouts.request_secs; answered 504"
    );
    let settings = shard.settings();
    error_writer(shard, &settings.fixed_headers, out)
        .send_error(Status::GATEWAY_TIMEOUT, "the request took too long");
    watch.arm(Timer::Working, settings.rules.send);
    let sent = watch
        .guard(Timer::Working, transport.write_all(out, &shard.pool))
        .await;
    if sent.is_err() {
        transport.reset_on_close();
    }
}

/// Ends a connection whose peer was too slow: 408 if part of a request had
/// arrived, silence for an idle keep-alive connection. Whether a request
/// was cut off (so its close lingers).
async fn time_out<S>(
    wait: Wait,
    served_any: bool,
    transport: &mut Transport,
    shard: &ShardContext<S>,
    out: &mut Vec<u8>,
) -> bool {
    let reason = match wait {
        Wait::Idle if served_any => return false,
        Wait::Idle => {
            // Connected and sent nothing: nothing to answer.
            shard.counters.count(Rejection::HeaderTimeout);
            return false;
        }
        Wait::Head => Rejection::HeaderTimeout,
        Wait::Body => Rejection::BodyTimeout,
    };
    shard.counters.count(reason);
    out.clear();
    error_writer(shard, &shard.settings().fixed_headers, out).send_error(
        Status::REQUEST_TIMEOUT,
        "the request did not arrive in time",
    );
    let _ = transport.write_all(out, &shard.pool).await;
    true
}

/// Largest read buffer: a whole request at the limits, with room for chunked
/// framing around a body of the largest size, and for one more read, so
/// that the decoder, which looks after every read, meets its own limits
/// (431, 413) before the buffer meets this one.
fn buffer_ceiling(limits: Limits) -> usize {
    let body = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    limits
        .max_head_bytes
        .saturating_add(body.saturating_mul(2))
        .saturating_add(READ_BUFFER)
}

/// Answers a request that cannot fit the buffer ceiling (only chunked
/// framing far heavier than its data gets here).
async fn reject_oversized<S>(
    transport: &mut Transport,
    shard: &ShardContext<S>,
    out: &mut Vec<u8>,
) {
    out.clear();
    error_writer(shard, &shard.settings().fixed_headers, out)
        .send_error(Status::PAYLOAD_TOO_LARGE, "request too large");
    let _ = transport.write_all(out, &shard.pool).await;
}

async fn send_stream(
    transport: &mut Transport,
    pool: &crate::transport::BufferPool,
    out: &mut Vec<u8>,
    mut stream: BodyStream,
    chunked: bool,
) -> std::io::Result<()> {
    while let Some(piece) = stream.next().await {
        if chunked {
            encode_chunk(out, &piece);
        } else {
            out.extend_from_slice(&piece);
        }
        transport.write_all(out, pool).await?;
    }
    if chunked {
        out.extend_from_slice(LAST_CHUNK);
        transport.write_all(out, pool).await?;
    }
    Ok(())
}
