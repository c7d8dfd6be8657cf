//! Content codings: which one a client accepts (`Accept-Encoding` with
//! q-values, RFC 9110 §12.5.3), and gzip, brotli and zstd encoders for
//! whole bodies and for streams (flushed after every piece, so a stream of
//! events reaches the client as it is made).
//!
//! gzip is flate2 on its `zlib-rs` backend: pure Rust, no C toolchain, and
//! measured faster than C zlib at the same level in flate2's and zlib-rs's
//! own benchmarks (and in ours against nginx, `bench/README.md`). One
//! deflate state per shard is reset and reused for whole bodies, so a
//! response costs no allocation of the 256 KiB of state.

use std::cell::RefCell;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;

use super::write::{Cut, Pieces};

/// A content coding percore can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Brotli,
    Zstd,
    Gzip,
}

impl Encoding {
    /// Every coding, in the default order of preference.
    pub(crate) const ALL: [Encoding; 3] = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];

    /// Its token in `Content-Encoding`.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }

    /// The suffix of a file precompressed with it.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Self::Brotli => ".br",
            Self::Zstd => ".zst",
            Self::Gzip => ".gz",
        }
    }

    pub(crate) fn of(token: &str) -> Option<Self> {
        match token {
            "br" => Some(Self::Brotli),
            "zstd" => Some(Self::Zstd),
            "gzip" | "x-gzip" => Some(Self::Gzip),
            _ => None,
        }
    }
}

/// What an `Accept-Encoding` field allows: each coding's q-value in
/// thousandths, where it names one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepts {
    codings: [Option<u16>; 3],
    any: Option<u16>,
}

impl Accepts {
    /// Parses `Accept-Encoding`. A malformed member is skipped.
    pub(crate) fn parse(field: &[u8]) -> Self {
        let mut accepts = Self::default();
        let Ok(field) = std::str::from_utf8(field) else {
            return accepts;
        };
        for member in field.split(',') {
            let mut parts = member.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = Some(1000);
            for parameter in parts {
                let Some((name, value)) = parameter.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("q") {
                    q = qvalue(value.trim());
                }
            }
            let Some(q) = q else { continue };
            if coding == "*" {
                accepts.any = Some(q);
            } else if let Some(encoding) = Encoding::of(&coding) {
                accepts.codings[encoding as usize] = Some(q);
            }
        }
        accepts
    }

    /// The q-value of `encoding` (thousandths): its own, else `*`'s, else 0.
    pub(crate) fn q(&self, encoding: Encoding) -> u16 {
        self.codings[encoding as usize].or(self.any).unwrap_or(0)
    }

    /// The coding of `offered` (the server's order of preference) with the
    /// highest q-value above 0; the first such on a tie.
    pub(crate) fn choose(&self, offered: impl IntoIterator<Item = Encoding>) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for encoding in offered {
            let q = self.q(encoding);
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((encoding, q));
            }
        }
        best.map(|(encoding, _)| encoding)
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (at, digit) in fraction.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][at];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The compression settings in force: what is compressed, how hard.
#[derive(Clone, Debug)]
pub(crate) struct Compressor {
    offered: Vec<Encoding>,
    types: Vec<String>,
    min_length: u64,
    levels: Levels,
}

/// How hard each coding works.
#[derive(Clone, Copy, Debug)]
struct Levels {
    gzip: u32,
    brotli: u32,
    zstd: i32,
}

impl Compressor {
    /// Compresses bodies of `types` (media-type essences) of at least
    /// `min_length` bytes, with the first of `offered` a client accepts
    /// best, at `levels` (gzip, brotli, zstd).
    pub(crate) fn new(
        offered: Vec<Encoding>,
        types: &[String],
        min_length: u64,
        levels: (u32, u32, i32),
    ) -> Self {
        Self {
            offered,
            types: types.iter().map(|t| t.to_ascii_lowercase()).collect(),
            min_length,
            levels: Levels {
                gzip: levels.0,
                brotli: levels.1,
                zstd: levels.2,
            },
        }
    }

    /// The coding to answer a client that sent `accept_encoding` with.
    pub(crate) fn choose(&self, accept_encoding: Option<&[u8]>) -> Option<Encoding> {
        Accepts::parse(accept_encoding?).choose(self.offered.iter().copied())
    }

    /// Whether a body of `content_type` is compressed.
    pub(crate) fn compresses(&self, content_type: &[u8]) -> bool {
        let essence = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        self.types
            .iter()
            .any(|t| t.as_bytes().eq_ignore_ascii_case(essence))
    }

    /// Whether a body of `length` bytes is long enough to compress.
    pub(crate) fn long_enough(&self, length: u64) -> bool {
        length >= self.min_length
    }

    /// Appends `input` encoded with `encoding` to `out`.
    pub(crate) fn compress(&self, encoding: Encoding, input: &[u8], out: &mut Vec<u8>) {
        self.levels.compress(encoding, input, out);
    }

    /// The pieces of a body of `length` bytes, encoded with `encoding`:
    /// gathered and compressed whole when that is at most [`GATHER_MAX`]
    /// (a file: one pass with the shard's reused encoder state, no flush
    /// per piece), else as [`stream`](Self::stream).
    pub(crate) fn stream_sized(&self, encoding: Encoding, pieces: Pieces, length: u64) -> Pieces {
        if length > GATHER_MAX {
            return self.stream(encoding, pieces);
        }
        Box::pin(Gathered {
            pieces,
            encoding,
            levels: self.levels,
            input: Some(Vec::with_capacity(usize::try_from(length).unwrap_or(0))),
        })
    }

    /// `pieces` encoded with `encoding`, flushed after each piece.
    pub(crate) fn stream(&self, encoding: Encoding, pieces: Pieces) -> Pieces {
        let encoder = match encoding {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(self.levels.gzip),
            )),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                self.levels.brotli,
                BROTLI_WINDOW,
            ))),
            Encoding::Zstd => {
                match zstd::stream::write::Encoder::new(Vec::new(), self.levels.zstd) {
                    Ok(encoder) => Encoder::Zstd(encoder),
                    Err(_) => return pieces,
                }
            }
        };
        Box::pin(Compressed {
            pieces,
            encoder: Some(encoder),
        })
    }
}

/// Bodies of at most this many bytes are compressed whole, gathered
/// first, rather than piece by piece.
pub(crate) const GATHER_MAX: u64 = 1 << 20;

impl Levels {
    /// Appends `input` encoded with `encoding` to `out`, with the shard's
    /// encoder state reused.
    fn compress(self, encoding: Encoding, input: &[u8], out: &mut Vec<u8>) {
        match encoding {
            Encoding::Gzip => DEFLATE.with(|state| {
                let mut state = state.borrow_mut();
                if state.as_ref().is_none_or(|(level, _)| *level != self.gzip) {
                    *state = Some((
                        self.gzip,
                        flate2::Compress::new_gzip(flate2::Compression::new(self.gzip), 15),
                    ));
                }
                let Some((_, deflate)) = state.as_mut() else {
                    return;
                };
                deflate.reset();
                out.reserve(input.len() / 3 + 64);
                let start_in = deflate.total_in();
                loop {
                    let consumed = usize::try_from(deflate.total_in() - start_in).unwrap_or(0);
                    let status = deflate.compress_vec(
                        &input[consumed..],
                        out,
                        flate2::FlushCompress::Finish,
                    );
                    match status {
                        Ok(flate2::Status::StreamEnd) | Err(_) => break,
                        Ok(_) => out.reserve(out.capacity().max(4096)),
                    }
                }
            }),
            Encoding::Brotli => {
                let mut writer =
                    brotli::CompressorWriter::new(&mut *out, 4096, self.brotli, BROTLI_WINDOW);
                // Writes to a Vec cannot fail.
                let _ = writer.write_all(input);
            }
            Encoding::Zstd => ZSTD.with(|state| {
                let mut state = state.borrow_mut();
                if state.as_ref().is_none_or(|(level, _)| *level != self.zstd) {
                    *state = zstd::bulk::Compressor::new(self.zstd)
                        .ok()
                        .map(|c| (self.zstd, c));
                }
                if let Some((_, compressor)) = state.as_mut() {
                    out.reserve(zstd::zstd_safe::compress_bound(input.len()));
                    let _ = compressor.compress_to_buffer(input, out);
                }
            }),
        }
    }
}

/// A body gathered whole, then compressed in one pass.
struct Gathered {
    pieces: Pieces,
    encoding: Encoding,
    levels: Levels,
    /// `None` once sent.
    input: Option<Vec<u8>>,
}

impl Stream for Gathered {
    type Item = Result<Vec<u8>, Cut>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(input) = this.input.as_mut() else {
                return Poll::Ready(None);
            };
            match this.pieces.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(piece))) => {
                    input.extend_from_slice(&piece);
                    crate::http::write::recycle_chunk(piece);
                }
                Poll::Ready(Some(Err(cut))) => {
                    this.input = None;
                    return Poll::Ready(Some(Err(cut)));
                }
                Poll::Ready(None) => {
                    let input = this.input.take().unwrap_or_default();
                    let mut out = Vec::new();
                    this.levels.compress(this.encoding, &input, &mut out);
                    return Poll::Ready(Some(Ok(out)));
                }
            }
        }
    }
}

/// brotli's window: 2^20 bytes, a fair trade for web bodies.
const BROTLI_WINDOW: u32 = 20;

thread_local! {
    /// The shard's deflate state for whole bodies, with its level.
    static DEFLATE: RefCell<Option<(u32, flate2::Compress)>> = const { RefCell::new(None) };
    /// The shard's zstd context for whole bodies, with its level.
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// A streaming encoder writing into its own buffer.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// Encodes `data`, flushes, and takes what is ready.
    fn push(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let out = match self {
            Self::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
            Self::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
            Self::Zstd(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
        };
        Ok(std::mem::take(out))
    }

    /// Ends the stream: what is left.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Gzip(e) => e.finish(),
            Self::Brotli(e) => Ok(e.into_inner()),
            Self::Zstd(e) => e.finish(),
        }
    }
}

/// A body stream encoded as it goes.
struct Compressed {
    pieces: Pieces,
    /// `None` once finished.
    encoder: Option<Encoder>,
}

impl Stream for Compressed {
    type Item = Result<Vec<u8>, Cut>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(encoder) = this.encoder.as_mut() else {
            return Poll::Ready(None);
        };
        match this.pieces.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(piece))) => {
                Poll::Ready(Some(encoder.push(&piece).map_err(|_| Cut)))
            }
            Poll::Ready(Some(Err(cut))) => {
                this.encoder = None;
                Poll::Ready(Some(Err(cut)))
            }
            Poll::Ready(None) => {
                let encoder = this.encoder.take();
                Poll::Ready(encoder.map(|e| e.finish().map_err(|_| Cut)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Accepts, Compressor, Encoding, qvalue};
    use std::io::Read;

    #[test]
    fn q_values_and_the_server_order_choose() {
        let offered = Encoding::ALL;
        let pick = |field: &str| Accepts::parse(field.as_bytes()).choose(offered);
        assert_eq!(pick("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(pick("gzip;q=1.0, br;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick("br;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("*"), Some(Encoding::Brotli));
        assert_eq!(pick("*;q=0.1, zstd;q=0.2"), Some(Encoding::Zstd));
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("identity"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("GZIP;Q=0.3"), Some(Encoding::Gzip));
        assert_eq!(pick("x-gzip"), Some(Encoding::Gzip));
        // A malformed q-value drops its member, not the field.
        assert_eq!(pick("br;q=2, gzip;q=0.9"), Some(Encoding::Gzip));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue("0.1234"), None);
    }

    fn json_and_css() -> Compressor {
        let types = ["application/json".to_owned(), "text/css".to_owned()];
        Compressor::new(Encoding::ALL.to_vec(), &types, 1000, (6, 4, 3))
    }

    #[test]
    fn each_coding_round_trips() {
        let compressor = json_and_css();
        let input: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"id\":{i}}}").into_bytes())
            .collect();
        for encoding in Encoding::ALL {
            let mut out = Vec::new();
            compressor.compress(encoding, &input, &mut out);
            assert!(out.len() < input.len() / 4, "{encoding:?}: {}", out.len());
            let mut back = Vec::new();
            match encoding {
                Encoding::Gzip => {
                    flate2::read::GzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Encoding::Brotli => {
                    brotli::Decompressor::new(&out[..], 4096)
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Encoding::Zstd => back = zstd::decode_all(&out[..]).unwrap(),
            }
            assert_eq!(back, input, "{encoding:?}");
        }
    }

    #[test]
    fn types_match_by_essence() {
        let compressor = json_and_css();
        assert!(compressor.compresses(b"application/json"));
        assert!(compressor.compresses(b"Text/CSS; charset=utf-8"));
        assert!(!compressor.compresses(b"image/png"));
        assert!(!compressor.compresses(b"text/event-stream"));
    }
}
