//! `[[upstream]]` and `[[route]]`: the apps percore sits in front of, and
//! which paths go to them (nginx's `upstream` and `location` blocks).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[[upstream]]`: a named group of servers, how requests are spread over
/// them, how connections to them are kept, and how their health is judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    /// Its name, as routes name it (`proxy = "app"`).
    pub name: String,
    /// Its servers: `"host:port"`, `"unix:/path"`, or tables with
    /// `address`, `weight`, `max_fails` and `fail_timeout_secs`.
    pub servers: Vec<ServerEntry>,
    /// How a server is picked: `round_robin` (weighted), `least_conn`,
    /// `ip_hash` (consistent: the client address picks the server, and
    /// adding one moves few clients) or `random_two` (the less busy of two
    /// random choices).
    pub balance: String,
    /// Idle connections kept per server, per shard (nginx `keepalive`).
    pub keepalive: usize,
    /// How long a connection beyond `keepalive` may stay idle before it
    /// is closed (0: at once, as nginx does). A burst's extra connections
    /// then carry the next burst instead of being closed and made again;
    /// a shard never keeps more than it had busy at once in this window.
    pub keepalive_surplus_ms: u64,
    /// An idle connection is closed after this (nginx `keepalive_timeout`).
    pub keepalive_timeout_secs: u64,
    /// A connection is closed after this many requests (0: no limit).
    pub keepalive_requests: u32,
    /// Connections per server, per shard, busy or idle (0: no cap).
    pub max_connections: usize,
    /// Connecting to a server (nginx `proxy_connect_timeout`); then 502.
    pub connect_timeout_ms: u64,
    /// Between two writes of the request (nginx `proxy_send_timeout`).
    pub send_timeout_secs: u64,
    /// Between two reads of the response (nginx `proxy_read_timeout`);
    /// waiting for the response head past it answers 504.
    pub read_timeout_secs: u64,
    /// Servers a request may be tried on (nginx `proxy_next_upstream_tries`;
    /// 0: every server once). The next server is tried after a connect
    /// failure, and for an idempotent request whose body can be sent
    /// again, after a failure with no response.
    pub next_upstream_tries: u32,
    /// Active health checks (off unless `path` is set).
    pub health: HealthCheckConfig,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            servers: Vec::new(),
            balance: "round_robin".into(),
            keepalive: 32,
            keepalive_surplus_ms: 1000,
            keepalive_timeout_secs: 60,
            keepalive_requests: 1000,
            max_connections: 0,
            connect_timeout_ms: 5000,
            send_timeout_secs: 60,
            read_timeout_secs: 60,
            next_upstream_tries: 0,
            health: HealthCheckConfig::default(),
        }
    }
}

/// A server of an upstream: an address alone, or a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerEntry {
    /// `"127.0.0.1:8000"` or `"unix:/run/app.sock"`, with the defaults.
    Address(String),
    /// `{ address = "...", weight = 3 }`.
    Full(UpstreamServer),
}

impl ServerEntry {
    /// The server's settings, defaults filled in.
    #[must_use]
    pub fn settings(&self) -> UpstreamServer {
        match self {
            Self::Address(address) => UpstreamServer {
                address: address.clone(),
                ..UpstreamServer::default()
            },
            Self::Full(server) => server.clone(),
        }
    }
}

/// One server of an upstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamServer {
    /// `host:port`, or `unix:/path` for a Unix socket (gunicorn's
    /// `bind = "unix:..."`).
    pub address: String,
    /// Its share of the requests, relative to the others'.
    pub weight: u32,
    /// Failures within `fail_timeout_secs` that take it out of rotation
    /// for `fail_timeout_secs` (nginx `max_fails`; 0: never).
    pub max_fails: u32,
    /// The failure window, and how long a failed server rests.
    pub fail_timeout_secs: u64,
}

impl Default for UpstreamServer {
    fn default() -> Self {
        Self {
            address: String::new(),
            weight: 1,
            max_fails: 1,
            fail_timeout_secs: 10,
        }
    }
}

/// `[upstream.health]`: each shard asks every server `GET path` at an
/// interval; `fall` failures in a row take it out of rotation and `rise`
/// successes bring it back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheckConfig {
    /// The path asked (empty: no active checks).
    pub path: String,
    /// Between two checks of a server.
    pub interval_secs: u64,
    /// A check without a 2xx or 3xx answer within this failed.
    pub timeout_ms: u64,
    /// Successes in a row that bring a server back.
    pub rise: u32,
    /// Failures in a row that take it out.
    pub fall: u32,
    /// `/health/ready` fails while no server of this upstream is healthy.
    pub readiness: bool,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            interval_secs: 5,
            timeout_ms: 1000,
            rise: 2,
            fall: 3,
            readiness: false,
        }
    }
}

/// `[[route]]`: requests under a prefix (or at one path) sent to an
/// upstream, with the route's own limits and header rules; or, without
/// `proxy`, the limits of the app's own routes under it (body limit,
/// rate-limit policy, timeout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConfig {
    /// The path prefix it takes, by whole segments: `"/api/"` takes
    /// `/api/` and everything under it; `"/api"` also takes `/api`.
    pub prefix: String,
    /// Or one exact path.
    pub path: String,
    /// The upstream it goes to (empty: files, with `static`, or the app's
    /// own routes under the prefix, which get the limits given here).
    pub proxy: String,
    /// The files it serves (`static = { alias = "/srv/static" }`).
    #[serde(rename = "static")]
    pub files: Option<super::StaticConfig>,
    /// Compress its responses (else `compression.enabled` decides).
    pub compress: Option<bool>,
    /// Take the prefix off the path sent upstream (`/api/users` goes as
    /// `/users`).
    pub strip_prefix: bool,
    /// The `Host` sent upstream: `"pass"` (the client's), `"upstream"`
    /// (the server's address) or a value of its own.
    pub host: String,
    /// The largest request body (else `limits.max_body_bytes`); bodies
    /// stream to the upstream as they arrive, so this may be large.
    pub max_body_bytes: Option<u64>,
    /// The rate-limit policy its requests are counted under (else the
    /// global policy, if any).
    pub rate_limit: String,
    /// The whole request, up to the upstream's response head, in seconds
    /// (else `timeouts.request_secs`); then 504.
    pub timeout_secs: u64,
    /// Read the upstream's response ahead of a slow client, up to
    /// `buffer_bytes`, so the upstream is freed sooner (nginx
    /// `proxy_buffering`); else the response streams at the client's pace.
    pub buffering: bool,
    /// How much a buffering route reads ahead.
    pub buffer_bytes: u64,
    /// Upgrades it tunnels (`Upgrade: websocket`); empty: none.
    pub upgrade: Vec<String>,
    /// A tunnel with no byte either way for this long is closed.
    pub tunnel_idle_secs: u64,
    /// Add `Via: 1.1 percore` both ways.
    pub via: bool,
    /// Fields set on the request sent upstream (replacing the client's).
    pub request_headers: BTreeMap<String, String>,
    /// Fields set on the response to the client (replacing the upstream's).
    pub response_headers: BTreeMap<String, String>,
    /// An HTML file answered instead of the JSON body of a 502, 503 or
    /// 504 made here (nginx `error_page`).
    pub error_page: String,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            path: String::new(),
            proxy: String::new(),
            files: None,
            compress: None,
            strip_prefix: false,
            host: "pass".into(),
            max_body_bytes: None,
            rate_limit: String::new(),
            timeout_secs: 0,
            buffering: false,
            buffer_bytes: 1 << 20,
            upgrade: vec!["websocket".into()],
            tunnel_idle_secs: 600,
            via: false,
            request_headers: BTreeMap::new(),
            response_headers: BTreeMap::new(),
            error_page: String::new(),
        }
    }
}

impl RouteConfig {
    /// The route patterns it claims: a prefix's tail (and the prefix
    /// itself when it has no trailing slash), or the exact path.
    #[must_use]
    pub fn patterns(&self) -> Vec<String> {
        if !self.path.is_empty() {
            return vec![self.path.clone()];
        }
        let trimmed = self.prefix.trim_end_matches('/');
        let mut patterns = vec![format!("{trimmed}/{{*proxied}}")];
        if !self.prefix.ends_with('/') {
            patterns.push(trimmed.to_owned());
        }
        patterns
    }

    /// Whether the route pattern `pattern` (the app's, or one of
    /// [`patterns`](Self::patterns)) is under this route: its exact path,
    /// or the prefix by whole segments.
    #[must_use]
    pub fn covers(&self, pattern: &str) -> bool {
        if !self.path.is_empty() {
            return pattern == self.path;
        }
        let trimmed = self.prefix.trim_end_matches('/');
        (!self.prefix.ends_with('/') && pattern == trimmed)
            || pattern
                .strip_prefix(trimmed)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Proxies to an upstream.
    #[must_use]
    pub fn proxied(&self) -> bool {
        !self.proxy.is_empty()
    }

    /// Routes requests to a handler of its own (an upstream, or files);
    /// else it sets limits for the app's routes under it.
    #[must_use]
    pub fn handled(&self) -> bool {
        self.proxied() || self.files.is_some()
    }

    /// The prefix taken off the path when `strip_prefix` is set.
    #[must_use]
    pub fn strip(&self) -> Option<&str> {
        (self.strip_prefix && self.path.is_empty()).then(|| self.prefix.trim_end_matches('/'))
    }
}

/// What proxied routes read of the configuration in force: the upstreams
/// they name, and the peers whose forwarding fields are believed
/// (`rate_limit.trusted_proxies`). Made again on every reload.
#[derive(Debug, Default)]
pub(crate) struct ProxyTable {
    pub(crate) upstreams: Vec<std::sync::Arc<UpstreamConfig>>,
    pub(crate) trusted: Vec<super::Cidr>,
}

impl ProxyTable {
    pub(crate) fn of(config: &super::Config) -> Self {
        Self {
            upstreams: config
                .upstream
                .iter()
                .cloned()
                .map(std::sync::Arc::new)
                .collect(),
            trusted: config
                .rate_limit
                .trusted_proxies
                .iter()
                .filter_map(|c| super::Cidr::parse(c).ok())
                .collect(),
        }
    }

    /// The upstream named `name`.
    pub(crate) fn upstream(&self, name: &str) -> Option<&std::sync::Arc<UpstreamConfig>> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

const BALANCES: [&str; 4] = ["round_robin", "least_conn", "ip_hash", "random_two"];

/// Whether `address` is `host:port` or `unix:/absolute/path`.
fn address_ok(address: &str) -> bool {
    if let Some(path) = address.strip_prefix("unix:") {
        return path.starts_with('/');
    }
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// Every problem of the upstreams and routes.
pub(crate) fn problems(
    upstreams: &[UpstreamConfig],
    routes: &[RouteConfig],
    policies: &[super::PolicyConfig],
    check: &mut impl FnMut(bool, &str, &str),
) {
    upstream_problems(upstreams, check);
    route_problems(upstreams, routes, policies, check);
}

fn upstream_problems(upstreams: &[UpstreamConfig], check: &mut impl FnMut(bool, &str, &str)) {
    for (at, upstream) in upstreams.iter().enumerate() {
        let key = format!("upstream[{at}]");
        check(
            !upstream.name.is_empty()
                && upstream
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            &format!("{key}.name"),
            "must be letters, digits, '_' or '-'",
        );
        check(
            !upstreams[..at].iter().any(|u| u.name == upstream.name),
            &format!("{key}.name"),
            "is already the name of another upstream",
        );
        check(
            !upstream.servers.is_empty(),
            &format!("{key}.servers"),
            "needs at least one server",
        );
        for (i, server) in upstream.servers.iter().enumerate() {
            let server = server.settings();
            check(
                address_ok(&server.address),
                &format!("{key}.servers[{i}].address"),
                "must be host:port or unix:/absolute/path",
            );
            check(
                (1..=1000).contains(&server.weight),
                &format!("{key}.servers[{i}].weight"),
                "must be 1 to 1000",
            );
            check(
                server.fail_timeout_secs >= 1,
                &format!("{key}.servers[{i}].fail_timeout_secs"),
                "must be at least 1",
            );
        }
        check(
            BALANCES.contains(&upstream.balance.as_str()),
            &format!("{key}.balance"),
            "must be round_robin, least_conn, ip_hash or random_two",
        );
        check(
            (1..=600_000).contains(&upstream.connect_timeout_ms),
            &format!("{key}.connect_timeout_ms"),
            "must be 1 to 600000",
        );
        check(
            upstream.keepalive_surplus_ms <= 600_000,
            &format!("{key}.keepalive_surplus_ms"),
            "must be 0 to 600000",
        );
        for (name, secs) in [
            ("send_timeout_secs", upstream.send_timeout_secs),
            ("read_timeout_secs", upstream.read_timeout_secs),
            ("keepalive_timeout_secs", upstream.keepalive_timeout_secs),
        ] {
            check(
                (1..=86_400).contains(&secs),
                &format!("{key}.{name}"),
                "must be 1 to 86400",
            );
        }
        let health = &upstream.health;
        if !health.path.is_empty() {
            check(
                health.path.starts_with('/'),
                &format!("{key}.health.path"),
                "must start with '/'",
            );
            check(
                health.interval_secs >= 1
                    && health.timeout_ms >= 1
                    && health.rise >= 1
                    && health.fall >= 1,
                &format!("{key}.health"),
                "interval_secs, timeout_ms, rise and fall must each be at least 1",
            );
        }
    }
}

fn route_problems(
    upstreams: &[UpstreamConfig],
    routes: &[RouteConfig],
    policies: &[super::PolicyConfig],
    check: &mut impl FnMut(bool, &str, &str),
) {
    for (at, route) in routes.iter().enumerate() {
        let key = format!("route[{at}]");
        let one = route.prefix.is_empty() != route.path.is_empty();
        check(
            one,
            &key,
            "needs exactly one of prefix (a path prefix) and path (one exact path)",
        );
        for (name, value) in [("prefix", &route.prefix), ("path", &route.path)] {
            check(
                value.is_empty() || (value.starts_with('/') && !value.contains('{')),
                &format!("{key}.{name}"),
                "must start with '/' and hold no '{'",
            );
        }
        check(
            !(route.proxied() && route.files.is_some()),
            &key,
            "proxies (proxy) or serves files (static), not both",
        );
        if let Some(files) = &route.files {
            files.problems(&format!("{key}.static"), check);
            check(
                route.max_body_bytes.is_none() && route.timeout_secs == 0,
                &key,
                "max_body_bytes and timeout_secs do not apply to files (they take no body)",
            );
        }
        check(
            !route.proxied() || upstreams.iter().any(|u| u.name == route.proxy),
            &format!("{key}.proxy"),
            "must name an [[upstream]]",
        );
        let defaults = RouteConfig::default();
        let proxy_only = route.strip_prefix
            || route.host != defaults.host
            || route.buffering
            || route.via
            || !route.request_headers.is_empty()
            || !route.response_headers.is_empty()
            || !route.error_page.is_empty();
        check(
            route.proxied() || !proxy_only,
            &key,
            "strip_prefix, host, buffering, via, request_headers, response_headers and error_page \
             apply to a proxied route: set proxy, or remove them",
        );
        check(
            route.rate_limit.is_empty() || policies.iter().any(|p| p.name == route.rate_limit),
            &format!("{key}.rate_limit"),
            "must name a [[rate_limit.policy]]",
        );
        check(
            ["pass", "upstream"].contains(&route.host.as_str())
                || (!route.host.is_empty()
                    && crate::http::write::valid_field("Host", route.host.as_bytes())),
            &format!("{key}.host"),
            "must be \"pass\", \"upstream\" or a host name",
        );
        check(
            route.tunnel_idle_secs >= 1,
            &format!("{key}.tunnel_idle_secs"),
            "must be at least 1",
        );
        check(
            route.buffer_bytes <= 1 << 30,
            &format!("{key}.buffer_bytes"),
            "must be at most 1073741824",
        );
        for (name, value) in route.request_headers.iter().chain(&route.response_headers) {
            check(
                crate::http::write::valid_field(name, value.as_bytes())
                    && !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
                &format!("{key}.headers.{name}"),
                "must be a field name with a value on one line",
            );
        }
        check(
            route.error_page.is_empty() || std::path::Path::new(&route.error_page).is_file(),
            &format!("{key}.error_page"),
            "must be a readable file",
        );
    }
}
