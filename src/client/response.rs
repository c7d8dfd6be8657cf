//! Reading a response off a pooled connection: the head with httparse, the
//! body as it arrives (by length, chunked, or until close), the connection
//! back to the pool once the body is complete.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::error::{ClientError, ErrorKind};
use super::pool::Lease;
use crate::http::body::{ChunkLimits, ChunkedDecoder};

/// The largest response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Header fields read, at most.
const MAX_FIELDS: usize = 100;

/// How the body is delimited.
#[derive(Debug)]
enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Until the connection closes.
    UntilClose,
    /// Read to the end.
    Done,
}

/// A response from another service. Read its body with [`chunk`](Self::chunk),
/// [`bytes`](Self::bytes), [`text`](Self::text) or [`json`](Self::json);
/// once it is read to the end the connection goes back to the pool (a
/// response dropped before that closes its connection).
pub struct ClientResponse {
    status: u16,
    /// The response head as received, which `fields` point into.
    head: Vec<u8>,
    fields: Vec<(usize, usize, usize, usize)>,
    framing: Framing,
    keep_alive: bool,
    lease: Option<Lease>,
    read_timeout: Duration,
    deadline: Instant,
    origin: Rc<str>,
    /// Most body bytes `bytes`, `text` and `json` read.
    max_body: u64,
}

impl std::fmt::Debug for ClientResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientResponse")
            .field("status", &self.status)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Limits and timeouts a response is read with.
pub(crate) struct ReadRules {
    pub(crate) read_timeout: Duration,
    pub(crate) deadline: Instant,
    pub(crate) max_body: u64,
    pub(crate) head_request: bool,
}

/// Reads until `lease`'s buffer holds more bytes; `false` at end of input.
async fn fill(
    lease: &mut Lease,
    read_timeout: Duration,
    deadline: Instant,
    origin: &str,
    step: &str,
) -> Result<bool, ClientError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ClientError::new(
            ErrorKind::Timeout,
            origin,
            "the call took longer than its overall timeout",
        ));
    }
    let conn = lease.conn();
    conn.compact();
    if conn.end == conn.buf.len() {
        let grown = conn.buf.len() * 2;
        conn.buf.resize(grown, 0);
    }
    let end = conn.end;
    let limit = read_timeout.min(left);
    match conn
        .stream
        .read(&mut conn.buf[end..], limit, read_timeout)
        .await
    {
        Ok(0) => Ok(false),
        Ok(n) => {
            conn.end += n;
            Ok(true)
        }
        Err(error) => Err(ClientError::io(origin, step, &error)),
    }
}

/// Whether `value` (a comma-separated list) holds `token`, any case.
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl ClientResponse {
    /// Reads the next response head on `lease` (skipping 1xx interim
    /// responses). An error says whether any byte of a response arrived.
    pub(crate) async fn read(
        mut lease: Lease,
        rules: &ReadRules,
        origin: &Rc<str>,
    ) -> Result<Self, (ClientError, bool)> {
        let mut answered = false;
        loop {
            let parsed = {
                let conn = lease.conn();
                let input = &conn.buf[conn.start..conn.end];
                let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                let mut response = httparse::Response::new(&mut fields);
                match response.parse(input) {
                    Ok(httparse::Status::Complete(len)) => {
                        let base = input.as_ptr() as usize;
                        let at = |s: &[u8]| s.as_ptr() as usize - base;
                        let spans: Vec<_> = response
                            .headers
                            .iter()
                            .map(|h| {
                                let name = at(h.name.as_bytes());
                                let value = at(h.value);
                                (name, name + h.name.len(), value, value + h.value.len())
                            })
                            .collect();
                        Some(Ok((
                            len,
                            response.code.unwrap_or(0),
                            response.version.unwrap_or(1),
                            spans,
                        )))
                    }
                    Ok(httparse::Status::Partial) if input.len() < MAX_HEAD => None,
                    Ok(httparse::Status::Partial) => {
                        Some(Err("the response head is over 64 KiB".to_owned()))
                    }
                    Err(error) => Some(Err(format!("malformed response head: {error}"))),
                }
            };
            match parsed {
                None => {
                    answered |= lease.conn().end > lease.conn().start;
                    match fill(
                        &mut lease,
                        rules.read_timeout,
                        rules.deadline,
                        origin,
                        "reading the response",
                    )
                    .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            let why = if answered {
                                "the connection closed inside the response head"
                            } else {
                                "the connection closed before a response"
                            };
                            return Err((ClientError::new(ErrorKind::Io, origin, why), answered));
                        }
                        Err(error) => return Err((error, answered)),
                    }
                }
                Some(Err(why)) => {
                    return Err((ClientError::new(ErrorKind::Protocol, origin, why), true));
                }
                Some(Ok((len, status, version, spans))) => {
                    let conn = lease.conn();
                    let head = conn.buf[conn.start..conn.start + len].to_vec();
                    conn.start += len;
                    if (100..200).contains(&status) && status != 101 {
                        answered = true;
                        continue;
                    }
                    return Self::framed(lease, status, version, head, spans, rules, origin)
                        .map_err(|e| (e, true));
                }
            }
        }
    }

    fn framed(
        lease: Lease,
        status: u16,
        version: u8,
        head: Vec<u8>,
        fields: Vec<(usize, usize, usize, usize)>,
        rules: &ReadRules,
        origin: &Rc<str>,
    ) -> Result<Self, ClientError> {
        let mut response = Self {
            status,
            head,
            fields,
            framing: Framing::Done,
            keep_alive: true,
            lease: Some(lease),
            read_timeout: rules.read_timeout,
            deadline: rules.deadline,
            origin: Rc::clone(origin),
            max_body: rules.max_body,
        };
        let connection = response.header_bytes("connection");
        response.keep_alive = match connection {
            Some(value) if has_token(value, "close") => false,
            Some(value) if version == 0 => has_token(value, "keep-alive"),
            None if version == 0 => false,
            _ => true,
        };
        let bodiless = rules.head_request || status == 204 || status == 304 || status == 101;
        response.framing = if bodiless {
            Framing::Done
        } else if let Some(coding) = response.header_bytes("transfer-encoding") {
            if !coding
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            {
                return Err(ClientError::new(
                    ErrorKind::Protocol,
                    origin,
                    "a transfer coding other than chunked last",
                ));
            }
            Framing::Chunked(Box::new(ChunkedDecoder::new(0)))
        } else {
            let mut lengths = response.headers_named("content-length");
            match lengths.next() {
                None => Framing::UntilClose,
                Some(first) => {
                    let parse = crate::http::framing::parse_decimal;
                    let length = parse(first);
                    if length.is_none() || lengths.any(|other| parse(other) != length) {
                        return Err(ClientError::new(
                            ErrorKind::Protocol,
                            origin,
                            "an invalid or conflicting Content-Length",
                        ));
                    }
                    Framing::Length(length.unwrap_or(0))
                }
            }
        };
        if matches!(response.framing, Framing::UntilClose) || status == 101 {
            response.keep_alive = false;
        }
        response.finish_if_done();
        Ok(response)
    }

    /// The connection, if the response still holds it.
    pub(crate) fn take_lease(&mut self) -> Option<Lease> {
        self.lease.take()
    }

    /// The status code.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status
    }

    fn headers_named<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n> {
        self.fields
            .iter()
            .filter(move |&&(ns, ne, _, _)| self.head[ns..ne].eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, _, vs, ve)| &self.head[vs..ve])
    }

    fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers_named(name).next()
    }

    /// The first value of header `name` (any case), if it is text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header field, in order, as received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.fields.iter().map(|&(ns, ne, vs, ve)| {
            (
                std::str::from_utf8(&self.head[ns..ne]).unwrap_or_default(),
                &self.head[vs..ve],
            )
        })
    }

    /// This response, or an error naming its status when it is 400 or
    /// more.
    ///
    /// # Errors
    /// A [`ClientError`] of kind `Status`.
    pub fn error_for_status(self) -> Result<Self, ClientError> {
        if self.status >= 400 {
            Err(ClientError::status(&self.origin, self.status))
        } else {
            Ok(self)
        }
    }

    /// Whether the whole body has been read.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    /// Once the body is complete, the connection goes back to the pool if
    /// it may be reused (and nothing unasked-for follows the body).
    fn finish_if_done(&mut self) {
        // A 101's connection is the tunnel's: `into_upgraded` takes it.
        if !matches!(self.framing, Framing::Done) || self.status == 101 {
            return;
        }
        if let Some(mut lease) = self.lease.take() {
            let conn = lease.conn();
            lease.keep = self.keep_alive && conn.start == conn.end;
        }
    }

    /// The next piece of the body as it arrives; `None` at its end. Each
    /// piece is at most what one read brought, so a large body streams
    /// through a bounded buffer.
    ///
    /// # Errors
    /// A timeout, a connection that broke mid-body, or broken chunked
    /// framing.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ClientError> {
        loop {
            let Some(lease) = self.lease.as_mut() else {
                return Ok(None);
            };
            let conn = lease.conn();
            let buffered = conn.end - conn.start;
            match &mut self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(left) => {
                    if buffered > 0 {
                        let take = usize::try_from(*left).map_or(buffered, |l| l.min(buffered));
                        let piece =
                            bytes::Bytes::copy_from_slice(&conn.buf[conn.start..conn.start + take]);
                        conn.start += take;
                        *left -= take as u64;
                        if *left == 0 {
                            self.framing = Framing::Done;
                            self.finish_if_done();
                        }
                        return Ok(Some(piece));
                    }
                }
                Framing::Chunked(decoder) => {
                    if buffered > 0 {
                        let limits = ChunkLimits {
                            max_body: u64::MAX,
                            max_trailer: 16 * 1024,
                            max_trailer_fields: 64,
                            max_extension: 1024,
                        };
                        let window = &mut conn.buf[conn.start..conn.end];
                        let done = decoder.decode(window, limits).map_err(|e| {
                            ClientError::new(
                                ErrorKind::Protocol,
                                &self.origin,
                                format_args!("chunked body: {e:?}"),
                            )
                        })?;
                        let data = decoder.body_end();
                        let piece =
                            (data > 0).then(|| bytes::Bytes::copy_from_slice(&window[..data]));
                        conn.start += decoder.consumed();
                        decoder.rebase();
                        if done {
                            self.framing = Framing::Done;
                            self.finish_if_done();
                        }
                        if piece.is_some() {
                            return Ok(piece);
                        }
                        if done {
                            return Ok(None);
                        }
                    }
                }
                Framing::UntilClose => {
                    if buffered > 0 {
                        let piece = bytes::Bytes::copy_from_slice(&conn.buf[conn.start..conn.end]);
                        conn.start = conn.end;
                        return Ok(Some(piece));
                    }
                }
            }
            let Some(lease) = self.lease.as_mut() else {
                return Ok(None);
            };
            let more = match fill(
                lease,
                self.read_timeout,
                self.deadline,
                &self.origin,
                "reading the body",
            )
            .await
            {
                Ok(more) => more,
                Err(error) => {
                    self.lease = None;
                    return Err(error);
                }
            };
            if !more {
                if matches!(self.framing, Framing::UntilClose) {
                    self.framing = Framing::Done;
                    self.lease = None;
                    return Ok(None);
                }
                self.lease = None;
                return Err(ClientError::new(
                    ErrorKind::Io,
                    &self.origin,
                    "the connection closed before the body's end",
                ));
            }
        }
    }

    /// The whole body, at most `max` bytes.
    ///
    /// # Errors
    /// As for [`chunk`](Self::chunk), and `TooLarge` past `max`.
    pub async fn bytes_limited(mut self, max: u64) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        if let Framing::Length(length) = self.framing {
            if length > max {
                return Err(self.too_large(max));
            }
            body.reserve(usize::try_from(length).unwrap_or(0));
        }
        while let Some(piece) = self.chunk().await? {
            if (body.len() + piece.len()) as u64 > max {
                return Err(self.too_large(max));
            }
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    fn too_large(&self, max: u64) -> ClientError {
        ClientError::new(
            ErrorKind::TooLarge,
            &self.origin,
            format_args!("the body is over {max} bytes"),
        )
    }

    /// The whole body (at most the client's `max_response_body`).
    ///
    /// # Errors
    /// As for [`bytes_limited`](Self::bytes_limited).
    pub async fn bytes(self) -> Result<Vec<u8>, ClientError> {
        let max = self.max_body;
        self.bytes_limited(max).await
    }

    /// The whole body as UTF-8 text.
    ///
    /// # Errors
    /// As for [`bytes`](Self::bytes), and `Protocol` for a body that is
    /// not UTF-8.
    pub async fn text(self) -> Result<String, ClientError> {
        let origin = Rc::clone(&self.origin);
        let body = self.bytes().await?;
        String::from_utf8(body)
            .map_err(|_| ClientError::new(ErrorKind::Protocol, &origin, "the body is not UTF-8"))
    }

    /// The whole body parsed as JSON into `T`.
    ///
    /// # Errors
    /// As for [`bytes`](Self::bytes), and `Json` when the body is not a
    /// `T`.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, ClientError> {
        let origin = Rc::clone(&self.origin);
        let mut body = self.bytes().await?;
        simd_json::serde::from_slice(&mut body)
            .map_err(|e| ClientError::new(ErrorKind::Json, &origin, e))
    }

    /// The response's `Retry-After` in seconds, when it gives one.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    }

    /// Reads and drops a small rest of the body so the connection can be
    /// reused (before a retry); a large one closes it.
    pub(crate) async fn discard(mut self) {
        if matches!(self.framing, Framing::Length(n) if n <= 64 * 1024)
            || matches!(self.framing, Framing::Chunked(_))
        {
            let mut read = 0usize;
            while let Ok(Some(piece)) = self.chunk().await {
                read += piece.len();
                if read > 64 * 1024 {
                    break;
                }
            }
        }
    }
}
