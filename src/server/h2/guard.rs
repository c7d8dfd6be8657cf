//! A frame screen in front of `h2`: the floods it does not bound itself,
//! and the protocol errors it answers with another code than RFC 9113
//! and RFC 7541 name.
//!
//! **Floods.** `h2` answers each PING, SETTINGS, PRIORITY, `WINDOW_UPDATE`
//! and `RST_STREAM` frame and each empty DATA frame at little cost to the
//! client and some to the server; a client that sends nothing else is
//! attacking (CVE-2019-9512, -9515, -9518, and the rapid reset of
//! CVE-2023-44487 as far as `h2`'s own limit leaves it). Such frames are
//! allowed up to a budget that grows with the work the client asks for:
//! requests and body bytes. Past it the connection ends with GOAWAY
//! `ENHANCE_YOUR_CALM`, as nginx and the other servers patched for those
//! attacks do.
//!
//! **Error codes.** `h2` ends the connection with `PROTOCOL_ERROR` for
//! every malformed frame and header block; the RFCs name
//! `FRAME_SIZE_ERROR` for a control frame of the wrong length (§6),
//! `FLOW_CONTROL_ERROR` for an initial window over 2^31-1 (§6.5.2),
//! `STREAM_CLOSED` for a frame on a stream the client ended or reset
//! (§5.1) and `COMPRESSION_ERROR` for a header block that cannot be
//! decoded (RFC 7541 §2.3.3, §4.2, §5.2, §6); and `h2` drops a trailer
//! block's pseudo-headers instead of refusing it (§8.1). The screen reads
//! each frame before `h2` does and ends the connection with the RFC's
//! code itself; everything else is left to `h2`.

use super::hpack::{Fault, Walker};
use crate::config::Http2Config;

/// Cheap frames any connection may send before requests earn more.
const BASE_BUDGET: u64 = 1000;
/// Cheap frames each request (HEADERS frame) earns.
const PER_REQUEST: u64 = 16;
/// Body bytes that earn one cheap frame.
const BYTES_PER_FRAME: u64 = 1024;

/// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
/// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;
/// `SETTINGS_INITIAL_WINDOW_SIZE`.
const INITIAL_WINDOW_SIZE: u16 = 0x4;

/// Error codes (RFC 9113 §7).
pub(super) const PROTOCOL_ERROR: u32 = 0x1;
pub(super) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(super) const STREAM_CLOSED: u32 = 0x5;
pub(super) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(super) const COMPRESSION_ERROR: u32 = 0x9;
pub(super) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Streams the client ended or reset lately, remembered to tell a HEADERS
/// frame on a closed stream (`STREAM_CLOSED`) from one on a stream never
/// opened (`PROTOCOL_ERROR`, `h2`'s answer).
const RECENT: usize = 8;

/// The frame being read.
#[derive(Debug, Default, Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    length: u32,
    /// Payload bytes read so far.
    at: u32,
}

/// The header block being gathered, when it spans frames or reads.
#[derive(Debug, Default)]
struct Block {
    bytes: Vec<u8>,
    /// A trailer block (the stream already had its request block).
    trailers: bool,
    /// Gathering (false: no block, or one `h2` refuses anyway).
    open: bool,
    /// The current HEADERS frame's pad length and where its fragment
    /// starts (after the pad length and priority fields).
    pad: u32,
    start: u32,
}

/// The frame reader's place in the inbound bytes and what it knows of the
/// connection.
#[derive(Debug)]
pub(super) struct Guard {
    /// Preface bytes still to pass.
    preface: usize,
    /// A frame header read in part.
    header: [u8; 9],
    have: usize,
    frame: Frame,
    /// A SETTINGS entry read in part.
    setting: [u8; 6],
    setting_have: usize,
    cheap: u64,
    earned: u64,
    body_bytes: u64,
    /// The highest stream a client opened, and that of the bytes passed
    /// on to `h2` (for the GOAWAY).
    last_stream: u32,
    passed_stream: u32,
    /// Streams the client opened and has not ended or reset; `None` once
    /// more are open than `h2` allows (then states are left to `h2`).
    open: Option<Vec<u32>>,
    most_open: usize,
    recent: [u32; RECENT],
    recent_at: usize,
    block: Block,
    /// The stream whose header block awaits its CONTINUATION frames.
    continues: Option<u32>,
    most_block: usize,
    /// `None` once a block was not walked (then HPACK is left to `h2`).
    hpack: Option<Walker>,
}

impl Guard {
    pub(super) fn new(config: &Http2Config) -> Self {
        Self {
            preface: super::PREFACE.len(),
            header: [0; 9],
            have: 0,
            frame: Frame::default(),
            setting: [0; 6],
            setting_have: 0,
            cheap: 0,
            earned: BASE_BUDGET,
            body_bytes: 0,
            last_stream: 0,
            passed_stream: 0,
            open: Some(Vec::new()),
            most_open: config.max_concurrent_streams as usize + 16,
            recent: [0; RECENT],
            recent_at: 0,
            block: Block::default(),
            continues: None,
            // A block's frames may hold more than its decoded list
            // (padding, repeats of indexed fields); past this `h2`'s own
            // limit ends it.
            most_block: 2 * config.max_header_list_bytes as usize + (16 << 10),
            hpack: Some(Walker::new(config.header_table_bytes)),
        }
    }

    /// Reads `bytes` on: `Err(code)` when the connection must end with
    /// GOAWAY `code` instead of these bytes reaching `h2`.
    pub(super) fn admit(&mut self, mut bytes: &[u8]) -> Result<(), u32> {
        let passed = self.preface.min(bytes.len());
        self.preface -= passed;
        bytes = &bytes[passed..];
        while !bytes.is_empty() {
            let left = self.frame.length - self.frame.at;
            if self.have == 0 && left > 0 {
                let take = left.min(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                let (piece, rest) = bytes.split_at(take as usize);
                self.payload(piece)?;
                self.frame.at += take;
                bytes = rest;
                if self.frame.at == self.frame.length {
                    self.end()?;
                }
                continue;
            }
            let take = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have == 9 {
                self.have = 0;
                self.start()?;
                if self.frame.length == 0 {
                    self.end()?;
                }
            }
        }
        if self.cheap > self.earned {
            return Err(ENHANCE_YOUR_CALM);
        }
        self.passed_stream = self.last_stream;
        Ok(())
    }

    /// Checks and counts the frame whose header was just read.
    fn start(&mut self) -> Result<(), u32> {
        let h = self.header;
        let length = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.frame = Frame {
            kind,
            flags,
            stream,
            length,
            at: 0,
        };
        let client_stream = stream % 2 == 1;
        // A header block's frames come one after another (§6.10).
        match self.continues {
            Some(s) if kind != CONTINUATION || stream != s => return Err(PROTOCOL_ERROR),
            None if kind == CONTINUATION => return Err(PROTOCOL_ERROR),
            _ => {}
        }
        if kind == HEADERS || kind == CONTINUATION {
            self.continues = (flags & END_HEADERS == 0).then_some(stream);
        }
        match kind {
            PING if length != 8 => return Err(FRAME_SIZE_ERROR),
            SETTINGS if !length.is_multiple_of(6) || (flags & ACK != 0 && length > 0) => {
                return Err(FRAME_SIZE_ERROR);
            }
            WINDOW_UPDATE | RST_STREAM if length != 4 => return Err(FRAME_SIZE_ERROR),
            PRIORITY if length != 5 => return Err(FRAME_SIZE_ERROR),
            GOAWAY if length < 8 => return Err(FRAME_SIZE_ERROR),
            HEADERS => {
                self.earned += PER_REQUEST;
                // Every block is walked, whatever `h2` makes of its
                // stream: the table must stay in step with the client's.
                let open = if client_stream {
                    self.is_open(stream)
                } else {
                    None
                };
                self.block = Block {
                    open: true,
                    trailers: open == Some(true),
                    start: u32::from(flags & PADDED != 0)
                        + 5 * u32::from(flags & PRIORITY_FLAG != 0),
                    ..Block::default()
                };
                if client_stream && stream > self.last_stream {
                    self.last_stream = stream;
                    if flags & END_STREAM == 0 {
                        self.opened(stream);
                    } else {
                        self.ended(stream);
                    }
                } else if open == Some(true) {
                    if flags & END_STREAM != 0 {
                        self.ended(stream);
                    }
                } else if client_stream && self.recent.contains(&stream) {
                    return Err(STREAM_CLOSED);
                }
            }
            DATA => {
                if client_stream
                    && stream <= self.last_stream
                    && self.is_open(stream) == Some(false)
                {
                    return Err(STREAM_CLOSED);
                }
                if flags & END_STREAM != 0 {
                    self.ended(stream);
                } else if length == 0 {
                    self.cheap += 1;
                }
                self.body_bytes += u64::from(length);
                self.earned += self.body_bytes / BYTES_PER_FRAME;
                self.body_bytes %= BYTES_PER_FRAME;
            }
            _ => {}
        }
        match kind {
            RST_STREAM => {
                self.cheap += 1;
                if client_stream && self.is_open(stream) == Some(true) {
                    self.ended(stream);
                }
            }
            PRIORITY | SETTINGS | PING | WINDOW_UPDATE => self.cheap += 1,
            _ => {}
        }
        Ok(())
    }

    /// Reads a piece of the current frame's payload.
    fn payload(&mut self, bytes: &[u8]) -> Result<(), u32> {
        let frame = self.frame;
        match frame.kind {
            SETTINGS if frame.flags & ACK == 0 && frame.stream == 0 => {
                for &b in bytes {
                    self.setting[self.setting_have] = b;
                    self.setting_have += 1;
                    if self.setting_have == 6 {
                        self.setting_have = 0;
                        let s = self.setting;
                        let id = u16::from_be_bytes([s[0], s[1]]);
                        let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                        if id == INITIAL_WINDOW_SIZE && value > 0x7fff_ffff {
                            return Err(FLOW_CONTROL_ERROR);
                        }
                    }
                }
            }
            HEADERS | CONTINUATION if self.block.open && self.hpack.is_some() => {
                // The fragment: past a HEADERS frame's pad length and
                // priority fields, before its padding.
                let (mut from, mut to) =
                    (frame.at, frame.at + u32::try_from(bytes.len()).unwrap_or(0));
                if frame.kind == HEADERS {
                    if frame.flags & PADDED != 0 && frame.at == 0 {
                        self.block.pad = u32::from(bytes[0]);
                    }
                    if self.block.start + self.block.pad > frame.length {
                        // `h2` refuses the frame and ends the connection.
                        self.block = Block::default();
                        return Ok(());
                    }
                    from = from.max(self.block.start);
                    to = to.min(frame.length - self.block.pad);
                }
                if from < to {
                    let piece = &bytes[(from - frame.at) as usize..(to - frame.at) as usize];
                    if self.block.bytes.len() + piece.len() > self.most_block {
                        // `h2`'s header list limit ends this one; the
                        // table can no longer be followed.
                        self.block = Block::default();
                        self.hpack = None;
                    } else {
                        self.block.bytes.extend_from_slice(piece);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The current frame is read: a header block that ends here is walked.
    fn end(&mut self) -> Result<(), u32> {
        let frame = self.frame;
        let block_frame = frame.kind == HEADERS || frame.kind == CONTINUATION;
        if block_frame && frame.flags & END_HEADERS != 0 && self.block.open {
            let block = std::mem::take(&mut self.block);
            let Some(hpack) = &mut self.hpack else {
                return Ok(());
            };
            match hpack.walk(&block.bytes, block.trailers) {
                Ok(()) => {}
                Err(Fault::Compression) => return Err(COMPRESSION_ERROR),
                Err(Fault::PseudoInTrailers) => return Err(PROTOCOL_ERROR),
            }
        }
        Ok(())
    }

    /// Whether the client's `stream` is open on its side (`None`: not
    /// tracked any more).
    fn is_open(&self, stream: u32) -> Option<bool> {
        self.open.as_ref().map(|open| open.contains(&stream))
    }

    fn opened(&mut self, stream: u32) {
        if let Some(open) = &mut self.open {
            if open.len() < self.most_open {
                open.push(stream);
            } else {
                // More open than `h2` allows: it refuses them, and the
                // screen stops judging states.
                self.open = None;
            }
        }
    }

    /// The client ended or reset `stream`.
    fn ended(&mut self, stream: u32) {
        if let Some(open) = &mut self.open {
            if let Some(at) = open.iter().position(|&s| s == stream) {
                open.swap_remove(at);
            }
            if open.is_empty() {
                *open = Vec::new();
            }
        }
        self.recent[self.recent_at] = stream;
        self.recent_at = (self.recent_at + 1) % RECENT;
    }

    /// Whether a frame header, a frame other than DATA, or a header block
    /// has arrived in part: the client owes the rest of it (bounded by the
    /// header timeout). A DATA frame in part is a body on its way, which
    /// its stream's body timeout bounds.
    pub(super) fn partial(&self) -> bool {
        let mid_frame = self.frame.at < self.frame.length && self.frame.kind != DATA;
        self.have > 0 || mid_frame || self.continues.is_some()
    }

    /// The GOAWAY that ends the connection with `code`, naming the last
    /// stream `h2` was given.
    pub(super) fn goaway(&self, code: u32) -> Vec<u8> {
        let mut frame = vec![0, 0, 8, GOAWAY, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&self.passed_stream.to_be_bytes());
        frame.extend_from_slice(&code.to_be_bytes());
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::Guard;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_ping_flood_runs_out_of_budget_and_requests_earn_more() {
        let mut guard = Guard::new(&crate::config::Http2Config::default());
        assert!(guard.admit(super::super::PREFACE).is_ok());
        let ping = frame(0x6, 0, 0, &[0; 8]);
        for _ in 0..1000 {
            assert!(guard.admit(&ping).is_ok());
        }
        assert_eq!(guard.admit(&ping), Err(super::ENHANCE_YOUR_CALM));
        let mut earning = Guard::new(&crate::config::Http2Config::default());
        assert!(earning.admit(super::super::PREFACE).is_ok());
        for stream in 0..100u32 {
            assert!(
                earning
                    .admit(&frame(0x1, 0x5, stream * 2 + 1, b"\x82\x86\x84"))
                    .is_ok()
            );
            for _ in 0..20 {
                assert!(earning.admit(&ping).is_ok(), "stream {stream}");
            }
        }
        assert_eq!(earning.last_stream, 199);
    }

    #[test]
    fn frames_split_anywhere_are_read_the_same() {
        let mut bytes = super::super::PREFACE.to_vec();
        for _ in 0..600 {
            bytes.extend(frame(0x0, 0, 1, b""));
            bytes.extend(frame(0x0, 0, 1, &[7; 100]));
        }
        for piece in [1, 7, 9, 100, 4096] {
            let mut guard = Guard::new(&crate::config::Http2Config::default());
            let fine = bytes.chunks(piece).all(|c| guard.admit(c).is_ok());
            assert!(fine, "piece {piece}");
            assert_eq!(guard.cheap, 600);
            let mut flood = Guard::new(&crate::config::Http2Config::default());
            let mut empty = super::super::PREFACE.to_vec();
            empty.extend((0..1001).flat_map(|_| frame(0x0, 0, 1, b"")));
            assert!(
                !empty.chunks(piece).all(|c| flood.admit(c).is_ok()),
                "piece {piece}"
            );
        }
    }
}
