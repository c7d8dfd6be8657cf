//! One HTTP/2 stream, answered by the HTTP/1.1 state machine in memory.
//!
//! The session turned the request's header block into an HTTP/1.1 message
//! (request line from the pseudo-header fields, `Host` from `:authority`,
//! cookies joined as RFC 9113 §8.2.3 says, and a framing field for its
//! body); it is loaded into a [`Conn`] of its own, which the connection
//! loop ([`drive`]) runs over the stream as if it were a socket
//! ([`StreamIo`]): so the request meets the same routes, layers, limits,
//! rate limits, timeouts, metrics and access log as over HTTP/1.1, and its
//! body arrives as it comes — framed with its `content-length`, or chunked
//! (with the client's trailers) when it has none — each piece's window
//! given back once the machine has taken it, so a route that streams its
//! body pulls it at its own pace and one that does not is refused (413)
//! as soon as it is over the limit. The response the machine writes is
//! read back ([`Reader`]): a `100 Continue` becomes an informational
//! HEADERS frame, the head a HEADERS frame without the connection-specific
//! fields HTTP/2 forbids (§8.2.2), its body DATA frames sent as the
//! client's flow-control window allows, chunked trailers a last HEADERS
//! frame.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::rc::Rc;

use super::request::connection_field;
use super::session::{self, Fresh, Session};
use crate::server::conn::Conn;
use crate::server::connection::drive;
use crate::server::exchange::{Origin, error_writer, log_refusal};
use crate::server::shard::ShardContext;
use crate::transport::{BufferPool, Io};

/// A stream counted as open while its task lives; it closes when the task
/// ends.
pub(super) struct Open {
    session: Rc<RefCell<Session>>,
    id: u32,
}

impl Open {
    pub(super) fn new(session: Rc<RefCell<Session>>, id: u32) -> Self {
        Self { session, id }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.session.borrow_mut().finish(self.id);
    }
}

/// Answers one stream.
pub(super) async fn answer<S: 'static>(
    shard: Rc<ShardContext<S>>,
    origin: Origin,
    fresh: Fresh,
    open: Open,
) {
    let settings = shard.settings();
    let mut io = StreamIo {
        body: fresh.body,
        staged: Vec::new(),
        at: 0,
        reader: Reader::new(fresh.head_request),
        reset: Cell::new(false),
        open,
    };
    match fresh.head {
        Ok(message) => {
            let mut conn = Conn::new(Rc::clone(&shard), Rc::clone(&settings), origin);
            conn.load(&message);
            drop(message);
            let watch = shard.deadlines.register();
            drive(&mut conn, &mut io, &watch, &shard.blocks, &shard.pool).await;
        }
        Err((status, why)) => {
            let mut out = Vec::new();
            error_writer(&shard, &settings.common_headers, &mut out).send_error(status, why);
            log_refusal(&shard, origin.peer, status, out.len(), &[]);
            let _ = io.write_all(&mut out, &shard.pool).await;
        }
    }
}

/// The stream as the connection loop's transport: reads give the request
/// body, writes send the response.
struct StreamIo {
    /// The body still to arrive: `Some(chunked)` (framed as chunks, the
    /// request gave no length, ended by the client's trailers).
    body: Option<bool>,
    /// Framed body bytes not taken yet: `staged[at..]`.
    staged: Vec<u8>,
    at: usize,
    reader: Reader,
    /// End with a reset (the client stopped taking the response).
    reset: Cell<bool>,
    open: Open,
}

impl StreamIo {
    /// The next piece of the body as it arrived; `None` at its end.
    async fn piece(&self) -> Option<io::Result<Vec<u8>>> {
        let id = self.open.id;
        poll_fn(|cx| self.open.session.borrow_mut().poll_body(id, cx)).await
    }

    /// Stages the next piece of the body; false at its end (or when the
    /// stream failed: `Err`).
    async fn stage(&mut self) -> io::Result<bool> {
        let Some(chunked) = self.body else {
            return Ok(false);
        };
        self.at = 0;
        match self.piece().await {
            Some(Ok(piece)) => {
                if chunked {
                    self.staged.clear();
                    if piece.is_empty() {
                        return Ok(true);
                    }
                    self.staged
                        .extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    self.staged.extend_from_slice(&piece);
                    self.staged.extend_from_slice(b"\r\n");
                } else {
                    self.staged = piece;
                }
                Ok(true)
            }
            Some(Err(error)) => Err(error),
            None => {
                self.staged.clear();
                if chunked {
                    let trailers = self.open.session.borrow_mut().take_trailers(self.open.id);
                    self.staged.extend_from_slice(b"0\r\n");
                    self.staged.extend_from_slice(&trailers);
                    self.staged.extend_from_slice(b"\r\n");
                }
                self.body = None;
                Ok(!self.staged.is_empty())
            }
        }
    }

    /// Sends what the state machine wrote: interim heads, the head once it
    /// is complete, then body bytes as they come, then trailers.
    async fn relay(&mut self, out: &[u8]) -> Result<(), ()> {
        let mut held = std::mem::take(&mut self.reader.pending);
        let input: &[u8] = if held.is_empty() {
            out
        } else {
            held.extend_from_slice(out);
            &held
        };
        let mut parts = Vec::new();
        let used = self.reader.feed(input, &mut parts);
        let id = self.open.id;
        let session = &self.open.session;
        for part in parts {
            match part {
                Part::Interim(status, fields) => {
                    session
                        .borrow_mut()
                        .send_head(id, Some(status), &fields, false)?;
                }
                Part::Head(status, fields, end) => {
                    session
                        .borrow_mut()
                        .send_head(id, Some(status), &fields, end)?;
                }
                Part::Data(mut data, end) => loop {
                    let sent =
                        poll_fn(|cx| session.borrow_mut().poll_send(id, data, end, cx)).await?;
                    data = &data[sent..];
                    if data.is_empty() {
                        break;
                    }
                },
                Part::Trailers(lines) => {
                    let fields: Vec<(&[u8], &[u8])> = lines
                        .iter()
                        .map(|(n, v)| (n.as_slice(), v.as_slice()))
                        .collect();
                    session.borrow_mut().send_head(id, None, &fields, true)?;
                }
            }
        }
        self.reader.pending = input[used..].to_vec();
        Ok(())
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
        let relayed = self.relay(out).await;
        out.clear();
        relayed.map_err(|()| io::ErrorKind::BrokenPipe.into())
    }

    /// The lingering close of a stream refused while its body arrives:
    /// what still comes is taken and dropped (its window given back), for
    /// the loop's bounded time and amount, so a client that sends its
    /// whole body before it reads (curl) gets the refusal. Past the bound
    /// the stream ends with `RST_STREAM` `NO_ERROR` (RFC 9113 §8.1).
    async fn discard(&mut self, _: &mut Vec<u8>, _: &BufferPool) -> io::Result<usize> {
        if self.body.is_none() {
            return Ok(0);
        }
        if let Some(piece) = self.piece().await {
            return piece.map(|piece| piece.len().max(1));
        }
        self.body = None;
        Ok(0)
    }

    async fn shutdown(&mut self, _: &BufferPool) {
        let reason = if self.reset.get() {
            session::CANCEL
        } else if !self.reader.finished() {
            // The body was cut off (its source failed, or it ended short
            // of its length): the client must see a reset, not a complete
            // stream.
            session::INTERNAL_ERROR
        } else {
            return;
        };
        self.open.session.borrow_mut().reset(self.open.id, reason);
    }

    fn reset_on_close(&self) {
        self.reset.set(true);
    }

    fn shutdown_write(&self) {}
}

/// A field of a response head, borrowed from what the machine wrote.
type Field<'a> = (&'a [u8], &'a [u8]);

/// What [`Reader::feed`] found.
enum Part<'a> {
    /// An interim response (`100 Continue`, `103 Early Hints`).
    Interim(u16, Vec<Field<'a>>),
    /// The response head, and whether the response ends with it.
    Head(u16, Vec<Field<'a>>, bool),
    /// Body bytes, and whether they end the response.
    Data(&'a [u8], bool),
    /// The trailer fields that end a chunked response.
    Trailers(Vec<(Vec<u8>, Vec<u8>)>),
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
    /// Chunked: the trailer section.
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
    /// What a previous write left unread (a head or line in part).
    pending: Vec<u8>,
    /// Trailer fields read so far.
    trailers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Reader {
    fn new(head_request: bool) -> Self {
        Self {
            head_request,
            framing: Framing::Head,
            pending: Vec::new(),
            trailers: Vec::new(),
        }
    }

    fn finished(&self) -> bool {
        self.framing == Framing::Done
    }

    /// Reads `input` on from where it was, into `parts`; returns the bytes
    /// used (the rest is a head or line in part, for the next write).
    fn feed<'a>(&mut self, input: &'a [u8], parts: &mut Vec<Part<'a>>) -> usize {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.framing {
                Framing::Done => return input.len(),
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
                    parts.push(Part::Data(&rest[..take], left == 0));
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
                    parts.push(Part::Data(rest, false));
                    at += rest.len();
                }
                Framing::ChunkSize => {
                    let Some(line) = memchr::memmem::find(rest, b"\r\n") else {
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
                    parts.push(Part::Data(&rest[..take], false));
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
                    let Some(line) = memchr::memmem::find(rest, b"\r\n") else {
                        break;
                    };
                    let field = &rest[..line];
                    at += line + 2;
                    if line == 0 {
                        let trailers = std::mem::take(&mut self.trailers);
                        parts.push(if trailers.is_empty() {
                            Part::Data(&[], true)
                        } else {
                            Part::Trailers(trailers)
                        });
                        self.framing = Framing::Done;
                    } else if let Some(field) = trailer_field(field) {
                        self.trailers.push(field);
                    }
                }
            }
        }
        at
    }

    /// Parses a complete head at the start of `rest` into a part; the
    /// bytes it used, or `None` until it is complete. A 1xx head is an
    /// interim part.
    fn head<'a>(&mut self, rest: &'a [u8], parts: &mut Vec<Part<'a>>) -> Option<usize> {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut fields);
        let used = match parsed.parse(rest) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => {
                // Not a response this side could have written: end it.
                self.framing = Framing::Done;
                parts.push(Part::Head(500, Vec::new(), true));
                return Some(rest.len());
            }
        };
        let status = parsed.code.unwrap_or(500);
        let mut kept = Vec::with_capacity(parsed.headers.len());
        let mut length = None;
        let mut chunked = false;
        for field in parsed.headers.iter() {
            let name = field.name.as_bytes();
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(field.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            }
            if !connection_field(name) {
                kept.push((name, field.value));
            }
        }
        if (100..200).contains(&status) {
            // 101 has no meaning in HTTP/2 (§8.6); the rest are relayed.
            if status != 101 {
                parts.push(Part::Interim(status, kept));
            }
            return Some(used);
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
        parts.push(Part::Head(status, kept, self.framing == Framing::Done));
        Some(used)
    }
}

/// A trailer line as a field; `None` for one HTTP/2 may not carry
/// (connection-specific, or malformed).
fn trailer_field(line: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let colon = memchr::memchr(b':', line)?;
    let name = line[..colon].trim_ascii();
    if name.is_empty() || connection_field(name) || name.iter().any(|b| !b.is_ascii_graphic()) {
        return None;
    }
    let value = line[colon + 1..].trim_ascii();
    Some((name.to_ascii_lowercase(), value.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::{Part, Reader};

    /// Feeds `bytes` after what the reader held, as `relay` does.
    fn read(reader: &mut Reader, bytes: &[u8]) -> (Option<u16>, Vec<u8>, bool) {
        let mut input = std::mem::take(&mut reader.pending);
        input.extend_from_slice(bytes);
        let mut parts = Vec::new();
        let used = reader.feed(&input, &mut parts);
        let mut status = None;
        let mut body = Vec::new();
        let mut end = false;
        for part in parts {
            match part {
                Part::Head(code, fields, ended) => {
                    status = Some(code);
                    for (name, _) in fields {
                        assert!(!name.eq_ignore_ascii_case(b"connection"));
                        assert!(!name.eq_ignore_ascii_case(b"transfer-encoding"));
                    }
                    end |= ended;
                }
                Part::Data(data, ended) => {
                    body.extend_from_slice(data);
                    end |= ended;
                }
                Part::Trailers(_) => end = true,
                Part::Interim(code, _) => panic!("an interim {code}"),
            }
        }
        reader.pending = input[used..].to_vec();
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
            Part::Interim(100, _),
            Part::Head(200, _, false),
            Part::Data(data, false),
            Part::Trailers(trailers),
        ] = parts.as_slice()
        else {
            panic!("{} parts", parts.len());
        };
        assert_eq!(*data, b"ok");
        // Lowercased; a connection-specific field is no trailer in HTTP/2.
        assert_eq!(trailers, &[(b"grpc-status".to_vec(), b"0".to_vec())]);
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
