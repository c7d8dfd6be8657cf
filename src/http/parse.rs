//! Request decoding: bytes in, one framed request out (RFC 9112).
//!
//! [`Decoder::decode`] is given the unconsumed bytes of a connection, starting
//! at a message boundary. It answers [`Decoded::Partial`] until a whole request
//! (head and body) is there, then [`Decoded::Complete`] with offsets into those
//! bytes. It never allocates once its header table has grown to fit.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::body::{ChunkLimits, ChunkedDecoder};
use super::framing::{Fields, has_bare_lf};
use super::status::Status;

/// Hard ceiling on `max_headers`, which sizes a stack array per parse.
pub(crate) const MAX_HEADERS_CEILING: usize = 256;

/// Size limits applied while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version), in bytes.
    pub max_request_line_bytes: usize,
    /// Largest request head (request line and header fields), in bytes.
    pub max_head_bytes: usize,
    /// Most header fields in one request (at most 256).
    pub max_headers: usize,
    /// Largest decoded request body, in bytes.
    pub max_body_bytes: u64,
    /// Longest chunk extension on one chunk-size line, in bytes.
    pub max_chunk_extension_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line_bytes: 8 * 1024,
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            max_chunk_extension_bytes: 1024,
        }
    }
}

/// Why a request could not be decoded. Each maps to one status and one
/// sentence for the client; after any of them the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The request line or a header field is not valid HTTP/1.1 syntax.
    Malformed(&'static str),
    /// The request line is longer than `max_request_line_bytes`.
    RequestLineTooLong,
    /// The head is larger than `max_head_bytes`.
    HeadTooLarge,
    /// An HTTP/1.1 request without a `Host` field.
    MissingHost,
    /// More than one `Host` field.
    RepeatedHost,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// A version other than HTTP/1.0 or HTTP/1.1.
    UnsupportedVersion,
    /// Content-Length is not a decimal number, or its values disagree.
    BadContentLength,
    /// Both Transfer-Encoding and Content-Length are present.
    AmbiguousLength,
    /// Transfer-Encoding whose final coding is not chunked, or chunked twice,
    /// or chunked in an HTTP/1.0 request.
    BadTransferEncoding,
    /// A transfer coding other than chunked.
    UnsupportedTransferCoding,
    /// An `Expect` value other than `100-continue`.
    UnsupportedExpectation,
    /// The body is larger than `max_body_bytes`.
    BodyTooLarge,
    /// The chunked body framing is broken.
    BadChunk,
}

impl ParseError {
    /// The status that answers this error.
    #[must_use]
    pub fn status(self) -> Status {
        match self {
            Self::RequestLineTooLong => Status::URI_TOO_LONG,
            Self::HeadTooLarge | Self::TooManyHeaders => Status::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedVersion => Status::HTTP_VERSION_NOT_SUPPORTED,
            Self::UnsupportedTransferCoding => Status::NOT_IMPLEMENTED,
            Self::UnsupportedExpectation => Status::EXPECTATION_FAILED,
            Self::BodyTooLarge => Status::PAYLOAD_TOO_LARGE,
            Self::Malformed(_)
            | Self::MissingHost
            | Self::RepeatedHost
            | Self::BadContentLength
            | Self::AmbiguousLength
            | Self::BadTransferEncoding
            | Self::BadChunk => Status::BAD_REQUEST,
        }
    }

    /// One sentence for the client's `{"detail": ...}`.
    #[must_use]
    pub fn detail(self) -> &'static str {
        match self {
            Self::Malformed(what) => what,
            Self::RequestLineTooLong => "request line too long",
            Self::HeadTooLarge => "request head too large",
            Self::MissingHost => "HTTP/1.1 requests need a Host header",
            Self::RepeatedHost => "more than one Host header",
            Self::TooManyHeaders => "too many header fields",
            Self::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            Self::BadContentLength => "invalid Content-Length",
            Self::AmbiguousLength => "both Transfer-Encoding and Content-Length",
            Self::BadTransferEncoding => "invalid Transfer-Encoding",
            Self::UnsupportedTransferCoding => "unsupported transfer coding",
            Self::UnsupportedExpectation => "only 'Expect: 100-continue' is supported",
            Self::BodyTooLarge => "request body too large",
            Self::BadChunk => "invalid chunked body",
        }
    }
}

impl From<httparse::Error> for ParseError {
    fn from(error: httparse::Error) -> Self {
        match error {
            httparse::Error::Version => Self::UnsupportedVersion,
            httparse::Error::TooManyHeaders => Self::TooManyHeaders,
            httparse::Error::HeaderName => Self::Malformed("invalid header name"),
            httparse::Error::HeaderValue => Self::Malformed("invalid header value"),
            httparse::Error::NewLine => Self::Malformed("invalid line ending"),
            httparse::Error::Token | httparse::Error::Status => {
                Self::Malformed("invalid request line")
            }
        }
    }
}

/// The request method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
    /// Any other token; the request keeps its text.
    Other,
}

impl Method {
    /// The method for a request-line token.
    #[must_use]
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "PATCH" => Self::Patch,
            "OPTIONS" => Self::Options,
            "CONNECT" => Self::Connect,
            "TRACE" => Self::Trace,
            _ => Self::Other,
        }
    }

    /// The method's token as it appears on the request line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Connect => "CONNECT",
            Self::Trace => "TRACE",
            Self::Other => "",
        }
    }
}

/// The protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A byte range inside the message, kept as offsets so that the head stays
/// valid while the buffer around it grows or moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(inner: &[u8], outer: &[u8]) -> Span {
        let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
        // The head is at most `max_head_bytes`, which config caps far below 4 GiB.
        #[allow(clippy::cast_possible_truncation, reason = "heads are far below 4 GiB")]
        Span {
            start: start as u32,
            end: (start + inner.len()) as u32,
        }
    }

    /// The bytes this span covers in `message`.
    #[must_use]
    pub fn get(self, message: &[u8]) -> &[u8] {
        &message[self.start as usize..self.end as usize]
    }
}

/// One header field: name and value spans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderSpan {
    /// The field name.
    pub name: Span,
    /// The field value, without surrounding whitespace.
    pub value: Span,
}

/// The parsed request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The request method.
    pub method: Method,
    /// The method token.
    pub method_token: Span,
    /// The request target (path and query).
    pub target: Span,
    /// The protocol version.
    pub version: Version,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// How the body is delimited.
    pub framing: Framing,
    /// Length of the head in bytes, up to and including the blank line.
    pub len: usize,
}

/// A whole request found at the start of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// The head.
    pub head: Head,
    /// Where the decoded body lies in the buffer.
    pub body: (usize, usize),
    /// Bytes of the buffer this request occupied, framing included.
    pub consumed: usize,
}

impl Message {
    /// The body range.
    #[must_use]
    pub fn body_range(&self) -> Range<usize> {
        self.body.0..self.body.1
    }
}

/// The answer of one decode step: need more bytes, or a whole request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// More bytes are needed.
    Partial,
    /// A whole request.
    Complete(Message),
}

#[derive(Clone, Debug)]
enum State {
    Head,
    // Boxed: chunked bodies are rare, and every idle connection carries this.
    Body(Head, Option<Box<ChunkedDecoder>>),
}

/// Decodes requests one after another from a connection's bytes.
#[derive(Clone, Debug)]
pub struct Decoder {
    limits: Limits,
    headers: Vec<HeaderSpan>,
    state: State,
    continue_due: bool,
}

impl Decoder {
    /// A decoder with the given limits.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            headers: Vec::new(),
            state: State::Head,
            continue_due: false,
        }
    }

    /// The header fields of the request last returned (or being received).
    #[must_use]
    pub fn headers(&self) -> &[HeaderSpan] {
        &self.headers
    }

    /// Room in the header table (it grows to fit the largest head seen).
    #[must_use]
    pub fn header_capacity(&self) -> usize {
        self.headers.capacity()
    }

    /// Hands the header table over, for a pool to keep while the connection
    /// idles (between requests) or once it has ended.
    pub fn take_header_table(&mut self) -> Vec<HeaderSpan> {
        std::mem::take(&mut self.headers)
    }

    /// Gives the decoder a header table to fill (from a pool).
    pub fn lend_header_table(&mut self, mut table: Vec<HeaderSpan>) {
        table.clear();
        self.headers = table;
    }

    /// True once per request when the client asked for `100 Continue` and the
    /// body has not arrived yet: the caller should send the interim response.
    pub fn take_continue(&mut self) -> bool {
        std::mem::take(&mut self.continue_due)
    }

    /// Whether a request has begun but is not complete (its head, or its body).
    #[must_use]
    pub fn in_progress(&self) -> bool {
        matches!(self.state, State::Body(..))
    }

    /// The head of the request whose body is still arriving, and the
    /// decoded body bytes so far.
    #[must_use]
    pub fn pending(&self) -> Option<(Head, u64)> {
        match &self.state {
            State::Body(head, chunked) => {
                Some((*head, chunked.as_ref().map_or(0, |decoder| decoder.total())))
            }
            State::Head => None,
        }
    }

    /// Stops decoding the request in progress, whose body someone else
    /// reads (a streamed body); the header table stays as it is until the
    /// next head.
    pub fn hand_over_body(&mut self) {
        self.state = State::Head;
        self.continue_due = false;
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decodes the request at the start of `message`. Chunked bodies are
    /// decoded in place, so the bytes after the head may be rewritten.
    ///
    /// # Errors
    /// A [`ParseError`] when the bytes are not a valid request or break a limit.
    pub fn decode(&mut self, message: &mut [u8]) -> Result<Decoded, ParseError> {
        if let State::Head = self.state {
            let Some(head) = self.parse_head(message)? else {
                return Ok(Decoded::Partial);
            };
            let body = match head.framing {
                Framing::Chunked => Some(Box::new(ChunkedDecoder::new(head.len))),
                _ => None,
            };
            self.continue_due = head.expect_continue && head.framing != Framing::Empty;
            self.state = State::Body(head, body);
        }
        let State::Body(head, chunked) = &mut self.state else {
            return Ok(Decoded::Partial);
        };
        let head = *head;
        let done = match (head.framing, chunked) {
            (Framing::Empty, _) => Some((head.len, head.len)),
            (Framing::Length(len), _) => {
                // len <= max_body_bytes was checked with the head, so it fits.
                let end = head.len + usize::try_from(len).map_err(|_| ParseError::BodyTooLarge)?;
                (message.len() >= end).then_some((end, end))
            }
            (Framing::Chunked, Some(decoder)) => decoder
                .decode(
                    message,
                    ChunkLimits {
                        max_body: self.limits.max_body_bytes,
                        max_trailer: self.limits.max_head_bytes,
                        max_trailer_fields: self.limits.max_headers,
                        max_extension: self.limits.max_chunk_extension_bytes,
                    },
                )?
                .then(|| (decoder.body_end(), decoder.consumed())),
            (Framing::Chunked, None) => unreachable!("a chunked head always has a decoder"),
        };
        let Some((body_end, consumed)) = done else {
            return Ok(Decoded::Partial);
        };
        self.state = State::Head;
        if consumed > head.len {
            self.continue_due = false;
        }
        Ok(Decoded::Complete(Message {
            head,
            body: (head.len, body_end),
            consumed,
        }))
    }

    fn parse_head(&mut self, message: &[u8]) -> Result<Option<Head>, ParseError> {
        // Uninitialised slots: zeroing 256 headers per request costs more
        // than parsing a typical head.
        let mut raw =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
        let slots = self.limits.max_headers.min(MAX_HEADERS_CEILING);
        // Only the bytes up to each limit (plus one) are parsed, so the
        // verdict is the same however the bytes arrive: an error before the
        // limit wins, otherwise crossing the limit is the verdict.
        let line_cap = message.len().min(self.limits.max_request_line_bytes + 1);
        if line_cap > self.limits.max_request_line_bytes
            && memchr::memchr(b'\n', &message[..line_cap]).is_none()
        {
            let mut request = httparse::Request::new(&mut []);
            match request.parse_with_uninit_headers(&message[..line_cap], &mut raw[..slots]) {
                Err(httparse::Error::Version) => version_verdict(&message[..line_cap])?,
                Err(error) => return Err(error.into()),
                Ok(_) => {}
            }
            return Err(ParseError::RequestLineTooLong);
        }
        let head_cap = message.len().min(self.limits.max_head_bytes + 1);
        let mut request = httparse::Request::new(&mut []);
        let parsed =
            match request.parse_with_uninit_headers(&message[..head_cap], &mut raw[..slots]) {
                Err(httparse::Error::Version) => {
                    version_verdict(&message[..head_cap])?;
                    return Ok(None);
                }
                other => other?,
            };
        let len = match parsed {
            httparse::Status::Partial if head_cap > self.limits.max_head_bytes => {
                return Err(ParseError::HeadTooLarge);
            }
            httparse::Status::Partial => return Ok(None),
            httparse::Status::Complete(len) => len,
        };
        if len > self.limits.max_head_bytes {
            return Err(ParseError::HeadTooLarge);
        }
        // httparse accepts a bare LF as a line end; RFC 9112 lets a server
        // refuse it, and accepting it is a request-smuggling vector.
        if has_bare_lf(&message[..len]) {
            return Err(ParseError::Malformed("line ends must be CRLF"));
        }
        let (Some(method), Some(target), Some(minor)) =
            (request.method, request.path, request.version)
        else {
            return Err(ParseError::Malformed("invalid request line"));
        };
        let version = if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        let mut fields = Fields::new(version);
        self.headers.clear();
        for header in request.headers.iter() {
            fields.observe(header.name, header.value)?;
            self.headers.push(HeaderSpan {
                name: Span::of(header.name.as_bytes(), message),
                value: Span::of(header.value, message),
            });
        }
        if version == Version::Http11 && fields.hosts != 1 {
            return Err(if fields.hosts == 0 {
                ParseError::MissingHost
            } else {
                ParseError::RepeatedHost
            });
        }
        let framing = fields.framing(version)?;
        if let Framing::Length(body) = framing
            && body > self.limits.max_body_bytes
        {
            return Err(ParseError::BodyTooLarge);
        }
        Ok(Some(Head {
            method: Method::from_token(method),
            method_token: Span::of(method.as_bytes(), message),
            target: Span::of(target.as_bytes(), message),
            version,
            keep_alive: fields.keep_alive,
            expect_continue: fields.expect_continue,
            framing,
            len,
        }))
    }
}

/// What httparse's version refusal means (it refuses every version but
/// HTTP/1.0 and HTTP/1.1 at the first byte it dislikes): a well-formed
/// `HTTP/DIGIT.DIGIT` (RFC 9112 §2.3) is 505; anything else, or a request
/// line with more than two spaces, is a malformed request (400). `Ok` when
/// the line is not complete enough to tell yet.
fn version_verdict(message: &[u8]) -> Result<(), ParseError> {
    const MALFORMED: ParseError = ParseError::Malformed("invalid request line");
    let end = memchr::memchr2(b'\r', b'\n', message);
    let line = &message[..end.unwrap_or(message.len())];
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_method), Some(_target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return if end.is_some() {
            Err(MALFORMED)
        } else {
            Ok(())
        };
    };
    if parts.next().is_some() {
        return Err(MALFORMED);
    }
    let shape = b"HTTP/0.0";
    for (i, &byte) in version.iter().enumerate() {
        let fits = match shape.get(i) {
            Some(b'0') => byte.is_ascii_digit(),
            Some(&expected) => byte == expected,
            None => false,
        };
        if !fits {
            return Err(MALFORMED);
        }
    }
    match (version.len() == shape.len(), end.is_some()) {
        (true, true) => Err(ParseError::UnsupportedVersion),
        (false, true) => Err(MALFORMED),
        (_, false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Decoded, Decoder, Framing, Limits, Method, ParseError, Version};

    /// What a request decoded to, owned, so verdicts can be compared.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        method: Method,
        target: Vec<u8>,
        version: Version,
        keep_alive: bool,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Vec<u8>,
    }

    /// Decodes every request in `input`, fed to the decoder in two parts
    /// split at `split`; returns the requests and the error that stopped it.
    fn decode_all(input: &[u8], split: usize) -> (Vec<Outcome>, Option<ParseError>) {
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = input[..split].to_vec();
        let mut start = 0;
        let mut outcomes = Vec::new();
        let mut fed_all = split == input.len();
        loop {
            match decoder.decode(&mut buf[start..]) {
                Ok(Decoded::Complete(message)) => {
                    let bytes = &buf[start..];
                    outcomes.push(Outcome {
                        method: message.head.method,
                        target: message.head.target.get(bytes).to_vec(),
                        version: message.head.version,
                        keep_alive: message.head.keep_alive,
                        headers: decoder
                            .headers()
                            .iter()
                            .map(|h| (h.name.get(bytes).to_vec(), h.value.get(bytes).to_vec()))
                            .collect(),
                        body: bytes[message.body_range()].to_vec(),
                    });
                    start += message.consumed;
                }
                Ok(Decoded::Partial) if fed_all => return (outcomes, None),
                Ok(Decoded::Partial) => {
                    buf.extend_from_slice(&input[split..]);
                    fed_all = true;
                }
                Err(error) => return (outcomes, Some(error)),
            }
        }
    }

    /// The verdict for `input`, checked to be the same at every split point.
    fn verdict(input: &[u8]) -> (Vec<Outcome>, Option<ParseError>) {
        let whole = decode_all(input, input.len());
        for split in 0..input.len() {
            assert_eq!(decode_all(input, split), whole, "split at {split}");
        }
        whole
    }

    #[test]
    fn simple_get() {
        let (requests, error) = verdict(b"GET /plaintext?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(error, None);
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.target, b"/plaintext?x=1");
        assert!(request.keep_alive);
        assert_eq!(request.headers, vec![(b"Host".to_vec(), b"a".to_vec())]);
    }

    #[test]
    fn pipelined_requests_with_bodies() {
        let input = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: a\r\n\r\n\
POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
GET /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let (requests, error) = verdict(input);
        assert_eq!(error, None);
        let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_slice()).collect();
        assert_eq!(bodies, [&b"hello"[..], b"", b"abcde", b""]);
        assert_eq!(requests[3].target, b"/d");
        assert!(!requests[3].keep_alive);
    }

    #[test]
    fn http10_keep_alive_rules() {
        let (requests, _) =
            verdict(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(
            requests.iter().map(|r| r.keep_alive).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(requests[0].version, Version::Http10);
    }

    #[test]
    fn framing_errors() {
        let cases: [(&[u8], ParseError); 15] = [
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                ParseError::AmbiguousLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                ParseError::BadTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                ParseError::UnsupportedTransferCoding,
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                ParseError::BadTransferEncoding,
            ),
            (b"GET / HTTP/2.0\r\n\r\n", ParseError::UnsupportedVersion),
            (b"GET / HTTP/3.0\r\n\r\n", ParseError::UnsupportedVersion),
            (
                b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
                ParseError::Malformed("invalid request line"),
            ),
            (
                b"GET / http/1.1\r\nHost: a\r\n\r\n",
                ParseError::Malformed("invalid request line"),
            ),
            (
                b"GET / HTTP/01.1\r\nHost: a\r\n\r\n",
                ParseError::Malformed("invalid request line"),
            ),
            (
                b"GET / HTTP/1\r\nHost: a\r\n\r\n",
                ParseError::Malformed("invalid request line"),
            ),
            (
                b"GET / XTTP/1.1\r\nHost: a\r\n\r\n",
                ParseError::Malformed("invalid request line"),
            ),
            (
                b"GET / HTTP/2.00\r\nHost: a\r\n\r\n",
                ParseError::Malformed("invalid request line"),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n",
                ParseError::BodyTooLarge,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                verdict(input).1,
                Some(expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn repeated_equal_lengths_are_one_length() {
        let (requests, error) =
            verdict(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nok");
        assert_eq!(error, None);
        assert_eq!(requests[0].body, b"ok");
    }

    #[test]
    fn host_and_line_end_rules() {
        let cases: [(&[u8], Option<ParseError>); 7] = [
            (b"GET / HTTP/1.1\r\n\r\n", Some(ParseError::MissingHost)),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Some(ParseError::RepeatedHost),
            ),
            (b"GET / HTTP/1.0\r\n\r\n", None),
            (
                b"GET / HTTP/1.1\nHost: a\n\n",
                Some(ParseError::Malformed("line ends must be CRLF")),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\n\r\n",
                Some(ParseError::Malformed("line ends must be CRLF")),
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
            (b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                verdict(input).1,
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn request_line_limit() {
        let limits = Limits {
            max_request_line_bytes: 300,
            ..Limits::default()
        };
        let mut ok = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(280)).into_bytes();
        assert!(matches!(
            Decoder::new(limits).decode(&mut ok),
            Ok(Decoded::Complete(_))
        ));
        let mut long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(300)).into_bytes();
        assert_eq!(
            Decoder::new(limits).decode(&mut long),
            Err(ParseError::RequestLineTooLong)
        );
        // Refused before the line is even complete.
        let mut partial = format!("GET /{}", "a".repeat(400)).into_bytes();
        assert_eq!(
            Decoder::new(limits).decode(&mut partial),
            Err(ParseError::RequestLineTooLong)
        );
    }

    #[test]
    fn head_limit() {
        let mut decoder = Decoder::new(Limits {
            max_head_bytes: 64,
            ..Limits::default()
        });
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100));
        assert_eq!(decoder.decode(&mut long), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn expect_continue_is_announced_once() {
        let mut decoder = Decoder::new(Limits::default());
        let mut head =
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
                .to_vec();
        assert_eq!(decoder.decode(&mut head), Ok(Decoded::Partial));
        assert!(decoder.take_continue());
        assert!(!decoder.take_continue());
        head.extend_from_slice(b"ok");
        assert!(
            matches!(decoder.decode(&mut head), Ok(Decoded::Complete(m)) if m.head.framing == Framing::Length(2))
        );
    }
}
