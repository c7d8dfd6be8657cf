//! One shard's context: everything its connections read (routes, state,
//! settings, pools, deadlines, counters, the connection gate), owned by
//! that shard alone, and the settings a reload replaces.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::deadline::Deadlines;
use super::gate::Gate;
use crate::config::{Config, ConnectionRules, HealthConfig, KeySource};
use crate::http::date::DateCache;
use crate::http::parse::Limits;
use crate::http::status::Status;
use crate::observe::access::{AccessLog, RequestIds};
use crate::observe::counters::Counters;
use crate::observe::metrics::{ShardMetrics, Snapshot};
use crate::observe::vitals::Vitals;
use crate::ratelimit::{LimitSettings, Limiter};
use crate::route::cors::Cors;
use crate::route::pooled::BlockPool;
use crate::route::service::RouteService;
use crate::route::shutdown::Drain;
use crate::tls::TlsSettings;
use crate::transport::BufferPool;

/// Renders the metrics of every shard of the process (a scrape asks each
/// of them by message, so it runs off the shard, on a blocking thread).
pub(crate) type Scrape = Arc<dyn Fn() -> String + Send + Sync>;

/// The settings a reload can change. A connection keeps the limits and
/// timeouts in force when it was accepted; headers, health and metrics
/// routes apply to every response from the moment they arrive.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) limits: Limits,
    pub(crate) rules: ConnectionRules,
    /// Security header lines for every response.
    pub(crate) common_headers: Box<[u8]>,
    /// The built-in health routes.
    pub(crate) health: HealthConfig,
    /// The built-in metrics route on the shard's listeners ("" when off or
    /// served by the admin listener).
    pub(crate) metrics_path: String,
    /// Who the metrics route is served to on the shards' listeners.
    pub(crate) metrics_allow: Vec<crate::config::Cidr>,
    /// How long open connections may take to finish when the shard stops.
    pub(crate) graceful_timeout: Duration,
    /// Cross-origin requests, when `[cors]` allows any origin.
    pub(crate) cors: Option<Cors>,
    /// Every request gets an ID and a tracing span (`log.request_id`, or
    /// the access log on).
    pub(crate) request_ids: bool,
    /// The status of a request whose fields do not fit their types.
    pub(crate) validation_status: Status,
    /// The key of signed and private cookies (`cookies.key`).
    pub(crate) cookie_key: Option<cookie::Key>,
    /// What the app made of the configuration: its `[app]` settings, its
    /// OpenAPI document, its routes' own timeouts (set by the caller:
    /// reading them needs the app).
    pub(crate) app: crate::route::service::Accepted,
    /// Rate limiting, as each shard enforces it.
    pub(crate) rate_limit: LimitSettings,
    /// TLS, when HTTPS listeners are configured (set by the caller: loading
    /// certificates reads files).
    pub(crate) tls: Option<TlsSettings>,
    /// The common headers of HTTPS responses (`common_headers` and HSTS).
    pub(crate) tls_common_headers: Box<[u8]>,
    /// Response compression, when any route may compress.
    pub(crate) compression: Option<crate::http::compress::Compressor>,
    /// Routes compress unless theirs says otherwise (`compression.enabled`).
    pub(crate) compress_by_default: bool,
    /// HTTP/2 and its limits.
    pub(crate) http2: crate::config::Http2Config,
}

impl Settings {
    /// The settings of `config` for each of `shards` shards, whose
    /// listeners are `steered` by client address or not.
    pub(crate) fn of(config: &Config, shards: usize, steered: bool) -> Self {
        let exact =
            (steered || shards == 1) && config.rate_limit.key_source() == Some(KeySource::Ip);
        let common_headers = config.headers.render();
        let mut tls_common_headers = common_headers.clone();
        if !config.tls.hsts.is_empty() {
            tls_common_headers.extend_from_slice(
                format!("Strict-Transport-Security: {}\r\n", config.tls.hsts).as_bytes(),
            );
        }
        Self {
            rate_limit: LimitSettings::of(&config.rate_limit, &config.route, shards, exact),
            tls: None,
            tls_common_headers: tls_common_headers.into_boxed_slice(),
            limits: config.codec_limits(),
            rules: config.connection_rules(),
            common_headers: common_headers.into_boxed_slice(),
            health: config.health.clone(),
            metrics_path: config.metrics.shard_path().to_owned(),
            metrics_allow: config
                .metrics
                .allow
                .iter()
                .filter_map(|block| crate::config::Cidr::parse(block).ok())
                .collect(),
            graceful_timeout: Duration::from_secs(config.server.graceful_timeout_secs),
            cors: Cors::of(&config.cors),
            app: crate::route::service::Accepted::default(),
            cookie_key: crate::config::cookie_key(&config.cookies.key).ok(),
            validation_status: if config.limits.validation_status == 400 {
                Status::BAD_REQUEST
            } else {
                Status::UNPROCESSABLE_ENTITY
            },
            request_ids: config.log.request_id
                || config.log.access != crate::config::AccessFormat::Off,
            compression: (config.compression.enabled
                || config.route.iter().any(|r| r.compress == Some(true)))
            .then(|| config.compression.compressor()),
            compress_by_default: config.compression.enabled,
            http2: config.http2.clone(),
        }
    }
}

/// Everything a shard's connections read; owned by that shard alone.
pub(crate) struct ShardContext<S> {
    pub(crate) index: usize,
    pub(crate) app: Arc<RouteService<S>>,
    pub(crate) state: S,
    pub(crate) date: DateCache,
    settings: RefCell<Rc<Settings>>,
    pub(crate) pool: BufferPool,
    pub(crate) blocks: BlockPool,
    pub(crate) deadlines: Rc<Deadlines>,
    pub(crate) counters: Counters,
    pub(crate) metrics: ShardMetrics,
    pub(crate) gate: Gate,
    /// Set when the shard stops: connections finish what they are doing,
    /// answer with `Connection: close`, and idle ones close.
    pub(crate) draining: Cell<bool>,
    /// The access log, when on.
    pub(crate) access: Option<AccessLog>,
    /// Where new request IDs come from.
    pub(crate) request_ids: RequestIds,
    /// Rate limiting (replaced when a reload changes its settings).
    pub(crate) limiter: RefCell<Limiter>,
    /// What the watchdog reads of this shard.
    pub(crate) vitals: Arc<Vitals>,
    /// The drain as handlers see it ([`Shutdown`](crate::Shutdown)).
    pub(crate) shutdown: Rc<Drain>,
    /// Renders every shard's metrics (asking them all by message); `None`
    /// without a server around the shard ([`LocalService`](crate::LocalService)).
    pub(crate) scrape: Option<Scrape>,
}

impl<S> ShardContext<S> {
    /// Builds the context around the shard's `state` (made by the app's
    /// factory on this thread).
    pub(crate) fn new(
        index: usize,
        app: Arc<RouteService<S>>,
        mut settings: Settings,
        state: S,
    ) -> Self {
        settings.tls = settings.tls.map(|tls| tls.for_shard());
        let routes = app.route_count();
        let limiter = Limiter::new(settings.rate_limit.clone(), &app.route_labels());
        Self {
            limiter: RefCell::new(limiter),
            index,
            app,
            state,
            date: DateCache::new(),
            settings: RefCell::new(Rc::new(settings)),
            pool: BufferPool::default(),
            blocks: BlockPool::default(),
            deadlines: Rc::default(),
            counters: Counters::default(),
            metrics: ShardMetrics::new(routes),
            gate: Gate::default(),
            draining: Cell::new(false),
            access: None,
            request_ids: RequestIds::new(0, index),
            vitals: Arc::default(),
            scrape: None,
            shutdown: Drain::install(),
        }
    }

    /// Frees the pooled buffers and blocks not needed since the last trim
    /// (a burst's high-water mark); returns the bytes freed, about.
    pub(crate) fn trim(&self) -> usize {
        self.pool.trim() + self.blocks.trim()
    }

    /// The settings in force now.
    pub(crate) fn settings(&self) -> Rc<Settings> {
        Rc::clone(&self.settings.borrow())
    }

    /// Puts `settings` in force. Rate-limit state is kept unless the
    /// rate-limit settings changed (then every key starts afresh). New TLS
    /// handshakes use new certificates at once; open connections keep theirs.
    pub(crate) fn reload(&self, mut settings: Settings) {
        settings.tls = settings.tls.map(|tls| tls.for_shard());
        if *self.limiter.borrow().settings() != settings.rate_limit {
            let fresh = Limiter::new(settings.rate_limit.clone(), &self.app.route_labels());
            self.limiter.borrow_mut().replace_keeping_counts(fresh);
        }
        *self.settings.borrow_mut() = Rc::new(settings);
    }

    /// A copy of this shard's metrics.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut snapshot = self
            .metrics
            .snapshot(self.gate.open_connections(), &self.counters);
        let limiter = self.limiter.borrow();
        (snapshot.rate_limited, snapshot.rate_limited_dry_run) = limiter.counts();
        (snapshot.limit_keys, snapshot.limit_evictions) = limiter.keys();
        snapshot.limit_backend_errors = limiter.backend_errors();
        snapshot.outbound = crate::observe::outbound::read();
        snapshot.upstreams = crate::observe::upstream::snapshot();
        snapshot.pooled_bytes = (self.pool.pooled_bytes() + self.blocks.pooled_bytes()) as u64;
        snapshot
    }
}
