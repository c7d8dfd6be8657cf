//! The pipelined decode loop: every complete request at the start of the
//! buffer, one after another, each answered and logged.

use std::net::SocketAddr;
use std::time::Instant;

use super::dispatch::respond;
use super::{Origin, error_writer, header, log_refusal};
use crate::http::date::DATE_LEN;
use crate::http::parse::{Decoded, Decoder, HeaderSpan, Version};
use crate::http::request::target_str;
use crate::http::status::Status;
use crate::http::write::BodyStream;
use crate::observe::access::{self, Entry};
use crate::server::shard::ShardContext;

/// What one pass over the buffer did.
pub(crate) struct Batch {
    /// Bytes of input fully answered.
    pub(crate) consumed: usize,
    /// The connection must close once the output is sent.
    pub(crate) close: bool,
    /// A request was refused (its framing broken or over a limit): what
    /// the peer still sends is unread, so the close lingers.
    pub(crate) refused: bool,
    /// A streamed body to send after the output, and whether it is chunked.
    pub(crate) stream: Option<(BodyStream, bool)>,
}

/// Answers every complete request at the start of `input`, appending the
/// responses to `out`. Stops early after a request that closes the
/// connection or streams its body.
pub(crate) async fn serve_buffered<S>(
    shard: &ShardContext<S>,
    decoder: &mut Decoder,
    input: &mut [u8],
    out: &mut Vec<u8>,
    origin: Origin,
    budget: &mut u32,
) -> Batch {
    let started = Instant::now();
    let mut answered = 0;
    let batch = answer_all(
        shard,
        decoder,
        input,
        out,
        (origin, started),
        budget,
        &mut answered,
    )
    .await;
    if answered > 0 {
        shard.metrics.latency(started.elapsed(), answered);
    }
    batch
}

/// The body of [`serve_buffered`]; counts the requests it answers.
async fn answer_all<S>(
    shard: &ShardContext<S>,
    decoder: &mut Decoder,
    input: &mut [u8],
    out: &mut Vec<u8>,
    (origin, now): (Origin, Instant),
    budget: &mut u32,
    answered: &mut u64,
) -> Batch {
    let mut consumed = 0;
    let date = shard.date.now();
    let settings = shard.settings();
    loop {
        match decoder.decode(&mut input[consumed..]) {
            Ok(Decoded::Partial) => {
                return Batch {
                    consumed,
                    close: false,
                    refused: false,
                    stream: None,
                };
            }
            Err(error) => {
                shard.counters.count(error.into());
                let before = out.len();
                error_writer(shard, &settings.common_headers, out)
                    .send_error(error.status(), error.detail());
                log_refusal(
                    shard,
                    origin.peer,
                    error.status(),
                    out.len() - before,
                    &input[consumed..],
                );
                return Batch {
                    consumed,
                    close: true,
                    refused: true,
                    stream: None,
                };
            }
            Ok(Decoded::Complete(message)) => {
                let end = consumed + message.consumed;
                let message_bytes = &mut input[consumed..end];
                // The last request a connection may make is answered with close.
                *budget = budget.saturating_sub(1);
                // Only with request IDs on is the room for one filled.
                let mut room;
                let id: &[u8] = if settings.request_ids {
                    room = [0u8; 128];
                    let given = header(decoder.headers(), message_bytes, "x-request-id");
                    let len = shard.request_ids.assign(given, &mut room);
                    &room[..len]
                } else {
                    &[]
                };
                let logging = shard
                    .access
                    .as_ref()
                    .map(|log| (log, Instant::now(), out.len()));
                let facts = RequestContext {
                    origin,
                    now,
                    date,
                    may_continue: *budget > 0,
                    request_id: id,
                };
                let (keep_alive, stream, status, slot) = respond(
                    shard,
                    &settings,
                    decoder.headers(),
                    message_bytes,
                    message,
                    out,
                    facts,
                )
                .await;
                shard.metrics.request(slot, status);
                *answered += 1;
                if let Some((log, started, before)) = &logging {
                    let bytes = &input[consumed..end];
                    let entry = Logged {
                        headers: decoder.headers(),
                        bytes,
                        head: &message.head,
                        date: &date,
                        peer: origin.peer,
                    };
                    let elapsed = started.elapsed();
                    log.record(&entry.entry(status, out.len() - before, elapsed, id));
                }
                consumed = end;
                if !keep_alive || stream.is_some() {
                    return Batch {
                        consumed,
                        close: !keep_alive,
                        refused: false,
                        stream,
                    };
                }
            }
        }
    }
}

/// What `respond` needs to know beyond the request itself.
#[derive(Clone, Copy)]
pub(super) struct RequestContext<'a> {
    pub(super) origin: Origin,
    /// When the batch began: the rate limiter's clock.
    pub(super) now: Instant,
    pub(super) date: [u8; DATE_LEN],
    /// False for the last request the connection may make.
    pub(super) may_continue: bool,
    /// Echoed as `X-Request-ID` when not empty (the access log is on).
    pub(super) request_id: &'a [u8],
}

/// What the access log reads of one answered request.
struct Logged<'a> {
    headers: &'a [HeaderSpan],
    bytes: &'a [u8],
    head: &'a crate::http::parse::Head,
    date: &'a [u8; DATE_LEN],
    peer: Option<SocketAddr>,
}

impl<'a> Logged<'a> {
    fn entry(
        &self,
        status: Status,
        sent: usize,
        elapsed: std::time::Duration,
        id: &'a [u8],
    ) -> Entry<'a> {
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).unwrap_or("-");
        let field = |name| header(self.headers, self.bytes, name).map_or("-", text);
        Entry {
            time: text(self.date),
            remote: access::remote(self.peer),
            method: text(self.head.method_token.get(self.bytes)),
            target: target_str(self.bytes, self.head),
            version: if self.head.version == Version::Http10 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            status: status.code(),
            bytes: sent,
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            request_id: text(id),
            referer: field("referer"),
            user_agent: field("user-agent"),
        }
    }
}
