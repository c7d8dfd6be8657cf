//! Request body framing: the chunked transfer-coding decoder (RFC 9112 §7.1).
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
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
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

    /// Decodes what `message` holds past the last call. Returns `true` once the
    /// last chunk and the trailer section are complete.
    ///
    /// # Errors
    /// [`ParseError::BadChunk`] for broken framing, [`ParseError::BodyTooLarge`]
    /// past `max_body`, [`ParseError::HeadTooLarge`] for trailers past `max_trailer`.
    pub fn decode(
        &mut self,
        message: &mut [u8],
        max_body: u64,
        max_trailer: usize,
        max_extension: usize,
    ) -> Result<bool, ParseError> {
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
            self.step(byte, max_body, max_trailer, max_extension)?;
            if self.state == State::Done {
                return Ok(true);
            }
        }
        Ok(self.state == State::Done)
    }

    fn step(
        &mut self,
        byte: u8,
        max_body: u64,
        max_trailer: usize,
        max_extension: usize,
    ) -> Result<(), ParseError> {
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
                State::Extension
            }
            (State::Size(digits), b'\r') if digits > 0 => State::SizeLf,
            (State::Extension, b'\r') => State::SizeLf,
            (State::Extension, _) if is_field_byte(byte) => {
                self.line += 1;
                if self.line > max_extension {
                    return Err(ParseError::BadChunk);
                }
                State::Extension
            }
            (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => {
                self.total = self.total.saturating_add(self.size);
                if self.total > max_body {
                    return Err(ParseError::BodyTooLarge);
                }
                State::Data
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.size = 0;
                State::Size(0)
            }
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::Trailer, _) if is_field_byte(byte) => {
                self.trailer += 1;
                if self.trailer > max_trailer {
                    return Err(ParseError::HeadTooLarge);
                }
                State::Trailer
            }
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(ParseError::BadChunk),
        };
        Ok(())
    }
}

/// Bytes allowed inside a chunk extension or trailer line: visible ASCII,
/// space, tab and obs-text; never CR, LF or other controls.
fn is_field_byte(byte: u8) -> bool {
    byte == b'\t' || (byte >= b' ' && byte != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::ChunkedDecoder;
    use crate::http::parse::ParseError;

    /// Feeds `input` to a fresh decoder in two parts split at `split`.
    fn decode_split(input: &[u8], split: usize) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
        let mut buf = input[..split].to_vec();
        let mut decoder = ChunkedDecoder::new(0);
        if decoder.decode(&mut buf, 1 << 20, 1024, 1024)? {
            return Ok(Some((
                buf[..decoder.body_end()].to_vec(),
                decoder.consumed(),
            )));
        }
        buf.extend_from_slice(&input[split..]);
        if decoder.decode(&mut buf, 1 << 20, 1024, 1024)? {
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
        assert_eq!(
            decoder.decode(&mut buf, 15, 1024, 1024),
            Err(ParseError::BodyTooLarge)
        );
    }
}
