//! HPACK (RFC 7541): the decoder of request header blocks, and the
//! encoder of response ones.
//!
//! **Decoding** keeps the dynamic table the client's encoder fills, as
//! whole entries (its size capped by this side's
//! `SETTINGS_HEADER_TABLE_SIZE`), and gives each field to the caller in
//! order; Huffman strings are decoded into a scratch buffer. Any block
//! that cannot be decoded is a [`Fault`]: `COMPRESSION_ERROR` for the
//! connection (§2.3.3, §4.2, §5.2, §6).
//!
//! **Encoding** is stateless: each response field is a literal without
//! indexing, its name indexed from the static table where it is there,
//! values raw. The client's decoder table so stays empty, the connection
//! holds no encoder state, and a response costs a few byte copies;
//! `:status` is one byte for the common codes.

use std::collections::VecDeque;

/// A header block that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fault;

/// The table size a decoder starts with (RFC 7541 §4.2, RFC 9113 §6.5.2).
pub(super) const INITIAL_TABLE: usize = 4096;

/// The static table (RFC 7541 Appendix A): entry `i` is `STATIC[i - 1]`.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A dynamic table entry.
#[derive(Debug)]
struct Entry {
    name: Box<[u8]>,
    value: Box<[u8]>,
}

impl Entry {
    /// Its size as the table counts it (RFC 7541 §4.1).
    fn size(&self) -> usize {
        self.name.len() + self.value.len() + 32
    }
}

/// Where a decoded string is: in the block itself, or in the scratch
/// buffer (Huffman-coded ones).
#[derive(Clone, Copy)]
enum Text {
    Block(usize, usize),
    Scratch(usize, usize),
}

impl Text {
    fn get<'a>(self, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        match self {
            Self::Block(from, to) => &block[from..to],
            Self::Scratch(from, to) => &scratch[from..to],
        }
    }
}

/// One connection's decoding state: the client's dynamic table.
#[derive(Debug)]
pub(super) struct Decoder {
    /// Newest first.
    table: VecDeque<Entry>,
    size: usize,
    /// The size the client's encoder last chose.
    max: usize,
    /// This side's `SETTINGS_HEADER_TABLE_SIZE`: no choice may exceed it.
    limit: usize,
    /// Huffman-decoded strings of the block being decoded.
    scratch: Vec<u8>,
}

impl Decoder {
    pub(super) fn new(limit: u32) -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max: INITIAL_TABLE,
            limit: limit as usize,
            scratch: Vec::new(),
        }
    }

    /// Frees the scratch buffer (between requests).
    pub(super) fn release(&mut self) {
        self.scratch = Vec::new();
    }

    /// Decodes one complete header block, giving each field to `field` in
    /// order.
    pub(super) fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), Fault> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.decode_with(block, &mut scratch, &mut field);
        if scratch.capacity() <= 4096 {
            self.scratch = scratch;
        }
        result
    }

    /// [`Self::decode`], with `scratch` for the Huffman-decoded strings.
    fn decode_with(
        &mut self,
        block: &[u8],
        scratch: &mut Vec<u8>,
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), Fault> {
        let mut at = 0;
        let mut fields = false;
        while at < block.len() {
            scratch.clear();
            let first = block[at];
            if first & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if first & 0x40 != 0 {
                let name = self.literal_name(block, &mut at, 6, scratch)?;
                let value = string(block, &mut at, scratch)?;
                let entry = Entry {
                    name: name.get(block, scratch).into(),
                    value: value.get(block, scratch).into(),
                };
                field(&entry.name, &entry.value);
                self.insert(entry);
            } else if first & 0x20 != 0 {
                // A size update comes only before the block's first field.
                let size = integer(block, &mut at, 5)?;
                if fields || size > self.limit {
                    return Err(Fault);
                }
                self.max = size;
                self.evict(0);
                continue;
            } else {
                // Without indexing (0000) or never indexed (0001): the name
                // a string of its own (index 0) or indexed, then the value.
                let index = integer(block, &mut at, 4)?;
                let own = if index == 0 {
                    Some(string(block, &mut at, scratch)?)
                } else {
                    None
                };
                let value = string(block, &mut at, scratch)?;
                let name = match own {
                    Some(name) => name.get(block, scratch),
                    None => self.entry(index)?.0,
                };
                field(name, value.get(block, scratch));
            }
            fields = true;
        }
        Ok(())
    }

    /// The name of a literal field: indexed, or a string of its own.
    fn literal_name(
        &self,
        block: &[u8],
        at: &mut usize,
        prefix: u32,
        scratch: &mut Vec<u8>,
    ) -> Result<Text, Fault> {
        let index = integer(block, at, prefix)?;
        if index == 0 {
            return string(block, at, scratch);
        }
        let (name, _) = self.entry(index)?;
        let from = scratch.len();
        scratch.extend_from_slice(name);
        Ok(Text::Scratch(from, scratch.len()))
    }

    /// Entry `index` of the static and dynamic tables; index 0 and indexes
    /// past both are faults.
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), Fault> {
        match index {
            0 => Err(Fault),
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => self
                .table
                .get(index - 62)
                .map(|e| (&*e.name, &*e.value))
                .ok_or(Fault),
        }
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        if size > self.max {
            // Larger than the table: it empties the table (§4.4).
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front(entry);
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.table.pop_back() {
                Some(old) => self.size -= old.size(),
                None => break,
            }
        }
        if self.table.is_empty() {
            self.table = VecDeque::new();
        }
    }
}

/// An integer with a `prefix`-bit prefix (RFC 7541 §5.1), at most 2^28.
fn integer(block: &[u8], at: &mut usize, prefix: u32) -> Result<usize, Fault> {
    let mask = (1usize << prefix) - 1;
    let mut value = usize::from(block[*at]) & mask;
    *at += 1;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let &byte = block.get(*at).ok_or(Fault)?;
        *at += 1;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(Fault);
        }
    }
}

/// A string literal (RFC 7541 §5.2).
fn string(block: &[u8], at: &mut usize, scratch: &mut Vec<u8>) -> Result<Text, Fault> {
    let &first = block.get(*at).ok_or(Fault)?;
    let length = integer(block, at, 7)?;
    let from = *at;
    let to = from.checked_add(length).ok_or(Fault)?;
    let bytes = block.get(from..to).ok_or(Fault)?;
    *at = to;
    if first & 0x80 == 0 {
        return Ok(Text::Block(from, to));
    }
    let start = scratch.len();
    huffman::decode(bytes, scratch)?;
    Ok(Text::Scratch(start, scratch.len()))
}

/// Writes `value` with a `prefix`-bit prefix whose high bits are `high`.
fn push_integer(out: &mut Vec<u8>, high: u8, prefix: u32, value: usize) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(high | u8::try_from(value).unwrap_or(0));
        return;
    }
    out.push(high | u8::try_from(mask).unwrap_or(0));
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(0x80 | u8::try_from(rest & 0x7f).unwrap_or(0));
        rest >>= 7;
    }
    out.push(u8::try_from(rest).unwrap_or(0));
}

/// Writes a dynamic table size update (RFC 7541 §6.3).
pub(super) fn push_table_size(out: &mut Vec<u8>, size: usize) {
    push_integer(out, 0x20, 5, size);
}

/// Writes `:status`: indexed for the codes the static table has.
pub(super) fn push_status(out: &mut Vec<u8>, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => {
            // Literal without indexing, the name :status (index 8), the
            // three digits raw.
            let status = status.min(999);
            let digit = |n: u16| b'0' + u8::try_from(n % 10).unwrap_or(0);
            out.extend_from_slice(&[
                0x08,
                3,
                digit(status / 100),
                digit(status / 10),
                digit(status),
            ]);
            return;
        }
    };
    out.push(0x80 | index);
}

/// Writes one field as a literal without indexing, its name lowercased
/// (HTTP/2 names are lowercase, RFC 9113 §8.2.1).
pub(super) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if let Some(index) = static_name(name) {
        push_integer(out, 0x00, 4, index);
    } else {
        out.push(0x00);
        push_integer(out, 0x00, 7, name.len());
        let start = out.len();
        out.extend_from_slice(name);
        out[start..].make_ascii_lowercase();
    }
    push_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// The static table's index of a regular field's name, in any case.
fn static_name(name: &[u8]) -> Option<usize> {
    STATIC[14..]
        .iter()
        .position(|(known, _)| {
            known.len() == name.len() && known.as_bytes().eq_ignore_ascii_case(name)
        })
        .map(|at| at + 15)
}

/// The Huffman code of RFC 7541 Appendix B. It is canonical: codes of one
/// length are consecutive in symbol order and follow all shorter ones, so
/// the code lengths alone define it.
mod huffman {
    use super::Fault;

    /// Each symbol's code length: bytes 0 to 255, then EOS (256).
    const LENGTHS: [u8; 257] = [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
        30,
    ];

    const MAX: usize = 30;
    const EOS: u16 = 256;

    /// The code, as tables a decoder reads.
    struct Code {
        /// Symbols in code order (by length, then symbol).
        symbols: [u16; 257],
        /// Per length: the first code, how many there are, and where
        /// their symbols start in `symbols`.
        first: [u32; MAX + 1],
        count: [u32; MAX + 1],
        offset: [u32; MAX + 1],
        /// Per length, left-aligned in 32 bits: one past its last code.
        limit: [u64; MAX + 1],
    }

    const CODE: Code = build();

    #[allow(
        clippy::cast_possible_truncation,
        reason = "symbols are below 257 and counts below 2^30 by construction"
    )]
    const fn build() -> Code {
        let mut code = Code {
            symbols: [0; 257],
            first: [0; MAX + 1],
            count: [0; MAX + 1],
            offset: [0; MAX + 1],
            limit: [0; MAX + 1],
        };
        let mut s = 0;
        while s < 257 {
            code.count[LENGTHS[s] as usize] += 1;
            s += 1;
        }
        let (mut next, mut placed, mut length) = (0u32, 0u32, 1);
        while length <= MAX {
            next <<= 1;
            code.first[length] = next;
            code.offset[length] = placed;
            let mut s = 0;
            while s < 257 {
                if LENGTHS[s] as usize == length {
                    code.symbols[placed as usize] = s as u16;
                    placed += 1;
                }
                s += 1;
            }
            next += code.count[length];
            code.limit[length] = (next as u64) << (32 - length);
            length += 1;
        }
        code
    }

    /// Decodes `bytes` onto the end of `out`; the EOS symbol, or padding
    /// that is longer than 7 bits or not all ones, is a fault.
    pub(super) fn decode(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), Fault> {
        let code = &CODE;
        // The next bits, left-aligned; `bits` of them are real.
        let (mut window, mut bits, mut at) = (0u64, 0usize, 0);
        loop {
            while bits <= 56 && at < bytes.len() {
                window |= u64::from(bytes[at]) << (56 - bits);
                bits += 8;
                at += 1;
            }
            if bits == 0 {
                return Ok(());
            }
            let top = window >> 32;
            let mut length = 5;
            while length < MAX && (code.count[length] == 0 || top >= code.limit[length]) {
                length += 1;
            }
            if length > bits {
                // What is left is padding: at most 7 bits, all ones.
                let ones = (1u64 << bits) - 1;
                return if bits <= 7 && window >> (64 - bits) == ones {
                    Ok(())
                } else {
                    Err(Fault)
                };
            }
            let index = (top >> (32 - length)) as u32 - code.first[length];
            let symbol = code.symbols[(code.offset[length] + index) as usize];
            if symbol == EOS {
                return Err(Fault);
            }
            out.push(u8::try_from(symbol).map_err(|_| Fault)?);
            window <<= length;
            bits -= length;
        }
    }

    #[cfg(test)]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::format_push_string,
        reason = "a test's encoder of short strings"
    )]
    mod tests {
        use super::{CODE, Fault, LENGTHS};

        fn decoded(bytes: &[u8]) -> Result<Vec<u8>, Fault> {
            let mut out = Vec::new();
            super::decode(bytes, &mut out).map(|()| out)
        }

        /// `text`'s code, padded with ones (an encoder, for the tests).
        fn encode(text: &[u8]) -> Vec<u8> {
            let mut bits = String::new();
            for &b in text {
                let length = LENGTHS[usize::from(b)] as usize;
                let at = CODE
                    .symbols
                    .iter()
                    .position(|&s| s == u16::from(b))
                    .unwrap();
                let code = CODE.first[length] + (at as u32 - CODE.offset[length]);
                bits.push_str(&format!("{code:0length$b}"));
            }
            while !bits.len().is_multiple_of(8) {
                bits.push('1');
            }
            (0..bits.len() / 8)
                .map(|i| u8::from_str_radix(&bits[i * 8..i * 8 + 8], 2).unwrap())
                .collect()
        }

        #[test]
        fn the_rfcs_examples_decode() {
            // RFC 7541 C.4.1 to C.4.3.
            let www = [
                0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
            ];
            assert_eq!(decoded(&www), Ok(b"www.example.com".to_vec()));
            assert_eq!(encode(b"www.example.com"), www);
            assert_eq!(encode(b"no-cache"), [0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]);
            assert_eq!(
                encode(b"custom-value"),
                [0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf]
            );
        }

        #[test]
        fn every_byte_round_trips_and_bad_padding_is_a_fault() {
            let all: Vec<u8> = (0..=255).collect();
            assert_eq!(decoded(&encode(&all)), Ok(all));
            assert_eq!(decoded(b""), Ok(Vec::new()));
            // 'a' is 00011: three bits of padding.
            assert_eq!(decoded(&[0b0001_1111]), Ok(b"a".to_vec()));
            assert!(decoded(&[0b0001_1000]).is_err(), "zero padding");
            assert!(decoded(&[0b0001_1111, 0xff]).is_err(), "11 bits of padding");
            // 'a' then EOS (30 ones), padded.
            assert!(decoded(&[0b0001_1111, 0xff, 0xff, 0xff, 0xff]).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Decoder, Fault};

    /// `:method GET`, `:scheme http`, `:path /`, then `:authority` with a
    /// raw literal added to the table.
    const REQUEST: &[u8] = b"\x82\x86\x84\x41\x09127.0.0.1";

    fn decode(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, Fault> {
        let mut fields = Vec::new();
        d.decode(block, |n, v| {
            fields.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        })?;
        Ok(fields)
    }

    #[test]
    fn indexes_follow_the_table_as_it_fills_and_evicts() {
        let mut d = Decoder::new(4096);
        let fields = decode(&mut d, REQUEST).unwrap();
        assert_eq!(fields[3], (":authority".into(), "127.0.0.1".into()));
        // 62 is the :authority just added; 63 is past the table.
        let again = decode(&mut d, b"\x82\x86\x84\xbe").unwrap();
        assert_eq!(again[3], (":authority".into(), "127.0.0.1".into()));
        assert_eq!(decode(&mut d, b"\xbf"), Err(Fault));
        assert_eq!(decode(&mut d, b"\x80"), Err(Fault), "index 0");
        // A size update to 0 evicts it; at the end of a block it is a fault.
        assert!(decode(&mut d, b"\x20\x82").is_ok());
        assert_eq!(decode(&mut d, b"\xbe"), Err(Fault));
        assert_eq!(decode(&mut d, b"\x82\x20"), Err(Fault));
        // Over the limit this side set.
        assert_eq!(decode(&mut d, b"\x3f\xe2\x1f"), Err(Fault));
        assert_eq!(decode(&mut d, b"\x00\x05x"), Err(Fault), "cut short");
    }

    #[test]
    fn the_rfcs_huffman_requests_decode() {
        // RFC 7541 C.4.1 and C.4.2: the second reuses the first's entry.
        let mut d = Decoder::new(4096);
        let first = decode(
            &mut d,
            b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
        )
        .unwrap();
        assert_eq!(first[3], (":authority".into(), "www.example.com".into()));
        let second = decode(&mut d, b"\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf").unwrap();
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
    }

    #[test]
    fn responses_encode_to_what_a_decoder_reads_back() {
        let mut out = Vec::new();
        super::push_table_size(&mut out, 0);
        super::push_status(&mut out, 200);
        super::push_status(&mut out, 431);
        super::push_field(&mut out, b"Content-Type", b"text/plain");
        super::push_field(&mut out, b"X-Request-Id", &[b'a'; 200]);
        let fields = decode(&mut Decoder::new(4096), &out).unwrap();
        assert_eq!(fields[0], (":status".into(), "200".into()));
        assert_eq!(fields[1], (":status".into(), "431".into()));
        assert_eq!(fields[2], ("content-type".into(), "text/plain".into()));
        assert_eq!(fields[3], ("x-request-id".into(), "a".repeat(200)));
    }
}
