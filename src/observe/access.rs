//! The access log: one line per request, `combined` (nginx's format, with
//! the `Date` value as the time, the request time in seconds and the request
//! ID) or `json`, written by a thread of its own so a shard never waits on
//! the disk. Each shard gathers a batch's lines and hands them over whole.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use serde::Serialize;

pub(crate) use crate::config::AccessFormat;

/// One request, as logged.
#[derive(Debug, Serialize)]
pub(crate) struct Entry<'a> {
    pub(crate) time: &'a str,
    pub(crate) remote: String,
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) version: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: usize,
    pub(crate) duration_us: u64,
    pub(crate) request_id: &'a str,
    pub(crate) referer: &'a str,
    pub(crate) user_agent: &'a str,
    /// A proxied request's server, and its connect, header and response
    /// times (nginx's `$upstream_addr`, `uct`, `uht`, `urt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_addr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_connect_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_header_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) upstream_response_us: Option<u64>,
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl<'a> Entry<'a> {
    /// Adds what a proxied request's upstream exchange took.
    pub(crate) fn with_upstream(
        mut self,
        note: Option<&'a crate::http::write::UpstreamNote>,
    ) -> Self {
        if let Some(note) = note {
            self.upstream_addr = Some(&note.address);
            // A reused connection took no time to connect.
            self.upstream_connect_us = Some(note.connect.map_or(0, micros));
            self.upstream_header_us = Some(micros(note.header));
            self.upstream_response_us = Some(micros(note.total));
        }
        self
    }
}

/// A shard's request IDs: the client's `X-Request-ID` when it is usable,
/// else `PREFIX-SHARD-COUNTER` (the prefix distinguishes this process from
/// another), unique per process without coordination between shards.
#[derive(Debug, Default)]
pub(crate) struct RequestIds {
    /// `PREFIX-SHARD-`, rendered once: every ID starts with it.
    head: [u8; 32],
    head_len: usize,
    next: Cell<u64>,
}

impl RequestIds {
    /// IDs for `shard` of the process whose IDs start with `prefix`.
    pub(crate) fn new(prefix: u32, shard: usize) -> Self {
        let mut head = [0u8; 32];
        let mut cursor = io::Cursor::new(&mut head[..]);
        let _ = write!(cursor, "{prefix:08x}-{shard:02x}-");
        let head_len = usize::try_from(cursor.position()).unwrap_or(0);
        Self {
            head,
            head_len,
            next: Cell::new(0),
        }
    }

    /// Writes the request's ID into `room` and returns its length: the
    /// client's `X-Request-ID` when it is short visible ASCII, else a new one.
    pub(crate) fn assign(&self, given: Option<&[u8]>, room: &mut [u8; 128]) -> usize {
        if let Some(given) = given.filter(|id| {
            !id.is_empty() && id.len() <= room.len() && id.iter().all(u8::is_ascii_graphic)
        }) {
            room[..given.len()].copy_from_slice(given);
            return given.len();
        }
        let id = self.next.get();
        self.next.set(id.wrapping_add(1));
        // By hand rather than through `fmt`: once per request, and the
        // formatting machinery was most of what an ID cost.
        room[..self.head_len].copy_from_slice(&self.head[..self.head_len]);
        let digits = (16 - id.leading_zeros() as usize / 4).max(12);
        let counter = &mut room[self.head_len..self.head_len + digits];
        let mut rest = id;
        for digit in counter.iter_mut().rev() {
            *digit = b"0123456789abcdef"[(rest & 0xf) as usize];
            rest >>= 4;
        }
        self.head_len + digits
    }
}

/// A shard's side of the access log.
#[derive(Debug)]
pub(crate) struct AccessLog {
    format: AccessFormat,
    lines: RefCell<Vec<u8>>,
    writer: Sender<Vec<u8>>,
    shard: usize,
    /// When the current second of refusal lines began, and how many were
    /// written and dropped in it.
    refusals: Cell<(Option<std::time::Instant>, u32, u64)>,
}

/// Most refusal lines one shard writes in a second: a flood of bad
/// requests must not make the log the bottleneck. The rest are counted and
/// their number logged once the second is over.
const REFUSALS_PER_SECOND: u32 = 100;

/// A request refused before (or instead of) its handler: what is known of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused<'a> {
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) status: u16,
    /// Response bytes sent (0 for a connection closed without one).
    pub(crate) bytes: usize,
    /// The `Date` of the response.
    pub(crate) time: &'a str,
    /// What arrived of the request (its request line is logged, as far as
    /// it goes).
    pub(crate) input: &'a [u8],
}

impl AccessLog {
    pub(crate) fn new(format: AccessFormat, writer: Sender<Vec<u8>>, shard: usize) -> Self {
        Self {
            format,
            lines: RefCell::new(Vec::new()),
            writer,
            shard,
            refusals: Cell::new((None, 0, 0)),
        }
    }

    /// Logs a refusal (400, 408, 413, 414, 431, 501, 505, a connection
    /// over a cap) like a request, within the per-second budget, and hands
    /// it to the writer at once.
    pub(crate) fn refusal(&self, refused: &Refused<'_>) {
        let now = std::time::Instant::now();
        let (start, written, dropped) = self.refusals.get();
        let (start, written, dropped) = match start {
            Some(start) if now.duration_since(start) < std::time::Duration::from_secs(1) => {
                (start, written, dropped)
            }
            _ => {
                if dropped > 0 {
                    tracing::warn!(
                        shard = self.shard,
                        dropped,
                        "access log: refusal lines over {REFUSALS_PER_SECOND} a second were not written"
                    );
                }
                (now, 0, 0)
            }
        };
        if written >= REFUSALS_PER_SECOND {
            self.refusals.set((Some(start), written, dropped + 1));
            return;
        }
        self.refusals.set((Some(start), written + 1, dropped));
        let line = refused
            .input
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(&[]);
        let line = String::from_utf8_lossy(&line[..line.len().min(1024)]);
        let mut parts = line.splitn(3, ' ');
        let mut part = || parts.next().filter(|p| !p.is_empty()).unwrap_or("-");
        let (method, target, version) = (part(), part(), part());
        self.record(&Entry {
            time: refused.time,
            remote: remote(refused.peer),
            method,
            target,
            version,
            status: refused.status,
            bytes: refused.bytes,
            duration_us: 0,
            request_id: "-",
            referer: "-",
            user_agent: "-",
            upstream_addr: None,
            upstream_connect_us: None,
            upstream_header_us: None,
            upstream_response_us: None,
        });
        self.flush();
    }

    /// Adds one line.
    pub(crate) fn record(&self, entry: &Entry<'_>) {
        let mut lines = self.lines.borrow_mut();
        match self.format {
            AccessFormat::Off => return,
            AccessFormat::Json => {
                let _ = simd_json::serde::to_writer(&mut *lines, entry);
            }
            AccessFormat::Combined => {
                let _ = write!(
                    lines,
                    "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {}.{:06} {}",
                    entry.remote,
                    entry.time,
                    entry.method,
                    entry.target.escape_debug(),
                    entry.version,
                    entry.status,
                    entry.bytes,
                    entry.referer.escape_debug(),
                    entry.user_agent.escape_debug(),
                    entry.duration_us / 1_000_000,
                    entry.duration_us % 1_000_000,
                    entry.request_id,
                );
                if let (Some(addr), Some(uct), Some(uht), Some(urt)) = (
                    entry.upstream_addr,
                    entry.upstream_connect_us,
                    entry.upstream_header_us,
                    entry.upstream_response_us,
                ) {
                    let secs = |us: u64| format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
                    let _ = write!(
                        lines,
                        " ua=\"{}\" uct={} uht={} urt={}",
                        addr.escape_debug(),
                        secs(uct),
                        secs(uht),
                        secs(urt)
                    );
                }
            }
        }
        lines.push(b'\n');
    }

    /// Hands the gathered lines to the writer thread (never blocks).
    pub(crate) fn flush(&self) {
        let mut lines = self.lines.borrow_mut();
        if !lines.is_empty() {
            let _ = self.writer.send(std::mem::take(&mut *lines));
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Starts the writer thread: to `path`, or standard output when empty. It
/// ends, having written everything, once every sender is dropped.
pub(crate) fn start_writer(path: &str) -> io::Result<(Sender<Vec<u8>>, JoinHandle<()>)> {
    let sink: Box<dyn Write + Send> = if path.is_empty() {
        Box::new(io::stdout())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )
    };
    let (sender, receiver) = channel();
    let handle = std::thread::Builder::new()
        .name("percore-access-log".into())
        .spawn(move || write_lines(&receiver, sink))?;
    Ok((sender, handle))
}

fn write_lines(receiver: &Receiver<Vec<u8>>, sink: Box<dyn Write + Send>) {
    let mut sink = io::BufWriter::new(sink);
    while let Ok(batch) = receiver.recv() {
        let _ = sink.write_all(&batch);
        while let Ok(more) = receiver.try_recv() {
            let _ = sink.write_all(&more);
        }
        let _ = sink.flush();
    }
    let _ = sink.flush();
}

/// The peer, as logged.
pub(crate) fn remote(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "-".into(), |p| p.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::RequestIds;

    #[test]
    fn generated_ids_are_prefix_shard_and_a_hex_counter() {
        let ids = RequestIds::new(0x1234_abcd, 3);
        let mut room = [0u8; 128];
        for expected in 0..3u64 {
            let len = ids.assign(None, &mut room);
            assert_eq!(
                &room[..len],
                format!("1234abcd-03-{expected:012x}").as_bytes()
            );
        }
        ids.next.set(u64::MAX);
        let len = ids.assign(None, &mut room);
        assert_eq!(
            &room[..len],
            format!("1234abcd-03-{:012x}", u64::MAX).as_bytes()
        );
        ids.next.set(0xabc_def0_1234);
        let len = ids.assign(None, &mut room);
        assert_eq!(
            &room[..len],
            format!("1234abcd-03-{:012x}", 0xabc_def0_1234_u64).as_bytes()
        );
        // The client's own, when usable.
        let len = ids.assign(Some(b"abc-123"), &mut room);
        assert_eq!(&room[..len], b"abc-123");
        let wide = RequestIds::new(1, 300);
        let len = wide.assign(None, &mut room);
        assert_eq!(&room[..len], b"00000001-12c-000000000000");
    }
}
