//! One HTTP/1.1 connection as an explicit state machine.
//!
//! [`Conn`] owns the connection's [`Phase`], its keep-alive budget, its
//! buffers and its decoder; every change of phase is a named transition
//! below. It does no I/O: the connection loop
//! ([`drive`](super::connection::drive)) asks it for the next [`Step`] and
//! reports each outcome, and [`LocalService`](super::LocalService) drives
//! the same machine without a socket.
//!
//! The read buffer holds `buf[start..filled]` unanswered bytes: every
//! complete (pipelined) request in it is answered in one pass, and all the
//! responses go out in one send. When nothing is half-read, a connection
//! whose transport allows it gives both buffers back to the shard's pool,
//! so an idle connection holds neither.

#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::Duration;

use futures_lite::StreamExt;

use super::connection::{Close, Protocol, ReadTimer, Received, Sent, Step, Wire};
use super::exchange::{Origin, error_writer, log_refusal, serve_buffered};
use super::h2::{Cleartext, PREFACE};
use crate::config::ConnectionRules;
use crate::http::parse::{Decoder, Limits};
use crate::http::status::Status;
use crate::http::write::{
    After, CONTINUE, FileSource, LAST_CHUNK, Pieces, StreamFraming, encode_chunk, recycle_chunk,
};
use crate::observe::counters::Rejection;
use crate::server::shard::{Settings, ShardContext};
use crate::transport::READ_BUFFER;

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Waiting for the rest of a request head.
    Head,
    /// Waiting for the rest of a request body.
    Body,
    /// Answering the complete requests in the buffer.
    Handling,
    /// Sending the responses.
    Sending,
    /// Producing the next piece of a streamed body.
    Streaming,
    /// Handed over after a `101`: a tunnel runs until either side ends.
    Tunnel,
    /// Ending, as given.
    Closing(Close),
}

impl Phase {
    /// Waiting for the peer to send.
    fn is_wait(self) -> bool {
        matches!(self, Phase::Idle | Phase::Head | Phase::Body)
    }
}

/// A streamed response body and how it is delimited.
struct Streamed {
    body: Pieces,
    framing: StreamFraming,
    /// The file the body is spliced from (then `body` is not read), and
    /// how far into it the next byte is.
    file: Option<FileSource>,
}

/// One HTTP/1.1 connection.
pub(crate) struct Conn<S> {
    shard: Rc<ShardContext<S>>,
    /// The limits and timeouts in force when the connection was accepted.
    settings: Rc<Settings>,
    origin: Origin,
    phase: Phase,
    /// The wait the reading timer was last armed for: a slow request keeps
    /// the deadline of its first byte.
    armed: Option<Phase>,
    /// Whether a request has been answered (the idle wait is then the
    /// keep-alive timeout, not the header timeout).
    served_any: bool,
    /// Requests this connection may still make.
    budget: u32,
    /// Set by a response that ends the connection once it is sent.
    close_after: Option<Close>,
    stream: Option<Streamed>,
    /// The connection's owner once the `101` is sent.
    upgrade: Option<Box<dyn std::any::Any>>,
    /// The transport lets an idle connection give its buffers back.
    returns_buffers: bool,
    /// The transport sends file bodies straight from the file.
    splices: bool,
    decoder: Decoder,
    /// The read buffer's ceiling (see [`buffer_ceiling`]).
    ceiling: usize,
    buf: Vec<u8>,
    out: Vec<u8>,
    start: usize,
    filled: usize,
}

impl<S: 'static> Conn<S> {
    /// A new connection from `origin` under `settings`.
    pub(crate) fn new(shard: Rc<ShardContext<S>>, settings: Rc<Settings>, origin: Origin) -> Self {
        let budget = match settings.rules.keepalive_requests {
            0 => u32::MAX,
            cap => cap,
        };
        // Routes with body limits of their own: the decoder takes the
        // largest, and each request is held to its route's once routed.
        let (limits, buffered) = shard.app.connection_limits(settings.limits);
        let ceiling = buffer_ceiling(Limits {
            max_body_bytes: buffered,
            ..limits
        });
        Self {
            decoder: Decoder::new(limits),
            ceiling,
            shard,
            settings,
            origin,
            phase: Phase::Idle,
            armed: None,
            served_any: false,
            budget,
            close_after: None,
            stream: None,
            upgrade: None,
            returns_buffers: false,
            splices: false,
            buf: Vec::new(),
            out: Vec::new(),
            start: 0,
            filled: 0,
        }
    }

    /// The phase the connection is in.
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The connection rules (limits, timeouts) it was accepted under.
    pub(crate) fn rules(&self) -> &ConnectionRules {
        &self.settings.rules
    }

    /// Where the connection comes from.
    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether its transport lets an idle connection give its buffers
    /// back to the pool (else they stay with the connection).
    pub(crate) fn returns_buffers(&mut self, returns: bool) {
        self.returns_buffers = returns;
    }

    /// Whether the transport sends file bodies straight from the file.
    pub(crate) fn splices(&mut self, splices: bool) {
        self.splices = splices;
    }

    /// Between requests on a connection that has served one: the wait a
    /// draining shard ends.
    fn between_requests(&self) -> bool {
        self.phase == Phase::Idle && self.served_any
    }

    /// How long the wait of `phase` may last: the keep-alive timeout
    /// between requests, the header timeout for a head (and a new
    /// connection's first byte), the body timeout for a body.
    fn wait_limit(&self, phase: Phase) -> Option<Duration> {
        match phase {
            Phase::Idle if self.served_any => self.rules().keepalive,
            Phase::Body => self.rules().body,
            _ => self.rules().header,
        }
    }

    /// Transition: the shard is draining and the connection is between
    /// requests, so it closes now (a busy one finishes its request, which
    /// is answered with `Connection: close`).
    fn drain(&mut self) -> Step {
        self.phase = Phase::Closing(Close::Quiet);
        Step::Close(Close::Quiet)
    }

    /// Transition: everything the last pass produced is sent; wait for
    /// what the peer sends next (or end, if the last response said so).
    fn exchange_done(&mut self) {
        if let Some(log) = &self.shard.access {
            log.flush();
        }
        if let Some(close) = self.close_after {
            self.phase = Phase::Closing(close);
            return;
        }
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
            if self.returns_buffers {
                self.shard.pool.put_read(std::mem::take(&mut self.buf));
                self.shard.pool.put_write(std::mem::take(&mut self.out));
                self.shard
                    .pool
                    .put_headers(self.decoder.take_header_table());
            }
        } else if self.start > 0 {
            // Keep the partial request at the front, so the buffer only
            // grows for requests that need it.
            self.buf.copy_within(self.start..self.filled, 0);
            (self.start, self.filled) = (0, self.filled - self.start);
        }
        self.phase = if self.decoder.in_progress() {
            Phase::Body
        } else if self.start < self.filled {
            Phase::Head
        } else {
            Phase::Idle
        };
    }

    /// Transition: responses are in the output; send them, or go on if
    /// there are none.
    fn send_or_continue(&mut self) {
        if self.out.is_empty() {
            self.after_send();
        } else {
            self.phase = Phase::Sending;
        }
    }

    /// After a send: the stream continues, or the exchange is done.
    fn after_send(&mut self) {
        if self.stream.is_some() {
            self.phase = Phase::Streaming;
        } else if self.upgrade.is_some() {
            self.phase = Phase::Tunnel;
        } else {
            self.exchange_done();
        }
    }

    /// Transition: refuse the request with `status` (the output holds it),
    /// counted as `reason`, and close lingering once it is sent.
    fn refuse(&mut self, status: Status, detail: &str, reason: Option<Rejection>) {
        if let Some(reason) = reason {
            self.shard.counters.count(reason);
        }
        self.take_out_buffer();
        self.out.clear();
        error_writer(&self.shard, &self.settings.common_headers, &mut self.out)
            .send_error(status, detail);
        let input = &self.buf[self.start..self.filled];
        log_refusal(&self.shard, self.origin.peer, status, self.out.len(), input);
        self.close_after = Some(Close::Linger);
        self.phase = Phase::Sending;
    }

    /// Transition: the peer was too slow. 408 if part of a request had
    /// arrived; silence for a connection with nothing pending.
    fn timed_out(&mut self) {
        match self.phase {
            Phase::Idle => {
                if !self.served_any {
                    // Connected and sent nothing: nothing to answer.
                    self.shard.counters.count(Rejection::HeaderTimeout);
                }
                self.phase = Phase::Closing(Close::Quiet);
            }
            wait => {
                let reason = if wait == Phase::Body {
                    Rejection::BodyTimeout
                } else {
                    Rejection::HeaderTimeout
                };
                self.refuse(
                    Status::REQUEST_TIMEOUT,
                    "the request did not arrive in time",
                    Some(reason),
                );
            }
        }
    }

    fn take_out_buffer(&mut self) {
        if self.out.capacity() == 0 {
            self.out = self.shard.pool.take_write();
        }
    }

    /// Takes an output buffer and a header table from the pool if lent out.
    fn prepare(&mut self) {
        self.take_out_buffer();
        if self.decoder.header_capacity() == 0 {
            self.decoder
                .lend_header_table(self.shard.pool.take_headers());
        }
    }

    /// h2c with prior knowledge: a plain connection that opens with the
    /// HTTP/2 preface is handed to HTTP/2 (true), or waits for the rest of
    /// a preface begun (true); else it is HTTP/1.1 (false).
    fn cleartext_h2(&mut self) -> bool {
        if !self.settings.http2.cleartext || self.origin.tls || self.origin.http2 || self.served_any
        {
            return false;
        }
        let input = &self.buf[self.start..self.filled];
        if input.starts_with(PREFACE) {
            self.shard.metrics.http2_connection();
            let next: Box<dyn crate::transport::Takeover> = Box::new(Cleartext {
                shard: Rc::clone(&self.shard),
                origin: self.origin,
            });
            self.upgrade = Some(Box::new(next));
            self.phase = Phase::Tunnel;
            return true;
        }
        if PREFACE.starts_with(input) {
            self.phase = Phase::Head;
            return true;
        }
        false
    }

    /// Work: the next piece of the streamed body, framed, into the output.
    async fn next_piece(&mut self) {
        let Some(stream) = &mut self.stream else {
            self.exchange_done();
            return;
        };
        let next = stream.body.next().await;
        if let Some(Err(_)) = next {
            // The source failed mid-body: end without the last chunk (or
            // short of the length), so the client sees a cut-off body.
            self.stream = None;
            self.close_after = Some(Close::Quiet);
            self.send_or_continue();
            return;
        }
        if let Some(Ok(piece)) = next {
            match &mut stream.framing {
                StreamFraming::Chunked => encode_chunk(&mut self.out, &piece),
                StreamFraming::UntilClose => self.out.extend_from_slice(&piece),
                StreamFraming::Length(left) => {
                    let take = usize::try_from(*left).map_or(piece.len(), |l| l.min(piece.len()));
                    if take == piece.len() && self.out.is_empty() {
                        // The piece becomes the output as it is (a file
                        // chunk is sent with no copy); the buffer it
                        // displaces holds the next piece.
                        let spare = std::mem::replace(&mut self.out, piece);
                        *left -= take as u64;
                        if *left == 0 {
                            self.stream = None;
                        }
                        recycle_chunk(spare);
                        self.phase = Phase::Sending;
                        return;
                    }
                    self.out.extend_from_slice(&piece[..take]);
                    *left -= take as u64;
                    if *left == 0 {
                        if take < piece.len() {
                            tracing::warn!(
                                shard = self.shard.index,
                                "a streamed body gave more bytes than its declared length; the rest was dropped"
                            );
                        }
                        self.stream = None;
                    }
                }
            }
            recycle_chunk(piece);
            self.phase = Phase::Sending;
            return;
        }
        match stream.framing {
            StreamFraming::Chunked => self.out.extend_from_slice(LAST_CHUNK),
            // The end of an unframed body is the end of the connection;
            // a body that ends short of its length is cut off by a close.
            StreamFraming::UntilClose | StreamFraming::Length(_) => {
                self.close_after = Some(Close::Quiet);
            }
        }
        self.stream = None;
        self.send_or_continue();
    }

    /// For [`LocalService`](super::LocalService): answer `input` as if it
    /// had just been read, with nothing before it.
    pub(crate) fn load(&mut self, input: &[u8]) {
        if self.buf.len() < input.len() {
            self.buf.resize(input.len(), 0);
        }
        self.buf[..input.len()].copy_from_slice(input);
        (self.start, self.filled) = (0, input.len());
        self.close_after = None;
        self.phase = Phase::Handling;
    }

    /// Bytes read but not answered yet (a partial request).
    pub(crate) fn unanswered(&self) -> usize {
        self.filled - self.start
    }

    /// Forgets the unanswered bytes (their owner feeds them again).
    pub(crate) fn unload(&mut self) {
        (self.start, self.filled) = (0, 0);
    }

    /// Serves as if the connection came from `peer`.
    pub(crate) fn set_peer(&mut self, peer: std::net::SocketAddr) {
        self.origin.peer = Some(peer);
    }

    /// The shard the connection belongs to.
    pub(crate) fn shard(&self) -> &ShardContext<S> {
        &self.shard
    }
}

impl<S: 'static> Protocol for Conn<S> {
    fn step(&mut self) -> Step {
        match self.phase {
            Phase::Closing(close) => Step::Close(close),
            Phase::Handling => Step::Work {
                limit: self.rules().request,
            },
            // A file body goes straight from the file, each part's send
            // timed as a send; the head goes with the first part, so the
            // two leave in the same segments.
            Phase::Sending | Phase::Streaming
                if self.stream.as_ref().is_some_and(|s| s.file.is_some()) =>
            {
                Step::SendFile {
                    limit: self.rules().send,
                }
            }
            // A stream may be long (server-sent events): each piece's send
            // is timed, not the wait for it.
            Phase::Streaming => Step::Work { limit: None },
            Phase::Tunnel => Step::Tunnel,
            Phase::Sending => Step::Send {
                limit: self.rules().send,
            },
            wait => {
                if self.between_requests() && self.shard.draining.get() {
                    return self.drain();
                }
                let timer = if self.armed == Some(wait) {
                    ReadTimer::Running
                } else {
                    self.armed = Some(wait);
                    ReadTimer::Restart(self.wait_limit(wait))
                };
                Step::Read {
                    timer,
                    idle: self.between_requests(),
                }
            }
        }
    }

    fn input(&mut self) -> (&mut Vec<u8>, usize, usize) {
        (&mut self.buf, self.filled, self.ceiling)
    }

    fn received(&mut self, outcome: Received) {
        debug_assert!(self.phase.is_wait(), "read in {:?}", self.phase);
        match outcome {
            Received::Bytes(read) => {
                self.filled += read;
                self.phase = Phase::Handling;
            }
            Received::End | Received::Failed => self.phase = Phase::Closing(Close::Quiet),
            // Only chunked framing far heavier than its data gets here:
            // the decoder meets its own limits first.
            Received::TooLarge => self.refuse(Status::PAYLOAD_TOO_LARGE, "request too large", None),
            Received::Expired => self.timed_out(),
        }
    }

    async fn work(&mut self, wire: Option<Wire<'_, '_>>) {
        // Handling: answers every complete request in the buffer (and one
        // whose route reads its body while it arrives, over `wire`). In
        // this future, not an awaited one: each level of awaited async fn
        // copies the whole of the future below it on every call, and this
        // one holds the handler's.
        match self.phase {
            Phase::Handling => {}
            Phase::Streaming => return self.next_piece().await,
            phase => {
                debug_assert!(false, "work in {phase:?}");
                return;
            }
        }
        if self.cleartext_h2() {
            return;
        }
        self.prepare();
        let input = &mut self.buf[self.start..self.filled];
        let batch = serve_buffered(
            &self.shard,
            &mut self.decoder,
            input,
            &mut self.out,
            self.origin,
            &mut self.budget,
            wire,
        )
        .await;
        if batch.consumed > 0 {
            self.served_any = true;
            self.armed = None;
        }
        self.start += batch.consumed;
        if batch.close {
            self.close_after = Some(if batch.refused {
                Close::Linger
            } else {
                Close::Quiet
            });
        } else if self.decoder.take_continue() {
            self.out.extend_from_slice(CONTINUE);
        }
        match batch.stream {
            Some(After::Stream(body, framing)) => {
                self.stream = Some(Streamed {
                    body,
                    framing,
                    file: None,
                });
            }
            Some(After::File {
                source,
                length,
                fallback,
            }) => {
                self.stream = Some(Streamed {
                    body: fallback,
                    framing: StreamFraming::Length(length),
                    file: self.splices.then_some(source),
                });
            }
            Some(After::Upgrade(next)) => {
                // The connection is the tunnel's once the 101 is out.
                self.upgrade = Some(next);
                self.close_after = None;
            }
            None => self.stream = None,
        }
        self.send_or_continue();
    }

    fn work_expired(&mut self) {
        // The handler's future has been dropped: answer 504 after the
        // responses already written, then close.
        self.shard.counters.count(Rejection::RequestTimeout);
        tracing::warn!(
            shard = self.shard.index,
            peer = ?self.origin.peer,
            "handler ran past timeouts.request_secs; answered 504"
        );
        self.stream = None;
        self.upgrade = None;
        self.take_out_buffer();
        error_writer(&self.shard, &self.settings.common_headers, &mut self.out)
            .send_error(Status::GATEWAY_TIMEOUT, "the request took too long");
        self.close_after = Some(Close::Quiet);
        self.phase = Phase::Sending;
    }

    /// The takeover after a `101`, over `wire`, with the bytes the
    /// client sent after its request; then the connection ends.
    async fn tunnel(&mut self, wire: Option<Wire<'_, '_>>) {
        if let (Some(next), Some(wire)) = (self.upgrade.take(), wire) {
            let early = self.buf[self.start..self.filled].to_vec();
            (self.start, self.filled) = (0, 0);
            // The connection is the takeover's now (a WebSocket, a tunnel,
            // HTTP/2): its HTTP/1.1 buffers go back to the pool meanwhile.
            self.release();
            if let Ok(takeover) = next.downcast::<Box<dyn crate::transport::Takeover>>() {
                takeover.run(wire.io, wire.pool, early).await;
            }
        }
        self.phase = Phase::Closing(Close::Quiet);
    }

    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn sent(&mut self, outcome: Sent) {
        match outcome {
            Sent::Done => self.after_send(),
            Sent::Failed => self.phase = Phase::Closing(Close::Quiet),
            Sent::Expired => {
                // The peer stopped reading: the socket is reset rather than
                // left holding what it could not deliver.
                self.shard.counters.count(Rejection::SendTimeout);
                self.phase = Phase::Closing(Close::Reset);
            }
        }
    }

    fn file_part(&self) -> Option<(Rc<std::os::fd::OwnedFd>, u64, usize)> {
        let stream = self.stream.as_ref()?;
        let (Some(source), StreamFraming::Length(left)) = (&stream.file, stream.framing) else {
            return None;
        };
        // The transport moves what one step can (a pipe's worth) and says
        // how much.
        let len = usize::try_from(left).unwrap_or(usize::MAX);
        Some((Rc::clone(&source.file), source.offset, len))
    }

    fn file_sent(&mut self, outcome: Result<usize, Sent>) {
        let Some(stream) = &mut self.stream else {
            self.phase = Phase::Closing(Close::Quiet);
            return;
        };
        match outcome {
            // The file ended short of its length (truncated while sent):
            // the client sees the body cut off.
            Ok(0) | Err(Sent::Failed | Sent::Done) => self.phase = Phase::Closing(Close::Quiet),
            Ok(sent) => {
                // The head, if it was waiting, went first.
                self.phase = Phase::Streaming;
                if let (Some(source), StreamFraming::Length(left)) =
                    (&mut stream.file, &mut stream.framing)
                {
                    source.offset += sent as u64;
                    *left = left.saturating_sub(sent as u64);
                    if *left == 0 {
                        self.stream = None;
                        self.after_send();
                    }
                }
            }
            Err(Sent::Expired) => {
                self.shard.counters.count(Rejection::SendTimeout);
                self.phase = Phase::Closing(Close::Reset);
            }
        }
    }

    fn release(&mut self) {
        self.shard.pool.put_read(std::mem::take(&mut self.buf));
        self.shard.pool.put_write(std::mem::take(&mut self.out));
        self.shard
            .pool
            .put_headers(self.decoder.take_header_table());
    }
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
