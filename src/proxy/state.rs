//! An upstream as one shard holds it: its servers with their passive and
//! active health, in-flight counts and statistics, and the client whose
//! pools keep the connections to them. Nothing here is shared with another
//! shard: each shard has its own (a thread-local registry), so nothing is
//! locked.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::balance::{self, Balance, Candidate};
use crate::client::forward::Endpoint;
use crate::client::{BreakerConfig, Client, ClientConfig, PoolConfig, RetryConfig};
use crate::config::UpstreamConfig;
use crate::observe::upstream::{LATENCY_BUCKETS_US, ServerSnapshot, UpstreamSnapshot};

/// Kinds of failure counted per server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Could not connect (refused, unreachable, connect timeout).
    Connect = 0,
    /// Connected, but no response head within the read timeout.
    Timeout = 1,
    /// The connection broke (before the head, or mid-body).
    Broken = 2,
    /// The response was not valid HTTP.
    Protocol = 3,
}

/// One server of an upstream on this shard.
pub(crate) struct Server {
    /// As configured (`127.0.0.1:8000`, `unix:/run/app.sock`).
    pub(crate) address: String,
    /// Its `Host` value when the route sends the upstream's own.
    pub(crate) host: String,
    pub(crate) endpoint: Endpoint,
    /// Its health-check URL (empty: no checks).
    check_url: String,
    weight: u32,
    max_fails: u32,
    fail_timeout: Duration,
    key: u64,
    credit: Cell<i64>,
    active: Cell<u32>,
    /// Passive health: failures counted since `first_fail`, and the end
    /// of its rest after `max_fails` of them.
    fails: Cell<u32>,
    first_fail: Cell<Option<Instant>>,
    down_until: Cell<Option<Instant>>,
    /// Active health: in rotation, and checks in a row that disagree.
    healthy: Cell<bool>,
    streak: Cell<u32>,
    pub(crate) stats: Stats,
}

/// What one server served from this shard.
#[derive(Default)]
pub(crate) struct Stats {
    /// Responses by status class (1xx to 5xx).
    pub(crate) responses: [Cell<u64>; 5],
    pub(crate) failures: [Cell<u64>; 4],
    /// Time to the response head, by [`LATENCY_BUCKETS_US`] (+Inf last).
    pub(crate) latency: [Cell<u64>; 11],
    pub(crate) latency_sum_us: Cell<u64>,
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get().wrapping_add(1));
}

impl Candidate for Server {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn active(&self) -> u32 {
        self.active.get()
    }
    fn credit(&self) -> &Cell<i64> {
        &self.credit
    }
    fn key(&self) -> u64 {
        self.key
    }
}

impl Server {
    /// In rotation: not resting after failures, and healthy by its checks.
    fn available(&self, now: Instant) -> bool {
        self.healthy.get() && self.down_until.get().is_none_or(|until| now >= until)
    }

    /// A request to it starts; the guard ends it.
    pub(crate) fn begin(self: &Rc<Self>) -> InFlight {
        self.active.set(self.active.get() + 1);
        InFlight(Rc::clone(self))
    }

    /// A response head arrived after `took`.
    pub(crate) fn answered(&self, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        bump(&self.stats.responses[class]);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        bump(&self.stats.latency[bucket]);
        self.stats
            .latency_sum_us
            .set(self.stats.latency_sum_us.get().wrapping_add(us));
        self.fails.set(0);
        self.first_fail.set(None);
    }

    /// A request to it failed as `kind`: counted, and past `max_fails`
    /// within `fail_timeout` it rests for `fail_timeout`.
    pub(crate) fn failed(&self, kind: Failure, upstream: &str) {
        bump(&self.stats.failures[kind as usize]);
        if self.max_fails == 0 {
            return;
        }
        let now = Instant::now();
        let window_over = self
            .first_fail
            .get()
            .is_none_or(|first| now.duration_since(first) >= self.fail_timeout);
        if window_over {
            self.first_fail.set(Some(now));
            self.fails.set(0);
        }
        self.fails.set(self.fails.get() + 1);
        if self.fails.get() >= self.max_fails {
            self.fails.set(0);
            self.first_fail.set(None);
            self.down_until.set(Some(now + self.fail_timeout));
            tracing::warn!(
                upstream,
                server = self.address.as_str(),
                rest_secs = self.fail_timeout.as_secs(),
                "upstream server failed {} time(s); out of rotation for its fail_timeout",
                self.max_fails
            );
        }
    }

    /// The state `/metrics` shows: 1 in rotation, 0 out.
    pub(crate) fn up(&self) -> bool {
        self.available(Instant::now())
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.active.get()
    }
}

/// A request in flight to a server (for least connections).
pub(crate) struct InFlight(Rc<Server>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

/// An upstream on this shard.
pub(crate) struct ShardUpstream {
    pub(crate) config: Arc<UpstreamConfig>,
    /// Its name, as the streams of its responses hold it.
    pub(crate) name: Rc<str>,
    pub(crate) client: Client,
    pub(crate) servers: Vec<Rc<Server>>,
    balance: Balance,
    turn: Cell<usize>,
    pub(crate) tunnels_open: Cell<u64>,
    pub(crate) tunnels: Cell<u64>,
}

/// The client URL of a configured server address.
fn url_of(address: &str) -> String {
    match address.strip_prefix("unix:") {
        Some(path) => {
            let encoded: String = path
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("http+unix://{encoded}/")
        }
        None => format!("http://{address}/"),
    }
}

impl ShardUpstream {
    fn new(config: Arc<UpstreamConfig>) -> Rc<Self> {
        let client = Client::with_config(ClientConfig {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            read_timeout: Duration::from_secs(config.read_timeout_secs),
            write_timeout: Duration::from_secs(config.send_timeout_secs),
            // The route's and the request's own timeouts bound the whole.
            timeout: Duration::from_hours(24),
            pool: PoolConfig {
                max_per_origin: config.max_connections,
                max_idle_per_origin: config.keepalive,
                surplus_idle: Duration::from_millis(config.keepalive_surplus_ms),
                idle_timeout: Duration::from_secs(config.keepalive_timeout_secs),
                max_lifetime: None,
                max_requests: config.keepalive_requests,
                wait_timeout: Duration::from_millis(config.connect_timeout_ms),
            },
            retry: RetryConfig {
                attempts: 1,
                ..RetryConfig::default()
            },
            breaker: BreakerConfig {
                failures: 0,
                ..BreakerConfig::default()
            },
            user_agent: String::new(),
            max_response_body: u64::MAX,
            ..ClientConfig::default()
        });
        let servers = config
            .servers
            .iter()
            .map(|entry| {
                let server = entry.settings();
                let url = url_of(&server.address);
                let endpoint = client
                    .endpoint(&url)
                    .unwrap_or_else(|e| unreachable!("validated address: {e}"));
                let check_url = if config.health.path.is_empty() {
                    String::new()
                } else {
                    format!("{}{}", url.trim_end_matches('/'), config.health.path)
                };
                Rc::new(Server {
                    host: if server.address.starts_with("unix:") {
                        "localhost".to_owned()
                    } else {
                        server.address.clone()
                    },
                    key: balance::stable_hash(server.address.as_bytes()),
                    address: server.address,
                    endpoint,
                    check_url,
                    weight: server.weight,
                    max_fails: server.max_fails,
                    fail_timeout: Duration::from_secs(server.fail_timeout_secs),
                    credit: Cell::new(0),
                    active: Cell::new(0),
                    fails: Cell::new(0),
                    first_fail: Cell::new(None),
                    down_until: Cell::new(None),
                    healthy: Cell::new(true),
                    streak: Cell::new(0),
                    stats: Stats::default(),
                })
            })
            .collect();
        let upstream = Rc::new(Self {
            balance: Balance::parse(&config.balance).unwrap_or(Balance::RoundRobin),
            name: config.name.as_str().into(),
            config,
            client,
            servers,
            turn: Cell::new(0),
            tunnels_open: Cell::new(0),
            tunnels: Cell::new(0),
        });
        if !upstream.config.health.path.is_empty() {
            glommio::spawn_local(check_health(Rc::downgrade(&upstream))).detach();
        }
        upstream
    }

    /// The server for the next try of a request from `client`, skipping
    /// those in `tried`. When every server is resting after failures, they
    /// are tried anyway (as nginx does) — but never one its health checks
    /// took out.
    pub(crate) fn pick(&self, client: Option<IpAddr>, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let fresh = |i: usize| !tried.contains(&i);
        balance::pick(
            self.balance,
            &self.servers,
            |i| fresh(i) && self.servers[i].available(now),
            client,
            &self.turn,
        )
        .or_else(|| {
            balance::pick(
                self.balance,
                &self.servers,
                |i| fresh(i) && self.servers[i].healthy.get(),
                client,
                &self.turn,
            )
        })
    }
}

/// Checks every server of `upstream` each interval while it lives.
async fn check_health(upstream: Weak<ShardUpstream>) {
    loop {
        let Some(live) = upstream.upgrade() else {
            return;
        };
        let health = live.config.health.clone();
        let name = live.config.name.clone();
        let client = live.client.clone();
        let servers = live.servers.clone();
        drop(live);
        for server in &servers {
            let ok = match client
                .get(&server.check_url)
                .header("Host", &server.host)
                .timeout(Duration::from_millis(health.timeout_ms))
                .no_retry()
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status();
                    let _ = response.bytes_limited(64 * 1024).await;
                    (200..400).contains(&status)
                }
                Err(_) => false,
            };
            let (needed, changes) = if server.healthy.get() {
                (health.fall, !ok)
            } else {
                (health.rise, ok)
            };
            if changes {
                server.streak.set(server.streak.get() + 1);
                if server.streak.get() >= needed {
                    server.healthy.set(ok);
                    server.streak.set(0);
                    if ok {
                        tracing::info!(
                            upstream = name.as_str(),
                            server = server.address.as_str(),
                            "upstream server passed its health checks; back in rotation"
                        );
                    } else {
                        tracing::warn!(
                            upstream = name.as_str(),
                            server = server.address.as_str(),
                            "upstream server failed its health checks; out of rotation"
                        );
                    }
                }
            } else {
                server.streak.set(0);
            }
        }
        drop(servers);
        glommio::timer::sleep(Duration::from_secs(health.interval_secs)).await;
    }
}

thread_local! {
    /// This shard's upstreams, by name.
    static UPSTREAMS: RefCell<HashMap<String, Rc<ShardUpstream>>> = RefCell::new(HashMap::new());
}

/// This shard's upstream for `config` (made on first use; made again when
/// a reload changed it).
pub(crate) fn upstream(config: &Arc<UpstreamConfig>) -> Rc<ShardUpstream> {
    UPSTREAMS.with(|all| {
        if let Some(found) = all.borrow().get(&config.name)
            && (Arc::ptr_eq(&found.config, config) || *found.config == **config)
        {
            return Rc::clone(found);
        }
        let made = ShardUpstream::new(Arc::clone(config));
        all.borrow_mut()
            .insert(config.name.clone(), Rc::clone(&made));
        let weak = Rc::downgrade(&made);
        crate::observe::upstream::register(&config.name, move || {
            weak.upgrade().map(|u| report(&u))
        });
        made
    })
}

/// What `/metrics` shows of `upstream` on this shard.
fn report(upstream: &ShardUpstream) -> UpstreamSnapshot {
    UpstreamSnapshot {
        upstream: upstream.config.name.clone(),
        readiness: upstream.config.health.readiness,
        tunnels_open: upstream.tunnels_open.get(),
        tunnels: upstream.tunnels.get(),
        servers: upstream
            .servers
            .iter()
            .map(|s| {
                let (open, idle) = s.endpoint.counts();
                ServerSnapshot {
                    server: s.address.clone(),
                    responses: s.stats.responses.each_ref().map(Cell::get),
                    failures: s.stats.failures.each_ref().map(Cell::get),
                    latency: s.stats.latency.each_ref().map(Cell::get),
                    latency_sum_us: s.stats.latency_sum_us.get(),
                    in_flight: u64::from(s.in_flight()),
                    open: open as u64,
                    idle: idle as u64,
                    up: s.up(),
                }
            })
            .collect(),
    }
}
