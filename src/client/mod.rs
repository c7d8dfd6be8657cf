//! An HTTP/1.1 client that lives on one shard: its connections are the
//! shard's own sockets on the shard's ring, pooled per origin, with
//! timeouts at every step, retries with backoff and a budget, and a
//! circuit breaker per origin. Make one per shard (in the state factory)
//! and clone it freely on that shard; it is not `Send`.
//!
//! ```no_run
//! # async fn call() -> Result<(), percore::client::ClientError> {
//! use percore::client::Client;
//!
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64 }
//!
//! let client = Client::new();
//! let order: Order = client
//!     .post("http://127.0.0.1:9000/orders")
//!     .json(&serde_json::json!({"item": "tea"}))
//!     .send()
//!     .await?
//!     .error_for_status()?
//!     .json()
//!     .await?;
//! # let _ = order.id;
//! # Ok(())
//! # }
//! ```

mod conn;
mod error;
pub(crate) mod forward;
mod pool;
mod resilience;
mod response;
mod target;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::{ClientError, ErrorKind};
pub use pool::PoolConfig;
pub use resilience::{BreakerConfig, RetryConfig};
pub use response::ClientResponse;

use conn::Stream;
use pool::{Lease, OriginPool};
use resilience::{Admit, Budget};
use target::{Origin, Resolver, Target};

use crate::http::parse::Method;
use crate::observe::outbound;

/// Where the client's trusted certificate authorities come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Roots {
    /// Mozilla's roots, built in (`webpki-roots`): the same on every host.
    #[default]
    Webpki,
    /// The host's own store (`/etc/ssl/certs`), read once.
    System,
    /// Only the PEM certificates in this file (a private CA).
    PemFile(PathBuf),
}

/// How a client connects, waits and retries.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// Making a connection (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// Each wait for response bytes.
    pub read_timeout: Duration,
    /// Each write of the request.
    pub write_timeout: Duration,
    /// The whole call, from `send` to the body's last byte.
    pub timeout: Duration,
    /// Connections kept per origin.
    pub pool: PoolConfig,
    /// How long a resolved name is reused.
    pub dns_ttl: Duration,
    /// Retries of failed calls.
    pub retry: RetryConfig,
    /// When an origin's circuit opens.
    pub breaker: BreakerConfig,
    /// Trusted certificate authorities for `https://`.
    pub roots: Roots,
    /// A client certificate chain and key (PEM files) for origins that
    /// ask for one.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// Most body bytes `bytes`, `text` and `json` read.
    pub max_response_body: u64,
    /// The `User-Agent` sent (empty: none).
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            timeout: Duration::from_mins(1),
            pool: PoolConfig::default(),
            dns_ttl: Duration::from_secs(30),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            roots: Roots::Webpki,
            client_certificate: None,
            max_response_body: 16 * 1024 * 1024,
            user_agent: "percore".to_owned(),
        }
    }
}

struct Inner {
    config: ClientConfig,
    tls: OnceCell<Result<Arc<rustls::ClientConfig>, ClientError>>,
    resolver: Resolver,
    pools: RefCell<HashMap<Origin, Rc<OriginPool>>>,
    /// URLs called lately, parsed, with their origin's pool: a service
    /// calls the same few URLs again and again.
    targets: RefCell<HashMap<Box<str>, Parsed>>,
    budget: Budget,
}

/// A URL parsed, with its origin's pool.
type Parsed = (Rc<Target>, Rc<OriginPool>);

/// URLs kept parsed per client (the cache starts afresh when full).
const PARSED_URLS: usize = 256;

/// An HTTP/1.1 client for one shard (clone it; the clones share its
/// pools). See the [module](self) for an example.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("origins", &self.inner.pools.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// The state of one origin's pool on this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginStats {
    /// Connections open (busy or idle).
    pub open: usize,
    /// Idle among them.
    pub idle: usize,
    /// Whether the circuit is open.
    pub circuit_open: bool,
}

impl Client {
    /// A client with the default configuration.
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(ClientConfig::default())
    }

    /// A client configured by `config`. Certificate files are read at the
    /// first `https://` call; a problem with them fails that call (and
    /// every later one) with kind `Config`; call [`check_tls`](Self::check_tls)
    /// at start to fail early instead.
    #[must_use]
    pub fn with_config(config: ClientConfig) -> Self {
        let budget = Budget::new(&config.retry);
        Self {
            inner: Rc::new(Inner {
                config,
                tls: OnceCell::new(),
                resolver: Resolver::default(),
                pools: RefCell::new(HashMap::new()),
                targets: RefCell::new(HashMap::new()),
                budget,
            }),
        }
    }

    /// Loads the TLS roots and client certificate now.
    ///
    /// # Errors
    /// A file that cannot be read or holds no certificate or key.
    pub fn check_tls(&self) -> Result<(), ClientError> {
        self.tls_config().map(drop)
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        self.inner
            .tls
            .get_or_init(|| tls_config(&self.inner.config))
            .clone()
    }

    /// A request with `method` to `url`.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            target: self.target(url),
            headers: Vec::new(),
            body: Payload::Empty,
            timeout: None,
            retry: true,
        }
    }

    /// A `GET` of `url`.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::Get, url)
    }

    /// A `HEAD` of `url`.
    pub fn head(&self, url: &str) -> RequestBuilder {
        self.request(Method::Head, url)
    }

    /// A `POST` to `url`.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::Post, url)
    }

    /// A `PUT` to `url`.
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request(Method::Put, url)
    }

    /// A `PATCH` to `url`.
    pub fn patch(&self, url: &str) -> RequestBuilder {
        self.request(Method::Patch, url)
    }

    /// A `DELETE` of `url`.
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request(Method::Delete, url)
    }

    /// The pool of `url`'s origin on this shard, if it has been called.
    pub fn origin_stats(&self, url: &str) -> Option<OriginStats> {
        let target = Target::parse(url).ok()?;
        let pools = self.inner.pools.borrow();
        let pool = pools.get(&target.origin)?;
        let (open, idle) = pool.counts();
        Some(OriginStats {
            open,
            idle,
            circuit_open: pool.breaker.is_open(Instant::now()),
        })
    }

    /// Closes every idle connection (a shutdown hook calls this; busy
    /// ones close when their response is done).
    pub fn close_idle(&self) {
        for pool in self.inner.pools.borrow().values() {
            pool.close_idle();
        }
    }

    /// `url` parsed, with its origin's pool, from the cache when called
    /// before.
    fn target(&self, url: &str) -> Result<Parsed, ClientError> {
        if let Some((target, pool)) = self.inner.targets.borrow().get(url) {
            return Ok((Rc::clone(target), Rc::clone(pool)));
        }
        let target = Rc::new(Target::parse(url)?);
        let pool = self.pool(&target.origin);
        let mut targets = self.inner.targets.borrow_mut();
        if targets.len() >= PARSED_URLS {
            targets.clear();
        }
        targets.insert(url.into(), (Rc::clone(&target), Rc::clone(&pool)));
        Ok((target, pool))
    }

    fn pool(&self, origin: &Origin) -> Rc<OriginPool> {
        Rc::clone(
            self.inner
                .pools
                .borrow_mut()
                .entry(origin.clone())
                .or_insert_with(|| {
                    OriginPool::new(self.inner.config.pool.clone(), origin.to_string().into())
                }),
        )
    }

    /// A new connection to `origin`.
    async fn connect(&self, origin: &Origin, name: &str) -> Result<Stream, ClientError> {
        let config = &self.inner.config;
        match origin {
            Origin::Unix(path) => Stream::unix(path, config.connect_timeout, name).await,
            Origin::Tcp { tls, host, port } => {
                let started = Instant::now();
                let addrs = self
                    .inner
                    .resolver
                    .resolve(host, *port, config.dns_ttl, name)
                    .await?;
                if !*tls && let Some(ring) = crate::uring::current() {
                    return Stream::ring(&ring, &addrs, config.connect_timeout, name).await;
                }
                let tcp = Stream::tcp(&addrs, config.connect_timeout, name).await?;
                if *tls {
                    let tls_config = self.tls_config()?;
                    let left = config
                        .connect_timeout
                        .saturating_sub(started.elapsed())
                        .max(Duration::from_millis(1));
                    Stream::tls(tcp, &tls_config, host, left, name).await
                } else {
                    Ok(Stream::Tcp(tcp))
                }
            }
        }
    }
}

fn tls_config(config: &ClientConfig) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let fail = |what: String| ClientError::new(ErrorKind::Config, "tls", what);
    let mut roots = rustls::RootCertStore::empty();
    match &config.roots {
        Roots::Webpki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(fail(
                    "the host's certificate store holds no usable roots (install ca-certificates, or use Roots::Webpki)".to_owned(),
                ));
            }
        }
        Roots::PemFile(path) => {
            for cert in crate::tls::read_chain(path).map_err(fail)? {
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots);
    let mut tls = match &config.client_certificate {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = crate::tls::read_chain(cert).map_err(fail)?;
            let key = crate::tls::read_key(key).map_err(fail)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(format!("the client certificate and key do not match: {e}")))?
        }
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// A request body.
pub(crate) enum Payload {
    Empty,
    /// Sent with `Content-Length`; can be sent again for a retry.
    Full(bytes::Bytes),
    /// Sent as it comes (with `Content-Length` when `length` is known,
    /// else chunked); never retried. An `Err` piece aborts the request:
    /// the connection is dropped, so the origin never sees a
    /// complete-looking body (a proxied client that went away).
    Forwarded {
        length: Option<u64>,
        pieces: futures_lite::stream::BoxedLocal<Result<bytes::Bytes, ClientError>>,
    },
    /// A body that could not be made (its JSON failed).
    Failed(ClientError),
}

/// A request being built: add headers and a body, then [`send`](Self::send).
#[must_use = "a request does nothing until sent"]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    target: Result<Parsed, ClientError>,
    headers: Vec<(String, Vec<u8>)>,
    body: Payload,
    timeout: Option<Duration>,
    retry: bool,
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Whether a request may be sent twice with the effect of once (RFC 9110
/// §9.2.2).
fn idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
    )
}

fn method_name(method: Method) -> &'static str {
    match method {
        // `request` refuses `Other`, which has no text of its own.
        Method::Get | Method::Other => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
        Method::Options => "OPTIONS",
        Method::Connect => "CONNECT",
        Method::Trace => "TRACE",
    }
}

/// Fields the client writes itself.
fn reserved(name: &str) -> bool {
    ["host", "content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
}

/// One attempt's failure, and whether a retry could repeat a request the
/// origin already acted on.
struct Failure {
    error: ClientError,
    /// Request bytes may have reached the origin.
    sent: bool,
}

impl RequestBuilder {
    /// Adds a header field (`Host`, `Content-Length`, `Transfer-Encoding`
    /// and `Connection` are the client's own and are ignored; a value with
    /// CR, LF or NUL is dropped).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        if crate::http::write::valid_field(name, value) && !reserved(name) {
            self.headers.push((name.to_owned(), value.to_vec()));
        }
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// A body sent as it is.
    pub fn body(mut self, body: impl Into<bytes::Bytes>) -> Self {
        self.body = Payload::Full(body.into());
        self
    }

    /// `value` as a JSON body, with `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.body = match simd_json::serde::to_vec(value) {
            Ok(bytes) => Payload::Full(bytes.into()),
            Err(e) => Payload::Failed(ClientError::new(ErrorKind::Json, "request", e)),
        };
        self.header("Content-Type", "application/json")
    }

    /// `value` as an urlencoded form body.
    pub fn form<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.body = match serde_urlencoded::to_string(value) {
            Ok(text) => Payload::Full(text.into()),
            Err(e) => Payload::Failed(ClientError::new(ErrorKind::Json, "request", e)),
        };
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// A body sent chunked piece by piece as `stream` yields it: each
    /// piece is written before the next is asked for (backpressure). Such
    /// a request is never retried.
    pub fn body_stream(
        mut self,
        stream: impl futures_lite::Stream<Item = bytes::Bytes> + 'static,
    ) -> Self {
        self.body = Payload::Forwarded {
            length: None,
            pieces: Box::pin(futures_lite::StreamExt::map(stream, Ok)),
        };
        self
    }

    /// The whole call's timeout, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends it once only, whatever the client's retry policy.
    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    /// Sends the request and reads the response head. Connect failures,
    /// and for idempotent methods failures without a response and the
    /// retry statuses, are retried with backoff while the budget allows.
    ///
    /// # Errors
    /// A [`ClientError`] saying which step failed.
    pub async fn send(mut self) -> Result<ClientResponse, ClientError> {
        let (target, pool) = std::mem::replace(
            &mut self.target,
            Err(ClientError::new(ErrorKind::Url, "", "")),
        )?;
        if self.method == Method::Other {
            return Err(ClientError::new(
                ErrorKind::Url,
                &target.origin.to_string(),
                "Method::Other has no name to send; use a standard method",
            ));
        }
        if let Payload::Failed(error) = &self.body {
            return Err(error.clone());
        }
        let client = self.client.clone();
        let inner = &client.inner;
        let config = &inner.config;
        let deadline = Instant::now() + self.timeout.unwrap_or(config.timeout);
        let name = Rc::clone(&pool.name);
        let head = self.head(&target);
        inner.budget.deposit(&config.retry);
        outbound::count(|o| &o.calls);
        let result = self
            .send_with_retries(&pool, &target, &name, &head, deadline)
            .await;
        if result.is_err() {
            outbound::count(|o| &o.failures);
        }
        result
    }

    /// The tries of one call, as [`send`](Self::send) says.
    async fn send_with_retries(
        &mut self,
        pool: &Rc<OriginPool>,
        target: &Target,
        name: &Rc<str>,
        head: &[u8],
        deadline: Instant,
    ) -> Result<ClientResponse, ClientError> {
        let client = self.client.clone();
        let inner = &client.inner;
        let config = &inner.config;
        let replayable = self.retry && !matches!(self.body, Payload::Forwarded { .. });
        let attempts = if replayable {
            config.retry.attempts.max(1)
        } else {
            1
        };
        let may_repeat = idempotent(self.method);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = Instant::now();
            let admit = pool.breaker.admit(&config.breaker, now);
            if admit == Admit::No {
                return Err(ClientError::new(
                    ErrorKind::CircuitOpen,
                    name,
                    "recent calls failed; not calling until the cooldown ends",
                ));
            }
            let outcome = self.attempt(pool, target, name, head, deadline).await;
            let last = attempt >= attempts;
            let wait = match outcome {
                Ok(response) => {
                    let status = response.status();
                    if status >= 500 {
                        self.breaker_failed(pool, name);
                    } else {
                        pool.breaker.succeeded();
                    }
                    let retry_status = may_repeat && config.retry.statuses.contains(&status);
                    if last
                        || !retry_status
                        || !inner.budget.withdraw(&config.retry, Instant::now())
                    {
                        return Ok(response);
                    }
                    let wait = response
                        .retry_after()
                        .filter(|after| *after <= config.retry.max_backoff)
                        .unwrap_or_else(|| config.retry.backoff(attempt));
                    response.discard().await;
                    wait
                }
                Err(failure) => {
                    let failed_origin = !matches!(
                        failure.error.kind(),
                        ErrorKind::PoolTimeout
                            | ErrorKind::Url
                            | ErrorKind::Config
                            | ErrorKind::TooLarge
                    );
                    if failed_origin {
                        self.breaker_failed(pool, name);
                    } else if admit == Admit::Probe {
                        // The probe never reached the origin: let another try.
                        pool.breaker.succeeded();
                    }
                    let retryable = failed_origin && (!failure.sent || may_repeat);
                    if last || !retryable || !inner.budget.withdraw(&config.retry, Instant::now()) {
                        return Err(failure.error);
                    }
                    config.retry.backoff(attempt)
                }
            };
            if Instant::now() + wait >= deadline {
                return Err(ClientError::new(
                    ErrorKind::Timeout,
                    name,
                    "the call's overall timeout leaves no time for another try",
                ));
            }
            outbound::count(|o| &o.retries);
            glommio::timer::sleep(wait).await;
        }
    }

    fn breaker_failed(&self, pool: &OriginPool, name: &str) {
        if pool
            .breaker
            .failed(&self.client.inner.config.breaker, Instant::now())
        {
            outbound::count(|o| &o.circuits_opened);
            tracing::warn!(
                origin = name,
                cooldown_secs = self.client.inner.config.breaker.cooldown.as_secs_f64(),
                "circuit opened after repeated failures"
            );
        }
    }

    /// The request head (and a small body with it).
    fn head(&self, target: &Target) -> Vec<u8> {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(method_name(self.method).as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.path_and_query.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head.extend_from_slice(target.host_field.as_bytes());
        head.extend_from_slice(b"\r\n");
        let agent = &self.client.inner.config.user_agent;
        if !agent.is_empty()
            && !self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
        {
            crate::http::write::push_line(&mut head, b"User-Agent", agent.as_bytes());
        }
        for (name, value) in &self.headers {
            crate::http::write::push_line(&mut head, name.as_bytes(), value);
        }
        match &self.body {
            Payload::Full(body) => {
                crate::http::write::push_decimal_line(
                    &mut head,
                    b"Content-Length",
                    body.len() as u64,
                );
                head.extend_from_slice(b"\r\n");
            }
            Payload::Forwarded {
                length: Some(length),
                ..
            } => {
                crate::http::write::push_decimal_line(&mut head, b"Content-Length", *length);
                head.extend_from_slice(b"\r\n");
            }
            Payload::Forwarded { length: None, .. } => {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            }
            Payload::Empty | Payload::Failed(_) => {
                if matches!(self.method, Method::Post | Method::Put | Method::Patch) {
                    head.extend_from_slice(b"Content-Length: 0\r\n");
                }
                head.extend_from_slice(b"\r\n");
            }
        }
        head
    }

    /// One try: a connection, the request written, the response head read.
    async fn attempt(
        &mut self,
        pool: &Rc<OriginPool>,
        target: &Target,
        name: &Rc<str>,
        head: &[u8],
        deadline: Instant,
    ) -> Result<ClientResponse, Failure> {
        let client = &self.client;
        let (lease, _) = client
            .open_on(&target.origin, pool, deadline)
            .await
            .map_err(|error| Failure { error, sent: false })?;
        let head_request = self.method == Method::Head;
        client
            .exchange(lease, head, &mut self.body, head_request, deadline, name)
            .await
            .map_err(|failed| Failure {
                error: failed.error,
                sent: true,
            })
    }
}

/// Writes `head`, then a forwarded body piece by piece: as it is when its
/// `length` is known (which it must then match), else chunked.
async fn write_forwarded(
    stream: &mut Stream,
    head: &[u8],
    length: Option<u64>,
    pieces: &mut futures_lite::stream::BoxedLocal<Result<bytes::Bytes, ClientError>>,
    limit: impl Fn() -> Duration,
    write_timeout: Duration,
    name: &str,
) -> Result<(), ClientError> {
    let sent = |error: std::io::Error| ClientError::io(name, "sending the request", &error);
    stream
        .write_all(head, limit(), write_timeout)
        .await
        .map_err(sent)?;
    let mut frame = Vec::new();
    let mut written = 0u64;
    while let Some(piece) = futures_lite::StreamExt::next(pieces).await {
        let piece = piece?;
        if piece.is_empty() {
            continue;
        }
        written += piece.len() as u64;
        let bytes: &[u8] = if length.is_some() {
            &piece
        } else {
            frame.clear();
            frame.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            frame.extend_from_slice(&piece);
            frame.extend_from_slice(b"\r\n");
            &frame
        };
        stream
            .write_all(bytes, limit(), write_timeout)
            .await
            .map_err(sent)?;
    }
    match length {
        Some(length) if written != length => Err(ClientError::new(
            ErrorKind::Io,
            name,
            "the forwarded body ended short of its length",
        )),
        Some(_) => Ok(()),
        None => stream
            .write_all(b"0\r\n\r\n", limit(), write_timeout)
            .await
            .map_err(sent),
    }
}

/// Writes the request head and body on `lease`: a small body in the same
/// write as the head, a streamed one chunked piece by piece.
async fn write_request(
    lease: &mut Lease,
    head: &[u8],
    body: &mut Payload,
    write_timeout: Duration,
    deadline: Instant,
    name: &str,
) -> Result<(), ClientError> {
    let write_limit =
        |deadline: Instant| write_timeout.min(deadline.saturating_duration_since(Instant::now()));
    let sent = |error: std::io::Error| ClientError::io(name, "sending the request", &error);
    match body {
        Payload::Full(body) if body.len() <= 16 * 1024 => {
            let mut message = Vec::with_capacity(head.len() + body.len());
            message.extend_from_slice(head);
            message.extend_from_slice(body);
            lease
                .conn()
                .stream
                .write_all(&message, write_limit(deadline), write_timeout)
                .await
                .map_err(sent)?;
        }
        Payload::Full(body) => {
            let stream = &mut lease.conn().stream;
            stream
                .write_all(head, write_limit(deadline), write_timeout)
                .await
                .map_err(sent)?;
            stream
                .write_all(body, write_limit(deadline), write_timeout)
                .await
                .map_err(sent)?;
        }
        Payload::Forwarded { length, pieces } => {
            let limit = || write_limit(deadline);
            write_forwarded(
                &mut lease.conn().stream,
                head,
                *length,
                pieces,
                limit,
                write_timeout,
                name,
            )
            .await?;
        }
        Payload::Empty | Payload::Failed(_) => {
            lease
                .conn()
                .stream
                .write_all(head, write_limit(deadline), write_timeout)
                .await
                .map_err(sent)?;
        }
    }
    Ok(())
}
