//! Response encoding: status line, headers and body appended to one buffer.
//!
//! A [`ResponseWriter`] appends exactly one response to the connection's
//! write buffer. It owns the rules every response follows: `Server` and the
//! cached `Date`, `Content-Length` (or chunked framing for streams), no body
//! for `HEAD`, 204 and 304, and `Connection: close` when the connection ends.

use std::cell::Cell;

use std::pin::Pin;

use futures_lite::Stream;

use super::compress::{Compressor, Encoding};
use super::date::DATE_LEN;
use super::status::Status;

/// A response body produced piece by piece, sent with chunked framing.
pub(crate) type BodyStream = Pin<Box<dyn Stream<Item = Vec<u8>>>>;

/// A body stream that may be cut short: an `Err` ends the response as
/// truncated (the connection closes with the body unfinished: no last
/// chunk, or fewer bytes than its `Content-Length`), never as complete.
pub(crate) type Pieces = Pin<Box<dyn Stream<Item = Result<Vec<u8>, Cut>>>>;

/// The source of a streamed body failed mid-body (a proxied upstream
/// reset): the client must see the body cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cut;

/// A body that can go straight from a file to the socket (plain TCP on
/// the ring splices it, nginx's `sendfile`): the file and where it starts.
#[derive(Clone, Debug)]
pub(crate) struct FileSource {
    pub(crate) file: std::rc::Rc<std::os::fd::OwnedFd>,
    pub(crate) offset: u64,
}

/// What follows a response head on the connection.
pub(crate) enum After {
    /// A streamed body, framed as given.
    Stream(Pieces, StreamFraming),
    /// `length` bytes from a file: spliced where the transport can, else
    /// the `fallback` stream of the same bytes.
    File {
        source: FileSource,
        length: u64,
        fallback: Pieces,
    },
    /// The connection is handed over (a `101`): what the upgrade left,
    /// for the server to run (a proxy tunnel).
    Upgrade(Box<dyn std::any::Any>),
}

/// What a proxied request's upstream exchange took, for the access log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UpstreamNote {
    /// The server's address.
    pub(crate) address: String,
    /// Connecting, when a new connection was made.
    pub(crate) connect: Option<std::time::Duration>,
    /// Until the response head arrived.
    pub(crate) header: std::time::Duration,
    /// Until the response was handed to the client's writer.
    pub(crate) total: std::time::Duration,
}

thread_local! {
    /// Spare buffers for body pieces (file chunks), shared by the streams
    /// that fill them and the connections that send them.
    static CHUNKS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most spare piece buffers a shard keeps, and the largest it keeps.
const SPARE_CHUNKS: usize = 8;
const SPARE_CHUNK_BYTES: usize = 256 << 10;

/// An empty buffer for a body piece, pooled when one is spare.
pub(crate) fn spare_chunk() -> Vec<u8> {
    CHUNKS
        .with(|chunks| chunks.borrow_mut().pop())
        .unwrap_or_default()
}

/// Keeps `buffer` for another piece (if the pool has room for it).
pub(crate) fn recycle_chunk(mut buffer: Vec<u8>) {
    if !(4096..=SPARE_CHUNK_BYTES).contains(&buffer.capacity()) {
        return;
    }
    buffer.clear();
    CHUNKS.with(|chunks| {
        let mut chunks = chunks.borrow_mut();
        if chunks.len() < SPARE_CHUNKS {
            chunks.push(buffer);
        }
    });
}

/// A stream that cannot fail, as [`Pieces`].
fn infallible(stream: BodyStream) -> Pieces {
    use futures_lite::StreamExt;
    Box::pin(stream.map(Ok))
}

/// What the writer needs to know about the request it answers.
#[derive(Clone, Copy, Debug)]
pub struct ResponseContext {
    /// The shard's cached `Date` value.
    pub date: [u8; DATE_LEN],
    /// The request was `HEAD`: send the head only.
    pub head_request: bool,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// The request was HTTP/1.0 (no chunked framing; keep-alive is explicit).
    pub http10: bool,
}

/// Writes one response into a connection's output buffer.
pub struct ResponseWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    context: ResponseContext,
    status: Option<Status>,
    written: bool,
    stream: Option<Pieces>,
    /// When set, the connection closes after this response (a stopping
    /// server); read when the head is written, not when the writer is made.
    closing: Option<&'a Cell<bool>>,
    /// Set while the request's body is still arriving (a streamed body):
    /// a response whose head goes out then closes the connection.
    body_open: Option<&'a Cell<bool>>,
    /// Header lines every response carries (security headers), pre-rendered.
    common: &'a [u8],
    /// Echoed as `X-Request-ID` when set.
    request_id: &'a [u8],
    /// The `Access-Control-Allow-Origin` value and the other CORS lines,
    /// pre-rendered, for a request from an allowed origin.
    cross_origin: Option<(&'a [u8], &'a [u8])>,
    /// Header lines decided after the writer was made (rate-limit fields).
    late: Option<&'a dyn LateHeaders>,
    /// The status actually written, once written.
    sent: Option<Status>,
    /// Where header lines can still be inserted into the written head
    /// (before `Content-Length` or the blank line).
    headers_end: usize,
    /// Header lines added before the head was written (by a layer).
    pending: Vec<u8>,
    /// The status of a request whose fields do not fit their types.
    validation: Status,
    /// The declared length of the stream, when it has one.
    stream_length: Option<u64>,
    /// The connection's next owner after a `101`.
    upgrade: Option<Box<dyn std::any::Any>>,
    /// The upstream exchange of a proxied request.
    upstream: Option<Box<UpstreamNote>>,
    /// Compression in force for this response, and the coding the client
    /// accepts (if any).
    compression: Option<(&'a Compressor, Option<Encoding>)>,
    /// The file the sized stream's bytes can be spliced from.
    file: Option<FileSource>,
}

/// How a streamed response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFraming {
    /// Chunked transfer coding.
    Chunked,
    /// The end of the body is the end of the connection (HTTP/1.0).
    UntilClose,
    /// `Content-Length`: this many bytes are still to send.
    Length(u64),
}

/// Header lines decided after a response writer was made (the rate
/// limiter's fields): written with the head, by whoever decided them.
pub(crate) trait LateHeaders {
    /// Appends the lines, if any, to `out`.
    fn write_to(&self, out: &mut Vec<u8>);
}

impl std::fmt::Debug for ResponseWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseWriter")
            .field("context", &self.context)
            .field("status", &self.status)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<'a> ResponseWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>, context: ResponseContext) -> Self {
        Self {
            start: out.len(),
            out,
            context,
            status: None,
            written: false,
            stream: None,
            closing: None,
            body_open: None,
            common: &[],
            request_id: &[],
            cross_origin: None,
            late: None,
            sent: None,
            validation: Status::UNPROCESSABLE_ENTITY,
            stream_length: None,
            upgrade: None,
            upstream: None,
            compression: None,
            file: None,
            headers_end: 0,
            pending: Vec::new(),
        }
    }

    /// Echoes `id` as `X-Request-ID`.
    #[must_use]
    pub fn with_request_id(mut self, id: &'a [u8]) -> Self {
        self.request_id = id;
        self
    }

    /// Adds the CORS fields of an allowed origin: `allow_origin` as
    /// `Access-Control-Allow-Origin`, then `lines` (pre-rendered header
    /// lines), to whatever response is written.
    #[must_use]
    pub(crate) fn with_cross_origin(mut self, fields: Option<(&'a [u8], &'a [u8])>) -> Self {
        self.cross_origin = fields;
        self
    }

    /// The status of the response written, if one was.
    #[must_use]
    pub fn status_sent(&self) -> Option<Status> {
        self.sent
    }

    /// Adds `lines` (pre-rendered `Name: value\r\n` header lines) to the
    /// response.
    #[must_use]
    pub fn with_common_headers(mut self, lines: &'a [u8]) -> Self {
        self.common = lines;
        self
    }

    /// Adds whatever `late` holds when the head is written.
    #[must_use]
    pub(crate) fn with_late_headers(mut self, late: &'a dyn LateHeaders) -> Self {
        self.late = Some(late);
        self
    }

    /// Compresses this response's body with `compressor` when its type and
    /// length call for it, in `encoding` (the client's choice; `None`: the
    /// client accepts no coding, and compressible responses only say
    /// `Vary: Accept-Encoding`).
    pub(crate) fn set_compression(
        &mut self,
        compressor: &'a Compressor,
        encoding: Option<Encoding>,
    ) {
        self.compression = Some((compressor, encoding));
    }

    /// Answers requests whose fields do not fit their types with `status`
    /// (`422` unless configured: `limits.validation_status`).
    #[must_use]
    pub(crate) fn with_validation_status(mut self, status: Status) -> Self {
        self.validation = status;
        self
    }

    /// The status for a request whose fields do not fit their types
    /// (`422`, or `400` where the service prefers it).
    pub fn validation_status(&self) -> Status {
        self.validation
    }

    /// Closes the connection after this response if `flag` is set by the
    /// time the response is written.
    #[must_use]
    pub fn closing_when(mut self, flag: &'a Cell<bool>) -> Self {
        self.closing = Some(flag);
        self
    }

    /// Closes the connection after this response if the request's body is
    /// still arriving (`open` set) when the response's head is written.
    #[must_use]
    pub(crate) fn closing_while_body_open(mut self, open: Option<&'a Cell<bool>>) -> Self {
        self.body_open = open;
        self
    }

    /// Overrides the status of the response written next (for `(Status, T)`).
    pub fn set_status(&mut self, status: Status) {
        self.status = Some(status);
    }

    /// Adds a header field to the response: to the head already written
    /// (a layer after [`Next::run`](crate::Next::run)), or to the head
    /// written next. A field that could break the framing is dropped, as
    /// in every header.
    pub fn insert_header(&mut self, name: &str, value: &[u8]) {
        if self.written {
            // Appended, then rotated into place: no allocation.
            let end = self.out.len();
            push_header(self.out, name, value);
            let added = self.out.len() - end;
            self.out[self.headers_end..].rotate_right(added);
            self.headers_end += added;
        } else {
            push_header(&mut self.pending, name, value);
        }
    }

    /// Changes the status: of the response written next, or of the one
    /// already written (its status line is rewritten; its headers and body
    /// stay as written).
    pub fn replace_status(&mut self, status: Status) {
        if !self.written {
            self.status = Some(status);
            return;
        }
        let head = &self.out[self.start..];
        let Some(line_end) = head.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let reason = status.reason().as_bytes();
        let mut line = [0u8; 64];
        let len = 13 + reason.len().min(64 - 13);
        line[..9].copy_from_slice(b"HTTP/1.1 ");
        line[9..12].copy_from_slice(&status.digits());
        line[12] = b' ';
        line[13..len].copy_from_slice(&reason[..len - 13]);
        let range = self.start..self.start + line_end;
        let old = range.len();
        self.out.splice(range, line[..len].iter().copied());
        self.headers_end = self.headers_end + len - old;
        self.sent = Some(status);
    }

    /// Discards what this writer wrote, so another response can be written
    /// (used when a handler panics midway).
    pub fn reset(&mut self) {
        self.out.truncate(self.start);
        self.status = None;
        self.written = false;
        self.stream = None;
        self.upgrade = None;
        self.file = None;
    }

    /// Whether a response has been written.
    #[must_use]
    pub fn is_written(&self) -> bool {
        self.written
    }

    /// Whether the connection stays open after this response.
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.context.keep_alive
            && !self.closing.is_some_and(Cell::get)
            && !self.body_open.is_some_and(Cell::get)
    }

    /// Writes a response whose body is `body`.
    pub fn send<'h>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
    ) {
        self.send_with(status, content_type, headers, |out| {
            out.extend_from_slice(body);
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// Writes a response whose body `fill` appends to the buffer (JSON is
    /// serialized this way, with no intermediate copy). If `fill` fails, a
    /// 500 is written instead.
    pub fn send_with<'h, E>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) {
        if self.written {
            return;
        }
        self.written = true;
        let start = self.out.len();
        self.head(status, content_type, headers);
        self.headers_end = self.out.len();
        if !status.allows_body() {
            self.out.extend_from_slice(b"\r\n");
            return;
        }
        let plan = self.plan(start);
        let length_at = self.out.len();
        if fill(self.out).is_err() {
            self.out.truncate(start);
            self.written = false;
            self.send_error(
                Status::INTERNAL_SERVER_ERROR,
                "response could not be encoded",
            );
            return;
        }
        let mut body_len = self.out.len() - length_at;
        let mut length_at = length_at;
        if let Some((compressor, Some(encoding))) = plan
            && !self.context.head_request
            && compressor.long_enough(body_len as u64)
        {
            let mut packed = Vec::new();
            compressor.compress(encoding, &self.out[length_at..], &mut packed);
            self.out.truncate(length_at);
            self.weaken_etag(start);
            push_header(self.out, "Content-Encoding", encoding.token().as_bytes());
            length_at = self.out.len();
            self.headers_end = length_at;
            body_len = packed.len();
            self.out.extend_from_slice(&packed);
        }
        let mut line = [0u8; 40];
        let line_len = content_length_line(&mut line, body_len);
        insert_at(self.out, length_at, &line[..line_len]);
        if self.context.head_request {
            self.out.truncate(length_at + line_len);
        }
    }

    /// Whether the response whose head starts at `start` is compressed:
    /// `None` when its type is not (or compression is off, or the head
    /// names an encoding already); else the compressor and the client's
    /// coding, after `Vary: Accept-Encoding` is added to the head.
    fn plan(&mut self, start: usize) -> Option<(&'a Compressor, Option<Encoding>)> {
        let (compressor, encoding) = self.compression?;
        let status = self.sent?;
        if status == Status::PARTIAL_CONTENT || status.code() < 200 {
            return None;
        }
        let head = Scanned::of(&self.out[start..]);
        if head.encoded || !compressor.compresses(head.content_type?) {
            return None;
        }
        if !head.varies {
            self.out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
        }
        self.headers_end = self.out.len();
        Some((compressor, encoding))
    }

    /// Makes a strong `ETag` in the head from `start` weak (a compressed
    /// body is another representation, equal only in meaning); returns
    /// how many bytes it added.
    fn weaken_etag(&mut self, start: usize) -> usize {
        let Some(value) = field(&self.out[start..], "etag") else {
            return 0;
        };
        if value.starts_with(b"W/") {
            return 0;
        }
        let at = value.as_ptr() as usize - self.out[start..].as_ptr() as usize + start;
        insert_at(self.out, at, b"W/");
        self.headers_end += 2;
        2
    }

    /// Writes an error response with the JSON body `{"detail": detail}`.
    pub fn send_error(&mut self, status: Status, detail: &str) {
        self.send_with(status, Some("application/json"), [], |out| {
            simd_json::serde::to_writer(out, &Detail { detail })
        });
    }

    /// Writes the head of a response whose body is `stream`, sent with
    /// chunked framing (or until close for HTTP/1.0 clients).
    pub fn send_stream<'h>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        stream: BodyStream,
    ) {
        self.send_pieces(status, content_type, headers, infallible(stream));
    }

    /// As [`send_stream`](Self::send_stream), for a stream that may be cut.
    pub(crate) fn send_pieces<'h>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        stream: Pieces,
    ) {
        if self.written {
            return;
        }
        self.written = true;
        if self.context.http10 {
            self.context.keep_alive = false;
        }
        let start = self.out.len();
        self.head(status, content_type, headers);
        let stream = self.encode_stream(start, stream, None);
        self.chunked_rest(status, stream);
    }

    /// `Transfer-Encoding` (unless HTTP/1.0), the blank line, and the body.
    fn chunked_rest(&mut self, status: Status, stream: Pieces) {
        if !self.context.http10 {
            self.out
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        self.headers_end = self.out.len();
        self.out.extend_from_slice(b"\r\n");
        if status.allows_body() && !self.context.head_request {
            self.stream = Some(stream);
        }
    }

    /// The stream of the response whose head starts at `start`, encoded
    /// when its type calls for it (the head then says so).
    fn encode_stream(&mut self, start: usize, stream: Pieces, length: Option<u64>) -> Pieces {
        let Some((compressor, Some(encoding))) = self.plan(start) else {
            return stream;
        };
        if self.context.http10 || self.context.head_request {
            return stream;
        }
        self.weaken_etag(start);
        push_header(self.out, "Content-Encoding", encoding.token().as_bytes());
        match length {
            Some(length) => compressor.stream_sized(encoding, stream, length),
            None => compressor.stream(encoding, stream),
        }
    }

    /// Writes the head of a response whose body is `stream`, declared to
    /// be `length` bytes (`Content-Length`): the pieces go out as they are,
    /// and the connection can carry another request after them. A stream
    /// that ends short closes the connection (the client sees the body
    /// cut off); bytes past `length` are not sent.
    pub fn send_stream_sized<'h>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        length: u64,
        stream: BodyStream,
    ) {
        self.send_pieces_sized(status, content_type, headers, length, infallible(stream));
    }

    /// As [`send_stream_sized`](Self::send_stream_sized), for a stream
    /// that may be cut.
    pub(crate) fn send_pieces_sized<'h>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        length: u64,
        stream: Pieces,
    ) {
        if self.written {
            return;
        }
        self.written = true;
        let start = self.out.len();
        self.head(status, content_type, headers);
        if let Some((compressor, Some(_))) = self.compression
            && compressor.long_enough(length)
            && !self.context.http10
            && !self.context.head_request
            && status.allows_body()
        {
            // Compressed, its length is unknown until the end: chunked.
            let stream = self.encode_stream(start, stream, Some(length));
            self.chunked_rest(status, stream);
            return;
        }
        self.plan(start);
        push_decimal_line(self.out, b"Content-Length", length);
        self.headers_end = self.out.len();
        self.out.extend_from_slice(b"\r\n");
        if status.allows_body() && !self.context.head_request && length > 0 {
            self.stream = Some(stream);
            self.stream_length = Some(length);
        }
    }

    /// As [`send_pieces_sized`](Self::send_pieces_sized) with `fallback`,
    /// for bytes that are `length` bytes of `source`: unless they are
    /// compressed on the way, the connection sends them straight from the
    /// file where its transport can.
    pub(crate) fn send_file_sized<'h>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        length: u64,
        source: FileSource,
        fallback: Pieces,
    ) {
        self.send_pieces_sized(status, content_type, headers, length, fallback);
        if self.stream.is_some() && self.stream_length == Some(length) {
            self.file = Some(source);
        }
    }

    /// Takes what follows the head: the body stream set by
    /// [`send_stream`](Self::send_stream) or
    /// [`send_stream_sized`](Self::send_stream_sized) with how it is
    /// framed, or the upgrade of a `101`.
    pub(crate) fn take_after(&mut self) -> Option<After> {
        if let Some(upgrade) = self.upgrade.take() {
            return Some(After::Upgrade(upgrade));
        }
        if let (Some(source), Some(length)) = (self.file.take(), self.stream_length)
            && let Some(fallback) = self.stream.take()
        {
            self.stream_length = None;
            return Some(After::File {
                source,
                length,
                fallback,
            });
        }
        let framing = match self.stream_length.take() {
            Some(length) => StreamFraming::Length(length),
            None if self.context.http10 => StreamFraming::UntilClose,
            None => StreamFraming::Chunked,
        };
        self.stream.take().map(|s| After::Stream(s, framing))
    }

    /// Hands the connection, once this `101` is sent, to `next`.
    pub(crate) fn upgrade(&mut self, next: Box<dyn std::any::Any>) {
        self.upgrade = Some(next);
    }

    /// Records a proxied request's upstream exchange.
    pub(crate) fn note_upstream(&mut self, note: UpstreamNote) {
        self.upstream = Some(Box::new(note));
    }

    /// The upstream exchange recorded, if any.
    pub(crate) fn take_upstream(&mut self) -> Option<Box<UpstreamNote>> {
        self.upstream.take()
    }

    /// Whether responses echo the request's ID.
    pub(crate) fn echoes_request_id(&self) -> bool {
        !self.request_id.is_empty()
    }

    /// Status line, common headers, the caller's headers; no blank line.
    fn head<'h>(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) {
        let status = self.status.unwrap_or(status);
        self.sent = Some(status);
        let keep_alive = self.keep_alive();
        self.context.keep_alive = keep_alive;
        let out = &mut *self.out;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&status.digits());
        out.push(b' ');
        out.extend_from_slice(status.reason().as_bytes());
        out.extend_from_slice(b"\r\nServer: percore\r\nDate: ");
        out.extend_from_slice(&self.context.date);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.common);
        if let Some(late) = self.late {
            late.write_to(out);
        }
        if !self.request_id.is_empty() {
            push_header(out, "X-Request-ID", self.request_id);
        }
        if let Some((allow_origin, lines)) = self.cross_origin {
            push_header(out, "Access-Control-Allow-Origin", allow_origin);
            out.extend_from_slice(lines);
        }
        if let Some(content_type) = content_type {
            push_header(out, "Content-Type", content_type.as_bytes());
        }
        for (name, value) in headers {
            push_header(out, name, value);
        }
        out.extend_from_slice(&self.pending);
        // A 101 names its own connection's fate (`Connection: upgrade`).
        if !keep_alive && status != Status::SWITCHING_PROTOCOLS {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.context.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
}

#[derive(serde::Serialize)]
struct Detail<'a> {
    detail: &'a str,
}

/// What compression reads of a written head, in one pass over it.
#[derive(Default)]
struct Scanned<'h> {
    content_type: Option<&'h [u8]>,
    /// It names a `Content-Encoding`.
    encoded: bool,
    /// It says `Vary: Accept-Encoding` already.
    varies: bool,
}

impl<'h> Scanned<'h> {
    fn of(head: &'h [u8]) -> Self {
        let mut scanned = Self::default();
        for line in head.split(|&b| b == b'\n').skip(1) {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            match name.len() {
                12 if name.eq_ignore_ascii_case(b"content-type") => {
                    scanned.content_type = Some(value);
                }
                16 if name.eq_ignore_ascii_case(b"content-encoding") => scanned.encoded = true,
                4 if name.eq_ignore_ascii_case(b"vary") => {
                    scanned.varies |= value
                        .split(|&b| b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"));
                }
                _ => {}
            }
        }
        scanned
    }
}

/// The value of the first field named `name` (lowercase) in `head`.
fn field<'h>(head: &'h [u8], name: &str) -> Option<&'h [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let (field, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        field
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| value[1..].trim_ascii())
    })
}

/// Appends `name: value\r\n`, skipping a field that could break the framing
/// (an invalid name, or CR, LF or NUL in the value).
fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if !valid_field(name, value) {
        tracing::warn!(
            header = name,
            "dropped a response header with invalid bytes"
        );
        return;
    }
    push_line(out, name.as_bytes(), value);
}

/// Appends `name: value\r\n` as it is (the caller vouches for both).
pub(crate) fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `Content-Length: N\r\n\r\n` into `line`; returns its length.
fn content_length_line(line: &mut [u8; 40], length: usize) -> usize {
    const PREFIX: &[u8] = b"Content-Length: ";
    line[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 20];
    let digit_count = decimal(&mut digits, length as u64);
    let end = PREFIX.len() + digit_count;
    line[PREFIX.len()..end].copy_from_slice(&digits[20 - digit_count..]);
    line[end..end + 4].copy_from_slice(b"\r\n\r\n");
    end + 4
}

/// Whether `name: value` can be written as a header line without
/// breaking the framing: a token-like name, and no CR, LF or NUL in the
/// value (for responses here, for outbound requests in the client).
pub(crate) fn valid_field(name: &str, value: &[u8]) -> bool {
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    // memchr's vector search: a byte-at-a-time loop here was most of what
    // a header line cost (measured end to end with CORS and request IDs).
    name_ok && memchr::memchr3(b'\r', b'\n', 0, value).is_none()
}

/// Appends `name: n\r\n`, `n` in decimal (a `Content-Length` line).
pub(crate) fn push_decimal_line(out: &mut Vec<u8>, name: &[u8], n: u64) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal to `out`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let count = decimal(&mut digits, n);
    out.extend_from_slice(&digits[20 - count..]);
}

/// Writes `n` right-aligned into `digits`; returns how many digits it has.
fn decimal(digits: &mut [u8; 20], mut n: u64) -> usize {
    let mut at = digits.len();
    loop {
        at -= 1;
        // n % 10 < 10, so the cast is exact.
        #[allow(clippy::cast_possible_truncation, reason = "a digit is below 10")]
        {
            digits[at] = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            return digits.len() - at;
        }
    }
}

/// Inserts `bytes` at `at`, moving what follows to the right.
fn insert_at(out: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = out.len() - at;
    out.resize(out.len() + bytes.len(), 0);
    out.copy_within(at..at + tail, at + bytes.len());
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Appends one chunk of a chunked body (nothing for an empty chunk, which
/// would end the body).
pub(crate) fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut at = hex.len();
    let mut n = data.len();
    while {
        at -= 1;
        hex[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
        n != 0
    } {}
    out.extend_from_slice(&hex[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim response to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::{ResponseContext, ResponseWriter, encode_chunk};
    use crate::http::status::Status;

    fn context() -> ResponseContext {
        ResponseContext {
            date: *b"Sun, 06 Nov 1994 08:49:37 GMT",
            head_request: false,
            keep_alive: true,
            http10: false,
        }
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn plaintext_response_bytes() {
        let mut out = Vec::new();
        let mut writer = ResponseWriter::new(&mut out, context());
        writer.send(Status::OK, Some("text/plain"), [], b"Hello, World!");
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
        );
    }

    #[test]
    fn head_keeps_length_drops_body_and_close_is_announced() {
        let mut out = Vec::new();
        let ctx = ResponseContext {
            head_request: true,
            keep_alive: false,
            ..context()
        };
        ResponseWriter::new(&mut out, ctx).send(Status::OK, None, [("X-A", &b"1"[..])], b"abc");
        assert!(text(&out).ends_with("X-A: 1\r\nConnection: close\r\nContent-Length: 3\r\n\r\n"));
    }

    #[test]
    fn no_content_has_no_length() {
        let mut out = Vec::new();
        ResponseWriter::new(&mut out, context()).send(Status::NO_CONTENT, None, [], b"");
        assert!(text(&out).ends_with("GMT\r\n\r\n"));
    }

    #[test]
    fn header_injection_is_dropped() {
        let mut out = Vec::new();
        ResponseWriter::new(&mut out, context()).send(
            Status::OK,
            None,
            [("X", &b"a\r\nB: c"[..])],
            b"",
        );
        assert!(!text(&out).contains("B: c"));
    }

    #[test]
    fn error_body_is_json() {
        let mut out = Vec::new();
        ResponseWriter::new(&mut out, context()).send_error(Status::NOT_FOUND, "no \"such\" route");
        assert!(
            text(&out)
                .ends_with("Content-Length: 30\r\n\r\n{\"detail\":\"no \\\"such\\\" route\"}"),
            "{}",
            text(&out)
        );
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &[b'x'; 26]);
        encode_chunk(&mut out, b"");
        assert_eq!(&out[..4], b"1a\r\n");
        assert_eq!(out.len(), 4 + 26 + 2);
    }
}
