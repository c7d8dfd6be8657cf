//! One request to its response: the built-in endpoints first, then the
//! rate limiter, the router and the handler (a panic becomes a 500, a
//! wrong method a 405 with `Allow`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::task::Poll;
use std::time::Instant;

use super::builtin::{health, metrics, openapi, to_https};
use super::header;
use super::pipeline::RequestContext;
use crate::http::compress::Compressor;
use crate::http::incoming::Feed;
use crate::http::parse::{HeaderSpan, Message, Method, Version};
use crate::http::request::{Request, split_target, target_str};
use crate::http::status::Status;
use crate::http::write::{After, ResponseContext, ResponseWriter, UpstreamNote, push_decimal};
use crate::observe::metrics::{METRICS, UNMATCHED};
use crate::ratelimit::{ClientIdentity, Decision, RateLimitHeaders, Refusal};
use crate::route::cors::Verdict;
use crate::route::layer::{Next, finishes_within};
use crate::route::router::{Lookup, MAX_PARAMS};
use crate::route::service::Routed;
use crate::server::shard::{Settings, ShardContext};

/// Routes one request and writes its response; says how.
/// `feed` carries a body that arrives while the handler runs, with the
/// flag that is set until it has all arrived.
#[allow(clippy::too_many_arguments, reason = "one call site per kind of body")]
pub(super) async fn respond<S>(
    shard: &ShardContext<S>,
    settings: &Settings,
    headers: &[HeaderSpan],
    message_bytes: &mut [u8],
    message: Message,
    out: &mut Vec<u8>,
    facts: RequestContext<'_>,
    feed: Option<(Feed, &Cell<bool>)>,
) -> Answered {
    let RequestContext {
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
    // Cross-origin requests: a preflight is answered here, before any
    // route; the response to an allowed origin carries the allow fields.
    let cors = settings.cors.as_ref().and_then(|cors| {
        let from = header(headers, head_bytes, "origin")?;
        let preflight = head.method == Method::Options
            && header(headers, head_bytes, "access-control-request-method").is_some();
        Some((cors, from, cors.verdict(from, preflight)))
    });
    let allowed = match cors {
        Some((cors, from, Verdict::Allowed)) => Some(cors.allowed_fields(from)),
        _ => None,
    };
    let late = RateLimitHeaders::default();
    let (feed, body_open) = feed.unzip();
    let mut writer = ResponseWriter::new(out, context)
        .closing_when(&shard.draining)
        .closing_while_body_open(body_open)
        .with_common_headers(if origin.tls {
            &settings.tls_common_headers
        } else {
            &settings.common_headers
        })
        .with_late_headers(&late)
        .with_request_id(request_id)
        .with_cross_origin(allowed)
        .with_validation_status(settings.validation_status);
    let slot = if let Some((cors, from, Verdict::Preflight)) = cors {
        let requested = header(headers, head_bytes, "access-control-request-headers");
        cors.answer_preflight(from, requested, &mut writer);
        UNMATCHED
    } else if let Some(slot) = health(shard, &settings.health, path, &mut writer) {
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
    } else if openapi(settings.app.openapi.as_deref(), path, &mut writer) {
        UNMATCHED
    } else {
        let request = RoutedRequest {
            head_bytes,
            head,
            headers,
            peer,
            now,
            late: &late,
            request_id: std::str::from_utf8(request_id).unwrap_or_default(),
            settings,
            https: origin.tls,
            feed,
        };
        route(shard, request, body, &mut writer).await
    };
    let status = writer
        .status_sent()
        .unwrap_or(Status::INTERNAL_SERVER_ERROR);
    Answered {
        keep_alive: writer.keep_alive(),
        after: writer.take_after(),
        status,
        slot,
        upstream: writer.take_upstream(),
    }
}

/// How one request was answered.
pub(super) struct Answered {
    /// The connection stays open.
    pub(super) keep_alive: bool,
    /// A body stream or an upgrade follows the head.
    pub(super) after: Option<After>,
    pub(super) status: Status,
    /// The route's metrics slot.
    pub(super) slot: usize,
    /// A proxied request's upstream exchange.
    pub(super) upstream: Option<Box<UpstreamNote>>,
}

/// Routes a request to its handler (a panic becomes a 500); returns the
/// route's metrics slot.
async fn route<'w, S>(
    shard: &ShardContext<S>,
    facts: RoutedRequest<'w>,
    body: &mut [u8],
    writer: &mut ResponseWriter<'w>,
) -> usize {
    let RoutedRequest {
        head_bytes,
        head,
        headers,
        peer,
        now,
        late,
        request_id,
        settings,
        https,
        feed,
    } = facts;
    let (path, _) = split_target(target_str(head_bytes, &head));
    let mut params = [("", ""); MAX_PARAMS];
    let lookup = shard.app.routes.lookup(head.method, path, &mut params);
    let slot = match &lookup {
        Lookup::Found(routed, _) => routed.slot,
        _ => UNMATCHED,
    };
    let cookie_key = settings.cookie_key.as_ref();
    let app_settings = settings.app.settings.as_ref();
    compress(writer, compression_of(settings), slot, || {
        header(headers, head_bytes, "accept-encoding")
    });
    let client = ClientIdentity {
        peer,
        headers,
        bytes: head_bytes,
    };
    if let Some(refusal) = limit(shard, slot, &client, now, late).await {
        too_many_requests(writer, &refusal);
        return slot;
    }
    match lookup {
        Lookup::Found(routed, count) => {
            let mut request = Request::new(head_bytes, body, head, headers)
                .with_params(&params[..count])
                .with_origin(peer, shard.index)
                .with_request_id(request_id)
                .with_cookie_key(cookie_key)
                .with_app_settings(app_settings)
                .with_proxy(settings.app.proxy.as_ref(), https)
                .with_feed(feed);
            let limit = settings
                .app
                .route_timeouts
                .get(routed.slot)
                .copied()
                .flatten();
            match limit {
                Some(limit) => {
                    Box::pin(call_within(shard, routed, &mut request, writer, limit)).await;
                }
                None => call(shard, routed, &mut request, writer).await,
            }
            routed.slot
        }
        Lookup::MethodNotAllowed(methods) => {
            let allow = allow_list(methods);
            if let Some(custom) = &shard.app.method_not_allowed {
                // The app's own body; the status and `Allow` stay the RFC's.
                let mut request = Request::new(head_bytes, body, head, headers)
                    .with_origin(peer, shard.index)
                    .with_request_id(request_id)
                    .with_cookie_key(cookie_key)
                    .with_app_settings(app_settings);
                writer.set_status(Status::METHOD_NOT_ALLOWED);
                writer.insert_header("Allow", allow.as_bytes());
                call(shard, custom, &mut request, writer).await;
                return UNMATCHED;
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
            if let Some(fallback) = &shard.app.fallback {
                let mut request = Request::new(head_bytes, body, head, headers)
                    .with_origin(peer, shard.index)
                    .with_request_id(request_id)
                    .with_cookie_key(cookie_key)
                    .with_app_settings(app_settings);
                call(shard, fallback, &mut request, writer).await;
            } else {
                writer.send_error(Status::NOT_FOUND, "Not Found");
            }
            UNMATCHED
        }
    }
}

/// The `Allow` value of a path routed for `methods` (`HEAD` comes with
/// `GET`).
fn allow_list<T>(methods: &[(Method, T)]) -> String {
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
    allow
}

/// The compressor in force, whether routes compress by default, and
/// each route's own choice.
fn compression_of(settings: &Settings) -> Option<(&Compressor, bool, &[Option<bool>])> {
    let compressor = settings.compression.as_ref()?;
    Some((
        compressor,
        settings.compress_by_default,
        &settings.app.route_compress,
    ))
}

/// Compresses the response of the route in `slot` if it compresses, for
/// a client whose `Accept-Encoding` is `accept_encoding`.
fn compress<'w, 'h>(
    writer: &mut ResponseWriter<'w>,
    compression: Option<(&'w Compressor, bool, &[Option<bool>])>,
    slot: usize,
    accept_encoding: impl FnOnce() -> Option<&'h [u8]>,
) {
    if let Some((compressor, by_default, routes)) = compression
        && routes.get(slot).copied().flatten().unwrap_or(by_default)
    {
        writer.set_compression(compressor, compressor.choose(accept_encoding()));
    }
}

/// What `route` reads of a request besides its body.
struct RoutedRequest<'a> {
    head_bytes: &'a [u8],
    head: crate::http::parse::Head,
    headers: &'a [HeaderSpan],
    peer: Option<SocketAddr>,
    now: Instant,
    late: &'a RateLimitHeaders,
    request_id: &'a str,
    /// The cookie key, `[app]` settings, route timeouts, compression and
    /// proxy table in force.
    settings: &'a Settings,
    https: bool,
    feed: Option<Feed>,
}

/// 429 with `Retry-After` (the `RateLimit` fields are already set).
fn too_many_requests(writer: &mut ResponseWriter<'_>, refusal: &Refusal) {
    let mut seconds = Vec::with_capacity(20);
    push_decimal(&mut seconds, refusal.retry_after_secs);
    if refusal.unavailable {
        writer.send_with(
            Status::SERVICE_UNAVAILABLE,
            Some("application/json"),
            [("Retry-After", &seconds[..])],
            |out| {
                out.extend_from_slice(
                    b"{\"detail\":\"the rate limiter cannot decide (its Redis did not answer); retry in 1 s\"}",
                );
                Ok::<(), ()>(())
            },
        );
        return;
    }
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

/// The rate limiter's decision on a request to route `slot`.
async fn limit<S>(
    shard: &ShardContext<S>,
    slot: usize,
    client: &ClientIdentity<'_>,
    now: std::time::Instant,
    late: &RateLimitHeaders,
) -> Option<Refusal> {
    let decision = shard.limiter.borrow().check(slot, client, now, late);
    match decision {
        Decision::Pass => None,
        Decision::Refuse(refusal) => Some(refusal),
        // A fleet-wide policy: the shard's Redis link answers (pipelined
        // with the shard's other checks) or the policy's fail mode does.
        Decision::Ask(ask) => {
            let (remote, policy, key) = shard.limiter.borrow().remote(&ask)?;
            // Boxed: a rare path that would otherwise enlarge every request's future.
            let answer = Box::pin(remote.check(&policy, key)).await.ok();
            shard.limiter.borrow().settle(&ask, answer, client, late)
        }
    }
}

/// [`call`] under the route's own request timeout (`timeouts.routes`):
/// past it, the handler's future is dropped and the answer is a 504.
async fn call_within<S>(
    shard: &ShardContext<S>,
    routed: &Routed<S>,
    request: &mut Request<'_>,
    writer: &mut ResponseWriter<'_>,
    limit: std::time::Duration,
) {
    if !finishes_within(limit, call(shard, routed, request, writer)).await {
        shard
            .counters
            .count(crate::observe::counters::Rejection::RequestTimeout);
        writer.reset();
        writer.send_error(
            Status::GATEWAY_TIMEOUT,
            "the request took longer than this route allows (timeouts.routes)",
        );
    }
}

/// Runs a routed handler inside its layers; a panic anywhere in the chain
/// becomes a 500 (what was written is discarded).
async fn call<S>(
    shard: &ShardContext<S>,
    routed: &Routed<S>,
    request: &mut Request<'_>,
    writer: &mut ResponseWriter<'_>,
) {
    shard.vitals.started(routed.slot);
    // With request IDs on, every line the handler logs carries the
    // request's method, route and ID.
    let span = request.request_id().map(|id| {
        let route = shard.app.route_name(routed.slot);
        tracing::info_span!(
            "request",
            method = request.method_str(),
            route,
            request_id = id
        )
    });
    let completed = {
        let chain = Next::new(
            &routed.layers,
            &*routed.handler,
            &shard.state,
            &shard.blocks,
        );
        let mut future = std::pin::pin!(chain.run(request, writer));
        futures_lite::future::poll_fn(|cx| {
            let _entered = span.as_ref().map(tracing::Span::enter);
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
            path = request.path(),
            "handler panicked; answered 500"
        );
        writer.reset();
        writer.send_error(Status::INTERNAL_SERVER_ERROR, "Internal Server Error");
    } else if !writer.is_written() {
        writer.send_error(Status::INTERNAL_SERVER_ERROR, "handler wrote no response");
    }
}
