//! A frame counter in front of `h2`: the floods it does not bound itself.
//!
//! `h2` answers each PING, SETTINGS, PRIORITY, `WINDOW_UPDATE` and `RST_STREAM`
//! frame and each empty DATA frame at little cost to the client and some
//! to the server; a client that sends nothing else is attacking
//! (CVE-2019-9512, -9515, -9518, and the rapid reset of CVE-2023-44487 as
//! far as `h2`'s own limit leaves it). The guard reads the frame headers
//! of what arrives, before `h2` does, and allows such frames up to a
//! budget that grows with the work the client asks for: requests and
//! body bytes. Past it the connection ends with GOAWAY
//! `ENHANCE_YOUR_CALM`, as nginx and the other servers patched for those
//! attacks do.

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
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;

/// The frame reader's place in the inbound bytes.
#[derive(Debug)]
pub(super) struct Guard {
    /// Preface bytes still to pass.
    preface: usize,
    /// A frame header read in part.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
    cheap: u64,
    earned: u64,
    body_bytes: u64,
    /// The highest stream a client opened (for the GOAWAY).
    last_stream: u32,
}

impl Guard {
    pub(super) fn new() -> Self {
        Self {
            preface: super::PREFACE.len(),
            header: [0; 9],
            have: 0,
            skip: 0,
            cheap: 0,
            earned: BASE_BUDGET,
            body_bytes: 0,
            last_stream: 0,
        }
    }

    /// Reads `bytes` on; false once the client is over its budget.
    pub(super) fn admit(&mut self, mut bytes: &[u8]) -> bool {
        let passed = self.preface.min(bytes.len());
        self.preface -= passed;
        bytes = &bytes[passed..];
        while !bytes.is_empty() {
            if self.skip > 0 {
                let take = usize::try_from(self.skip).map_or(bytes.len(), |s| s.min(bytes.len()));
                self.skip -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            let take = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have == 9 {
                self.have = 0;
                self.frame();
            }
        }
        self.cheap <= self.earned
    }

    /// Counts the frame whose header was just read.
    fn frame(&mut self) {
        let h = self.header;
        let length = u64::from(u32::from_be_bytes([0, h[0], h[1], h[2]]));
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.skip = length;
        match kind {
            HEADERS => {
                self.earned += PER_REQUEST;
                self.last_stream = self.last_stream.max(stream);
            }
            DATA if length == 0 && flags & END_STREAM == 0 => self.cheap += 1,
            DATA => {
                self.body_bytes += length;
                self.earned += self.body_bytes / BYTES_PER_FRAME;
                self.body_bytes %= BYTES_PER_FRAME;
            }
            PRIORITY | RST_STREAM | SETTINGS | PING | WINDOW_UPDATE => self.cheap += 1,
            _ => {}
        }
    }

    /// The GOAWAY that ends an over-budget connection.
    pub(super) fn goaway(&self) -> Vec<u8> {
        let mut frame = vec![0, 0, 8, 0x7, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&self.last_stream.to_be_bytes());
        frame.extend_from_slice(&11u32.to_be_bytes());
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
        let mut guard = Guard::new();
        assert!(guard.admit(super::super::PREFACE));
        let ping = frame(0x6, 0, 0, &[0; 8]);
        for _ in 0..1000 {
            assert!(guard.admit(&ping));
        }
        assert!(!guard.admit(&ping));
        let mut earning = Guard::new();
        earning.admit(super::super::PREFACE);
        for stream in 0..100u32 {
            assert!(earning.admit(&frame(0x1, 0x5, stream * 2 + 1, b"hdrs")));
            for _ in 0..20 {
                assert!(earning.admit(&ping), "stream {stream}");
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
            let mut guard = Guard::new();
            let fine = bytes.chunks(piece).all(|c| guard.admit(c));
            assert!(fine, "piece {piece}");
            assert_eq!(guard.cheap, 600);
            let mut flood = Guard::new();
            let mut empty = super::super::PREFACE.to_vec();
            empty.extend((0..1001).flat_map(|_| frame(0x0, 0, 1, b"")));
            assert!(
                !empty.chunks(piece).all(|c| flood.admit(c)),
                "piece {piece}"
            );
        }
    }
}
