//! The framing rules of RFC 9112 §6 applied to a request's header fields:
//! Content-Length, Transfer-Encoding, Connection, Host and Expect, gathered
//! in one pass and turned into how the body is delimited.

use super::parse::{Framing, ParseError, Version};

/// What the framing-relevant header fields said, gathered in one pass.
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is an independent fact of the head"
)]
pub(crate) struct Fields {
    pub(crate) content_length: Option<u64>,
    pub(crate) chunked: bool,
    pub(crate) transfer_encoding: bool,
    pub(crate) other_coding: bool,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    pub(crate) http10: bool,
    pub(crate) hosts: u32,
}

impl Fields {
    pub(crate) fn new(version: Version) -> Self {
        Self {
            content_length: None,
            chunked: false,
            transfer_encoding: false,
            other_coding: false,
            keep_alive: version == Version::Http11,
            expect_continue: false,
            http10: version == Version::Http10,
            hosts: 0,
        }
    }

    pub(crate) fn observe(&mut self, name: &str, value: &[u8]) -> Result<(), ParseError> {
        if name.eq_ignore_ascii_case("content-length") {
            for item in list_items(value) {
                let length = parse_decimal(item).ok_or(ParseError::BadContentLength)?;
                if self.content_length.is_some_and(|seen| seen != length) {
                    return Err(ParseError::BadContentLength);
                }
                self.content_length = Some(length);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            for coding in list_items(value) {
                // chunked must be the final coding, and appear once.
                if self.chunked {
                    return Err(ParseError::BadTransferEncoding);
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    self.chunked = true;
                } else {
                    self.other_coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_items(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    self.keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && self.http10 {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case("expect") && !self.http10 {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(ParseError::UnsupportedExpectation);
            }
            self.expect_continue = true;
        }
        Ok(())
    }

    pub(crate) fn framing(&self, version: Version) -> Result<Framing, ParseError> {
        if self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(ParseError::AmbiguousLength);
            }
            if !self.chunked || version == Version::Http10 {
                return Err(ParseError::BadTransferEncoding);
            }
            if self.other_coding {
                return Err(ParseError::UnsupportedTransferCoding);
            }
            return Ok(Framing::Chunked);
        }
        Ok(match self.content_length {
            None | Some(0) => Framing::Empty,
            Some(length) => Framing::Length(length),
        })
    }
}

/// The non-empty items of a comma-separated field value, trimmed of spaces.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// Whether a `\n` appears without a `\r` before it.
pub(crate) fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// Digits only: no sign, no spaces, no overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}
