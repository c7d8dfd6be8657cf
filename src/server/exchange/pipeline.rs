//! The pipelined decode loop: every complete request at the start of the
//! buffer, one after another, each answered and logged.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

use super::dispatch::{Answered, respond};
use super::upload;
use super::{Origin, error_writer, header, log_refusal};
use crate::http::date::DATE_LEN;
use crate::http::incoming;
use crate::http::parse::{
    Decoded, Decoder, Framing, Head, HeaderSpan, Message, ParseError, Version,
};
use crate::http::request::{split_target, target_str};
use crate::http::status::Status;
use crate::http::write::After;
use crate::observe::access::{self, Entry};
use crate::route::service::BodyRule;
use crate::server::connection::Wire;
use crate::server::shard::{Settings, ShardContext};

/// What one pass over the buffer did.
pub(crate) struct Batch {
    /// Bytes of input fully answered.
    pub(crate) consumed: usize,
    /// The connection must close once the output is sent.
    pub(crate) close: bool,
    /// A request was refused (its framing broken or over a limit): what
    /// the peer still sends is unread, so the close lingers.
    pub(crate) refused: bool,
    /// A streamed body to send after the output (and how it is framed),
    /// or the upgrade the connection is handed to.
    pub(crate) stream: Option<After>,
}

/// Answers every complete request at the start of `input`, appending the
/// responses to `out`. Stops early after a request that closes the
/// connection or streams its body. With `wire`, a request whose route
/// reads its body while it arrives is answered as soon as its head is in.
pub(crate) async fn serve_buffered<S>(
    shard: &ShardContext<S>,
    decoder: &mut Decoder,
    input: &mut [u8],
    out: &mut Vec<u8>,
    origin: Origin,
    budget: &mut u32,
    mut wire: Option<Wire<'_, '_>>,
) -> Batch {
    // One async fn, not a wrapper awaiting the loop: each level of
    // awaited async fn copies the whole of the future below it once per
    // call, and this one holds the handler's.
    let mut latency = Latency {
        shard,
        started: Instant::now(),
        answered: 0,
    };
    let mut consumed = 0;
    let date = shard.date.now();
    let settings = shard.settings();
    let at = Exchange {
        shard,
        settings: &settings,
        origin,
        now: latency.started,
        date,
    };
    loop {
        let outcome = decoder.decode(&mut input[consumed..]);
        let message = match outcome {
            Ok(Decoded::Partial) => {
                // A body still arriving: its route may refuse it now, or
                // read it as it comes.
                if shard.app.body_rules
                    && let Some((batch, answered_it)) = Box::pin(at.arriving(
                        decoder,
                        &mut input[consumed..],
                        consumed,
                        out,
                        budget,
                        &mut wire,
                    ))
                    .await
                {
                    latency.answered += u64::from(answered_it);
                    return batch;
                }
                return Batch {
                    consumed,
                    close: false,
                    refused: false,
                    stream: None,
                };
            }
            Err(error) => return at.refuse(error, out, &input[consumed..], consumed),
            Ok(Decoded::Complete(message)) => message,
        };
        let end = consumed + message.consumed;
        if shard.app.body_rules && message.body.1 > message.body.0 {
            let bytes = &input[consumed..end];
            let rule = at.body_rule(bytes, &message.head);
            if (message.body.1 - message.body.0) as u64 > rule.limit {
                return at.refuse(ParseError::BodyTooLarge, out, bytes, consumed);
            }
        }
        let (keep_alive, stream, _) = at
            .answer_one(
                decoder,
                &mut input[consumed..end],
                message,
                out,
                budget,
                None,
            )
            .await;
        latency.answered += 1;
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

/// Records the latency of the requests a pass answered when the pass
/// ends (returns, or is dropped with its handler on a timeout).
struct Latency<'a, S> {
    shard: &'a ShardContext<S>,
    started: Instant,
    answered: u64,
}

impl<S> Drop for Latency<'_, S> {
    fn drop(&mut self) {
        if self.answered > 0 {
            self.shard
                .metrics
                .latency(self.started.elapsed(), self.answered);
        }
    }
}

/// What every exchange of one pass shares.
struct Exchange<'a, S> {
    shard: &'a ShardContext<S>,
    settings: &'a Settings,
    origin: Origin,
    now: Instant,
    date: [u8; DATE_LEN],
}

/// A body to read while its handler runs.
struct StreamedBody<'w, 'd> {
    wire: Wire<'w, 'd>,
    limit: u64,
}

impl<S> Exchange<'_, S> {
    /// How the route of the request whose head `head` is in `bytes`
    /// takes its body.
    fn body_rule(&self, bytes: &[u8], head: &Head) -> BodyRule {
        let (path, _) = split_target(target_str(bytes, head));
        self.shard
            .app
            .body_rule(head.method, path, self.settings.limits.max_body_bytes)
    }

    /// A request whose body is still arriving in `input` (`consumed`
    /// bytes into the pass): refused now when its route's limit says so,
    /// or answered now, its body read as it comes, when its route streams
    /// it and `wire` is there. `None` to wait for the rest as usual; else
    /// the batch and whether a request was answered.
    async fn arriving(
        &self,
        decoder: &mut Decoder,
        input: &mut [u8],
        consumed: usize,
        out: &mut Vec<u8>,
        budget: &mut u32,
        wire: &mut Option<Wire<'_, '_>>,
    ) -> Option<(Batch, bool)> {
        let (head, so_far) = decoder.pending()?;
        let rule = self.body_rule(input, &head);
        let over = match head.framing {
            Framing::Length(len) => len > rule.limit,
            _ => so_far > rule.limit,
        };
        if over {
            return Some((
                self.refuse(ParseError::BodyTooLarge, out, input, consumed),
                false,
            ));
        }
        if !rule.streams {
            return None;
        }
        let wire = wire.take()?;
        let message = Message {
            head,
            body: (head.len, head.len),
            consumed: input.len(),
        };
        let streamed = StreamedBody {
            wire,
            limit: rule.limit,
        };
        // The pump reads the body from here on.
        decoder.hand_over_body();
        let (keep_alive, stream, finished) = self
            .answer_one(decoder, input, message, out, budget, Some(streamed))
            .await;
        let batch = Batch {
            consumed: consumed + input.len(),
            close: !keep_alive,
            // A body not read to its end may still be arriving.
            refused: !finished,
            stream,
        };
        Some((batch, true))
    }

    /// Refuses the request at the start of `bytes` (`consumed` bytes into
    /// the pass) for `error`; the connection closes.
    fn refuse(&self, error: ParseError, out: &mut Vec<u8>, bytes: &[u8], consumed: usize) -> Batch {
        let shard = self.shard;
        shard.counters.count(error.into());
        let before = out.len();
        error_writer(shard, &self.settings.common_headers, out)
            .send_error(error.status(), error.detail());
        log_refusal(
            shard,
            self.origin.peer,
            error.status(),
            out.len() - before,
            bytes,
        );
        Batch {
            consumed,
            close: true,
            refused: true,
            stream: None,
        }
    }

    /// Answers the request in `message_bytes` and logs it. Returns whether
    /// the connection stays open, the response's body stream, and whether
    /// a streamed request body was read to its end.
    async fn answer_one(
        &self,
        decoder: &Decoder,
        message_bytes: &mut [u8],
        message: Message,
        out: &mut Vec<u8>,
        budget: &mut u32,
        streamed: Option<StreamedBody<'_, '_>>,
    ) -> (bool, Option<After>, bool) {
        let (shard, settings) = (self.shard, self.settings);
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
            origin: self.origin,
            now: self.now,
            date: self.date,
            may_continue: *budget > 0,
            request_id: id,
        };
        let (head_len, head) = (message.head.len, message.head);
        let (answer, finished) = match streamed {
            None => (
                respond(
                    shard,
                    settings,
                    decoder.headers(),
                    message_bytes,
                    message,
                    out,
                    facts,
                    None,
                )
                .await,
                true,
            ),
            Some(StreamedBody { wire, limit }) => {
                let open = Cell::new(true);
                let (sender, feed) = incoming::feed();
                let arrived = message_bytes[head_len..].to_vec();
                let pump = upload::pump(
                    wire,
                    sender,
                    arrived,
                    upload::Shape {
                        framing: head.framing,
                        limit,
                        expects_continue: head.expect_continue,
                        limits: decoder.limits(),
                    },
                    (settings.rules.body, settings.rules.request),
                    &open,
                );
                let respond = respond(
                    shard,
                    settings,
                    decoder.headers(),
                    &mut message_bytes[..head_len],
                    message,
                    out,
                    facts,
                    Some((feed, &open)),
                );
                // Boxed: rare, and twice the size of the usual answer.
                let answer = Box::pin(upload::alongside(respond, pump)).await;
                (answer, !open.get())
            }
        };
        let Answered {
            keep_alive,
            after: stream,
            status,
            slot,
            upstream,
        } = answer;
        shard.metrics.request(slot, self.origin.http2, status);
        if let Some((log, started, before)) = &logging {
            let entry = Logged {
                headers: decoder.headers(),
                bytes: message_bytes,
                head: &head,
                date: &self.date,
                peer: self.origin.peer,
                http2: self.origin.http2,
            };
            let elapsed = started.elapsed();
            let line = entry
                .entry(status, out.len() - before, elapsed, id)
                .with_upstream(upstream.as_deref());
            log.record(&line);
        }
        (keep_alive && finished, stream, finished)
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
    http2: bool,
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
            version: if self.http2 {
                "HTTP/2.0"
            } else if self.head.version == Version::Http10 {
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
            upstream_addr: None,
            upstream_connect_us: None,
            upstream_header_us: None,
            upstream_response_us: None,
        }
    }
}
