//! Rate limiting inside each shard, with nothing shared between cores.
//!
//! Each policy (a rate and a burst, global or for some routes) keeps a
//! bounded [`Table`] of keys per shard, checked with [`Gcra`]. With
//! steering on (the listeners' cBPF program sends every connection of a
//! client address to one shard), a limit keyed by client address is exact:
//! one shard sees all of that client's requests. Keyed otherwise (a
//! forwarded address, a header) or without steering, a client's requests
//! spread over the shards, so each shard enforces `rate / shards` and
//! `⌈burst / shards⌉` and the sum is the configured limit.

pub(crate) mod gcra;
pub(crate) mod key;
pub(crate) mod remote;
pub(crate) mod table;

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

pub(crate) use crate::config::Cidr;
use crate::config::KeySource;
pub(crate) use gcra::{Gcra, Verdict};
pub(crate) use key::client_ip;
pub(crate) use table::{Key, Table};

use crate::config::RateLimitConfig;
use crate::http::parse::HeaderSpan;
use crate::http::write::push_decimal;
use crate::observe::log::OncePerSecond;
use crate::observe::metrics::{FIRST_APP_ROUTE, RouteLabel, UNMATCHED};

/// One policy as a shard enforces it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) gcra: Gcra,
    /// Requests at once, as configured (for the `RateLimit-Policy` field).
    pub(crate) quota: u32,
    /// Seconds to earn the quota back at the configured rate.
    pub(crate) window: u64,
    /// Route patterns (`/login` or `POST /login`); empty: every other route.
    pub(crate) routes: Vec<String>,
    /// `[[route]]` tables naming it: the routes under each.
    pub(crate) under: Vec<crate::config::RouteConfig>,
    /// Kept in Redis (`backend = "redis"`): whether a request is allowed
    /// when Redis does not answer.
    pub(crate) remote: Option<FailOpen>,
}

/// Whether a fleet-wide policy lets requests through while Redis is
/// unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FailOpen(pub(crate) bool);

/// The rate-limit settings a shard runs with.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct LimitSettings {
    pub(crate) enabled: bool,
    pub(crate) dry_run: bool,
    pub(crate) source: Option<KeySource>,
    pub(crate) trusted: Vec<Cidr>,
    pub(crate) ipv6_prefix: u8,
    pub(crate) max_keys: usize,
    pub(crate) headers: bool,
    pub(crate) policies: Vec<Policy>,
    /// The Redis of fleet-wide policies, and how long a check waits for it.
    pub(crate) redis_url: String,
    pub(crate) redis_timeout: std::time::Duration,
}

impl LimitSettings {
    /// What each of `shards` shards enforces of `config`; `exact` when
    /// steering gives one client's requests to one shard.
    pub(crate) fn of(
        config: &RateLimitConfig,
        routes: &[crate::config::RouteConfig],
        shards: usize,
        exact: bool,
    ) -> Self {
        let share = if exact { 1 } else { shards.max(1) };
        let share_u32 = u32::try_from(share).unwrap_or(u32::MAX);
        #[allow(clippy::cast_precision_loss, reason = "a shard count")]
        let policies = config
            .policy
            .iter()
            .map(|p| {
                // A fleet-wide policy's state is one, in Redis: never shared out.
                let remote = (p.backend == "redis").then_some(FailOpen(p.on_redis_error == "open"));
                let (share, share_u32) = if remote.is_some() {
                    (1, 1)
                } else {
                    (share, share_u32)
                };
                Policy {
                    name: p.name.clone(),
                    gcra: Gcra::new(p.rate / share as f64, p.burst.div_ceil(share_u32)),
                    quota: p.burst,
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "a positive number of seconds"
                    )]
                    window: (f64::from(p.burst) / p.rate).ceil().max(1.0) as u64,
                    routes: p.routes.clone(),
                    // A [[route]] names its policy in its own table; the
                    // global policy covers its routes anyway.
                    under: routes
                        .iter()
                        .filter(|r| r.rate_limit == p.name && !p.routes.is_empty())
                        .cloned()
                        .collect(),
                    remote,
                }
            })
            .collect();
        Self {
            enabled: config.enabled,
            dry_run: config.dry_run,
            source: config.key_source(),
            trusted: config
                .trusted_proxies
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
            ipv6_prefix: config.ipv6_prefix,
            max_keys: config.max_keys,
            headers: config.headers,
            policies,
            redis_url: config.redis_url.clone(),
            redis_timeout: std::time::Duration::from_millis(config.redis_timeout_ms),
        }
    }
}

/// Header lines decided after a response writer was made: the rate-limit
/// fields of the request, rendered when the head is written. Filled at
/// most once per request; nothing is allocated.
#[derive(Default)]
pub(crate) struct RateLimitHeaders {
    /// The policy's fixed part, up to `RateLimit: "name";r=`.
    prefix: RefCell<Option<Rc<[u8]>>>,
    remaining: Cell<u64>,
    reset_secs: Cell<u64>,
}

impl RateLimitHeaders {
    /// Sets `RateLimit-Policy` and `RateLimit`
    /// (draft-ietf-httpapi-ratelimit-headers): the quota and its window,
    /// what is left and when the quota is whole again.
    fn set(&self, prefix: &Rc<[u8]>, verdict: &Verdict) {
        *self.prefix.borrow_mut() = Some(Rc::clone(prefix));
        self.remaining.set(verdict.remaining);
        self.reset_secs.set(ceil_secs(verdict.reset_ns));
    }
}

impl crate::http::write::LateHeaders for RateLimitHeaders {
    fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(prefix) = &*self.prefix.borrow() {
            out.extend_from_slice(prefix);
            push_decimal(out, self.remaining.get());
            out.extend_from_slice(b";t=");
            push_decimal(out, self.reset_secs.get());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The fixed part of a policy's fields.
fn fields_prefix(policy: &Policy) -> Rc<[u8]> {
    format!(
        "RateLimit-Policy: \"{name}\";q={q};w={w}\r\nRateLimit: \"{name}\";r=",
        name = policy.name,
        q = policy.quota,
        w = policy.window,
    )
    .into_bytes()
    .into()
}

/// A refused request: what the 429 says (or, for a fleet-wide policy
/// whose Redis did not answer and that fails closed, the 503).
pub(crate) struct Refusal {
    pub(crate) retry_after_secs: u64,
    pub(crate) unavailable: bool,
}

/// What the limiter decided of a request at once.
pub(crate) enum Decision {
    Pass,
    Refuse(Refusal),
    /// A fleet-wide policy: ask Redis ([`Limiter::remote`]), then
    /// [`Limiter::settle`].
    Ask(Ask),
}

/// A check to make in Redis.
pub(crate) struct Ask {
    index: usize,
    key: Key,
}

/// One shard's limiter: its policies' tables and counts.
pub(crate) struct Limiter {
    settings: LimitSettings,
    tables: RefCell<Vec<Table>>,
    /// Each policy's fixed field text.
    prefixes: Vec<Rc<[u8]>>,
    /// The policy of each route slot (`None`: exempt).
    by_slot: Vec<Option<usize>>,
    epoch: Instant,
    seed: RandomState,
    /// The link to Redis, when a policy is fleet-wide.
    remote: Option<Rc<remote::Remote>>,
    limited: Cell<u64>,
    dry_run_limited: Cell<u64>,
    last_log: OncePerSecond,
}

impl Limiter {
    /// A limiter for an app with route `labels`.
    pub(crate) fn new(settings: LimitSettings, labels: &[RouteLabel]) -> Self {
        let global = settings.policies.iter().position(|p| p.routes.is_empty());
        let by_slot = labels
            .iter()
            .enumerate()
            .map(|(slot, label)| {
                if slot != UNMATCHED && slot < FIRST_APP_ROUTE {
                    return None; // health and metrics are never limited
                }
                let named = format!("{} {}", label.method, label.route);
                settings
                    .policies
                    .iter()
                    .position(|p| {
                        p.routes.iter().any(|r| *r == label.route || *r == named)
                            || p.under.iter().any(|r| r.covers(&label.route))
                    })
                    .or(global)
            })
            .collect();
        let tables = settings
            .policies
            .iter()
            .map(|_| Table::new(settings.max_keys))
            .collect();
        let prefixes = settings.policies.iter().map(fields_prefix).collect();
        let remote = settings
            .policies
            .iter()
            .any(|p| p.remote.is_some())
            .then(|| {
                Rc::new(remote::Remote::new(
                    &settings.redis_url,
                    settings.redis_timeout,
                ))
            });
        Self {
            remote,
            settings,
            tables: RefCell::new(tables),
            prefixes,
            by_slot,
            epoch: Instant::now(),
            seed: RandomState::new(),
            limited: Cell::new(0),
            dry_run_limited: Cell::new(0),
            last_log: OncePerSecond::default(),
        }
    }

    /// Takes `fresh`'s place, keeping the refusal counts (metrics).
    pub(crate) fn replace_keeping_counts(&mut self, fresh: Self) {
        let counts = self.counts();
        *self = fresh;
        self.limited.set(counts.0);
        self.dry_run_limited.set(counts.1);
    }

    /// The settings this limiter enforces.
    pub(crate) fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// Checks a request to route `slot`. Allowed requests get the
    /// `RateLimit` fields in `late` when asked.
    pub(crate) fn check(
        &self,
        slot: usize,
        request: &ClientIdentity<'_>,
        now: Instant,
        late: &RateLimitHeaders,
    ) -> Decision {
        if !self.settings.enabled {
            return Decision::Pass;
        }
        let Some(index) = self.by_slot.get(slot).copied().flatten() else {
            return Decision::Pass;
        };
        let policy = &self.settings.policies[index];
        let Some(key) = self.key(request, policy.remote.is_some()) else {
            return Decision::Pass;
        };
        if policy.remote.is_some() {
            return Decision::Ask(Ask { index, key });
        }
        let nanos = u64::try_from(now.duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let verdict = self.tables.borrow_mut()[index].check(key, &policy.gcra, nanos);
        self.decide(index, &verdict, request, late)
            .map_or(Decision::Pass, Decision::Refuse)
    }

    /// The Redis link and the policy of `ask`, for the check to await.
    pub(crate) fn remote(&self, ask: &Ask) -> Option<(Rc<remote::Remote>, Policy, Key)> {
        let remote = self.remote.as_ref()?;
        Some((
            Rc::clone(remote),
            self.settings.policies[ask.index].clone(),
            ask.key,
        ))
    }

    /// Decides `ask` from what Redis answered: its verdict, or (`None`:
    /// it did not answer, already counted and logged) the policy's
    /// `on_redis_error`.
    pub(crate) fn settle(
        &self,
        ask: &Ask,
        answer: Option<Verdict>,
        request: &ClientIdentity<'_>,
        late: &RateLimitHeaders,
    ) -> Option<Refusal> {
        let policy = &self.settings.policies[ask.index];
        match answer {
            Some(verdict) => self.decide(ask.index, &verdict, request, late),
            None if policy.remote.is_some_and(|FailOpen(open)| open) => None,
            None => Some(Refusal {
                retry_after_secs: 1,
                unavailable: true,
            }),
        }
    }

    /// What `verdict` means for the request, dry run and headers included.
    fn decide(
        &self,
        index: usize,
        verdict: &Verdict,
        request: &ClientIdentity<'_>,
        late: &RateLimitHeaders,
    ) -> Option<Refusal> {
        let policy = &self.settings.policies[index];
        if verdict.allowed {
            if self.settings.headers && !self.settings.dry_run {
                late.set(&self.prefixes[index], verdict);
            }
            return None;
        }
        if self.settings.dry_run {
            self.dry_run_limited.set(self.dry_run_limited.get() + 1);
            self.log(policy, request, "would be rate limited (dry run)");
            return None;
        }
        self.limited.set(self.limited.get() + 1);
        self.log(policy, request, "rate limited");
        late.set(&self.prefixes[index], verdict);
        Some(Refusal {
            retry_after_secs: ceil_secs(verdict.retry_after_ns).max(1),
            unavailable: false,
        })
    }

    /// Checks of fleet-wide policies that Redis did not answer.
    pub(crate) fn backend_errors(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.errors())
    }

    /// Requests refused so far, and those a dry run would have refused.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.limited.get(), self.dry_run_limited.get())
    }

    /// Keys held and evicted so far, over every policy.
    pub(crate) fn keys(&self) -> (u64, u64) {
        let tables = self.tables.borrow();
        (
            tables.iter().map(|t| t.len() as u64).sum(),
            tables.iter().map(Table::evictions).sum(),
        )
    }

    /// The key of `request`; `stable` for a fleet-wide policy (the same on
    /// every host: header values hashed without the shard's seed).
    fn key(&self, request: &ClientIdentity<'_>, stable: bool) -> Option<Key> {
        let peer = request.peer?.ip();
        let settings = &self.settings;
        let ip = match settings.source.as_ref()? {
            KeySource::Ip => peer,
            KeySource::Forwarded => key::client_ip(
                peer,
                &settings.trusted,
                request.header("forwarded"),
                request.header("x-forwarded-for"),
            ),
            KeySource::Header(name) => {
                if let Some(value) = request.header(name) {
                    return Some(if stable {
                        key::stable_header_key(value)
                    } else {
                        key::header_key(value, &self.seed)
                    });
                }
                peer
            }
        };
        Some(key::ip_key(ip, settings.ipv6_prefix))
    }

    /// Logs a refusal, at most once a second per shard.
    fn log(&self, policy: &Policy, request: &ClientIdentity<'_>, what: &str) {
        if self.last_log.ready() {
            tracing::warn!(policy = policy.name, peer = ?request.peer, "{what}");
        }
    }
}

/// What the limiter reads of a request.
pub(crate) struct ClientIdentity<'a> {
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) headers: &'a [HeaderSpan],
    pub(crate) bytes: &'a [u8],
}

impl ClientIdentity<'_> {
    /// The value of the first field named `name`.
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.get(self.bytes).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.get(self.bytes))
    }
}

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}
