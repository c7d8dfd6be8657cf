//! Request body framing: the chunked transfer-coding decoder (RFC 9112 §7.1).
//! Chunk extensions are parsed to their grammar (`BWS ";" BWS token
//! [BWS "=" BWS (token / quoted-string)]`, then ignored); trailer fields
//! are held to the header section's rules and limits, and fields that must
//! not come as trailers (framing, routing, authentication) are refused
//! (RFC 9110 §6.5.1).
//!
//! The decoder works in place: chunk data is moved left over the framing it
//! replaces, so a decoded body is one contiguous slice of the read buffer and
//! no copy is made elsewhere. It is resumable: feed it the same growing buffer
//! after every read and it carries on where it stopped.

use super::parse::ParseError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits; the count of digits seen so far.
    Size(u8),
    /// Whitespace after the size: a `;` must follow.
    SizeSpace,
    /// After `;`: optional whitespace, then the extension's name.
    ExtensionName {
        started: bool,
    },
    /// Whitespace after a name: `=`, `;` or the line end follow.
    AfterName,
    /// After `=`: optional whitespace, then a token or a quoted string.
    ValueStart,
    ValueToken,
    Quoted,
    QuotedEscape,
    /// After a value: whitespace, `;` or the line end.
    AfterValue,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// In a trailer field's name.
    TrailerName,
    /// In a trailer field's value.
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
}

/// Fields a trailer must not carry: framing, routing, request modifiers
/// and authentication (RFC 9110 §6.5.1). A request that sends one is
/// refused, since a proxy that merged it would change what the request is.
const FORBIDDEN_TRAILERS: &[&[u8]] = &[
    b"authorization",
    b"cache-control",
    b"connection",
    b"content-encoding",
    b"content-length",
    b"content-range",
    b"content-type",
    b"cookie",
    b"expect",
    b"host",
    b"keep-alive",
    b"max-forwards",
    b"proxy-authorization",
    b"range",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

/// Longest forbidden name, the bytes of a trailer name kept to compare.
const NAME_KEPT: usize = 19;

/// The limits a chunked body is decoded under.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    /// Decoded body bytes.
    pub max_body: u64,
    /// Bytes of the trailer section.
    pub max_trailer: usize,
    /// Trailer fields.
    pub max_trailer_fields: usize,
    /// Bytes of one chunk's extensions.
    pub max_extension: usize,
}

/// Resumable, in-place decoder of one chunked body.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Next byte of the message to examine.
    read: usize,
    /// Where the next decoded data byte goes; never past `read`.
    write: usize,
    /// Bytes left in the current chunk, or the size being parsed.
    size: u64,
    /// Decoded body bytes so far.
    total: u64,
    /// Length of the current extension or trailer line.
    line: usize,
    /// Bytes of trailer section so far.
    trailer: usize,
    /// Trailer fields so far.
    fields: usize,
    /// The current trailer name, lower-cased (its first bytes).
    name: [u8; NAME_KEPT],
    name_len: usize,
}

impl ChunkedDecoder {
    /// A decoder for a body that starts at offset `start` of the message.
    #[must_use]
    pub fn new(start: usize) -> Self {
        Self {
            state: State::Size(0),
            read: start,
            write: start,
            size: 0,
            total: 0,
            line: 0,
            trailer: 0,
            fields: 0,
            name: [0; NAME_KEPT],
            name_len: 0,
        }
    }

    /// End of the decoded body (it starts where the decoder started).
    #[must_use]
    pub fn body_end(&self) -> usize {
        self.write
    }

    /// Bytes of the message consumed so far, framing included.
    #[must_use]
    pub fn consumed(&self) -> usize {
        self.read
    }

    /// Decoded body bytes so far (announced sizes included, so a chunk
    /// larger than a limit is refused before its data arrives).
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// For a body streamed through a window: the caller has taken the
    /// decoded bytes and removed everything before [`consumed`](Self::consumed),
    /// so decoding goes on from the window's start.
    pub fn rebase(&mut self) {
        self.read = 0;
        self.write = 0;
    }

    /// Decodes what `message` holds past the last call. Returns `true` once the
    /// last chunk and the trailer section are complete.
    ///
    /// # Errors
    /// [`ParseError::BadChunk`] for broken framing or extensions,
    /// [`ParseError::BodyTooLarge`] past the body limit,
    /// [`ParseError::HeadTooLarge`] and [`ParseError::TooManyHeaders`] for
    /// trailers past theirs, [`ParseError::Malformed`] for a malformed or
    /// forbidden trailer field.
    pub fn decode(&mut self, message: &mut [u8], limits: ChunkLimits) -> Result<bool, ParseError> {
        while self.read < message.len() {
            if self.state == State::Data {
                let available = message.len() - self.read;
                let take = usize::try_from(self.size).map_or(available, |s| s.min(available));
                message.copy_within(self.read..self.read + take, self.write);
                self.read += take;
                self.write += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = message[self.read];
            self.read += 1;
            self.step(byte, limits)?;
            if self.state == State::Done {
                return Ok(true);
            }
        }
        Ok(self.state == State::Done)
    }

    fn step(&mut self, byte: u8, limits: ChunkLimits) -> Result<(), ParseError> {
        self.count(limits)?;
        let space = byte == b' ' || byte == b'\t';
        self.state = match (self.state, byte) {
            (State::Size(digits), _) if byte.is_ascii_hexdigit() => {
                let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(ParseError::BadChunk)?;
                State::Size(digits.saturating_add(1))
            }
            (State::Size(digits), b';') if digits > 0 => {
                self.line = 0;
                State::ExtensionName { started: false }
            }
            (State::Size(digits), _) if digits > 0 && space => {
                self.line = 0;
                State::SizeSpace
            }
            (State::Size(digits), b'\r') if digits > 0 => State::SizeLf,
            (State::SizeSpace, _) if space => State::SizeSpace,
            (
                State::SizeSpace
                | State::AfterName
                | State::AfterValue
                | State::ExtensionName { started: true }
                | State::ValueToken,
                b';',
            ) => State::ExtensionName { started: false },
            (State::ExtensionName { started: false }, _) if space => {
                State::ExtensionName { started: false }
            }
            (State::ExtensionName { .. }, _) if is_token(byte) => {
                State::ExtensionName { started: true }
            }
            (State::ExtensionName { started: true } | State::AfterName, _) if space => {
                State::AfterName
            }
            (State::ExtensionName { started: true } | State::AfterName, b'=') => State::ValueStart,
            (State::ValueStart, _) if space => State::ValueStart,
            (State::ValueStart, b'"') => State::Quoted,
            (State::ValueStart | State::ValueToken, _) if is_token(byte) => State::ValueToken,
            (State::Quoted, b'"') => State::AfterValue,
            (State::Quoted, b'\\') => State::QuotedEscape,
            (State::Quoted, _) if is_qdtext(byte) => State::Quoted,
            (State::QuotedEscape, _) if byte == b'\t' || (byte >= b' ' && byte != 0x7f) => {
                State::Quoted
            }
            (State::ValueToken | State::AfterValue, _) if space => State::AfterValue,
            (
                State::ExtensionName { started: true }
                | State::AfterName
                | State::ValueToken
                | State::AfterValue,
                b'\r',
            ) => State::SizeLf,
            (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => {
                self.total = self.total.saturating_add(self.size);
                if self.total > limits.max_body {
                    return Err(ParseError::BodyTooLarge);
                }
                State::Data
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.size = 0;
                State::Size(0)
            }
            (
                State::TrailerStart | State::TrailerName | State::TrailerValue | State::TrailerLf,
                _,
            ) => self.trailer_step(byte, limits)?,
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(ParseError::BadChunk),
        };
        Ok(())
    }

    /// Counts the byte against the extension or trailer limits.
    fn count(&mut self, limits: ChunkLimits) -> Result<(), ParseError> {
        let in_extension = matches!(
            self.state,
            State::SizeSpace
                | State::ExtensionName { .. }
                | State::AfterName
                | State::ValueStart
                | State::ValueToken
                | State::Quoted
                | State::QuotedEscape
                | State::AfterValue
        );
        if in_extension {
            self.line += 1;
            if self.line > limits.max_extension {
                return Err(ParseError::BadChunk);
            }
        }
        if matches!(
            self.state,
            State::TrailerStart | State::TrailerName | State::TrailerValue | State::TrailerLf
        ) {
            self.trailer += 1;
            if self.trailer > limits.max_trailer {
                return Err(ParseError::HeadTooLarge);
            }
        }
        Ok(())
    }

    /// One byte of the trailer section.
    fn trailer_step(&mut self, byte: u8, limits: ChunkLimits) -> Result<State, ParseError> {
        Ok(match (self.state, byte) {
            (State::TrailerStart, b'\r') => State::EndLf,
            // A line that starts with whitespace is obs-fold: refused.
            (State::TrailerStart, _) if is_token(byte) => {
                self.fields += 1;
                if self.fields > limits.max_trailer_fields {
                    return Err(ParseError::TooManyHeaders);
                }
                self.name_len = 0;
                self.keep_name_byte(byte);
                State::TrailerName
            }
            (State::TrailerName, _) if is_token(byte) => {
                self.keep_name_byte(byte);
                State::TrailerName
            }
            (State::TrailerName, b':') => {
                let name = &self.name[..self.name_len.min(NAME_KEPT)];
                if self.name_len <= NAME_KEPT && FORBIDDEN_TRAILERS.contains(&name) {
                    return Err(ParseError::Malformed(
                        "a trailer field may not carry framing, routing or credentials",
                    ));
                }
                State::TrailerValue
            }
            (State::TrailerName, _) => {
                return Err(ParseError::Malformed("invalid trailer field name"));
            }
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, _) if is_field_byte(byte) => State::TrailerValue,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::TrailerStart, _) => {
                return Err(ParseError::Malformed("invalid trailer field"));
            }
            _ => return Err(ParseError::BadChunk),
        })
    }

    fn keep_name_byte(&mut self, byte: u8) {
        if self.name_len < NAME_KEPT {
            self.name[self.name_len] = byte.to_ascii_lowercase();
        }
        self.name_len += 1;
    }
}

/// Bytes allowed inside a chunk extension or trailer line: visible ASCII,
/// space, tab and obs-text; never CR, LF or other controls.
fn is_field_byte(byte: u8) -> bool {
    byte == b'\t' || (byte >= b' ' && byte != 0x7f)
}

/// A `tchar` (RFC 9110 §5.6.2).
pub(crate) fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A `token`: one or more `tchar`s (a method, a field name).
pub(crate) fn is_token_text(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(|&b| is_token(b))
}

/// `qdtext` (RFC 9110 §5.6.4): whitespace, visible ASCII but `"` and `\`,
/// and obs-text.
fn is_qdtext(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::{ChunkLimits, ChunkedDecoder};
    use crate::http::parse::ParseError;

    const LIMITS: ChunkLimits = ChunkLimits {
        max_body: 1 << 20,
        max_trailer: 1024,
        max_trailer_fields: 4,
        max_extension: 1024,
    };

    /// Feeds `input` to a fresh decoder in two parts split at `split`.
    fn decode_split(input: &[u8], split: usize) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
        let mut buf = input[..split].to_vec();
        let mut decoder = ChunkedDecoder::new(0);
        if decoder.decode(&mut buf, LIMITS)? {
            return Ok(Some((
                buf[..decoder.body_end()].to_vec(),
                decoder.consumed(),
            )));
        }
        buf.extend_from_slice(&input[split..]);
        if decoder.decode(&mut buf, LIMITS)? {
            return Ok(Some((
                buf[..decoder.body_end()].to_vec(),
                decoder.consumed(),
            )));
        }
        Ok(None)
    }

    fn every_split(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
        let whole = decode_split(input, input.len());
        for split in 0..input.len() {
            assert_eq!(decode_split(input, split), whole, "split at {split}");
        }
        whole
    }

    #[test]
    fn decodes_chunks_and_trailers_at_every_split() {
        let input = b"5\r\nhello\r\n7;name=v\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (body, consumed) = every_split(input).unwrap().unwrap();
        assert_eq!(body, b"hello, world");
        assert_eq!(&input[consumed..], b"NEXT");
    }

    #[test]
    fn empty_body() {
        assert_eq!(every_split(b"0\r\n\r\n").unwrap(), Some((Vec::new(), 5)));
    }

    #[test]
    fn incomplete_is_not_an_error() {
        assert_eq!(every_split(b"5\r\nhel").unwrap(), None);
        assert_eq!(every_split(b"5\r\nhello\r\n0\r\n").unwrap(), None);
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            &b"-5\r\nhello\r\n0\r\n\r\n"[..],
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"1_0\r\n",
        ] {
            assert_eq!(every_split(bad), Err(ParseError::BadChunk), "{bad:?}");
        }
    }

    #[test]
    fn enforces_the_body_limit() {
        let mut buf = b"10\r\n".to_vec();
        let mut decoder = ChunkedDecoder::new(0);
        let limits = ChunkLimits {
            max_body: 15,
            ..LIMITS
        };
        assert_eq!(
            decoder.decode(&mut buf, limits),
            Err(ParseError::BodyTooLarge)
        );
    }

    #[test]
    fn chunk_extensions_follow_their_grammar() {
        for good in [
            &b"2;a\r\nhi\r\n0\r\n\r\n"[..],
            b"2 ;a\r\nhi\r\n0\r\n\r\n",
            b"2 ; a = b ;c\r\nhi\r\n0\r\n\r\n",
            b"2;a=\"x y\\\"z\"\r\nhi\r\n0\r\n\r\n",
            b"2;a=b;c=\"\"\r\nhi\r\n0;last\r\n\r\n",
        ] {
            let decoded = every_split(good).unwrap().unwrap();
            assert_eq!(decoded.0, b"hi", "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b"2;\r\nhi\r\n0\r\n\r\n"[..],
            b"2;=x\r\nhi\r\n0\r\n\r\n",
            b"2;a=\r\nhi\r\n0\r\n\r\n",
            b"2;a=\"x\r\nhi\r\n0\r\n\r\n",
            b"2;a=b c\r\nhi\r\n0\r\n\r\n",
            b"2 \r\nhi\r\n0\r\n\r\n",
            b"2;a b\r\nhi\r\n0\r\n\r\n",
            b"2;a@b\r\nhi\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                every_split(bad),
                Err(ParseError::BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn trailers_are_held_to_the_header_rules() {
        let good = b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n";
        assert_eq!(every_split(good).unwrap().unwrap().0, b"hi");
        for bad in [
            &b"0\r\nNoColon\r\n\r\n"[..],
            b"0\r\nX-A : 1\r\n\r\n",
            b"0\r\nX-A: 1\r\n folded\r\n\r\n",
            b"0\r\nContent-Length: 5\r\n\r\n",
            b"0\r\nhost: a\r\n\r\n",
            b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"0\r\n: x\r\n\r\n",
        ] {
            assert!(
                matches!(every_split(bad), Err(ParseError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = b"0\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n";
        assert_eq!(every_split(many), Err(ParseError::TooManyHeaders));
    }
}
