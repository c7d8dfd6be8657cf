//! Configuration: a serde tree with defaults, read from a TOML file, then
//! `PERCORE_*` environment variables, then command-line flags (each layer
//! overrides the one before). [`Config::validate`] returns every problem with
//! its key path; unknown keys are problems too.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::http::parse::{Limits, MAX_HEADERS_CEILING};

pub(crate) mod app_settings;
mod files;
mod http2;
mod load;
mod proxy;
mod values;

pub use files::{CompressionConfig, StaticConfig};
pub use http2::Http2Config;
pub use proxy::{HealthCheckConfig, RouteConfig, ServerEntry, UpstreamConfig, UpstreamServer};
pub(crate) use proxy::{ProxyTable, problems as proxy_problems};

pub use values::{AccessFormat, Cidr, CpuList};
pub(crate) use values::{KeySource, cookie_key, mapped, mask};

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Listeners and shards.
    pub server: ServerConfig,
    /// Request size limits and connection caps.
    pub limits: LimitsConfig,
    /// Timeouts.
    pub timeouts: TimeoutsConfig,
    /// Security headers added to every response.
    pub headers: HeadersConfig,
    /// Cross-origin requests (CORS).
    pub cors: CorsConfig,
    /// The key of signed and private cookies.
    pub cookies: CookiesConfig,
    /// Health routes.
    pub health: HealthConfig,
    /// The Prometheus metrics route.
    pub metrics: MetricsConfig,
    /// The OpenAPI document and its documentation page.
    pub openapi: OpenApiConfig,
    /// Rate limiting.
    pub rate_limit: RateLimitConfig,
    /// TLS listeners and certificates.
    pub tls: TlsConfig,
    /// Logging.
    pub log: LogConfig,
    /// `[[upstream]]`: apps percore proxies to.
    pub upstream: Vec<UpstreamConfig>,
    /// `[[route]]`: paths proxied to an upstream, served from files, or
    /// given limits of their own.
    pub route: Vec<RouteConfig>,
    /// Responses compressed for clients that accept it.
    pub compression: CompressionConfig,
    /// HTTP/2 on the TLS listeners (ALPN) and, optionally, the plain ones.
    pub http2: Http2Config,
    /// The app's own settings (`App::settings`), as the file gives them;
    /// variables with the app's prefix override them when they are read.
    pub app: toml::Table,
}

/// `[server]`: where to listen and on which CPUs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Addresses to listen on (`IP:PORT`, IPv6 as `[::1]:8080`); port 0
    /// picks a free port, shared by all shards.
    pub listen: Vec<SocketAddr>,
    /// Number of shards; default one per usable CPU.
    pub shards: Option<usize>,
    /// CPUs to run shards on, such as `"1"` or `"0,2-3"`; default all usable.
    pub cpus: Option<CpuList>,
    /// Listen backlog of each shard's socket.
    pub backlog: u32,
    /// Socket I/O path: the shard's own `io_uring` (`uring`, default) or
    /// glommio's streams (`glommio`, for kernels before 6.1).
    pub io: IoPath,
    /// On the `uring` path, how long (µs) an idle shard keeps checking its
    /// ring before it sleeps. Longer trades idle CPU for latency; a very
    /// large value is a poll mode.
    pub idle_poll_us: u64,
    /// On SIGTERM/SIGINT, how long (s) open connections may take to finish
    /// before they are closed.
    pub graceful_timeout_secs: u64,
    /// Threads per shard for [`blocking`](crate::blocking) work.
    pub blocking_threads: usize,
    /// A shard whose event loop is blocked this long (ms) is reported (log
    /// line, `percore_stalls_total`); 0 turns the watchdog off.
    pub stall_threshold_ms: u64,
    /// Steering: a cBPF program on the listeners sends every connection of
    /// one client address to one shard. `auto` turns it on when a limit is
    /// keyed by client address (rate limit by `ip`, or a per-client
    /// connection cap), so the limit is exact.
    pub steering: Steering,
    /// Share the listen ports with a process already serving them, on
    /// purpose: the zero-downtime upgrade (start the new process with this
    /// set, then stop the old one). Off, an address another process listens
    /// on is a start-up error.
    pub takeover: bool,
}

/// Whether connections are steered to shards by client address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Steering {
    /// On when a limit is keyed by the client's address.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never (the kernel spreads connections by its own hash).
    Off,
}

/// How shards do socket I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoPath {
    /// The shard's own ring: multishot accept and receive, provided buffers,
    /// batched sends, deferred task work.
    #[default]
    Uring,
    /// glommio's `TcpStream`.
    Glommio,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            shards: None,
            cpus: None,
            backlog: 1024,
            io: IoPath::default(),
            idle_poll_us: 50,
            graceful_timeout_secs: 30,
            blocking_threads: 1,
            stall_threshold_ms: 1000,
            steering: Steering::Auto,
            takeover: false,
        }
    }
}

/// `[limits]`: how large a request may be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Longest request line, bytes; 414 beyond.
    pub max_request_line_bytes: usize,
    /// Largest request head (request line and header fields), bytes; 431 beyond.
    pub max_head_bytes: usize,
    /// Most header fields in one request; 431 beyond.
    pub max_headers: usize,
    /// Largest request body, bytes; 413 beyond.
    pub max_body_bytes: u64,
    /// Longest chunk extension on one chunk-size line, bytes; 400 beyond.
    pub max_chunk_extension_bytes: usize,
    /// Requests served on one connection before it is closed (0: no cap).
    pub keepalive_requests: u32,
    /// Open connections per shard; further ones are closed at once.
    pub max_connections: usize,
    /// Open connections per client IP per shard (0: no cap).
    pub max_connections_per_ip: u32,
    /// The status of a request whose body, query, path or form does not
    /// fit its type: 422 (`FastAPI`'s, the default) or 400.
    pub validation_status: u16,
}

/// `[timeouts]`: how long each wait may last, in seconds (0: no limit).
/// They are checked by one sweep per shard per second, so each fires within
/// about a second of its setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeoutsConfig {
    /// From a request's first byte to its complete head; then 408.
    pub header_secs: u64,
    /// From a complete head to a complete body; then 408.
    pub body_secs: u64,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_secs: u64,
    /// A handler still running after this gets a 504 in its place.
    pub request_secs: u64,
    /// A client that has not taken its response after this is dropped.
    pub send_secs: u64,
    /// Tighter request timeouts for some routes, by route pattern (any
    /// method): `"/reports/{id}" = 5`. Each is at most `request_secs`; a
    /// pattern the app does not route is refused at start and reload.
    pub routes: std::collections::BTreeMap<String, u64>,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            header_secs: 10,
            body_secs: 30,
            keepalive_secs: 60,
            request_secs: 30,
            send_secs: 30,
            routes: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_request_line_bytes: limits.max_request_line_bytes,
            max_head_bytes: limits.max_head_bytes,
            max_headers: limits.max_headers,
            max_body_bytes: limits.max_body_bytes,
            max_chunk_extension_bytes: limits.max_chunk_extension_bytes,
            keepalive_requests: 10_000,
            max_connections: 16_384,
            max_connections_per_ip: 0,
            validation_status: 422,
        }
    }
}

/// `[cookies]`: the key that signs and encrypts cookies
/// ([`Cookies::add_signed`](crate::Cookies::add_signed),
/// [`Cookies::add_private`](crate::Cookies::add_private)).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CookiesConfig {
    /// Base64 of at least 32 random bytes (`head -c 32 /dev/urandom |
    /// base64`); empty: signed and private cookies are off. Prefer
    /// `PERCORE_COOKIE_KEY` to writing it in the file. Changing it (a
    /// reload) makes cookies sealed with the old key read as absent.
    pub key: String,
}

impl std::fmt::Debug for CookiesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookiesConfig")
            .field("key", &if self.key.is_empty() { "" } else { "(set)" })
            .finish()
    }
}

/// `[health]`: the built-in health routes, answered before the app's
/// routes (empty: not served).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Liveness: 200 `{"status":"ok"}` while the shard runs.
    pub liveness_path: String,
    /// Readiness: 200 `{"status":"ready"}`, or 503 while draining or when a
    /// readiness check fails.
    pub readiness_path: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            liveness_path: "/health".into(),
            readiness_path: "/health/ready".into(),
        }
    }
}

/// `[tls]`: HTTPS listeners, their certificates, and the plain listener
/// that redirects to them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// Addresses to serve HTTPS on (TLS 1.2 and 1.3, ALPN `http/1.1`).
    pub listen: Vec<SocketAddr>,
    /// Certificates (`[[tls.certificate]]`): the first is the default, the
    /// others are chosen by the name the client asks for (SNI).
    pub certificate: Vec<CertificateConfig>,
    /// How long (s) a client may take to finish its handshake.
    pub handshake_timeout_secs: u64,
    /// `Strict-Transport-Security` on every HTTPS response (empty: not sent).
    pub hsts: String,
    /// Plain addresses that answer every request (but the health routes)
    /// with a 301 to the same URL over HTTPS.
    pub redirect_listen: Vec<SocketAddr>,
    /// TLS sessions each shard remembers for stateful resumption.
    pub session_cache: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            certificate: Vec::new(),
            handshake_timeout_secs: 10,
            hsts: "max-age=31536000".into(),
            redirect_listen: Vec::new(),
            session_cache: 4096,
        }
    }
}

/// `[[tls.certificate]]`: a PEM chain and its key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM: PKCS#8, RSA or EC).
    pub key: std::path::PathBuf,
    /// The names it is chosen for; empty: the DNS names in the certificate.
    pub names: Vec<String>,
}

impl TlsConfig {
    fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            self.listen.is_empty() || !self.certificate.is_empty(),
            "tls.certificate",
            "needs at least one [[tls.certificate]] (cert and key) for tls.listen",
        );
        check(
            self.redirect_listen.is_empty() || !self.listen.is_empty(),
            "tls.redirect_listen",
            "redirects to HTTPS, so tls.listen must be set too",
        );
        check(
            (1..=300).contains(&self.handshake_timeout_secs),
            "tls.handshake_timeout_secs",
            "must be 1 to 300",
        );
        check(
            self.hsts.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "tls.hsts",
            "must be visible ASCII (no line breaks)",
        );
        for (i, certificate) in self.certificate.iter().enumerate() {
            check(
                !certificate.cert.as_os_str().is_empty() && !certificate.key.as_os_str().is_empty(),
                &format!("tls.certificate[{i}]"),
                "needs both cert and key (PEM files)",
            );
        }
    }
}

/// `[rate_limit]`: per-client request rates, enforced in each shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Whether requests are limited at all.
    pub enabled: bool,
    /// Count and log what would be refused, refuse nothing.
    pub dry_run: bool,
    /// Whom requests count against: `ip` (the peer's address), `forwarded`
    /// (behind `trusted_proxies`, the address they forward) or
    /// `header:NAME` (such as `header:X-Api-Key`; the address when absent).
    pub key: String,
    /// Proxies (addresses or blocks) whose `Forwarded`/`X-Forwarded-For`
    /// are believed.
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are keyed by this many leading bits of their address.
    pub ipv6_prefix: u8,
    /// Keys each shard keeps per policy; when full, the least recently seen
    /// key is dropped (about 85 bytes a key).
    pub max_keys: usize,
    /// Send `RateLimit-Policy` and `RateLimit` on allowed responses too.
    pub headers: bool,
    /// The policies (`[[rate_limit.policy]]`).
    pub policy: Vec<PolicyConfig>,
    /// The Redis server of `backend = "redis"` policies
    /// (`redis://host:port[/db]`), shared by every host of the fleet.
    pub redis_url: String,
    /// How long a check waits for Redis before the policy's
    /// `on_redis_error` decides.
    pub redis_timeout_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dry_run: false,
            key: "ip".into(),
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
            max_keys: 100_000,
            headers: true,
            policy: Vec::new(),
            redis_url: String::new(),
            redis_timeout_ms: 100,
        }
    }
}

impl RateLimitConfig {
    /// The key source `key` names, if it is valid.
    pub(crate) fn key_source(&self) -> Option<KeySource> {
        match self.key.as_str() {
            "ip" => Some(KeySource::Ip),
            "forwarded" => Some(KeySource::Forwarded),
            other => {
                let name = other.strip_prefix("header:")?;
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                token.then(|| KeySource::Header(name.to_ascii_lowercase()))
            }
        }
    }

    /// Problems of a policy's `backend` and what it needs.
    fn backend_problems(
        &self,
        policy: &PolicyConfig,
        key: &str,
        check: &mut impl FnMut(bool, &str, &str),
    ) {
        check(
            ["local", "redis"].contains(&policy.backend.as_str()),
            &format!("{key}.backend"),
            "must be \"local\" (each host alone) or \"redis\" (the fleet's state in Redis)",
        );
        if policy.backend == "redis" {
            check(
                ["open", "closed"].contains(&policy.on_redis_error.as_str()),
                &format!("{key}.on_redis_error"),
                "choose what happens when Redis cannot answer: \"open\" (allow the request) or \"closed\" (refuse it with 503)",
            );
            check(
                !self.redis_url.is_empty(),
                "rate_limit.redis_url",
                "must name the Redis server of backend = \"redis\" policies",
            );
        }
    }

    fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            self.key_source().is_some(),
            "rate_limit.key",
            "must be \"ip\", \"forwarded\" or \"header:NAME\"",
        );
        check(
            self.key != "forwarded" || !self.trusted_proxies.is_empty(),
            "rate_limit.trusted_proxies",
            "must list the proxies when rate_limit.key = \"forwarded\"",
        );
        for proxy in &self.trusted_proxies {
            if let Err(why) = Cidr::parse(proxy) {
                check(false, "rate_limit.trusted_proxies", &why);
            }
        }
        check(
            (1..=128).contains(&self.ipv6_prefix),
            "rate_limit.ipv6_prefix",
            "must be 1 to 128",
        );
        check(
            (1..=10_000_000).contains(&self.max_keys),
            "rate_limit.max_keys",
            "must be 1 to 10000000",
        );
        check(
            !self.enabled || !self.policy.is_empty(),
            "rate_limit.policy",
            "needs at least one [[rate_limit.policy]] when rate_limit.enabled",
        );
        let mut names = std::collections::HashSet::new();
        let mut routes = std::collections::HashSet::new();
        let mut globals = 0;
        for (i, policy) in self.policy.iter().enumerate() {
            let key = format!("rate_limit.policy[{i}]");
            check(
                (1..=48).contains(&policy.name.len())
                    && policy
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                &format!("{key}.name"),
                "must be 1 to 48 letters, digits, '-', '_' or '.'",
            );
            check(
                names.insert(&policy.name),
                &format!("{key}.name"),
                "is used by another policy",
            );
            check(
                policy.rate.is_finite() && policy.rate > 0.0 && policy.rate <= 1e9,
                &format!("{key}.rate"),
                "must be above 0 (requests per second)",
            );
            check(
                (1..=1_000_000).contains(&policy.burst),
                &format!("{key}.burst"),
                "must be 1 to 1000000",
            );
            self.backend_problems(policy, &key, check);
            if policy.routes.is_empty() {
                globals += 1;
            }
            for route in &policy.routes {
                let path = route.split_once(' ').map_or(route.as_str(), |(_, p)| p);
                check(
                    path.starts_with('/'),
                    &format!("{key}.routes"),
                    "each is a route pattern such as \"/login\" or \"POST /login\"",
                );
                check(
                    routes.insert(route),
                    &format!("{key}.routes"),
                    &format!("{route} is in another policy too"),
                );
            }
        }
        check(
            globals <= 1,
            "rate_limit.policy",
            "at most one policy may leave out routes (the global one)",
        );
        check(
            (1..=10_000).contains(&self.redis_timeout_ms),
            "rate_limit.redis_timeout_ms",
            "must be 1 to 10000",
        );
    }
}

/// `[[rate_limit.policy]]`: a rate and a burst, for some routes or all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// Its name in the `RateLimit` fields and logs.
    pub name: String,
    /// Requests per second, sustained.
    pub rate: f64,
    /// Requests allowed at once (nginx's `burst` with `nodelay`, plus one).
    pub burst: u32,
    /// Route patterns it covers (`/login`, `POST /login`); empty: every
    /// route no other policy names, and requests matching no route.
    pub routes: Vec<String>,
    /// Where its state lives: `local` (each shard's table) or `redis`
    /// (one state for every host, in `rate_limit.redis_url`).
    pub backend: String,
    /// With `backend = "redis"`, what a request gets when Redis does not
    /// answer in time: `open` (allowed) or `closed` (503). No default:
    /// the choice is the operator's.
    pub on_redis_error: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            rate: 10.0,
            burst: 20,
            routes: Vec::new(),
            backend: "local".into(),
            on_redis_error: String::new(),
        }
    }
}

/// `[openapi]`: the app's OpenAPI 3.1 document, generated from its routes,
/// and a documentation page over it; built-in routes like the health ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenApiConfig {
    /// Where the document is served (empty: not served).
    pub path: String,
    /// Where the documentation page is served (empty: not served).
    pub docs_path: String,
    /// The document's `info.title`.
    pub title: String,
    /// The document's `info.version`: the API's, not percore's.
    pub version: String,
}

impl Default for OpenApiConfig {
    fn default() -> Self {
        Self {
            path: "/openapi.json".into(),
            docs_path: "/docs".into(),
            title: "percore service".into(),
            version: "0.1.0".into(),
        }
    }
}

/// `[metrics]`: the Prometheus text endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// The route (empty: no metrics endpoint).
    pub path: String,
    /// An admin address to serve the route on instead of the shards'
    /// listeners (such as `127.0.0.1:9090`); unset, the shards serve it.
    pub listen: Option<SocketAddr>,
    /// Client addresses or blocks the shards' listeners serve the route to
    /// (others get 403): loopback by default, so metrics do not leak to
    /// the internet from a public listener. The admin listener serves
    /// whoever reaches it (bind it where only scrapers can).
    pub allow: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            path: "/metrics".into(),
            listen: None,
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

impl TimeoutsConfig {
    fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        for (key, value) in [
            ("timeouts.header_secs", self.header_secs),
            ("timeouts.body_secs", self.body_secs),
            ("timeouts.keepalive_secs", self.keepalive_secs),
            ("timeouts.request_secs", self.request_secs),
            ("timeouts.send_secs", self.send_secs),
        ] {
            check(value <= 86_400, key, "must be at most 86400 (a day)");
        }
        for (pattern, &secs) in &self.routes {
            let request = self.request_secs;
            check(
                secs >= 1 && (request == 0 || secs <= request),
                &format!("timeouts.routes.\"{pattern}\""),
                "must be 1 to timeouts.request_secs (a route's timeout only tightens it)",
            );
        }
    }
}

impl ServerConfig {
    fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            self.shards != Some(0),
            "server.shards",
            "must be at least 1",
        );
        check(
            (1..=256).contains(&self.blocking_threads),
            "server.blocking_threads",
            "must be 1 to 256",
        );
        check(
            (1..=65535).contains(&self.backlog),
            "server.backlog",
            "must be 1 to 65535",
        );
    }
}

impl MetricsConfig {
    fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        for block in &self.allow {
            if let Err(why) = Cidr::parse(block) {
                check(false, "metrics.allow", &why);
            }
        }
    }

    /// The metrics route on the shards' own listeners ("" when off or
    /// moved to the admin listener).
    #[must_use]
    pub fn shard_path(&self) -> &str {
        if self.listen.is_some() {
            ""
        } else {
            &self.path
        }
    }
}

/// `[cors]`: cross-origin requests, by the Fetch standard's CORS protocol,
/// answered before routing: a preflight (`OPTIONS` with
/// `Access-Control-Request-Method`) from an allowed origin gets 204 with
/// the allowed methods and headers, without a route of its own; every
/// other response to an allowed origin carries `Access-Control-Allow-Origin`.
/// Off while `allow_origins` is empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins allowed, exactly as browsers send them
    /// (`https://app.example`, `http://localhost:3000`), or `["*"]` for any.
    pub allow_origins: Vec<String>,
    /// Methods a preflight allows.
    pub allow_methods: Vec<String>,
    /// Request headers a preflight allows (`["*"]`: whatever is asked,
    /// unless credentials are allowed).
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read (`Access-Control-Expose-Headers`).
    pub expose_headers: Vec<String>,
    /// Whether cookies and authorization go with cross-origin requests
    /// (`Access-Control-Allow-Credentials: true`); not with `*` origins.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight's answer, in seconds.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_methods: ["GET", "HEAD", "POST"].map(String::from).to_vec(),
            allow_headers: ["content-type", "authorization"].map(String::from).to_vec(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age_secs: 600,
        }
    }
}

impl CorsConfig {
    fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let any = self.allow_origins.iter().any(|origin| origin == "*");
        check(
            !any || self.allow_origins.len() == 1,
            "cors.allow_origins",
            "\"*\" allows every origin and must be the only entry",
        );
        check(
            !(any && self.allow_credentials),
            "cors.allow_credentials",
            "cannot be true with cors.allow_origins = [\"*\"] (browsers refuse it); list the origins",
        );
        for origin in self.allow_origins.iter().filter(|o| *o != "*") {
            let ok = origin.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
                    && !rest.is_empty()
                    && !rest.contains(['/', ' ', '*'])
            });
            check(
                ok,
                "cors.allow_origins",
                &format!(
                    "{origin:?} is not an origin: scheme://host[:port], no path or trailing '/'"
                ),
            );
        }
        let token = |t: &str| crate::http::body::is_token_text(t.as_bytes());
        for (key, list) in [
            ("cors.allow_methods", &self.allow_methods),
            ("cors.allow_headers", &self.allow_headers),
            ("cors.expose_headers", &self.expose_headers),
        ] {
            for item in list {
                check(token(item), key, &format!("{item:?} is not a token"));
            }
        }
        check(
            self.max_age_secs <= 86_400,
            "cors.max_age_secs",
            "must be at most 86400 (browsers cap it lower)",
        );
    }
}

/// `[headers]`: security headers on every response (empty: not sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeadersConfig {
    /// `X-Content-Type-Options` (browsers must not guess content types).
    pub content_type_options: String,
    /// `X-Frame-Options` (who may frame the pages).
    pub frame_options: String,
    /// `Referrer-Policy`.
    pub referrer_policy: String,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        Self {
            content_type_options: "nosniff".into(),
            frame_options: "DENY".into(),
            referrer_policy: "strict-origin-when-cross-origin".into(),
        }
    }
}

impl HeadersConfig {
    /// The header lines to add, rendered once (`Name: value\r\n` each).
    #[must_use]
    pub fn render(&self) -> Vec<u8> {
        let mut lines = Vec::new();
        for (name, value) in [
            ("X-Content-Type-Options", &self.content_type_options),
            ("X-Frame-Options", &self.frame_options),
            ("Referrer-Policy", &self.referrer_policy),
        ] {
            if !value.is_empty() {
                lines.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        lines
    }
}

/// `[log]`: what to log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `percore=debug,warn`…
    /// (`RUST_LOG` overrides it unless `--log-level` is given).
    pub level: String,
    /// The access log: `off`, `combined` or `json`.
    pub access: AccessFormat,
    /// Where access lines go: a file (appended to), or standard output when
    /// empty.
    pub access_file: String,
    /// Give every request an ID (the client's `X-Request-ID`, or a new
    /// one), echo it in the response, let handlers read it (`RequestId`),
    /// and log every line of the request inside a `request` span with its
    /// method, route and ID. On whenever the access log is.
    pub request_id: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            access: AccessFormat::Off,
            access_file: String::new(),
            request_id: false,
        }
    }
}

/// Timeouts and caps every connection of a shard follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionRules {
    /// See [`TimeoutsConfig::header_secs`].
    pub header: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::body_secs`].
    pub body: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::keepalive_secs`].
    pub keepalive: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::request_secs`].
    pub request: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::send_secs`].
    pub send: Option<std::time::Duration>,
    /// See [`LimitsConfig::keepalive_requests`].
    pub keepalive_requests: u32,
    /// See [`LimitsConfig::max_connections`].
    pub max_connections: usize,
    /// See [`LimitsConfig::max_connections_per_ip`].
    pub max_connections_per_ip: u32,
    /// IPv6 clients are one client per this many leading bits (see
    /// [`RateLimitConfig::ipv6_prefix`]).
    pub client_prefix: u8,
}

impl Default for ConnectionRules {
    fn default() -> Self {
        Config::default().connection_rules()
    }
}

/// One configuration problem: the key it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, such as `server.listen[0]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Every problem with the values, each with its key path.
    #[must_use]
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem::new(key, message));
            }
        };
        check(
            !self.server.listen.is_empty() || !self.tls.listen.is_empty(),
            "server.listen",
            "needs at least one address (or tls.listen)",
        );
        self.server.problems(&mut check);
        let limits = &self.limits;
        check(
            (1024..=1 << 20).contains(&limits.max_head_bytes),
            "limits.max_head_bytes",
            "must be 1024 to 1048576",
        );
        check(
            (256..=limits.max_head_bytes).contains(&limits.max_request_line_bytes),
            "limits.max_request_line_bytes",
            "must be 256 to limits.max_head_bytes",
        );
        check(
            (1..=MAX_HEADERS_CEILING).contains(&limits.max_headers),
            "limits.max_headers",
            "must be 1 to 256",
        );
        check(
            limits.max_body_bytes <= 1 << 30,
            "limits.max_body_bytes",
            "must be at most 1073741824 (bodies are held in memory)",
        );
        check(
            (16..=65_536).contains(&limits.max_chunk_extension_bytes),
            "limits.max_chunk_extension_bytes",
            "must be 16 to 65536",
        );
        check(
            limits.max_connections >= 1,
            "limits.max_connections",
            "must be at least 1",
        );
        if !self.cookies.key.is_empty()
            && let Err(fix) = values::cookie_key(&self.cookies.key)
        {
            check(false, "cookies.key", fix);
        }
        check(
            matches!(limits.validation_status, 400 | 422),
            "limits.validation_status",
            "must be 422 or 400",
        );
        self.timeouts.problems(&mut check);
        for (key, path) in [
            ("health.liveness_path", &self.health.liveness_path),
            ("health.readiness_path", &self.health.readiness_path),
            ("metrics.path", &self.metrics.path),
            ("openapi.path", &self.openapi.path),
            ("openapi.docs_path", &self.openapi.docs_path),
        ] {
            check(
                path.is_empty() || path.starts_with('/'),
                key,
                "must start with '/' (or be empty)",
            );
        }
        for (key, value) in [
            (
                "headers.content_type_options",
                &self.headers.content_type_options,
            ),
            ("headers.frame_options", &self.headers.frame_options),
            ("headers.referrer_policy", &self.headers.referrer_policy),
        ] {
            check(
                value
                    .bytes()
                    .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()),
                key,
                "must be visible ASCII (no line breaks)",
            );
        }
        self.rate_limit.problems(&mut check);
        self.metrics.problems(&mut check);
        self.cors.problems(&mut check);
        self.tls.problems(&mut check);
        self.compression.problems(&mut check);
        self.http2.problems(&mut check);
        proxy::problems(
            &self.upstream,
            &self.route,
            &self.rate_limit.policy,
            &mut check,
        );
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(Problem::new("log.level", format!("not a log filter: {e}")));
        }
        problems
    }

    /// Whether the listeners steer each client address to one shard.
    #[must_use]
    pub fn steering(&self) -> bool {
        match self.server.steering {
            Steering::On => true,
            Steering::Off => false,
            Steering::Auto => {
                (self.rate_limit.enabled && self.rate_limit.key == "ip")
                    || self.limits.max_connections_per_ip > 0
            }
        }
    }

    /// The per-connection rules these settings describe.
    #[must_use]
    pub fn connection_rules(&self) -> ConnectionRules {
        let secs = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s));
        ConnectionRules {
            header: secs(self.timeouts.header_secs),
            body: secs(self.timeouts.body_secs),
            keepalive: secs(self.timeouts.keepalive_secs),
            request: secs(self.timeouts.request_secs),
            send: secs(self.timeouts.send_secs),
            keepalive_requests: self.limits.keepalive_requests,
            max_connections: self.limits.max_connections,
            max_connections_per_ip: self.limits.max_connections_per_ip,
            client_prefix: self.rate_limit.ipv6_prefix,
        }
    }

    /// The codec limits these settings describe.
    #[must_use]
    pub fn codec_limits(&self) -> Limits {
        Limits {
            max_request_line_bytes: self.limits.max_request_line_bytes,
            max_head_bytes: self.limits.max_head_bytes,
            max_headers: self.limits.max_headers,
            max_body_bytes: self.limits.max_body_bytes,
            max_chunk_extension_bytes: self.limits.max_chunk_extension_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, Problem};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.listen[0].to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn file_values_and_unknown_keys() {
        let config =
            Config::from_toml("[server]\nlisten = [\"[::1]:9000\"]\nshards = 2\ncpus = \"0-1\"\n")
                .unwrap();
        assert_eq!(config.server.shards, Some(2));
        assert_eq!(config.server.cpus.unwrap().0, vec![0, 1]);
        let problems = Config::from_toml("[server]\nlisten_on = 1\n[extra]\nx = 1\n").unwrap_err();
        assert_eq!(keys(&problems), ["extra", "server.listen_on"]);
    }

    #[test]
    fn type_errors_name_the_key() {
        let problems = Config::from_toml("[server]\nlisten = [\"nonsense\"]\n").unwrap_err();
        assert_eq!(keys(&problems), ["server.listen[0]"]);
        let problems = Config::from_toml("[limits]\nmax_headers = \"many\"\nmax_body_bytes = -1\n")
            .unwrap_err();
        assert_eq!(
            keys(&problems),
            ["limits.max_body_bytes", "limits.max_headers"]
        );
        assert_eq!(
            problems[1].message,
            "invalid type: string \"many\", expected usize"
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut config = Config::default();
        config.server.listen.clear();
        config.server.shards = Some(0);
        config.limits.max_headers = 1000;
        config.log.level = "loud=[".into();
        assert_eq!(
            keys(&config.validate()),
            [
                "server.listen",
                "server.shards",
                "limits.max_headers",
                "log.level"
            ]
        );
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("percore.toml");
        std::fs::write(&path, "[server]\nshards = 1\nbacklog = 10\n").unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("PERCORE_SHARDS", "2"),
                ("PERCORE_LISTEN", "127.0.0.1:1, [::1]:2"),
                ("HOME", "/"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.shards, Some(2));
        assert_eq!(config.server.backlog, 10);
        assert_eq!(config.server.listen.len(), 2);
    }

    #[test]
    fn every_documented_variable_is_read_and_every_read_one_documented() {
        let readme = include_str!("../../README.md");
        let documented: std::collections::BTreeSet<&str> = readme
            .match_indices("PERCORE_")
            .map(|(at, _)| {
                let rest = &readme[at..];
                &rest[..rest
                    .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(rest.len())]
            })
            .filter(|name| !name.ends_with('_'))
            .collect();
        let known: std::collections::BTreeSet<&str> = super::load::ENV_KEYS
            .iter()
            .map(|(name, _, _)| *name)
            .chain(super::load::ENV_NOT_KEYS.iter().copied())
            .collect();
        assert_eq!(documented, known);
        // Each key an environment variable names exists in the config tree.
        for (name, key, _) in super::load::ENV_KEYS {
            let (section, field) = key.split_once('.').unwrap();
            let text = format!("[{section}]\n{field} = 1\n");
            let problems = Config::from_toml(&text).err().unwrap_or_default();
            assert!(
                !problems.iter().any(|p| p.message == "unknown key"),
                "{name} -> {key}"
            );
        }
    }

    #[test]
    fn bad_environment_is_reported() {
        let problems = Config::load(
            None,
            env(&[("PERCORE_SHARD", "2"), ("PERCORE_BACKLOG", "x")]),
        )
        .unwrap_err();
        assert_eq!(keys(&problems), ["PERCORE_SHARD", "server.backlog"]);
    }
}
