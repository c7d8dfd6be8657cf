//! One HTTP/2 connection's state (RFC 9113): the frames the client sent,
//! read and judged as they complete; the streams they open, their flow
//! control both ways and their bodies; and the frames this side queues to
//! send, in one buffer the wire writes out.
//!
//! The wire ([`super`]) gives [`Session::receive`] what the socket read
//! and spawns a task for each request it accepts ([`Fresh`]); each stream's
//! task ([`super::stream`]) takes its body and sends its response through
//! the `Session` methods named for the stream. Nothing here waits: a task
//! that must wait (for body bytes, for window) leaves its waker on its
//! stream, and each change that may end the wait wakes it.
//!
//! **Errors.** A connection error queues GOAWAY with the RFC's code and
//! the last stream this side processed, and the connection ends once it is
//! sent; a stream error is `RST_STREAM` with its code.
//!
//! **Floods.** PING, SETTINGS, PRIORITY, `WINDOW_UPDATE`, `RST_STREAM`
//! and empty DATA frames cost the client little and this side some; a
//! client that sends nothing else is attacking (CVE-2019-9512, -9515,
//! -9518). Such frames are allowed up to a budget that grows with the
//! work the client asks for (requests and body bytes); past it the
//! connection ends with `ENHANCE_YOUR_CALM`, as nginx does. A client that
//! cancels more streams before their answer than it let be answered (the
//! rapid reset of CVE-2023-44487) and one that makes this side reset too
//! many streams for its errors are ended the same way; so is a header
//! block whose frames grow past what the header list limit could ever
//! accept (the CONTINUATION flood of CVE-2024-27316).

use std::io;
use std::task::{Context, Poll, Waker};

use super::hpack;
use super::request::{Request, Trailers};
use crate::config::Http2Config;
use crate::http::status::Status;
use crate::transport::wake;

/// The client preface of a connection (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
/// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;
/// Settings (RFC 9113 §6.5.2).
const HEADER_TABLE_SIZE: u16 = 0x1;
const ENABLE_PUSH: u16 = 0x2;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_FRAME_SIZE: u16 = 0x5;
const MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// Error codes (RFC 9113 §7).
pub(super) const NO_ERROR: u32 = 0x0;
pub(super) const PROTOCOL_ERROR: u32 = 0x1;
pub(super) const INTERNAL_ERROR: u32 = 0x2;
pub(super) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(super) const STREAM_CLOSED: u32 = 0x5;
pub(super) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(super) const REFUSED_STREAM: u32 = 0x7;
pub(super) const CANCEL: u32 = 0x8;
pub(super) const COMPRESSION_ERROR: u32 = 0x9;
pub(super) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The largest flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The window and frame size before SETTINGS say otherwise.
const DEFAULT_WINDOW: i64 = 65_535;
const DEFAULT_FRAME: usize = 16_384;

/// Most bytes of DATA queued and not sent yet; then senders wait
/// (backpressure from a slow reader).
const OUT_MAX: usize = 256 << 10;

/// Cheap frames any connection may send before requests earn more.
const BASE_BUDGET: u64 = 1000;
/// Cheap frames each request (HEADERS frame) earns.
const PER_REQUEST: u64 = 16;
/// Body bytes that earn one cheap frame.
const BYTES_PER_FRAME: u64 = 1024;

/// Streams closed lately, remembered to answer a late frame on them as
/// RFC 9113 §5.1 says.
const RECENT: usize = 32;

/// How a stream closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// Both sides ended it: frames on it are a connection error.
    Ended,
    /// The client reset it: frames on it are a stream error.
    PeerReset,
    /// This side reset it (or refused it): frames on it are ignored.
    Reset,
}

/// What a request's header block asks for: a stream for the wire to
/// spawn a task for.
#[derive(Debug)]
pub(super) struct Fresh {
    pub(super) id: u32,
    /// The request as an HTTP/1.1 message (its head, and the framing field
    /// its body needs); or the status and reason it is refused with.
    pub(super) head: Result<Vec<u8>, (Status, &'static str)>,
    /// A body follows: `Some(chunked)` (chunked when it has no length).
    pub(super) body: Option<bool>,
    pub(super) head_request: bool,
}

/// A header block being gathered across CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    depends_on_itself: bool,
    bytes: Vec<u8>,
}

/// One open stream.
#[derive(Debug)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a one-way flag of the stream's life"
)]
struct Stream {
    id: u32,
    /// Body bytes arrived and not taken.
    body: Vec<u8>,
    /// The client ended its side (`END_STREAM`).
    remote_end: bool,
    /// The trailer fields that ended it, as HTTP/1.1 lines.
    trailers: Vec<u8>,
    /// The body's `content-length`, and the bytes that came.
    expected: Option<u64>,
    received: u64,
    /// What the client may still send, and what was taken and not given
    /// back with `WINDOW_UPDATE` yet.
    recv_window: i64,
    unacked: u32,
    /// What this side may still send.
    send_window: i64,
    /// This side sent `END_STREAM` (or a reset).
    local_end: bool,
    /// Reset (by either side): the task's reads and sends fail.
    reset: bool,
    peer_reset: bool,
    /// The task waits for body bytes or for window.
    waker: Option<Waker>,
}

/// One connection's HTTP/2 state.
#[derive(Debug)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a one-way flag of the connection's life"
)]
pub(super) struct Session {
    // This side's limits.
    max_streams: usize,
    max_list: usize,
    max_frame: usize,
    stream_window: i64,
    connection_window: i64,
    max_resets: u64,
    max_error_resets: u64,
    /// Requests a connection may make; 0 is no limit.
    budget: u32,
    most_block: usize,

    /// Preface bytes still to check, and whether the client's first
    /// SETTINGS came.
    preface: usize,
    settled: bool,
    decoder: hpack::Decoder,
    block: Option<Block>,

    // The client's settings.
    peer_window: i64,
    peer_frame: usize,
    /// The table size this side's encoder must announce, and the one it
    /// last announced (RFC 7541 §4.2).
    table_update: Option<usize>,
    table_max: usize,

    /// Connection windows: what this side may send, what the client may.
    send_window: i64,
    recv_window: i64,
    unacked: u32,

    streams: Vec<Stream>,
    /// The highest stream the client opened, and the requests it made.
    last_stream: u32,
    served: u32,
    fresh: Vec<Fresh>,
    recent: [(u32, Closed); RECENT],
    recent_at: usize,

    cheap: u64,
    earned: u64,
    body_bytes: u64,
    resets: u64,
    completed: u64,
    error_resets: u64,

    /// Frames to send.
    out: Vec<u8>,
    /// A sender waits for room in `out`.
    out_blocked: bool,
    /// The wire waits for output.
    wire: Option<Waker>,
    /// The GOAWAY this side sent (`NO_ERROR`): its last stream.
    goaway: Option<u32>,
    peer_goaway: bool,
    /// Over: a connection error, or the socket failed or closed.
    failed: bool,
    /// The connection error this side ended it with.
    error: Option<u32>,
}

impl Session {
    /// A session whose preface (SETTINGS, and the connection window) is
    /// queued; `early` is what the client already sent.
    pub(super) fn new(config: &Http2Config, budget: u32) -> Self {
        let mut session = Self {
            max_streams: config.max_concurrent_streams as usize,
            max_list: config.max_header_list_bytes as usize,
            max_frame: config.max_frame_bytes as usize,
            stream_window: i64::from(config.stream_window_bytes),
            connection_window: i64::from(config.connection_window_bytes),
            max_resets: config.max_pending_resets as u64,
            max_error_resets: config.max_error_resets as u64,
            budget,
            // A block's frames may hold more than its decoded list
            // (padding, repeated indexes); past this the list is over the
            // limit whatever it decodes to.
            most_block: 2 * config.max_header_list_bytes as usize + (16 << 10),
            preface: PREFACE.len(),
            settled: false,
            decoder: hpack::Decoder::new(config.header_table_bytes),
            block: None,
            peer_window: DEFAULT_WINDOW,
            peer_frame: DEFAULT_FRAME,
            table_update: None,
            table_max: hpack::INITIAL_TABLE,
            send_window: DEFAULT_WINDOW,
            recv_window: DEFAULT_WINDOW,
            unacked: 0,
            streams: Vec::new(),
            last_stream: 0,
            served: 0,
            fresh: Vec::new(),
            recent: [(0, Closed::Ended); RECENT],
            recent_at: 0,
            cheap: 0,
            earned: BASE_BUDGET,
            body_bytes: 0,
            resets: 0,
            completed: 0,
            error_resets: 0,
            out: Vec::with_capacity(128),
            out_blocked: false,
            wire: None,
            goaway: None,
            peer_goaway: false,
            failed: false,
            error: None,
        };
        // The defaults need not be sent.
        let frame = (config.max_frame_bytes as usize != DEFAULT_FRAME)
            .then_some((MAX_FRAME_SIZE, config.max_frame_bytes));
        let table = (config.header_table_bytes as usize != hpack::INITIAL_TABLE)
            .then_some((HEADER_TABLE_SIZE, config.header_table_bytes));
        let mut settings = Vec::with_capacity(30);
        for (id, value) in [
            Some((MAX_CONCURRENT_STREAMS, config.max_concurrent_streams)),
            Some((INITIAL_WINDOW_SIZE, config.stream_window_bytes)),
            Some((MAX_HEADER_LIST_SIZE, config.max_header_list_bytes)),
            frame,
            table,
        ]
        .into_iter()
        .flatten()
        {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        session.frame_out(SETTINGS, 0, 0, &settings);
        let more = session.connection_window - DEFAULT_WINDOW;
        if more > 0 {
            session.recv_window += more;
            session.window_update(0, more);
        }
        session
    }

    // ----- The wire's side -----

    /// Reads the frames complete at the start of `input`; returns the
    /// bytes used. On a connection error its GOAWAY is queued, the session
    /// is over ([`Self::done`]) and the rest of `input` is not read.
    pub(super) fn receive(&mut self, input: &[u8]) -> usize {
        if self.failed {
            return input.len();
        }
        let mut at = 0;
        if self.preface > 0 {
            let want = &PREFACE[PREFACE.len() - self.preface..];
            let n = want.len().min(input.len());
            if input[..n] != want[..n] {
                self.fail(PROTOCOL_ERROR);
                return input.len();
            }
            self.preface -= n;
            at = n;
        }
        while self.preface == 0 && input.len() - at >= 9 {
            let h = &input[at..at + 9];
            let length = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            if length > self.max_frame {
                self.fail(FRAME_SIZE_ERROR);
                return input.len();
            }
            if input.len() - at - 9 < length {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let stream = word31(&h[5..9]);
            let payload = &input[at + 9..at + 9 + length];
            at += 9 + length;
            if let Err(code) = self.frame(kind, flags, stream, payload) {
                self.fail(code);
                return input.len();
            }
        }
        if self.cheap > self.earned {
            self.fail(ENHANCE_YOUR_CALM);
            return input.len();
        }
        at
    }

    /// Whether the client is in the middle of something it owes the rest
    /// of, bounded by the header timeout: `left` (bytes read and not used
    /// yet) that are a frame header or a frame other than DATA, or a
    /// header block awaiting its CONTINUATION frames. A DATA frame in part
    /// is a body on its way, which its stream's body timeout bounds.
    pub(super) fn partial(&self, left: &[u8]) -> bool {
        let mid_frame = match left.len() {
            0 => false,
            1..=8 => true,
            _ => left[3] != DATA,
        };
        mid_frame || self.preface > 0 && self.preface < PREFACE.len() || self.block.is_some()
    }

    /// The requests accepted since the last call.
    pub(super) fn take_fresh(&mut self) -> Vec<Fresh> {
        std::mem::take(&mut self.fresh)
    }

    /// Whether a stream the wire is about to spawn was reset meanwhile
    /// (then it is closed instead).
    pub(super) fn was_reset(&mut self, id: u32) -> bool {
        let reset = self.find(id).is_none_or(|s| self.streams[s].reset);
        if reset {
            self.finish(id);
        }
        reset
    }

    /// Frames to send (`into` is swapped in, to keep both allocations).
    pub(super) fn take_out(&mut self, into: &mut Vec<u8>) {
        std::mem::swap(into, &mut self.out);
    }

    /// Output was sent: senders waiting for room may go on.
    pub(super) fn sent(&mut self) {
        if self.out_blocked && self.out.len() < OUT_MAX {
            self.out_blocked = false;
            self.wake_all();
        }
    }

    /// Between streams: the buffers that are empty are freed (an idle
    /// connection holds only its state and the client's table).
    pub(super) fn release(&mut self) {
        if self.out.is_empty() {
            self.out = Vec::new();
        }
        self.decoder.release();
    }

    pub(super) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    pub(super) fn wait_output(&mut self, waker: &Waker) {
        self.wire = Some(waker.clone());
    }

    /// Streams open (spawned or about to be).
    pub(super) fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether the connection is over once its output is sent: failed, or
    /// going away with no stream left.
    pub(super) fn done(&self) -> bool {
        self.failed || (self.goaway.is_some() || self.peer_goaway) && self.streams.is_empty()
    }

    /// The connection error it ended with, if any.
    pub(super) fn error(&self) -> Option<u32> {
        self.error
    }

    /// Sends GOAWAY (`NO_ERROR`) naming the last stream processed: streams
    /// after it are ignored, those open finish (a drain, an idle
    /// connection, the request budget).
    pub(super) fn go_away(&mut self) {
        if self.goaway.is_none() && !self.failed {
            self.goaway = Some(self.last_stream);
            self.goaway_out(NO_ERROR);
        }
    }

    /// Whether this side sent its GOAWAY already.
    pub(super) fn going_away(&self) -> bool {
        self.goaway.is_some()
    }

    /// The socket failed or the client closed it: every stream's reads and
    /// sends fail from now on.
    pub(super) fn broken(&mut self) {
        self.failed = true;
        self.out.clear();
        self.wake_all();
    }

    /// Ends the connection with a connection error.
    fn fail(&mut self, code: u32) {
        if !self.failed {
            self.goaway_out(code);
            self.error = Some(code);
            self.failed = true;
            self.block = None;
            self.wake_all();
        }
    }

    // ----- Frames from the client -----

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<(), u32> {
        if !self.settled {
            // The preface ends with the client's SETTINGS (§3.4).
            if kind != SETTINGS || flags & ACK != 0 {
                return Err(PROTOCOL_ERROR);
            }
            self.settled = true;
        }
        // A header block's frames come one after another (§6.10).
        if let Some(block) = &self.block
            && (kind != CONTINUATION || stream != block.stream)
        {
            return Err(PROTOCOL_ERROR);
        }
        match kind {
            DATA => self.data(flags, stream, payload),
            HEADERS => self.headers(flags, stream, payload),
            PRIORITY => self.priority(stream, payload),
            RST_STREAM => self.rst_stream(stream, payload),
            SETTINGS => self.settings(flags, stream, payload),
            PUSH_PROMISE => Err(PROTOCOL_ERROR),
            PING => {
                if stream != 0 {
                    return Err(PROTOCOL_ERROR);
                }
                if payload.len() != 8 {
                    return Err(FRAME_SIZE_ERROR);
                }
                self.cheap += 1;
                if flags & ACK == 0 {
                    self.frame_out(PING, ACK, 0, payload);
                }
                Ok(())
            }
            GOAWAY => {
                if stream != 0 {
                    return Err(PROTOCOL_ERROR);
                }
                if payload.len() < 8 {
                    return Err(FRAME_SIZE_ERROR);
                }
                self.peer_goaway = true;
                Ok(())
            }
            WINDOW_UPDATE => self.window(stream, payload),
            CONTINUATION => {
                let Some(block) = &mut self.block else {
                    return Err(PROTOCOL_ERROR);
                };
                if payload.len() < 64 {
                    self.cheap += 1;
                }
                if block.bytes.len() + payload.len() > self.most_block {
                    return Err(ENHANCE_YOUR_CALM);
                }
                block.bytes.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    let block = self.block.take().expect("a block is being gathered");
                    return self.block_done(
                        block.stream,
                        block.end_stream,
                        block.depends_on_itself,
                        &block.bytes,
                    );
                }
                Ok(())
            }
            // Unknown types are ignored (§4.1, §5.5).
            _ => Ok(()),
        }
    }

    fn data(&mut self, flags: u8, stream: u32, payload: &[u8]) -> Result<(), u32> {
        if stream == 0 || stream > self.last_stream {
            // On the connection, or on a stream never opened (§5.1).
            return Err(PROTOCOL_ERROR);
        }
        let length = payload.len();
        // The whole payload counts, padding too (§6.9.1).
        if wide(length) > self.recv_window {
            return Err(FLOW_CONTROL_ERROR);
        }
        self.recv_window -= wide(length);
        let body = unpad(flags, payload)?;
        let end = flags & END_STREAM != 0;
        if length == 0 && !end {
            self.cheap += 1;
        }
        self.body_bytes += length as u64;
        self.earned += self.body_bytes / BYTES_PER_FRAME;
        self.body_bytes %= BYTES_PER_FRAME;
        if self.goaway.is_some_and(|last| stream > last) {
            // A stream after this side's GOAWAY: ignored (§6.8).
            self.give_back(length);
            return Ok(());
        }
        let Some(s) = self.find(stream) else {
            // Closed: its bytes are given back to the connection at once.
            self.give_back(length);
            return match self.closed_how(stream) {
                Some(Closed::Reset) => Ok(()),
                Some(Closed::Ended) => Err(STREAM_CLOSED),
                Some(Closed::PeerReset) | None => self.stream_error(stream, STREAM_CLOSED),
            };
        };
        let st = &mut self.streams[s];
        if st.reset && !st.peer_reset {
            // This side reset it: ignored (§5.1).
            self.give_back(length);
            return Ok(());
        }
        if st.remote_end || st.peer_reset {
            self.give_back(length);
            return self.stream_error(stream, STREAM_CLOSED);
        }
        if wide(length) > st.recv_window {
            self.give_back(length);
            return self.stream_error(stream, FLOW_CONTROL_ERROR);
        }
        st.recv_window -= wide(length);
        st.received += body.len() as u64;
        let too_long = st.expected.is_some_and(|e| st.received > e);
        let short = end && st.expected.is_some_and(|e| st.received != e);
        if too_long || short {
            // Malformed (§8.1.1).
            self.give_back(length);
            return self.stream_error(stream, PROTOCOL_ERROR);
        }
        st.body.extend_from_slice(body);
        st.remote_end = end;
        wake(&mut st.waker);
        // Padding is taken as it comes.
        let padding = length - body.len();
        if padding > 0 {
            self.consumed(s, padding);
        }
        Ok(())
    }

    fn headers(&mut self, flags: u8, stream: u32, payload: &[u8]) -> Result<(), u32> {
        if stream == 0 || stream.is_multiple_of(2) {
            return Err(PROTOCOL_ERROR);
        }
        let mut rest = payload;
        let mut pad = 0;
        if flags & PADDED != 0 {
            let (&length, after) = rest.split_first().ok_or(FRAME_SIZE_ERROR)?;
            pad = usize::from(length);
            rest = after;
        }
        let mut depends_on_itself = false;
        if flags & PRIORITY_FLAG != 0 {
            if rest.len() < 5 {
                return Err(FRAME_SIZE_ERROR);
            }
            let dependency = word31(rest);
            depends_on_itself = dependency == stream;
            rest = &rest[5..];
        }
        if pad > rest.len() {
            return Err(PROTOCOL_ERROR);
        }
        let fragment = &rest[..rest.len() - pad];
        self.earned += PER_REQUEST;
        let end_stream = flags & END_STREAM != 0;
        if flags & END_HEADERS != 0 {
            return self.block_done(stream, end_stream, depends_on_itself, fragment);
        }
        if fragment.len() > self.most_block {
            return Err(ENHANCE_YOUR_CALM);
        }
        self.block = Some(Block {
            stream,
            end_stream,
            depends_on_itself,
            bytes: fragment.to_vec(),
        });
        Ok(())
    }

    /// A complete header block on `stream`: a request, trailers, or a
    /// block on a stream that cannot take one (decoded all the same: the
    /// table must stay in step with the client's).
    fn block_done(
        &mut self,
        stream: u32,
        end_stream: bool,
        depends_on_itself: bool,
        block: &[u8],
    ) -> Result<(), u32> {
        if stream > self.last_stream {
            self.last_stream = stream;
            let mut request = Request::new(self.max_list, block.len());
            self.decoder
                .decode(block, |name, value| request.field(name, value))
                .map_err(|hpack::Fault| COMPRESSION_ERROR)?;
            if self.goaway.is_some() {
                // After this side's GOAWAY: ignored (§6.8).
                return Ok(());
            }
            if depends_on_itself {
                return self.stream_error(stream, PROTOCOL_ERROR);
            }
            let Some(head) = request.finish(end_stream) else {
                return self.stream_error(stream, PROTOCOL_ERROR);
            };
            if self.streams.len() >= self.max_streams {
                return self.stream_error(stream, REFUSED_STREAM);
            }
            self.open(stream, end_stream, &request, head);
            return Ok(());
        }
        let after_goaway = self.goaway.is_some_and(|last| stream > last);
        let Some(s) = self.find(stream).filter(|_| !after_goaway) else {
            self.skip(block)?;
            if after_goaway {
                return Ok(());
            }
            return match self.closed_how(stream) {
                Some(Closed::Reset) => Ok(()),
                Some(_) => Err(STREAM_CLOSED),
                // A stream id not above the last one (§5.1.1).
                None => Err(PROTOCOL_ERROR),
            };
        };
        let st = &self.streams[s];
        if st.remote_end || st.reset {
            let ignored = st.reset && !st.peer_reset;
            self.skip(block)?;
            if ignored {
                return Ok(());
            }
            return self.stream_error(stream, STREAM_CLOSED);
        }
        // Trailers: they end the stream and carry no pseudo-headers
        // (§8.1).
        let mut trailers = Trailers::default();
        self.decoder
            .decode(block, |name, value| trailers.field(name, value))
            .map_err(|hpack::Fault| COMPRESSION_ERROR)?;
        if trailers.malformed || !end_stream || depends_on_itself {
            return self.stream_error(stream, PROTOCOL_ERROR);
        }
        let st = &mut self.streams[s];
        if st.expected.is_some_and(|e| st.received != e) {
            return self.stream_error(stream, PROTOCOL_ERROR);
        }
        st.trailers = trailers.lines;
        st.remote_end = true;
        wake(&mut st.waker);
        Ok(())
    }

    /// Decodes a block only to keep the table in step.
    fn skip(&mut self, block: &[u8]) -> Result<(), u32> {
        self.decoder
            .decode(block, |_, _| {})
            .map_err(|hpack::Fault| COMPRESSION_ERROR)
    }

    /// Opens the stream of an accepted request.
    fn open(
        &mut self,
        id: u32,
        end_stream: bool,
        request: &Request,
        head: Result<Vec<u8>, (Status, &'static str)>,
    ) {
        self.streams.push(Stream {
            id,
            body: Vec::new(),
            remote_end: end_stream,
            trailers: Vec::new(),
            expected: request.length,
            received: 0,
            recv_window: self.stream_window,
            unacked: 0,
            send_window: self.peer_window,
            local_end: false,
            reset: false,
            peer_reset: false,
            waker: None,
        });
        self.fresh.push(Fresh {
            id,
            head,
            body: (!end_stream).then_some(request.length.is_none()),
            head_request: request.head,
        });
        self.served += 1;
        if self.budget != 0 && self.served >= self.budget {
            self.go_away();
        }
    }

    fn priority(&mut self, stream: u32, payload: &[u8]) -> Result<(), u32> {
        if stream == 0 {
            return Err(PROTOCOL_ERROR);
        }
        if payload.len() != 5 {
            return Err(FRAME_SIZE_ERROR);
        }
        self.cheap += 1;
        let dependency = word31(payload);
        if dependency == stream {
            return self.stream_error(stream, PROTOCOL_ERROR);
        }
        Ok(())
    }

    fn rst_stream(&mut self, stream: u32, payload: &[u8]) -> Result<(), u32> {
        if stream == 0 {
            return Err(PROTOCOL_ERROR);
        }
        if payload.len() != 4 {
            return Err(FRAME_SIZE_ERROR);
        }
        if stream > self.last_stream {
            return Err(PROTOCOL_ERROR);
        }
        self.cheap += 1;
        if let Some(s) = self.find(stream) {
            let st = &mut self.streams[s];
            if !st.reset {
                st.reset = true;
                st.peer_reset = true;
                wake(&mut st.waker);
                if !st.local_end {
                    // Cancelled before its answer.
                    self.resets += 1;
                    if self.resets > self.max_resets + self.completed {
                        return Err(ENHANCE_YOUR_CALM);
                    }
                }
            }
        }
        Ok(())
    }

    fn settings(&mut self, flags: u8, stream: u32, payload: &[u8]) -> Result<(), u32> {
        if stream != 0 {
            return Err(PROTOCOL_ERROR);
        }
        if flags & ACK != 0 {
            return if payload.is_empty() {
                Ok(())
            } else {
                Err(FRAME_SIZE_ERROR)
            };
        }
        if !payload.len().is_multiple_of(6) {
            return Err(FRAME_SIZE_ERROR);
        }
        self.cheap += 1;
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                HEADER_TABLE_SIZE => {
                    let value = value as usize;
                    if value < self.table_max {
                        self.table_update = Some(self.table_update.map_or(value, |u| u.min(value)));
                    }
                }
                ENABLE_PUSH if value > 1 => return Err(PROTOCOL_ERROR),
                INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > MAX_WINDOW {
                        return Err(FLOW_CONTROL_ERROR);
                    }
                    let change = value - self.peer_window;
                    self.peer_window = value;
                    for st in &mut self.streams {
                        st.send_window += change;
                        if st.send_window > MAX_WINDOW {
                            return Err(FLOW_CONTROL_ERROR);
                        }
                    }
                    self.wake_all();
                }
                MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(PROTOCOL_ERROR);
                    }
                    self.peer_frame = value as usize;
                }
                // Unknown settings are ignored (§6.5.2).
                _ => {}
            }
        }
        self.frame_out(SETTINGS, ACK, 0, &[]);
        Ok(())
    }

    fn window(&mut self, stream: u32, payload: &[u8]) -> Result<(), u32> {
        if payload.len() != 4 {
            return Err(FRAME_SIZE_ERROR);
        }
        self.cheap += 1;
        let increment = i64::from(word31(payload));
        if stream == 0 {
            if increment == 0 {
                return Err(PROTOCOL_ERROR);
            }
            self.send_window += increment;
            if self.send_window > MAX_WINDOW {
                return Err(FLOW_CONTROL_ERROR);
            }
            self.wake_all();
            return Ok(());
        }
        if stream > self.last_stream {
            return Err(PROTOCOL_ERROR);
        }
        let Some(s) = self.find(stream) else {
            // A closed stream's: nothing to do (§5.1).
            return Ok(());
        };
        if increment == 0 {
            return self.stream_error(stream, PROTOCOL_ERROR);
        }
        let st = &mut self.streams[s];
        st.send_window += increment;
        if st.send_window > MAX_WINDOW {
            return self.stream_error(stream, FLOW_CONTROL_ERROR);
        }
        wake(&mut st.waker);
        Ok(())
    }

    /// Resets `stream` for the client's error; too many such resets end
    /// the connection.
    fn stream_error(&mut self, stream: u32, code: u32) -> Result<(), u32> {
        self.error_resets += 1;
        if self.error_resets > self.max_error_resets {
            return Err(ENHANCE_YOUR_CALM);
        }
        self.reset_stream(stream, code);
        Ok(())
    }

    /// Sends `RST_STREAM` and marks the stream reset.
    fn reset_stream(&mut self, stream: u32, code: u32) {
        self.frame_out(RST_STREAM, 0, stream, &code.to_be_bytes());
        match self.find(stream) {
            Some(s) => {
                let st = &mut self.streams[s];
                st.reset = true;
                st.local_end = true;
                wake(&mut st.waker);
            }
            None => self.remember(stream, Closed::Reset),
        }
    }

    // ----- The streams' side -----

    /// The next body bytes of stream `id` (its window given back as they
    /// are taken); `None` at the end of the body.
    pub(super) fn poll_body(
        &mut self,
        id: u32,
        cx: &Context<'_>,
    ) -> Poll<Option<io::Result<Vec<u8>>>> {
        let Some(s) = self.live(id) else {
            return Poll::Ready(Some(Err(io::ErrorKind::ConnectionReset.into())));
        };
        let st = &mut self.streams[s];
        if !st.body.is_empty() {
            let body = std::mem::take(&mut st.body);
            self.consumed(s, body.len());
            return Poll::Ready(Some(Ok(body)));
        }
        if st.remote_end {
            return Poll::Ready(None);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The trailer fields that ended stream `id`'s body, as HTTP/1.1
    /// lines.
    pub(super) fn take_trailers(&mut self, id: u32) -> Vec<u8> {
        self.find(id)
            .map(|s| std::mem::take(&mut self.streams[s].trailers))
            .unwrap_or_default()
    }

    /// Sends a response head (or an interim one, or trailers without a
    /// status) on stream `id`; `Err` when the stream is gone.
    pub(super) fn send_head(
        &mut self,
        id: u32,
        status: Option<u16>,
        fields: &[(&[u8], &[u8])],
        end: bool,
    ) -> Result<(), ()> {
        let s = self.live(id).ok_or(())?;
        if self.streams[s].local_end {
            return Err(());
        }
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 9]);
        if let Some(size) = self.table_update.take() {
            hpack::push_table_size(&mut self.out, size);
            self.table_max = size;
        }
        if let Some(status) = status {
            hpack::push_status(&mut self.out, status);
        }
        for (name, value) in fields {
            hpack::push_field(&mut self.out, name, value);
        }
        self.seal_block(start, id, if end { END_STREAM } else { 0 });
        if end {
            self.ended_locally(s);
        }
        wake(&mut self.wire);
        Ok(())
    }

    /// Sends as much of `data` on stream `id` as the windows and the
    /// output buffer allow (ending the stream with the last of it when
    /// `end`); the bytes sent, or `Pending` until there is room.
    pub(super) fn poll_send(
        &mut self,
        id: u32,
        data: &[u8],
        end: bool,
        cx: &Context<'_>,
    ) -> Poll<Result<usize, ()>> {
        let Some(s) = self.live(id) else {
            return Poll::Ready(Err(()));
        };
        if self.streams[s].local_end {
            return Poll::Ready(Err(()));
        }
        if data.is_empty() {
            if end {
                self.frame_out(DATA, END_STREAM, id, &[]);
                self.ended_locally(s);
                wake(&mut self.wire);
            }
            return Poll::Ready(Ok(0));
        }
        let mut sent = 0;
        loop {
            let st = &self.streams[s];
            let room = st
                .send_window
                .min(self.send_window)
                .min(wide(OUT_MAX.saturating_sub(self.out.len())));
            if room <= 0 || sent == data.len() {
                break;
            }
            let take = usize::try_from(room)
                .unwrap_or(0)
                .min(self.peer_frame)
                .min(data.len() - sent);
            let last = end && sent + take == data.len();
            self.frame_out(
                DATA,
                if last { END_STREAM } else { 0 },
                id,
                &data[sent..sent + take],
            );
            self.streams[s].send_window -= wide(take);
            self.send_window -= wide(take);
            sent += take;
            if last {
                self.ended_locally(s);
            }
        }
        if sent > 0 {
            wake(&mut self.wire);
            return Poll::Ready(Ok(sent));
        }
        if self.out.len() >= OUT_MAX {
            self.out_blocked = true;
        }
        self.streams[s].waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Resets stream `id` from this side (its task gives up on it).
    pub(super) fn reset(&mut self, id: u32, code: u32) {
        if let Some(s) = self.live(id)
            && !self.streams[s].local_end
        {
            self.reset_stream(id, code);
        }
    }

    /// Stream `id`'s task ended: the stream closes. A response cut short
    /// ends with a reset; a complete one whose request is still arriving
    /// tells the client to stop sending it (`NO_ERROR`, §8.1).
    pub(super) fn finish(&mut self, id: u32) {
        let Some(s) = self.find(id) else {
            return;
        };
        let st = self.streams.swap_remove(s);
        let how = if st.peer_reset {
            Closed::PeerReset
        } else if st.reset {
            Closed::Reset
        } else if !st.local_end {
            self.frame_out(RST_STREAM, 0, id, &INTERNAL_ERROR.to_be_bytes());
            Closed::Reset
        } else if !st.remote_end {
            self.frame_out(RST_STREAM, 0, id, &NO_ERROR.to_be_bytes());
            Closed::Reset
        } else {
            Closed::Ended
        };
        self.remember(id, how);
        // What it never took is the connection's again.
        self.give_back(st.body.len());
        if self.streams.is_empty() {
            self.streams = Vec::new();
        }
        wake(&mut self.wire);
    }

    // ----- Helpers -----

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|st| st.id == id)
    }

    /// Stream `id`, unless it was reset or the connection is over.
    fn live(&self, id: u32) -> Option<usize> {
        if self.failed {
            return None;
        }
        self.find(id).filter(|&s| !self.streams[s].reset)
    }

    fn ended_locally(&mut self, s: usize) {
        self.streams[s].local_end = true;
        self.completed += 1;
    }

    fn remember(&mut self, id: u32, how: Closed) {
        self.recent[self.recent_at] = (id, how);
        self.recent_at = (self.recent_at + 1) % RECENT;
    }

    fn closed_how(&self, id: u32) -> Option<Closed> {
        self.recent
            .iter()
            .find(|(s, _)| *s == id)
            .map(|&(_, how)| how)
    }

    /// Stream `s`'s task took `n` bytes: its window and the connection's
    /// are given back once half of each is used.
    fn consumed(&mut self, s: usize, n: usize) {
        let st = &mut self.streams[s];
        st.unacked += u32::try_from(n).unwrap_or(u32::MAX);
        if !st.remote_end && i64::from(st.unacked) >= self.stream_window / 2 {
            let more = i64::from(std::mem::take(&mut st.unacked));
            st.recv_window += more;
            let id = st.id;
            self.window_update(id, more);
        }
        self.give_back(n);
    }

    /// `n` bytes of the connection's window are free again.
    fn give_back(&mut self, n: usize) {
        self.unacked += u32::try_from(n).unwrap_or(u32::MAX);
        if i64::from(self.unacked) >= self.connection_window / 2 {
            let more = i64::from(std::mem::take(&mut self.unacked));
            self.recv_window += more;
            self.window_update(0, more);
        }
    }

    fn window_update(&mut self, stream: u32, more: i64) {
        let more = u32::try_from(more).unwrap_or(0x7fff_ffff);
        self.frame_out(WINDOW_UPDATE, 0, stream, &more.to_be_bytes());
        wake(&mut self.wire);
    }

    fn goaway_out(&mut self, code: u32) {
        let mut payload = [0; 8];
        payload[..4].copy_from_slice(&self.last_stream.to_be_bytes());
        payload[4..].copy_from_slice(&code.to_be_bytes());
        self.frame_out(GOAWAY, 0, 0, &payload);
        wake(&mut self.wire);
    }

    fn frame_out(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        push_frame_head(&mut self.out, payload.len(), kind, flags, stream);
        self.out.extend_from_slice(payload);
    }

    /// Writes the frame head of the header block written after `start`
    /// (9 bytes left for it), split into CONTINUATION frames where it is
    /// larger than the client's frame size.
    fn seal_block(&mut self, start: usize, stream: u32, flags: u8) {
        let length = self.out.len() - start - 9;
        if length <= self.peer_frame {
            self.out[start..start + 9].copy_from_slice(&frame_head(
                length,
                HEADERS,
                flags | END_HEADERS,
                stream,
            ));
            return;
        }
        let block = self.out.split_off(start + 9);
        self.out.truncate(start);
        let mut pieces = block.chunks(self.peer_frame).peekable();
        let mut kind = HEADERS;
        let mut first_flags = flags;
        while let Some(piece) = pieces.next() {
            let end = if pieces.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            push_frame_head(&mut self.out, piece.len(), kind, first_flags | end, stream);
            self.out.extend_from_slice(piece);
            kind = CONTINUATION;
            first_flags = 0;
        }
    }

    fn wake_all(&mut self) {
        for st in &mut self.streams {
            wake(&mut st.waker);
        }
        wake(&mut self.wire);
    }
}

/// The 31-bit number in the first four bytes of `bytes` (a stream id, a
/// dependency or a window increment: the top bit is reserved, §4.1).
fn word31(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff
}

/// A byte count as a window amount (frames are far below 2^63).
fn wide(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A frame's 9-byte head (RFC 9113 §4.1).
fn frame_head(length: usize, kind: u8, flags: u8, stream: u32) -> [u8; 9] {
    let length = u32::try_from(length).unwrap_or(0).to_be_bytes();
    let stream = stream.to_be_bytes();
    [
        length[1], length[2], length[3], kind, flags, stream[0], stream[1], stream[2], stream[3],
    ]
}

fn push_frame_head(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&frame_head(length, kind, flags, stream));
}

/// A DATA frame's payload without its padding (§6.1).
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], u32> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or(FRAME_SIZE_ERROR)?;
    let pad = usize::from(pad);
    if pad > rest.len() {
        return Err(PROTOCOL_ERROR);
    }
    Ok(&rest[..rest.len() - pad])
}

#[cfg(test)]
mod tests {
    use super::{PREFACE, Session};
    use crate::config::Http2Config;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn opened() -> Session {
        let mut session = Session::new(&Http2Config::default(), 0);
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(0x4, 0, 0, b""));
        assert_eq!(session.receive(&hello), hello.len());
        session
    }

    /// The GOAWAY code queued, if any.
    fn goaway(session: &mut Session) -> Option<u32> {
        let mut out = Vec::new();
        session.take_out(&mut out);
        let mut at = 0;
        while at + 9 <= out.len() {
            let length = usize::from(out[at + 2]) | usize::from(out[at + 1]) << 8;
            if out[at + 3] == 0x7 {
                let code = &out[at + 13..at + 17];
                return Some(u32::from_be_bytes(code.try_into().unwrap()));
            }
            at += 9 + length;
        }
        None
    }

    #[test]
    fn a_ping_flood_runs_out_of_budget_and_requests_earn_more() {
        let mut session = opened();
        let ping = frame(0x6, 0, 0, &[0; 8]);
        for _ in 0..999 {
            session.receive(&ping);
        }
        assert_eq!(goaway(&mut session), None);
        session.receive(&ping);
        session.receive(&ping);
        assert_eq!(goaway(&mut session), Some(super::ENHANCE_YOUR_CALM));
        let mut earning = opened();
        for stream in 0..100u32 {
            let request = frame(0x1, 0x5, stream * 2 + 1, b"\x82\x86\x84\x41\x01t");
            earning.receive(&request);
            earning.finish(stream * 2 + 1);
            for _ in 0..20 {
                earning.receive(&ping);
            }
        }
        assert_eq!(goaway(&mut earning), None);
        assert_eq!(earning.last_stream, 199);
    }

    #[test]
    fn frames_split_anywhere_are_read_the_same() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, b""));
        bytes.extend(frame(0x1, 0x4, 1, b"\x83\x86\x84\x41\x01t"));
        for _ in 0..300 {
            bytes.extend(frame(0x0, 0, 1, b""));
            bytes.extend(frame(0x0, 0, 1, &[7; 100]));
        }
        for piece in [1, 7, 9, 100, 4096] {
            let mut session = Session::new(&Http2Config::default(), 0);
            let mut held = Vec::new();
            for chunk in bytes.chunks(piece) {
                held.extend_from_slice(chunk);
                let used = session.receive(&held);
                held.drain(..used);
            }
            assert!(held.is_empty(), "piece {piece}");
            // The empty DATA frames and the SETTINGS.
            assert_eq!(session.cheap, 301, "piece {piece}");
            assert_eq!(session.streams[0].body.len(), 30_000);
            assert_eq!(goaway(&mut session), None);
        }
    }

    #[test]
    fn streams_after_this_sides_goaway_are_ignored() {
        let mut session = opened();
        session.receive(&frame(0x1, 0x5, 1, b"\x82\x86\x84\x41\x01t"));
        assert_eq!(session.take_fresh().len(), 1);
        session.go_away();
        assert_eq!(goaway(&mut session), Some(super::NO_ERROR));
        // Stream 3 opens after the GOAWAY that named 1: no request, and
        // its DATA draws no reset; stream 1 is still answered.
        session.receive(&frame(0x1, 0x4, 3, b"\x83\x86\x84\x41\x01t"));
        session.receive(&frame(0x0, 0x1, 3, b"body"));
        assert!(session.take_fresh().is_empty());
        let mut out = Vec::new();
        session.take_out(&mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(!session.done());
        session.finish(1);
        assert!(session.done());
    }

    #[test]
    fn requests_become_http1_heads_and_malformed_ones_are_reset() {
        let mut session = opened();
        // :method POST, :scheme http, :path /, :authority t, cookie a, cookie b.
        let block = b"\x83\x86\x84\x41\x01t\x60\x01a\x60\x01b";
        session.receive(&frame(0x1, 0x4, 1, block));
        let fresh = session.take_fresh();
        let head = fresh[0].head.as_ref().unwrap();
        assert_eq!(
            String::from_utf8_lossy(head),
            "POST / HTTP/1.1\r\nhost: t\r\ncookie: a; b\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(fresh[0].body, Some(true));
        // An uppercase name, a connection field, no :path: each a stream error.
        for (stream, block) in [
            (3, &b"\x82\x86\x84\x41\x01t\x00\x01X\x01y"[..]),
            (5, b"\x82\x86\x84\x41\x01t\x00\x0aconnection\x01y"),
            (7, b"\x82\x86\x41\x01t"),
        ] {
            session.receive(&frame(0x1, 0x5, stream, block));
            assert!(session.take_fresh().is_empty(), "stream {stream}");
        }
        assert_eq!(goaway(&mut session), None);
        assert_eq!(session.closed_how(7), Some(super::Closed::Reset));
    }
}
