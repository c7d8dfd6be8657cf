//! HPACK (RFC 7541) as far as the frame screen needs it ([`super::guard`]):
//! each request's header block is walked in order, before `h2` decodes
//! it, to tell the errors `h2` reports with the wrong code apart.
//!
//! The walk keeps no strings: the dynamic table is kept as entry sizes
//! (and whether each name is a pseudo-header), which is all that decides
//! which indexes are valid and when entries are evicted. Huffman strings
//! are decoded only to count their symbols and to check their padding.
//! A fault is a `COMPRESSION_ERROR` (RFC 7541 §2.3.3, §4.2, §5.2, §6), or a
//! pseudo-header in a trailer block (RFC 9113 §8.1), which `h2` drops
//! silently instead of refusing.

use std::collections::VecDeque;

/// What a header block did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The block cannot be decoded (RFC 7541): `COMPRESSION_ERROR`.
    Compression,
    /// A trailer block names a pseudo-header (RFC 9113 §8.1):
    /// `PROTOCOL_ERROR`.
    PseudoInTrailers,
}

/// The table size a decoder starts with (RFC 7541 §4.2, RFC 9113 §6.5.2).
const INITIAL_TABLE: usize = 4096;

/// The static table's names (RFC 7541 Appendix A); the first 14 are
/// pseudo-headers.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// A dynamic table entry, as far as the walk needs it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Name and value lengths plus 32 (RFC 7541 §4.1).
    size: u32,
    name: u32,
    pseudo: bool,
}

/// One connection's decoding state.
#[derive(Debug)]
pub(super) struct Walker {
    /// Newest first.
    table: VecDeque<Entry>,
    size: usize,
    /// The size the client's encoder last chose.
    max: usize,
    /// This side's `SETTINGS_HEADER_TABLE_SIZE`: no choice may exceed it.
    limit: usize,
}

impl Walker {
    pub(super) fn new(limit: u32) -> Self {
        let limit = limit as usize;
        Self {
            table: VecDeque::new(),
            size: 0,
            max: INITIAL_TABLE,
            limit,
        }
    }

    /// Walks one complete header block; `trailers` when it ends a stream
    /// that already had its request header block.
    pub(super) fn walk(&mut self, block: &[u8], trailers: bool) -> Result<(), Fault> {
        let mut at = 0;
        let mut fields = false;
        while at < block.len() {
            let first = block[at];
            let pseudo = if first & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                self.name(index)?.1
            } else if first & 0x40 != 0 {
                let (name, pseudo) = self.literal_name(block, &mut at, 6)?;
                let (value, _) = string(block, &mut at)?;
                self.insert(Entry {
                    size: name.saturating_add(value).saturating_add(32),
                    name,
                    pseudo,
                });
                pseudo
            } else if first & 0x20 != 0 {
                // A size update comes only before the block's first field.
                let size = integer(block, &mut at, 5)?;
                if fields || size > self.limit {
                    return Err(Fault::Compression);
                }
                self.max = size;
                self.evict(0);
                continue;
            } else {
                // Without indexing (0000) or never indexed (0001).
                let (_, pseudo) = self.literal_name(block, &mut at, 4)?;
                string(block, &mut at)?;
                pseudo
            };
            fields = true;
            if trailers && pseudo {
                return Err(Fault::PseudoInTrailers);
            }
        }
        Ok(())
    }

    /// The name of a literal field: indexed, or a string of its own.
    fn literal_name(
        &self,
        block: &[u8],
        at: &mut usize,
        prefix: u32,
    ) -> Result<(u32, bool), Fault> {
        let index = integer(block, at, prefix)?;
        if index == 0 {
            string(block, at)
        } else {
            self.name(index)
        }
    }

    /// The length of entry `index`'s name, and whether it is a
    /// pseudo-header; index 0 and indexes past both tables are faults.
    fn name(&self, index: usize) -> Result<(u32, bool), Fault> {
        match index {
            0 => Err(Fault::Compression),
            1..=61 => Ok((
                u32::try_from(STATIC_NAMES[index - 1].len()).unwrap_or(0),
                index <= 14,
            )),
            _ => self
                .table
                .get(index - 62)
                .map(|e| (e.name, e.pseudo))
                .ok_or(Fault::Compression),
        }
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry.size as usize;
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
                Some(old) => self.size -= old.size as usize,
                None => break,
            }
        }
        if self.table.is_empty() {
            // Give the memory back between bursts.
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
        let &byte = block.get(*at).ok_or(Fault::Compression)?;
        *at += 1;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(Fault::Compression);
        }
    }
}

/// A string literal (RFC 7541 §5.2): its decoded length, and whether it
/// starts with `:`.
fn string(block: &[u8], at: &mut usize) -> Result<(u32, bool), Fault> {
    let &first = block.get(*at).ok_or(Fault::Compression)?;
    let length = integer(block, at, 7)?;
    let bytes = block.get(*at..*at + length).ok_or(Fault::Compression)?;
    *at += length;
    if first & 0x80 == 0 {
        let length = u32::try_from(length).map_err(|_| Fault::Compression)?;
        return Ok((length, bytes.first() == Some(&b':')));
    }
    huffman::decoded(bytes)
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

    /// How many symbols `bytes` decodes to, and whether the first is `:`;
    /// the EOS symbol, or padding that is longer than 7 bits or not all
    /// ones, is a fault.
    pub(super) fn decoded(bytes: &[u8]) -> Result<(u32, bool), Fault> {
        let code = &CODE;
        // The next bits, left-aligned; `bits` of them are real.
        let (mut window, mut bits, mut at) = (0u64, 0usize, 0);
        let (mut symbols, mut colon) = (0u32, false);
        loop {
            while bits <= 56 && at < bytes.len() {
                window |= u64::from(bytes[at]) << (56 - bits);
                bits += 8;
                at += 1;
            }
            if bits == 0 {
                return Ok((symbols, colon));
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
                    Ok((symbols, colon))
                } else {
                    Err(Fault::Compression)
                };
            }
            let index = (top >> (32 - length)) as u32 - code.first[length];
            let symbol = code.symbols[(code.offset[length] + index) as usize];
            if symbol == EOS {
                return Err(Fault::Compression);
            }
            if symbols == 0 {
                colon = symbol == u16::from(b':');
            }
            symbols += 1;
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
        use super::{CODE, LENGTHS, decoded};

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
            assert_eq!(decoded(&www), Ok((15, false)));
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
            assert_eq!(decoded(&encode(&all)), Ok((256, false)));
            assert_eq!(decoded(&encode(b":path")), Ok((5, true)));
            assert_eq!(decoded(b""), Ok((0, false)));
            // 'a' is 00011: three bits of padding.
            assert_eq!(decoded(&[0b0001_1111]), Ok((1, false)));
            assert!(decoded(&[0b0001_1000]).is_err(), "zero padding");
            assert!(decoded(&[0b0001_1111, 0xff]).is_err(), "11 bits of padding");
            // 'a' then EOS (30 ones), padded.
            assert!(decoded(&[0b0001_1111, 0xff, 0xff, 0xff, 0xff]).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Fault, Walker};

    /// `:method GET`, `:scheme http`, `:path /`, then `:authority` with a
    /// raw literal added to the table.
    const REQUEST: &[u8] = b"\x82\x86\x84\x41\x09127.0.0.1";

    #[test]
    fn indexes_follow_the_table_as_it_fills_and_evicts() {
        let mut w = Walker::new(4096);
        assert_eq!(w.walk(REQUEST, false), Ok(()));
        // 62 is the :authority just added; 63 is past the table.
        assert_eq!(w.walk(b"\x82\x86\x84\xbe", false), Ok(()));
        assert_eq!(w.walk(b"\xbf", false), Err(Fault::Compression));
        assert_eq!(w.walk(b"\x80", false), Err(Fault::Compression), "index 0");
        // A size update to 0 evicts it; at the end of a block it is a fault.
        assert_eq!(w.walk(b"\x20\x82", false), Ok(()));
        assert_eq!(w.walk(b"\xbe", false), Err(Fault::Compression));
        assert_eq!(w.walk(b"\x82\x20", false), Err(Fault::Compression));
        // Over the limit this side set.
        assert_eq!(w.walk(b"\x3f\xe2\x1f", false), Err(Fault::Compression));
    }

    #[test]
    fn trailers_may_not_carry_pseudo_headers() {
        let mut w = Walker::new(4096);
        assert_eq!(w.walk(REQUEST, false), Ok(()));
        assert_eq!(w.walk(b"\x00\x01x\x01y", true), Ok(()));
        assert_eq!(w.walk(b"\x82", true), Err(Fault::PseudoInTrailers));
        assert_eq!(w.walk(b"\xbe", true), Err(Fault::PseudoInTrailers));
        assert_eq!(
            w.walk(b"\x00\x05:path\x01/", true),
            Err(Fault::PseudoInTrailers)
        );
        assert_eq!(
            w.walk(b"\x00\x05x", false),
            Err(Fault::Compression),
            "cut short"
        );
    }
}
