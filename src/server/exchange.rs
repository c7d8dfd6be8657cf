//! One exchange on a connection, without the socket: decode every complete
//! request in a buffer, answer the built-in health routes, route the rest
//! to their handlers (a panic becomes a 500), and encode the responses.
//! The connection loop and [`LocalService`](super::LocalService) drive it.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::task::Poll;
use std::time::Instant;

use crate::config::HealthConfig;
use crate::http::date::DATE_LEN;
use crate::http::parse::{Decoded, Decoder, HeaderSpan, Message, Method, Version};
use crate::http::request::{Request, split_target, target_str};
use crate::http::status::Status;
use crate::http::write::{BodyStream, ResponseContext, ResponseWriter, push_decimal};
use crate::limit::{ClientFacts, RateLimitHeaders, Refusal};
use crate::observe::access::{self, Entry};
use crate::observe::metrics::{LIVENESS, METRICS, READINESS, UNMATCHED};
use crate::route::router::{Lookup, MAX_PARAMS};
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
                error_writer(shard, &settings.fixed_headers, out)
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
                let logging = shard.access.as_ref().map(|log| {
                    let given = header(decoder.headers(), message_bytes, "x-request-id");
                    let mut id = [0u8; 128];
                    let len = log.request_id(given, &mut id);
                    (log, Instant::now(), id, len, out.len())
                });
                let facts = Facts {
                    origin,
                    now,
                    date,
                    may_continue: *budget > 0,
                    request_id: logging
                        .as_ref()
                        .map_or(&[][..], |(_, _, id, len, _)| &id[..*len]),
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
                if let Some((log, started, id, len, before)) = &logging {
                    let bytes = &input[consumed..end];
                    let entry = Logged {
                        headers: decoder.headers(),
                        bytes,
                        head: &message.head,
                        date: &date,
                        peer: origin.peer,
                    };
                    let elapsed = started.elapsed();
                    log.record(&entry.entry(status, out.len() - before, elapsed, &id[..*len]));
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

/// Answers the built-in health routes; `None` for any other path, else
/// the route's metrics slot.
fn health<S>(
    shard: &ShardContext<S>,
    health: &HealthConfig,
    path: &str,
    writer: &mut ResponseWriter<'_>,
) -> Option<usize> {
    const JSON: Option<&str> = Some("application/json");
    if !health.liveness_path.is_empty() && path == health.liveness_path {
        writer.send(Status::OK, JSON, [], br#"{"status":"ok"}"#);
        return Some(LIVENESS);
    }
    if health.readiness_path.is_empty() || path != health.readiness_path {
        return None;
    }
    if shard.draining.get() {
        writer.send(
            Status::SERVICE_UNAVAILABLE,
            JSON,
            [],
            br#"{"status":"draining"}"#,
        );
        return Some(READINESS);
    }
    let failing: Vec<&str> = shard
        .app
        .readiness
        .iter()
        .filter(|(_, check)| !check(&shard.state))
        .map(|(name, _)| name.as_str())
        .collect();
    if failing.is_empty() {
        writer.send(Status::OK, JSON, [], br#"{"status":"ready"}"#);
    } else {
        writer.send_with(Status::SERVICE_UNAVAILABLE, JSON, [], |out| {
            simd_json::serde::to_writer(
                out,
                &Unready {
                    status: "unready",
                    failing,
                },
            )
        });
    }
    Some(READINESS)
}

/// Answers the metrics route: every shard's counts, collected by message
/// on a blocking thread while this shard goes on serving (it answers its
/// own part like any other shard).
async fn metrics<S>(shard: &ShardContext<S>, writer: &mut ResponseWriter<'_>) {
    let text = match &shard.scrape {
        Some(scrape) => {
            let scrape = std::sync::Arc::clone(scrape);
            super::blocking::blocking(move || scrape()).await
        }
        None => crate::observe::metrics::render(
            &shard.app.route_labels(),
            &[crate::observe::metrics::Scraped {
                snapshot: Some(shard.snapshot()),
                supervision: crate::observe::metrics::Supervision::default(),
            }],
        ),
    };
    writer.send(
        Status::OK,
        Some("text/plain; version=0.0.4; charset=utf-8"),
        [],
        text.as_bytes(),
    );
}

#[derive(serde::Serialize)]
struct Unready<'a> {
    status: &'static str,
    failing: Vec<&'a str>,
}

/// What `respond` needs to know beyond the request itself.
#[derive(Clone, Copy)]
struct Facts<'a> {
    origin: Origin,
    /// When the batch began: the rate limiter's clock.
    now: Instant,
    date: [u8; DATE_LEN],
    /// False for the last request the connection may make.
    may_continue: bool,
    /// Echoed as `X-Request-ID` when not empty (the access log is on).
    request_id: &'a [u8],
}

/// The value of the first header field named `name`.
fn header<'b>(headers: &[HeaderSpan], bytes: &'b [u8], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.get(bytes).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.get(bytes))
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

/// Routes one request and writes its response. Returns whether the
/// connection stays open, and a body stream if the response has one.
async fn respond<S>(
    shard: &ShardContext<S>,
    settings: &Settings,
    headers: &[HeaderSpan],
    message_bytes: &mut [u8],
    message: Message,
    out: &mut Vec<u8>,
    facts: Facts<'_>,
) -> (bool, Option<(BodyStream, bool)>, Status, usize) {
    let Facts {
        origin,
        now,
        date,
        may_continue,
        request_id,
    } = facts;
    let peer = origin.peer;
    let head = message.head;
    let (head_bytes, rest) = message_bytes.split_at_mut(head.len);
    let head_bytes: &[u8] = head_bytes;
    let body = &mut rest[..message.body.1 - head.len];
    let (path, _) = split_target(target_str(head_bytes, &head));
    let context = ResponseContext {
        date,
        head_request: head.method == Method::Head,
        keep_alive: head.keep_alive && may_continue,
        http10: head.version == Version::Http10,
    };
    let late = RateLimitHeaders::default();
    let mut writer = ResponseWriter::new(out, context)
        .closing_when(&shard.draining)
        .with_fixed_headers(if origin.tls {
            &settings.tls_fixed_headers
        } else {
            &settings.fixed_headers
        })
        .with_late_headers(&late)
        .with_request_id(request_id);
    let slot = if let Some(slot) = health(shard, &settings.health, path, &mut writer) {
        slot
    } else if let Some(port) = origin.redirect {
        to_https(&mut writer, headers, head_bytes, &head, port);
        UNMATCHED
    } else if !settings.metrics_path.is_empty() && path == settings.metrics_path {
        let allowed = peer.is_none_or(|peer| {
            settings
                .metrics_allow
                .iter()
                .any(|block| block.contains(peer.ip()))
        });
        if allowed {
            // Boxed: a rare path that would otherwise enlarge every request's future.
            Box::pin(metrics(shard, &mut writer)).await;
        } else {
            writer.send_error(
                Status::FORBIDDEN,
                "metrics are served only to the addresses in metrics.allow",
            );
        }
        METRICS
    } else {
        let request = RouteFacts {
            head_bytes,
            head,
            headers,
            peer,
            now,
            late: &late,
        };
        route(shard, request, body, &mut writer).await
    };
    let status = writer
        .status_sent()
        .unwrap_or(Status::INTERNAL_SERVER_ERROR);
    (writer.keep_alive(), writer.take_stream(), status, slot)
}

/// Routes a request to its handler (a panic becomes a 500); returns the
/// route's metrics slot.
async fn route<S>(
    shard: &ShardContext<S>,
    facts: RouteFacts<'_>,
    body: &mut [u8],
    writer: &mut ResponseWriter<'_>,
) -> usize {
    let RouteFacts {
        head_bytes,
        head,
        headers,
        peer,
        now,
        late,
    } = facts;
    let (path, _) = split_target(target_str(head_bytes, &head));
    let mut params = [("", ""); MAX_PARAMS];
    let lookup = shard.app.routes.lookup(head.method, path, &mut params);
    let slot = match &lookup {
        Lookup::Found(routed, _) => routed.slot,
        _ => UNMATCHED,
    };
    let client = ClientFacts {
        peer,
        headers,
        bytes: head_bytes,
    };
    let refusal = shard.limiter.borrow().check(slot, &client, now, late);
    if let Some(refusal) = refusal {
        too_many_requests(writer, &refusal);
        return slot;
    }
    match lookup {
        Lookup::Found(routed, count) => {
            shard.beacon.started(routed.slot);
            let mut request = Request::new(head_bytes, body, head, headers)
                .with_params(&params[..count])
                .with_origin(peer, shard.index);
            let completed = {
                let mut future =
                    std::pin::pin!(routed.handler.call(&mut request, &shard.state, writer));
                futures_lite::future::poll_fn(|cx| {
                    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                        Ok(Poll::Ready(())) => Poll::Ready(true),
                        Ok(Poll::Pending) => Poll::Pending,
                        Err(_) => Poll::Ready(false),
                    }
                })
                .await
            };
            if !completed {
                shard.metrics.panicked();
                let route = shard.app.route_labels()[routed.slot].route.clone();
                tracing::error!(
                    shard = shard.index,
                    route,
                    path,
                    "handler panicked; answered 500"
                );
                writer.reset();
                writer.send_error(Status::INTERNAL_SERVER_ERROR, "Internal Server Error");
            } else if !writer.is_written() {
                writer.send_error(Status::INTERNAL_SERVER_ERROR, "handler wrote no response");
            }
            routed.slot
        }
        Lookup::MethodNotAllowed(methods) => {
            let mut allow = String::new();
            for (method, _) in methods {
                if !allow.is_empty() {
                    allow.push_str(", ");
                }
                allow.push_str(method.as_str());
                if *method == Method::Get && !methods.iter().any(|(m, _)| *m == Method::Head) {
                    allow.push_str(", HEAD");
                }
            }
            writer.send_with(
                Status::METHOD_NOT_ALLOWED,
                Some("application/json"),
                [("Allow", allow.as_bytes())],
                |out| {
                    out.extend_from_slice(br#"{"detail":"Method Not Allowed"}"#);
                    Ok::<(), ()>(())
                },
            );
            UNMATCHED
        }
        Lookup::NotFound => {
            writer.send_error(Status::NOT_FOUND, "Not Found");
            UNMATCHED
        }
    }
}

/// Where a connection came from and what its listener is for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub(crate) peer: Option<SocketAddr>,
    /// Over TLS: responses carry HSTS.
    pub(crate) tls: bool,
    /// A redirect listener: everything but the health routes is answered
    /// 301 to HTTPS on this port.
    pub(crate) redirect: Option<u16>,
}

impl Origin {
    /// A connection from `peer` on a listener for `role`.
    pub(crate) fn of(peer: Option<SocketAddr>, role: crate::server::Role) -> Self {
        use crate::server::Role;
        Self {
            peer,
            tls: role == Role::Tls,
            redirect: match role {
                Role::Redirect(port) => Some(port),
                _ => None,
            },
        }
    }
}

/// 301 to the same host and target over HTTPS.
fn to_https(
    writer: &mut ResponseWriter<'_>,
    headers: &[HeaderSpan],
    head_bytes: &[u8],
    head: &crate::http::parse::Head,
    port: u16,
) {
    let host = header(headers, head_bytes, "host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("localhost");
    // The name without its port ("[::1]:80" → "[::1]", "a.example:80" → "a.example").
    let name = match host.rfind(':') {
        Some(at) if !host[at..].contains(']') => &host[..at],
        _ => host,
    };
    let target = target_str(head_bytes, head);
    let location = if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    };
    writer.send_with(
        Status::MOVED_PERMANENTLY,
        Some("application/json"),
        [("Location", location.as_bytes())],
        |out| {
            simd_json::serde::to_writer(
                out,
                &Redirected {
                    detail: "use HTTPS",
                    location: &location,
                },
            )
        },
    );
}

#[derive(serde::Serialize)]
struct Redirected<'a> {
    detail: &'static str,
    location: &'a str,
}

/// What `route` reads of a request besides its body.
struct RouteFacts<'a> {
    head_bytes: &'a [u8],
    head: crate::http::parse::Head,
    headers: &'a [HeaderSpan],
    peer: Option<SocketAddr>,
    now: Instant,
    late: &'a RateLimitHeaders,
}

/// 429 with `Retry-After` (the `RateLimit` fields are already set).
fn too_many_requests(writer: &mut ResponseWriter<'_>, refusal: &Refusal) {
    let mut seconds = Vec::with_capacity(20);
    push_decimal(&mut seconds, refusal.retry_after_secs);
    writer.send_with(
        Status::TOO_MANY_REQUESTS,
        Some("application/json"),
        [("Retry-After", &seconds[..])],
        |out| {
            out.extend_from_slice(b"{\"detail\":\"Too Many Requests: retry in ");
            out.extend_from_slice(&seconds);
            out.extend_from_slice(b" s\"}");
            Ok::<(), ()>(())
        },
    );
}

/// Writes a refusal to the access log, when it is on (rate-limited per
/// shard; see [`AccessLog::refusal`](crate::observe::access::AccessLog::refusal)).
pub(crate) fn log_refusal<S>(
    shard: &ShardContext<S>,
    peer: Option<SocketAddr>,
    status: Status,
    bytes: usize,
    input: &[u8],
) {
    if let Some(log) = &shard.access {
        let date = shard.date.now();
        log.refusal(&access::Refused {
            peer,
            status: status.code(),
            bytes,
            time: std::str::from_utf8(&date).unwrap_or("-"),
            input,
        });
    }
}

/// A writer for an error response on `shard`: it closes the connection and
/// carries the shard's security headers, like every other response.
pub(crate) fn error_writer<'a, S>(
    shard: &ShardContext<S>,
    fixed_headers: &'a [u8],
    out: &'a mut Vec<u8>,
) -> ResponseWriter<'a> {
    let context = ResponseContext {
        date: shard.date.now(),
        head_request: false,
        keep_alive: false,
        http10: false,
    };
    ResponseWriter::new(out, context).with_fixed_headers(fixed_headers)
}
