//! A reverse proxy in front of an existing app (nginx's `proxy_pass`):
//! routes whose handler forwards the request to a server of an upstream
//! and relays the answer, both bodies streamed with backpressure.
//!
//! Per shard, each upstream has its own keep-alive pools, balancer state
//! and health (see [`state`]); a request goes to the server the balancer
//! picks, and to the next one after a connect failure — or, for an
//! idempotent request whose body can be sent again, after a failure with no
//! response — up to the upstream's `next_upstream_tries`. The request's
//! hop-by-hop fields are dropped and the forwarding fields set
//! ([`headers`]); the response is re-framed for the client, and one that
//! breaks mid-body reaches the client cut off, never complete-looking.
//! `Upgrade: websocket` (or any upgrade the route allows) becomes a tunnel
//! ([`tunnel`]).
//!
//! ```no_run
//! use percore::{App, Config};
//! use percore::proxy::Upstream;
//!
//! let app = App::new().proxy(
//!     "/api/",
//!     Upstream::new("app").server("127.0.0.1:8000").server("127.0.0.1:8001"),
//! );
//! # let _ = app;
//! ```

mod balance;
pub(crate) mod headers;
pub(crate) mod state;
mod tunnel;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::StreamExt;
use smallbox::smallbox;

use crate::client::forward::{self, Failed};
use crate::client::{ClientError, ErrorKind};
use crate::config::{Cidr, ProxyTable, RouteConfig, ServerEntry, UpstreamConfig};
use crate::http::describe::Operation;
use crate::http::incoming::BodyError;
use crate::http::parse::Method;
use crate::http::request::Request;
use crate::http::status::Status;
use crate::http::write::{Cut, ResponseWriter};
use crate::route::handler::{ErasedHandler, HandlerFuture};
use crate::route::service::SharedHandler;
use state::{Failure, Server, ShardUpstream};

/// An upstream built in code, for [`App::proxy`](crate::App::proxy): the
/// same settings as an `[[upstream]]` table.
#[derive(Clone, Debug)]
pub struct Upstream {
    config: UpstreamConfig,
}

impl Upstream {
    /// An upstream named `name` with no servers yet.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self {
            config: UpstreamConfig {
                name: name.to_owned(),
                ..UpstreamConfig::default()
            },
        }
    }

    /// An upstream with every setting given.
    #[must_use]
    pub fn from_config(config: UpstreamConfig) -> Self {
        Self { config }
    }

    /// Adds a server: `host:port` or `unix:/path`.
    #[must_use]
    pub fn server(mut self, address: &str) -> Self {
        self.config
            .servers
            .push(ServerEntry::Address(address.to_owned()));
        self
    }

    /// Sets how a server is picked: `round_robin`, `least_conn`,
    /// `ip_hash` or `random_two`.
    #[must_use]
    pub fn balance(mut self, how: &str) -> Self {
        how.clone_into(&mut self.config.balance);
        self
    }

    /// Checks each server with `GET path` every `interval`.
    #[must_use]
    pub fn health_check(mut self, path: &str, interval: Duration) -> Self {
        path.clone_into(&mut self.config.health.path);
        self.config.health.interval_secs = interval.as_secs().max(1);
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Every problem of these settings (an empty list when they are fine).
    pub(crate) fn problems(&self, route: &RouteConfig) -> Vec<String> {
        let mut problems = Vec::new();
        crate::config::proxy_problems(
            std::slice::from_ref(&self.config),
            std::slice::from_ref(route),
            &[],
            &mut |ok: bool, key: &str, message: &str| {
                if !ok {
                    problems.push(format!("{key}: {message}"));
                }
            },
        );
        problems
    }
}

/// Makes this shard's upstreams of `table` now, so their health checks
/// start before the first request.
pub(crate) fn warm(table: &ProxyTable) {
    for upstream in &table.upstreams {
        state::upstream(upstream);
    }
}

/// Where a route's upstream settings come from.
#[derive(Debug)]
enum Source {
    /// Given in code: fixed for the process's life.
    Fixed(Arc<UpstreamConfig>),
    /// An `[[upstream]]` of the configuration in force (reloadable).
    Named(String),
}

/// A proxied route, ready to serve.
#[derive(Debug)]
pub(crate) struct ProxyRoute {
    source: Source,
    /// The prefix taken off the path.
    strip: Option<String>,
    host: String,
    request_set: Vec<(String, String)>,
    response_set: Vec<(String, String)>,
    upgrades: Vec<String>,
    buffering: Option<u64>,
    tunnel_idle: Duration,
    via: bool,
    error_page: Option<Bytes>,
}

impl ProxyRoute {
    /// The route `route` says, to the upstream given in code or (`None`)
    /// to the `[[upstream]]` it names.
    ///
    /// # Errors
    /// The error page cannot be read.
    pub(crate) fn new(
        route: &RouteConfig,
        upstream: Option<UpstreamConfig>,
    ) -> Result<Self, String> {
        let error_page = if route.error_page.is_empty() {
            None
        } else {
            Some(Bytes::from(std::fs::read(&route.error_page).map_err(
                |e| format!("the error page {} cannot be read: {e}", route.error_page),
            )?))
        };
        let pairs = |map: &std::collections::BTreeMap<String, String>| {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Ok(Self {
            source: match upstream {
                Some(config) => Source::Fixed(Arc::new(config)),
                None => Source::Named(route.proxy.clone()),
            },
            strip: route.strip().map(str::to_owned),
            host: route.host.clone(),
            request_set: pairs(&route.request_headers),
            response_set: pairs(&route.response_headers),
            upgrades: route
                .upgrade
                .iter()
                .map(|u| u.to_ascii_lowercase())
                .collect(),
            buffering: route.buffering.then_some(route.buffer_bytes),
            tunnel_idle: Duration::from_secs(route.tunnel_idle_secs),
            via: route.via,
            error_page,
        })
    }

    /// The handler that serves it.
    pub(crate) fn handler(self) -> ProxyHandler {
        ProxyHandler(Arc::new(self))
    }
}

/// The handler of a proxied route.
#[derive(Clone, Debug)]
pub(crate) struct ProxyHandler(Arc<ProxyRoute>);

impl<S: 'static> ErasedHandler<S> for ProxyHandler {
    fn call<'a>(
        &'a self,
        request: &'a mut Request<'_>,
        _: &'a S,
        writer: &'a mut ResponseWriter<'_>,
    ) -> HandlerFuture<'a> {
        // Boxed: a proxied exchange's future is large.
        smallbox!(Box::pin(proxy(&self.0, request, writer)))
    }

    fn streams_body(&self) -> bool {
        true
    }

    fn describe(&self, _: &mut Operation) {}
}

/// Methods whose request may be sent twice with the effect of once.
fn idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
    )
}

/// How a request's body goes upstream.
enum Outgoing {
    None,
    /// Arrived whole with the head: may be sent again.
    Whole(Bytes),
    /// Arriving: sent once, as it comes.
    Streamed {
        length: Option<u64>,
        body: crate::route::body::Body,
    },
    /// Already taken by a try.
    Spent,
}

/// Far enough ahead to be no limit: the route's and the request's own
/// timeouts end a proxied request, and a streamed body has none.
const NO_DEADLINE: Duration = Duration::from_hours(30 * 24);

/// What one request reads while it is tried on its servers.
struct Exchange<'r> {
    config: Arc<UpstreamConfig>,
    upstream: Rc<ShardUpstream>,
    trusted: &'r [Cidr],
    method: Method,
    upgrade: Option<Vec<u8>>,
    outgoing: Outgoing,
    /// The body can be sent again (it arrived whole, or there is none).
    replayable: bool,
    /// Why the client's body failed, if it did while it was sent.
    body_error: Rc<std::cell::RefCell<Option<BodyError>>>,
    /// Tries again on a new connection after a stale kept-alive one.
    stale_retries: u8,
}

/// How one try on one server ended.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once per try; the answer is the common case"
)]
enum Tried {
    /// A response head, and the timing of the exchange.
    Answered {
        response: crate::client::ClientResponse,
        server: Rc<Server>,
        in_flight: state::InFlight,
        connect: Option<Duration>,
        header: Duration,
    },
    /// Failed in a way the next server may be tried after.
    Again,
    /// A reused connection was stale: the same server again, anew.
    Stale,
    /// The answer is an error made here.
    Failed(Status, String),
    /// The client's body failed: that is the answer.
    BodyFailed(BodyError),
}

/// Forwards `request` to its upstream and writes the answer.
async fn proxy(route: &ProxyRoute, request: &mut Request<'_>, writer: &mut ResponseWriter<'_>) {
    let table = request
        .proxy_table()
        .and_then(|t| t.downcast_ref::<ProxyTable>());
    let config = match &route.source {
        Source::Fixed(config) => Arc::clone(config),
        Source::Named(name) => match table.and_then(|t| t.upstream(name)) {
            Some(config) => Arc::clone(config),
            None => {
                return writer.send_error(
                    Status::BAD_GATEWAY,
                    "the route's upstream is not in the configuration",
                );
            }
        },
    };
    let trusted: &[Cidr] = table.map_or(&[], |t| &t.trusted);
    let upstream = state::upstream(&config);
    let outgoing = outgoing(request);
    let mut exchange = Exchange {
        replayable: !matches!(outgoing, Outgoing::Streamed { .. }),
        outgoing,
        upgrade: headers::upgrade(request.headers(), &route.upgrades).map(<[u8]>::to_vec),
        method: request.method(),
        trusted,
        upstream,
        config,
        body_error: Rc::default(),
        stale_retries: 0,
    };
    let client_ip = request.peer_addr().map(|p| {
        crate::ratelimit::client_ip(
            p.ip(),
            trusted,
            request.header("forwarded"),
            request.header("x-forwarded-for"),
        )
    });
    let servers = exchange.upstream.servers.len();
    let max_tries = match exchange.config.next_upstream_tries {
        0 => servers,
        n => (n as usize).min(servers),
    };
    let mut tried: Vec<usize> = Vec::new();
    let started = Instant::now();
    loop {
        let Some(at) = exchange.upstream.pick(client_ip, &tried) else {
            let detail = format!(
                "no server of upstream {} is available",
                exchange.config.name
            );
            return fail(route, writer, Status::BAD_GATEWAY, &detail);
        };
        tried.push(at);
        let last = tried.len() >= max_tries;
        match try_server(route, request, &mut exchange, at, last).await {
            Tried::Again => {}
            Tried::Stale => {
                tried.pop();
            }
            Tried::Failed(status, detail) => return fail(route, writer, status, &detail),
            Tried::BodyFailed(error) => {
                return crate::http::response::IntoResponse::write_response(error, writer);
            }
            Tried::Answered {
                response,
                server,
                in_flight,
                connect,
                header,
            } => {
                writer.note_upstream(crate::http::write::UpstreamNote {
                    address: server.address.clone(),
                    connect,
                    header,
                    total: started.elapsed(),
                });
                if response.status() == 101 {
                    if exchange.upgrade.is_some() {
                        return tunnel::relay_upgrade(route, &exchange.upstream, response, writer);
                    }
                    // An upgrade nobody asked for cannot be relayed.
                    let detail = "the upstream switched protocols unasked";
                    return fail(route, writer, Status::BAD_GATEWAY, detail);
                }
                let relayed = Relayed {
                    upstream: Rc::clone(&exchange.upstream.name),
                    server,
                    in_flight,
                };
                let head_request = exchange.method == Method::Head;
                return relay(route, relayed, response, head_request, writer).await;
            }
        }
    }
}

/// One try of `exchange` on server `at` (`last`: no other will follow).
async fn try_server(
    route: &ProxyRoute,
    request: &Request<'_>,
    exchange: &mut Exchange<'_>,
    at: usize,
    last: bool,
) -> Tried {
    let server = Rc::clone(&exchange.upstream.servers[at]);
    let name = exchange.config.name.as_str();
    let head = request_head(
        route,
        request,
        &server,
        exchange.trusted,
        &exchange.outgoing,
        exchange.upgrade.as_deref(),
    );
    let in_flight = server.begin();
    let began = Instant::now();
    let deadline = began + NO_DEADLINE;
    let client = &exchange.upstream.client;
    let (lease, connect) = match client.open(&server.endpoint, deadline).await {
        Ok(opened) => opened,
        Err(error) => {
            // Nothing reached the server: any request may go to the next.
            server.failed(Failure::Connect, name);
            log_failure(name, &server, &error, last);
            if !last {
                return Tried::Again;
            }
            let status = if error.is_timeout() {
                Status::GATEWAY_TIMEOUT
            } else {
                Status::BAD_GATEWAY
            };
            return Tried::Failed(status, unreachable_detail(name, &error));
        }
    };
    let mut payload = take_payload(&mut exchange.outgoing, &exchange.body_error);
    let head_request = exchange.method == Method::Head;
    let exchanged = client
        .exchange(
            lease,
            &head,
            &mut payload,
            head_request,
            deadline,
            server.endpoint.name(),
        )
        .await;
    drop(payload);
    let header = began.elapsed();
    match exchanged {
        Ok(response) => {
            server.answered(response.status(), header);
            Tried::Answered {
                response,
                server,
                in_flight,
                connect,
                header,
            }
        }
        Err(Failed { error, answered }) => {
            if let Some(body_error) = exchange.body_error.borrow_mut().take() {
                // The client's body failed (too large, too slow, cut): its
                // error is the answer, not the upstream's.
                return Tried::BodyFailed(body_error);
            }
            let kind = match error.kind() {
                ErrorKind::Timeout => Failure::Timeout,
                ErrorKind::Protocol => Failure::Protocol,
                _ => Failure::Broken,
            };
            // A kept-alive connection the server had closed (the keep-alive
            // race, and a Unix socket cannot be checked while idle): no byte
            // came back, so the same server is asked again on a new
            // connection, not counted as failed.
            let stale = connect.is_none() && !answered && kind == Failure::Broken;
            if stale
                && exchange.replayable
                && idempotent(exchange.method)
                && exchange.stale_retries < 2
            {
                exchange.stale_retries += 1;
                // Its idle neighbours waited as long: the retry connects anew.
                server.endpoint.close_idle();
                return Tried::Stale;
            }
            server.failed(kind, name);
            log_failure(name, &server, &error, last);
            if !last && !answered && exchange.replayable && idempotent(exchange.method) {
                return Tried::Again;
            }
            let status = if kind == Failure::Timeout {
                Status::GATEWAY_TIMEOUT
            } else {
                Status::BAD_GATEWAY
            };
            Tried::Failed(status, unreachable_detail(name, &error))
        }
    }
}

/// The request body as it will go upstream.
fn outgoing(request: &mut Request<'_>) -> Outgoing {
    let chunked = request.header("transfer-encoding").is_some();
    let length = if chunked {
        None
    } else {
        request
            .header_str("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if !chunked && length.is_none_or(|l| l == 0) {
        return if length == Some(0) {
            Outgoing::Whole(Bytes::new())
        } else {
            Outgoing::None
        };
    }
    match crate::route::body::Body::of_request(request) {
        (body, false) => Outgoing::Streamed { length, body },
        (body, true) => Outgoing::Whole(body.whole().unwrap_or_default()),
    }
}

/// The payload of one try.
fn take_payload(
    outgoing: &mut Outgoing,
    body_error: &Rc<std::cell::RefCell<Option<BodyError>>>,
) -> crate::client::Payload {
    match std::mem::replace(outgoing, Outgoing::Spent) {
        Outgoing::None => {
            *outgoing = Outgoing::None;
            forward::no_body()
        }
        Outgoing::Whole(bytes) => {
            *outgoing = Outgoing::Whole(bytes.clone());
            forward::full_body(bytes)
        }
        Outgoing::Streamed { length, body } => {
            let noted = Rc::clone(body_error);
            let pieces = body.map(move |piece| {
                piece.map_err(|error| {
                    *noted.borrow_mut() = Some(error.clone());
                    ClientError::new(ErrorKind::Io, "client", error)
                })
            });
            forward::forwarded_body(length, Box::pin(pieces))
        }
        Outgoing::Spent => forward::no_body(),
    }
}

/// The request head sent to `server`.
fn request_head(
    route: &ProxyRoute,
    request: &Request<'_>,
    server: &Server,
    trusted: &[Cidr],
    outgoing: &Outgoing,
    upgrade: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(request.method_str().as_bytes());
    head.push(b' ');
    let target = request.target();
    let target = match &route.strip {
        Some(prefix) => match target.strip_prefix(prefix.as_str()) {
            Some(rest) if rest.starts_with('/') => rest,
            Some(rest) if rest.starts_with('?') => {
                head.push(b'/');
                rest
            }
            Some("") => "/",
            _ => target,
        },
        None => target,
    };
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    let client_host = request.header("host");
    match route.host.as_str() {
        "pass" => head.extend_from_slice(client_host.unwrap_or(server.host.as_bytes())),
        "upstream" => head.extend_from_slice(server.host.as_bytes()),
        own => head.extend_from_slice(own.as_bytes()),
    }
    head.extend_from_slice(b"\r\n");
    let facts = headers::Forwarding {
        peer: request.peer_addr(),
        trusted,
        https: request.is_https(),
        host: client_host,
        request_id: request.request_id().unwrap_or(""),
        via: route.via,
    };
    headers::request_fields(&mut head, request.headers(), &facts, &route.request_set);
    if let Some(protocol) = upgrade {
        head.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        head.extend_from_slice(protocol);
        head.extend_from_slice(b"\r\n");
    }
    match outgoing {
        Outgoing::Whole(bytes) => {
            crate::http::write::push_decimal_line(&mut head, b"Content-Length", bytes.len() as u64);
        }
        Outgoing::Streamed {
            length: Some(length),
            ..
        } => {
            crate::http::write::push_decimal_line(&mut head, b"Content-Length", *length);
        }
        Outgoing::Streamed { length: None, .. } => {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        Outgoing::None | Outgoing::Spent => {}
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn unreachable_detail(upstream: &str, error: &ClientError) -> String {
    format!("upstream {upstream} did not answer: {error}")
}

fn log_failure(upstream: &str, server: &Server, error: &ClientError, last: bool) {
    tracing::warn!(
        upstream,
        server = server.address.as_str(),
        error = %error,
        next = if last { "none: answered 502/504" } else { "trying the next server" },
        "proxied request failed"
    );
}

/// Answers an error made here: the route's error page, else the JSON body.
fn fail(route: &ProxyRoute, writer: &mut ResponseWriter<'_>, status: Status, detail: &str) {
    match &route.error_page {
        Some(page) => writer.send(status, Some("text/html; charset=utf-8"), [], page),
        None => writer.send_error(status, detail),
    }
}

/// What a relayed response holds on to while its body streams.
struct Relayed {
    upstream: Rc<str>,
    server: Rc<Server>,
    /// Counts the request as in flight until its body is done.
    #[allow(dead_code, reason = "held for its Drop")]
    in_flight: state::InFlight,
}

/// Relays the upstream's response to the client: small bodies whole, the
/// rest streamed at the client's pace (or read ahead, for a buffering
/// route); a body that breaks upstream breaks the client's too.
async fn relay(
    route: &ProxyRoute,
    relayed: Relayed,
    mut response: crate::client::ClientResponse,
    head_request: bool,
    writer: &mut ResponseWriter<'_>,
) {
    let Some(status) = Status::from_u16(response.status()) else {
        return writer.send_error(Status::BAD_GATEWAY, "the upstream's status is not valid");
    };
    let length = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|_| response.header("transfer-encoding").is_none());
    let echoes = writer.echoes_request_id();
    if head_request || !status.allows_body() {
        let fields = headers::response_fields(response.headers(), echoes, &route.response_set);
        match length {
            Some(length) if head_request => {
                writer.send_pieces_sized(
                    status,
                    None,
                    fields,
                    length,
                    Box::pin(futures_lite::stream::empty()),
                );
            }
            _ => writer.send(status, None, fields, b""),
        }
        return;
    }
    // Read ahead: what one read brought, or up to the buffer of a
    // buffering route. A body that is then complete goes out whole.
    let ahead = route.buffering.unwrap_or(0);
    let mut first: Vec<Bytes> = Vec::new();
    let mut held = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(piece)) => {
                held += piece.len() as u64;
                first.push(piece);
                if response.is_complete() || held >= ahead {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                relayed.server.failed(Failure::Broken, &relayed.upstream);
                tracing::warn!(upstream = &*relayed.upstream, error = %error, "the upstream's response broke before its body");
                return writer.send_error(Status::BAD_GATEWAY, "the upstream's response broke off");
            }
        }
    }
    if response.is_complete() {
        let fields = headers::response_fields(response.headers(), echoes, &route.response_set);
        // Most bodies come in one read: sent from it, not joined.
        if let [piece] = first.as_slice() {
            return writer.send(status, None, fields, piece);
        }
        let body: Vec<u8> = first.concat();
        return writer.send(status, None, fields, &body);
    }
    // The stream takes the response: its fields are copied out first.
    let fields: Vec<(String, Vec<u8>)> =
        headers::response_fields(response.headers(), echoes, &route.response_set)
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect();
    let fields = fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
    let state = (Some(response), first.into_iter(), relayed);
    let pieces = futures_lite::stream::unfold(
        state,
        |(mut response, mut first, relayed)| async move {
            if let Some(piece) = first.next() {
                return Some((Ok(Vec::from(piece)), (response, first, relayed)));
            }
            let live = response.as_mut()?;
            match live.chunk().await {
                Ok(Some(piece)) => Some((Ok(Vec::from(piece)), (response, first, relayed))),
                Ok(None) => None,
                Err(error) => {
                    relayed.server.failed(Failure::Broken, &relayed.upstream);
                    tracing::warn!(upstream = &*relayed.upstream, error = %error, "the upstream's response broke mid-body; the client's is cut off");
                    Some((Err(Cut), (None, first, relayed)))
                }
            }
        },
    );
    match length {
        Some(length) => writer.send_pieces_sized(status, None, fields, length, Box::pin(pieces)),
        None => writer.send_pieces(status, None, fields, Box::pin(pieces)),
    }
}

/// The methods a proxy passes: all but `CONNECT` and `TRACE`.
const PASSED: [Method; 7] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Patch,
    Method::Delete,
    Method::Options,
];

/// Adds the configuration's `[[route]]` tables to `service`: a proxied
/// one to the `[[upstream]]` it names (read from the configuration in
/// force at each request, so a reload may change the upstreams), a static
/// one to its files; the others give their limits to the app's routes
/// under them.
///
/// # Errors
/// A route whose pattern is taken, whose error page cannot be read, or
/// whose directory cannot be opened.
pub(crate) fn add_routes<S: 'static>(
    service: &mut crate::route::service::RouteService<S>,
    config: &crate::Config,
) -> Result<(), Vec<crate::config::Problem>> {
    let mut problems = Vec::new();
    for (at, route) in config.route.iter().enumerate() {
        let key = format!("route[{at}]");
        if !route.handled() {
            // Limits for the app's own routes under it.
            if service.limit_routes_under(route) == 0 {
                problems.push(crate::config::Problem::new(
                    key,
                    "no route of the app is under it (and it names no upstream to proxy to, \
                     and no files to serve)",
                ));
            }
            continue;
        }
        let made = if route.files.is_some() {
            crate::files::handler_for(route)
                .map(|h| (Arc::new(h) as SharedHandler<S>, &crate::files::METHODS[..]))
                .map_err(|why| (format!("{key}.static"), why))
        } else {
            ProxyRoute::new(route, None)
                .map(|p| (Arc::new(p.handler()) as SharedHandler<S>, &PASSED[..]))
                .map_err(|why| (format!("{key}.error_page"), why))
        };
        let (handler, methods) = match made {
            Ok(made) => made,
            Err((key, why)) => {
                problems.push(crate::config::Problem::new(key, why));
                continue;
            }
        };
        for pattern in route.patterns() {
            if let Err(why) =
                service.route_configured(methods, &pattern, &handler, route.max_body_bytes)
            {
                problems.push(crate::config::Problem::new(
                    key.clone(),
                    format!("{pattern}: {why} (the app routes it, or another [[route]] does)"),
                ));
            }
        }
    }
    service.configured = Some(config.route.clone());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
