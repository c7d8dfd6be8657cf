//! One HTTP/2 stream, answered by the HTTP/1.1 state machine in memory.
//!
//! The request becomes an HTTP/1.1 message (request line from the
//! pseudo-header fields, `Host` from `:authority`, cookies joined as
//! RFC 9113 §8.2.3 says) loaded into a [`Conn`] of its own, which the
//! connection loop ([`drive`]) runs over the stream as if it were a socket
//! ([`StreamIo`]): so the request meets the same routes, layers, limits,
//! rate limits, timeouts, metrics and access log as over HTTP/1.1, and its
//! body arrives as it comes — framed with its `content-length`, or chunked
//! (with the peer's trailers) when it has none — each DATA frame's window
//! given back once the machine has taken it, so a route that streams its
//! body pulls it at its own pace and one that does not is refused (413)
//! as soon as it is over the limit. The response the machine writes is
//! read back ([`Reader`]): a `100 Continue` becomes an informational
//! HEADERS frame, the head a HEADERS frame without the connection-specific
//! fields HTTP/2 forbids (§8.2.2), its body DATA frames sent as the peer's
//! flow-control window allows.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use super::Open;
use crate::http::status::Status;
use crate::server::conn::Conn;
use crate::server::connection::drive;
use crate::server::exchange::{Origin, error_writer, log_refusal};
use crate::server::shard::ShardContext;
use crate::transport::{BufferPool, Io};

/// Answers one stream; `_open` counts it as open until it ends.
pub(super) async fn answer<S: 'static>(
    shard: Rc<ShardContext<S>>,
    origin: Origin,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    _open: Open,
) {
    let settings = shard.settings();
    let (parts, body) = request.into_parts();
    let head_request = parts.method == http::Method::HEAD;
    let origin = Origin {
        http2: true,
        ..origin
    };
    let mut conn = Conn::new(Rc::clone(&shard), Rc::clone(&settings), origin);
    let mut io = StreamIo {
        body: None,
        staged: Vec::new(),
        at: 0,
        reader: Reader::new(head_request),
        respond,
        sending: None,
        reset: Cell::new(false),
    };
    match request_head(&parts) {
        Ok(mut message) => {
            let ended = body.is_end_stream();
            let length = parts.headers.get(http::header::CONTENT_LENGTH);
            match (ended, length) {
                (true, None) => {}
                (true, Some(_)) => message.extend_from_slice(b"content-length: 0\r\n"),
                (false, Some(length)) => {
                    push_field(&mut message, "content-length", length.as_bytes());
                }
                (false, None) => message.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            }
            message.extend_from_slice(b"\r\n");
            if !ended {
                io.body = Some(Incoming {
                    stream: body,
                    chunked: length.is_none(),
                });
            }
            conn.load(&message);
        }
        Err(why) => {
            // A CONNECT (no :path): nothing here tunnels over a stream.
            let mut out = Vec::new();
            error_writer(&shard, &settings.common_headers, &mut out)
                .send_error(Status::BAD_REQUEST, why);
            log_refusal(&shard, origin.peer, Status::BAD_REQUEST, out.len(), &[]);
            let _ = io.write_all(&mut out, &shard.pool).await;
            return;
        }
    }
    let watch = shard.deadlines.register();
    drive(&mut conn, &mut io, &watch, &shard.blocks, &shard.pool).await;
}

/// A request body as it arrives, framed for the machine.
struct Incoming {
    stream: RecvStream,
    /// Framed as chunks (the request gave no length), ended by the
    /// peer's trailers.
    chunked: bool,
}

impl Incoming {
    /// The next DATA frame's payload, its window given back; `None` at
    /// the end of the body.
    async fn piece(&mut self) -> Option<io::Result<Bytes>> {
        let piece = self.stream.data().await?.map_err(io::Error::other);
        if let Ok(piece) = &piece {
            let _ = self.stream.flow_control().release_capacity(piece.len());
        }
        Some(piece)
    }
}

/// The stream as the connection loop's transport: reads give the request
/// body, writes send the response.
struct StreamIo {
    /// The body still to arrive; `None` once it has all been staged.
    body: Option<Incoming>,
    /// Framed body bytes not taken yet: `staged[at..]`.
    staged: Vec<u8>,
    at: usize,
    reader: Reader,
    respond: SendResponse<Bytes>,
    sending: Option<SendStream<Bytes>>,
    /// End with a reset (the peer stopped taking the response).
    reset: Cell<bool>,
}

impl StreamIo {
    /// Stages the next piece of the body; false at its end (or when the
    /// stream failed: `Err`).
    async fn stage(&mut self) -> io::Result<bool> {
        let Some(body) = &mut self.body else {
            return Ok(false);
        };
        self.staged.clear();
        self.at = 0;
        match body.piece().await {
            Some(Ok(piece)) => {
                if body.chunked {
                    if piece.is_empty() {
                        return Ok(true);
                    }
                    self.staged
                        .extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    self.staged.extend_from_slice(&piece);
                    self.staged.extend_from_slice(b"\r\n");
                } else {
                    self.staged.extend_from_slice(&piece);
                }
                Ok(true)
            }
            Some(Err(error)) => Err(error),
            None => {
                if body.chunked {
                    let trailers = body.stream.trailers().await.map_err(io::Error::other)?;
                    self.staged.extend_from_slice(b"0\r\n");
                    for (name, value) in trailers.iter().flatten() {
                        push_field(&mut self.staged, name.as_str(), value.as_bytes());
                    }
                    self.staged.extend_from_slice(b"\r\n");
                }
                self.body = None;
                Ok(!self.staged.is_empty())
            }
        }
    }
}

impl Io for StreamIo {
    fn returns_idle_buffers(&self) -> bool {
        false
    }

    async fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        filled: usize,
        max: usize,
        _: &BufferPool,
    ) -> io::Result<usize> {
        while self.at == self.staged.len() {
            if !self.stage().await? {
                // All of the body was given: nothing else comes.
                return Ok(0);
            }
        }
        if filled >= max {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let take = (self.staged.len() - self.at).min(max - filled);
        if buf.len() < filled + take {
            buf.resize(filled + take, 0);
        }
        buf[filled..filled + take].copy_from_slice(&self.staged[self.at..self.at + take]);
        self.at += take;
        Ok(take)
    }

    async fn write_all(&mut self, out: &mut Vec<u8>, _: &BufferPool) -> io::Result<()> {
        let relayed = relay(&mut self.reader, out, &mut self.respond, &mut self.sending).await;
        out.clear();
        relayed.map_err(|()| io::ErrorKind::BrokenPipe.into())
    }

    /// The lingering close of a stream refused while its body arrives:
    /// what still comes is taken and dropped (its window given back), for
    /// the loop's bounded time and amount, so a client that sends its
    /// whole body before it reads (curl) gets the refusal. Past the bound
    /// the stream ends with `RST_STREAM` `NO_ERROR` (RFC 9113 §8.1).
    async fn discard(&mut self, _: &mut Vec<u8>, _: &BufferPool) -> io::Result<usize> {
        let Some(body) = &mut self.body else {
            return Ok(0);
        };
        if let Some(piece) = body.piece().await {
            return piece.map(|piece| piece.len().max(1));
        }
        self.body = None;
        Ok(0)
    }

    async fn shutdown(&mut self, _: &BufferPool) {
        let reason = if self.reset.get() {
            Reason::CANCEL
        } else if !self.reader.finished() {
            // The body was cut off (its source failed, or it ended short
            // of its length): the peer must see a reset, not a complete
            // stream.
            Reason::INTERNAL_ERROR
        } else {
            return;
        };
        match &mut self.sending {
            Some(stream) => stream.send_reset(reason),
            None if self.reader.head_sent() => {}
            None => self.respond.send_reset(reason),
        }
    }

    fn reset_on_close(&self) {
        self.reset.set(true);
    }

    fn shutdown_write(&self) {}
}

fn push_field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// The request line and fields of `parts` as HTTP/1.1 (without the blank
/// line that ends them, and without framing fields).
fn request_head(parts: &http::request::Parts) -> Result<Vec<u8>, &'static str> {
    let mut head = Vec::with_capacity(256);
    let target = match parts.uri.path_and_query() {
        Some(target) if parts.method == http::Method::OPTIONS && target.as_str() == "*" => "*",
        Some(target) => target.as_str(),
        None => return Err("a request needs a :path"),
    };
    if target.is_empty() {
        return Err("the :path is empty");
    }
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    // :authority stands for Host (RFC 9113 §8.3.1); a Host field that
    // disagrees is dropped.
    let authority = parts.uri.authority().map(http::uri::Authority::as_str);
    match (authority, parts.headers.get(http::header::HOST)) {
        (Some(authority), _) => push_field(&mut head, "host", authority.as_bytes()),
        (None, Some(host)) => push_field(&mut head, "host", host.as_bytes()),
        (None, None) => {}
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        match name.as_str() {
            "host" | "content-length" | "transfer-encoding" | "te" => {}
            "cookie" => cookies.push(value.as_bytes()),
            name => push_field(&mut head, name, value.as_bytes()),
        }
    }
    if !cookies.is_empty() {
        head.extend_from_slice(b"cookie: ");
        for (at, cookie) in cookies.iter().enumerate() {
            if at > 0 {
                head.extend_from_slice(b"; ");
            }
            head.extend_from_slice(cookie);
        }
        head.extend_from_slice(b"\r\n");
    }
    Ok(head)
}

/// Sends what the state machine wrote: interim heads, the head once it is
/// complete, then body bytes as they come.
async fn relay(
    reader: &mut Reader,
    out: &[u8],
    respond: &mut SendResponse<Bytes>,
    sending: &mut Option<SendStream<Bytes>>,
) -> Result<(), ()> {
    let mut parts = Vec::new();
    reader.feed(out, &mut parts);
    for part in parts {
        match part {
            Part::Interim(response) => respond.send_informational(response).map_err(|_| ())?,
            Part::Head(response, end) => {
                let stream = respond.send_response(response, end).map_err(|_| ())?;
                *sending = Some(stream);
            }
            Part::Data(data, end) => {
                let stream = sending.as_mut().ok_or(())?;
                send_data(stream, data, end).await?;
            }
            Part::Trailers(trailers) => {
                let stream = sending.as_mut().ok_or(())?;
                stream.send_trailers(trailers).map_err(|_| ())?;
            }
        }
    }
    Ok(())
}

/// Sends `data` as the peer's window allows.
async fn send_data(stream: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> Result<(), ()> {
    if data.is_empty() {
        return stream.send_data(data, end).map_err(|_| ());
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let Some(Ok(room)) = poll_fn(|cx| stream.poll_capacity(cx)).await else {
            return Err(());
        };
        if room == 0 {
            continue;
        }
        let piece = data.split_to(room.min(data.len()));
        stream
            .send_data(piece, end && data.is_empty())
            .map_err(|_| ())?;
    }
    Ok(())
}

/// A trailer line as a field; `None` for one HTTP/2 may not carry
/// (connection-specific, or malformed).
fn trailer_field(line: &[u8]) -> Option<(http::HeaderName, http::HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
    if CONNECTION_FIELDS.contains(&name.as_str()) {
        return None;
    }
    let value = http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
    Some((name, value))
}

/// What [`Reader::feed`] found.
enum Part {
    /// An interim response (`100 Continue`, `103 Early Hints`).
    Interim(http::Response<()>),
    /// The response head, and whether the response ends with it.
    Head(http::Response<()>, bool),
    /// Body bytes, and whether they end the response.
    Data(Bytes, bool),
    /// The trailer fields that end a chunked response.
    Trailers(http::HeaderMap),
}

/// Where the reader of the state machine's output is.
#[derive(Debug, PartialEq)]
enum Framing {
    Head,
    Length(u64),
    /// Chunked: the size line of the next chunk, or `left` bytes of this one
    /// (then its CRLF).
    ChunkSize,
    Chunk(u64),
    ChunkEnd,
    /// Chunked: the empty trailer section.
    Trailer,
    /// Until the machine closes (HTTP/1.0-style): never from a fresh
    /// HTTP/1.1 request, but read as it comes.
    UntilClose,
    Done,
}

/// Reads the HTTP/1.1 response the state machine writes into HTTP/2 parts.
struct Reader {
    head_request: bool,
    framing: Framing,
    pending: Vec<u8>,
    head_sent: bool,
    /// Trailer fields read so far.
    trailers: http::HeaderMap,
}

/// Connection-specific fields (RFC 9113 §8.2.2), never sent in HTTP/2.
const CONNECTION_FIELDS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

impl Reader {
    fn new(head_request: bool) -> Self {
        Self {
            head_request,
            framing: Framing::Head,
            pending: Vec::new(),
            head_sent: false,
            trailers: http::HeaderMap::new(),
        }
    }

    fn finished(&self) -> bool {
        self.framing == Framing::Done
    }

    fn head_sent(&self) -> bool {
        self.head_sent
    }

    /// Reads `bytes` on from where it was, into `parts`.
    fn feed(&mut self, bytes: &[u8], parts: &mut Vec<Part>) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &pending[at..];
            match self.framing {
                Framing::Done => break,
                Framing::Head => {
                    let Some(used) = self.head(rest, parts) else {
                        break;
                    };
                    at += used;
                }
                Framing::Length(left) => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    let left = left - take as u64;
                    parts.push(Part::Data(Bytes::copy_from_slice(&rest[..take]), left == 0));
                    at += take;
                    self.framing = if left == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(left)
                    };
                }
                Framing::UntilClose => {
                    if rest.is_empty() {
                        break;
                    }
                    parts.push(Part::Data(Bytes::copy_from_slice(rest), false));
                    at += rest.len();
                }
                Framing::ChunkSize => {
                    let Some(line) = rest.windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let size = std::str::from_utf8(&rest[..line])
                        .ok()
                        .and_then(|l| u64::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                        .unwrap_or(0);
                    at += line + 2;
                    self.framing = if size == 0 {
                        Framing::Trailer
                    } else {
                        Framing::Chunk(size)
                    };
                }
                Framing::Chunk(left) => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    parts.push(Part::Data(Bytes::copy_from_slice(&rest[..take]), false));
                    at += take;
                    let left = left - take as u64;
                    self.framing = if left == 0 {
                        Framing::ChunkEnd
                    } else {
                        Framing::Chunk(left)
                    };
                }
                Framing::ChunkEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    at += 2;
                    self.framing = Framing::ChunkSize;
                }
                Framing::Trailer => {
                    let Some(line) = rest.windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let field = &rest[..line];
                    at += line + 2;
                    if line == 0 {
                        let trailers = std::mem::take(&mut self.trailers);
                        parts.push(if trailers.is_empty() {
                            Part::Data(Bytes::new(), true)
                        } else {
                            Part::Trailers(trailers)
                        });
                        self.framing = Framing::Done;
                    } else if let Some((name, value)) = trailer_field(field) {
                        self.trailers.append(name, value);
                    }
                }
            }
        }
        pending.drain(..at);
        self.pending = pending;
    }

    /// Parses a complete head at the start of `rest` into a part; the
    /// bytes it used, or `None` until it is complete. A 1xx head is an
    /// interim part.
    fn head(&mut self, rest: &[u8], parts: &mut Vec<Part>) -> Option<usize> {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut fields);
        let used = match parsed.parse(rest) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => {
                // Not a response this side could have written: end it.
                self.framing = Framing::Done;
                parts.push(Part::Head(
                    http::Response::builder()
                        .status(500)
                        .body(())
                        .expect("a fixed head"),
                    true,
                ));
                return Some(rest.len());
            }
        };
        let status = parsed.code.unwrap_or(500);
        if (100..200).contains(&status) {
            // 101 has no meaning in HTTP/2 (§8.6); the rest are relayed.
            if status != 101 {
                let mut interim = http::Response::builder().status(status);
                for field in parsed.headers.iter() {
                    interim = interim.header(field.name, field.value);
                }
                if let Ok(interim) = interim.body(()) {
                    parts.push(Part::Interim(interim));
                }
            }
            return Some(used);
        }
        let mut response = http::Response::builder().status(status);
        let mut length = None;
        let mut chunked = false;
        for field in parsed.headers.iter() {
            let name = field.name.to_ascii_lowercase();
            if name == "transfer-encoding" {
                chunked = true;
            }
            if name == "content-length" {
                length = std::str::from_utf8(field.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            }
            if CONNECTION_FIELDS.contains(&name.as_str()) {
                continue;
            }
            response = response.header(name, field.value);
        }
        let bodiless = self.head_request || status == 204 || status == 304;
        self.framing = if bodiless || length == Some(0) && !chunked {
            Framing::Done
        } else if chunked {
            Framing::ChunkSize
        } else if let Some(length) = length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
        let head = response.body(()).unwrap_or_else(|_| {
            http::Response::builder()
                .status(500)
                .body(())
                .expect("a fixed head")
        });
        self.head_sent = true;
        parts.push(Part::Head(head, self.framing == Framing::Done));
        Some(used)
    }
}

#[cfg(test)]
mod tests {
    use super::{Part, Reader};

    fn read(reader: &mut Reader, bytes: &[u8]) -> (Option<u16>, Vec<u8>, bool) {
        let mut parts = Vec::new();
        reader.feed(bytes, &mut parts);
        let mut status = None;
        let mut body = Vec::new();
        let mut end = false;
        for part in parts {
            match part {
                Part::Head(head, ended) => {
                    status = Some(head.status().as_u16());
                    assert!(head.headers().get("connection").is_none());
                    assert!(head.headers().get("transfer-encoding").is_none());
                    end |= ended;
                }
                Part::Data(data, ended) => {
                    body.extend_from_slice(&data);
                    end |= ended;
                }
                Part::Trailers(_) => end = true,
                Part::Interim(head) => panic!("an interim {}", head.status()),
            }
        }
        (status, body, end)
    }

    #[test]
    fn interim_heads_and_trailers_become_their_own_parts() {
        let whole =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            2\r\nok\r\n0\r\nGrpc-Status: 0\r\nConnection: x\r\n\r\n";
        let mut reader = Reader::new(false);
        let mut parts = Vec::new();
        reader.feed(whole, &mut parts);
        assert!(reader.finished());
        let [
            Part::Interim(interim),
            Part::Head(head, false),
            Part::Data(data, false),
            Part::Trailers(trailers),
        ] = parts.as_slice()
        else {
            panic!("{} parts", parts.len());
        };
        assert_eq!(interim.status(), 100);
        assert_eq!(head.status(), 200);
        assert_eq!(data.as_ref(), b"ok");
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        // A connection-specific field is no trailer in HTTP/2.
        assert_eq!(trailers.len(), 1);
    }

    #[test]
    fn a_length_response_is_read_in_any_pieces() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
        for cut in 1..whole.len() {
            let mut reader = Reader::new(false);
            let (status, mut body, end) = read(&mut reader, &whole[..cut]);
            assert!(!end);
            let (later, rest, end) = read(&mut reader, &whole[cut..]);
            body.extend_from_slice(&rest);
            assert_eq!(status.or(later), Some(200));
            assert_eq!(body, b"hello");
            assert!(end && reader.finished());
        }
    }

    #[test]
    fn a_chunked_response_loses_its_framing() {
        let whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
        for cut in 1..whole.len() {
            let mut reader = Reader::new(false);
            let (_, mut body, _) = read(&mut reader, &whole[..cut]);
            let (_, rest, end) = read(&mut reader, &whole[cut..]);
            body.extend_from_slice(&rest);
            assert_eq!(body, b"hello!", "cut at {cut}");
            assert!(end && reader.finished());
        }
    }

    #[test]
    fn head_204_and_304_end_with_their_head() {
        let mut head = Reader::new(true);
        let (status, body, end) = read(&mut head, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        assert_eq!((status, body.len(), end), (Some(200), 0, true));
        let mut none = Reader::new(false);
        let (status, _, end) = read(
            &mut none,
            b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n",
        );
        assert_eq!((status, end), (Some(304), true));
    }

    #[test]
    fn a_body_cut_short_is_not_finished() {
        let mut reader = Reader::new(false);
        let (_, body, end) = read(
            &mut reader,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        );
        assert_eq!((body.as_slice(), end), (&b"abc"[..], false));
        assert!(!reader.finished());
    }
}
