//! A request's header block as it is decoded: checked as RFC 9113 §8.2
//! and §8.3 say (a malformed one is a stream error) and written as the
//! HTTP/1.1 message the state machine reads; and a trailer block, as the
//! lines that end a chunked body.

use crate::http::body::is_token_text;
use crate::http::framing::parse_decimal;
use crate::http::status::Status;
use crate::http::write::{push_decimal_line, push_line};

/// Whether `name` is a valid HTTP/2 field name: token characters, none
/// uppercase (§8.2.1).
fn valid_name(name: &[u8]) -> bool {
    is_token_text(name) && !name.iter().any(u8::is_ascii_uppercase)
}

/// Whether `value` is a valid field value: no NUL, CR or LF, and no
/// whitespace at either end (§8.2.1).
fn valid_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
        && !value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
        && !value.last().is_some_and(|b| *b == b' ' || *b == b'\t')
}

/// Connection-specific fields (§8.2.2): never sent in HTTP/2, and a
/// request that has one is malformed.
const CONNECTION_FIELDS: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// Whether `name` (in any case) is connection-specific.
pub(super) fn connection_field(name: &[u8]) -> bool {
    CONNECTION_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
}

/// A request's fields as they are decoded, written as an HTTP/1.1 head.
#[derive(Debug)]
pub(super) struct Request {
    /// The pseudo-header values: `text[range]`.
    text: Vec<u8>,
    method: Option<(usize, usize)>,
    scheme: Option<(usize, usize)>,
    path: Option<(usize, usize)>,
    authority: Option<(usize, usize)>,
    /// Regular fields as HTTP/1.1 lines, and the cookies to join.
    fields: Vec<u8>,
    host: Option<(usize, usize)>,
    cookies: Vec<u8>,
    pub(super) length: Option<u64>,
    pub(super) head: bool,
    regular: bool,
    malformed: bool,
    list: usize,
    max_list: usize,
}

impl Request {
    pub(super) fn new(max_list: usize, block: usize) -> Self {
        Self {
            text: Vec::with_capacity(64),
            method: None,
            scheme: None,
            path: None,
            authority: None,
            fields: Vec::with_capacity(block * 2 + 64),
            host: None,
            cookies: Vec::new(),
            length: None,
            head: false,
            regular: false,
            malformed: false,
            list: 0,
            max_list,
        }
    }

    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        self.list += name.len() + value.len() + 32;
        if self.malformed || self.list > self.max_list {
            return;
        }
        if !valid_value(value) {
            self.malformed = true;
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            let slot = match pseudo {
                b"method" => &mut self.method,
                b"scheme" => &mut self.scheme,
                b"path" => &mut self.path,
                b"authority" => &mut self.authority,
                _ => {
                    self.malformed = true;
                    return;
                }
            };
            if self.regular || slot.is_some() {
                // After a regular field, or twice (§8.3).
                self.malformed = true;
                return;
            }
            let from = self.text.len();
            self.text.extend_from_slice(value);
            *slot = Some((from, self.text.len()));
            return;
        }
        self.regular = true;
        if !valid_name(name) || connection_field(name) {
            self.malformed = true;
            return;
        }
        match name {
            b"te" => {
                if !value.eq_ignore_ascii_case(b"trailers") {
                    self.malformed = true;
                }
            }
            b"content-length" => {
                let length = parse_decimal(value);
                match (length, self.length) {
                    (Some(l), None) => self.length = Some(l),
                    (Some(l), Some(had)) if l == had => {}
                    _ => self.malformed = true,
                }
            }
            b"host" => {
                let from = self.text.len();
                self.text.extend_from_slice(value);
                self.host = Some((from, self.text.len()));
            }
            b"cookie" => {
                if !self.cookies.is_empty() {
                    self.cookies.extend_from_slice(b"; ");
                }
                self.cookies.extend_from_slice(value);
            }
            _ => push_line(&mut self.fields, name, value),
        }
    }

    /// The request as an HTTP/1.1 message; or why it is refused with a
    /// status; `None` when it is malformed (a stream error).
    pub(super) fn finish(
        &mut self,
        end_stream: bool,
    ) -> Option<Result<Vec<u8>, (Status, &'static str)>> {
        if self.list > self.max_list {
            return Some(Err((
                Status::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "the request's header fields are too large",
            )));
        }
        if self.malformed {
            return None;
        }
        let text = &self.text;
        let get = |r: Option<(usize, usize)>| r.map(|(a, b)| &text[a..b]);
        let method = get(self.method)?;
        if method == b"CONNECT" {
            if self.path.is_some() || self.scheme.is_some() || self.authority.is_none() {
                return None;
            }
            // Nothing here tunnels over a stream.
            return Some(Err((Status::BAD_REQUEST, "CONNECT is not served here")));
        }
        let (path, _) = (get(self.path)?, get(self.scheme)?);
        if path.is_empty() || !is_token_text(method) || path.iter().any(|&b| b <= b' ' || b == 0x7f)
        {
            return None;
        }
        if end_stream && self.length.is_some_and(|l| l != 0) {
            // A length the body (none) does not have (§8.1.1).
            return None;
        }
        self.head = method == b"HEAD";
        let mut message = Vec::with_capacity(self.fields.len() + self.cookies.len() + 96);
        message.extend_from_slice(method);
        message.push(b' ');
        message.extend_from_slice(path);
        message.extend_from_slice(b" HTTP/1.1\r\n");
        // :authority stands for Host (§8.3.1).
        if let Some(host) = get(self.authority).or(get(self.host)) {
            push_line(&mut message, b"host", host);
        }
        message.extend_from_slice(&self.fields);
        if !self.cookies.is_empty() {
            push_line(&mut message, b"cookie", &self.cookies);
        }
        match (end_stream, self.length) {
            (true, _) => {}
            (false, Some(length)) => {
                push_decimal_line(&mut message, b"content-length", length);
            }
            (false, None) => message.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        message.extend_from_slice(b"\r\n");
        Some(Ok(message))
    }
}

/// A trailer block's fields as HTTP/1.1 lines.
#[derive(Debug, Default)]
pub(super) struct Trailers {
    pub(super) lines: Vec<u8>,
    pub(super) malformed: bool,
}

impl Trailers {
    pub(super) fn field(&mut self, name: &[u8], value: &[u8]) {
        if name.first() == Some(&b':')
            || !valid_name(name)
            || !valid_value(value)
            || connection_field(name)
        {
            self.malformed = true;
        } else if !self.malformed {
            push_line(&mut self.lines, name, value);
        }
    }
}
