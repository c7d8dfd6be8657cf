//! One HTTP/2 stream, answered by the HTTP/1.1 state machine in memory.
//!
//! The request becomes an HTTP/1.1 message (request line from the
//! pseudo-header fields, `Host` from `:authority`, cookies joined as
//! RFC 9113 §8.2.3 says, the body read whole under the route limits) and
//! is loaded into a [`Conn`] of its own: so it meets the same routes,
//! layers, limits, rate limits, timeouts, metrics and access log as a
//! request over HTTP/1.1. The response the machine writes is read back
//! ([`Reader`]): its head becomes a HEADERS frame without the
//! connection-specific fields HTTP/2 forbids (§8.2.2), its body DATA
//! frames sent as the peer's flow-control window allows, a streamed body
//! piece by piece.

use std::future::poll_fn;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use super::Open;
use crate::http::status::Status;
use crate::server::conn::Conn;
use crate::server::connection::{Protocol, Sent, Step};
use crate::server::deadline::{Registered, Timer};
use crate::server::exchange::{Origin, error_writer, log_refusal};
use crate::server::shard::ShardContext;

/// Answers one stream; `_open` counts it as open until it ends.
pub(super) async fn answer<S: 'static>(
    shard: Rc<ShardContext<S>>,
    origin: Origin,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    _open: Open,
) {
    let settings = shard.settings();
    // The stream's timeouts, swept with the shard's connections'.
    let watch = shard.deadlines.register();
    // The largest body any route takes; each route's own limit applies
    // once the request is routed.
    let ceiling = shard
        .app
        .connection_limits(settings.limits)
        .0
        .max_body_bytes;
    let (parts, body) = request.into_parts();
    let head_request = parts.method == http::Method::HEAD;
    let mut reader = Reader::new(head_request);
    let mut sending: Option<SendStream<Bytes>> = None;
    let refusal = match request_head(&parts) {
        Err(why) => Err((Status::BAD_REQUEST, why)),
        Ok(head) => match read_body(body, ceiling, (&watch, settings.rules.body)).await {
            Ok(body) => Ok((head, body)),
            Err(Refusal::TooLarge) => Err((Status::PAYLOAD_TOO_LARGE, "request body too large")),
            Err(Refusal::Late) => Err((Status::REQUEST_TIMEOUT, "request body too slow")),
            Err(Refusal::Gone) => return,
        },
    };
    let (mut message, body) = match refusal {
        Ok(read) => read,
        Err((status, detail)) => {
            let mut out = Vec::new();
            error_writer(&shard, &settings.common_headers, &mut out).send_error(status, detail);
            log_refusal(&shard, origin.peer, status, out.len(), &[]);
            let relayed = relay(&mut reader, &out, &mut respond, &mut sending);
            let _ = timed(&watch, (Timer::Working, settings.rules.send), relayed).await;
            return;
        }
    };
    if !body.is_empty() || parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        message.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(&body);
    drop(body);

    let origin = Origin {
        http2: true,
        ..origin
    };
    let mut conn = Conn::new(Rc::clone(&shard), settings, origin);
    conn.load(&message);
    drop(message);
    loop {
        match conn.step() {
            Step::Work { limit } => {
                let work = conn.work(None);
                if timed(&watch, (Timer::Working, limit), work).await.is_none() {
                    conn.work_expired();
                }
            }
            Step::Send { limit } => {
                let out = std::mem::take(conn.output());
                let relayed = relay(&mut reader, &out, &mut respond, &mut sending);
                let outcome = match timed(&watch, (Timer::Working, limit), relayed).await {
                    Some(Ok(())) => Sent::Done,
                    Some(Err(())) => Sent::Failed,
                    None => Sent::Expired,
                };
                *conn.output() = out;
                conn.output().clear();
                conn.sent(outcome);
                if outcome != Sent::Done {
                    if let Some(stream) = &mut sending {
                        stream.send_reset(Reason::CANCEL);
                    }
                    break;
                }
            }
            // In-memory connections never splice.
            Step::SendFile { .. } => conn.file_sent(Err(Sent::Failed)),
            Step::Read { .. } | Step::Close(_) => break,
        }
        if reader.finished() {
            break;
        }
    }
    conn.release();
    if !reader.finished() {
        // The body was cut off (its source failed, or it ended short of
        // its length): the peer must see a reset, not a complete stream.
        match &mut sending {
            Some(stream) => stream.send_reset(Reason::INTERNAL_ERROR),
            None if reader.head_sent() => {}
            None => respond.send_reset(Reason::INTERNAL_ERROR),
        }
    }
}

/// Runs `work` under `timer` armed for `limit` (`None`: no limit);
/// `None` when the limit passed first.
async fn timed<T>(
    watch: &Registered<'_>,
    (timer, limit): (Timer, Option<Duration>),
    work: impl Future<Output = T>,
) -> Option<T> {
    watch.arm(timer, limit);
    let done = watch.guard(timer, work).await.ok();
    watch.disarm(timer);
    done
}

/// Why a request is answered before it reaches a route.
enum Refusal {
    /// Its body is over the largest limit of any route.
    TooLarge,
    /// Its body did not arrive within the body timeout.
    Late,
    /// The peer reset the stream or the connection ended.
    Gone,
}

/// The request line and fields of `parts` as HTTP/1.1 (without the blank
/// line that ends them).
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
            "host" | "content-length" | "expect" | "te" => {}
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

fn push_field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// The whole body of a request, at most `ceiling` bytes, each piece's
/// window given back as it is taken.
async fn read_body(
    mut body: RecvStream,
    ceiling: u64,
    (watch, limit): (&Registered<'_>, Option<Duration>),
) -> Result<Vec<u8>, Refusal> {
    let mut whole = Vec::new();
    if body.is_end_stream() {
        return Ok(whole);
    }
    let read = async {
        while let Some(piece) = body.data().await {
            let piece = piece.map_err(|_| Refusal::Gone)?;
            let _ = body.flow_control().release_capacity(piece.len());
            if (whole.len() + piece.len()) as u64 > ceiling {
                return Err(Refusal::TooLarge);
            }
            whole.extend_from_slice(&piece);
        }
        Ok(())
    };
    match timed(watch, (Timer::Reading, limit), read).await {
        Some(Ok(())) => Ok(whole),
        Some(Err(refusal)) => Err(refusal),
        None => Err(Refusal::Late),
    }
}

/// Sends what the state machine wrote: the head once it is complete, then
/// body bytes as they come.
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
            Part::Head(response, end) => {
                let stream = respond.send_response(response, end).map_err(|_| ())?;
                *sending = Some(stream);
            }
            Part::Data(data, end) => {
                let stream = sending.as_mut().ok_or(())?;
                send_data(stream, data, end).await?;
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

/// What [`Reader::feed`] found.
enum Part {
    /// The response head, and whether the response ends with it.
    Head(http::Response<()>, bool),
    /// Body bytes, and whether they end the response.
    Data(Bytes, bool),
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
                    at += line + 2;
                    if line == 0 {
                        parts.push(Part::Data(Bytes::new(), true));
                        self.framing = Framing::Done;
                    }
                }
            }
        }
        pending.drain(..at);
        self.pending = pending;
    }

    /// Parses a complete head at the start of `rest` into a part; the
    /// bytes it used, or `None` until it is complete. A 1xx head is
    /// skipped (HTTP/2 has none to relay here).
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
            }
        }
        (status, body, end)
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
