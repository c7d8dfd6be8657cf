//! An app frozen for serving: its route table, the factory of each shard's
//! state, and its readiness checks. The builder (`App`) makes one; the
//! server and the runtime take it without knowing the builder.

use std::sync::Arc;

use super::handler::{Erased, ErasedHandler, Handler};
use super::layer::Layer;
use super::router::{Lookup, MAX_PARAMS, Router};
use crate::config::{Config, Problem};
use crate::http::parse::Method;
use crate::observe::metrics::{FIRST_APP_ROUTE, RouteLabel, UNMATCHED};

/// The route table of a handler, as every shard reads it.
pub(crate) type Routes<S> = Router<Routed<S>>;

/// A routed handler, the layers around it (outermost first), and its
/// slot in the metrics.
pub(crate) struct Routed<S> {
    pub(crate) slot: usize,
    pub(crate) handler: Arc<dyn ErasedHandler<S>>,
    pub(crate) layers: Box<[Layer<S>]>,
    /// The route's own body limit (else `limits.max_body_bytes`).
    pub(crate) max_body: Option<u64>,
    /// Made from the configuration's `[[route]]` (a proxied route): the
    /// built-in paths it would cover stay built-in.
    pub(crate) configured: bool,
}

/// What an app makes of a configuration it accepts.
#[derive(Debug, Default, Clone)]
pub(crate) struct Accepted {
    /// Its `[app]` settings, parsed.
    pub(crate) settings: Option<crate::config::app_settings::Parsed>,
    /// Its OpenAPI document and page, when served.
    pub(crate) openapi: Option<Arc<super::openapi::Document>>,
    /// Each route's own request timeout (`timeouts.routes`), by slot.
    pub(crate) route_timeouts: Arc<[Option<std::time::Duration>]>,
    /// Whether each route compresses (a `[[route]]`'s `compress`), by
    /// slot; `None`: as `compression.enabled` says.
    pub(crate) route_compress: Arc<[Option<bool>]>,
    /// What proxied routes read of the configuration (a
    /// `config::ProxyTable`).
    pub(crate) proxy: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// How a route takes its body, decided when its head arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyRule {
    /// Most body bytes.
    pub(crate) limit: u64,
    /// The handler reads the body while it arrives.
    pub(crate) streams: bool,
}

/// A handler with its types erased, as routes share it (`any` routes one
/// handler for every method).
pub(crate) type SharedHandler<S> = Arc<dyn ErasedHandler<S>>;

/// Erases `handler`'s argument types.
pub(crate) fn share<S: 'static, H: Handler<S, Args>, Args: 'static>(
    handler: H,
) -> SharedHandler<S> {
    Arc::new(Erased::new(handler))
}

/// A readiness check: given the shard's state, whether this shard can serve.
pub(crate) type ReadinessCheck<S> = Box<dyn Fn(&S) -> bool + Send + Sync>;

/// Routes, shard state and readiness checks, ready to serve; made from an
/// [`App`](crate::App) (`App::into()`), as [`LocalService`](crate::LocalService)
/// takes it.
pub struct RouteService<S> {
    pub(crate) routes: Routes<S>,
    /// The metrics labels of the app's routes, by slot from
    /// [`FIRST_APP_ROUTE`].
    labels: Vec<RouteLabel>,
    pub(crate) state: super::startup::StateFactory<S>,
    /// Run on each shard once its connections have drained.
    pub(crate) shutdown: Vec<super::startup::ShutdownHook<S>>,
    pub(crate) readiness: Vec<(String, ReadinessCheck<S>)>,
    /// Answers requests no route matches (else a JSON 404).
    pub(crate) fallback: Option<Routed<S>>,
    /// Each route's OpenAPI operation, in the order routed.
    pub(crate) operations: Vec<(Method, String, crate::http::describe::Operation)>,
    /// How the app reads its `[app]` settings, when it has any.
    pub(crate) settings: Option<crate::config::app_settings::Reader>,
    /// Whether any route has a body limit of its own or streams its body
    /// (else no request needs its route's rule before it is complete).
    pub(crate) body_rules: bool,
    /// The largest body limit of a route that buffers its body, and of
    /// any route.
    largest_buffered: u64,
    largest: u64,
    /// Writes the body of a 405 (else `{"detail":"Method Not Allowed"}`).
    pub(crate) method_not_allowed: Option<Routed<S>>,
    /// The `[[route]]` tables its configured routes were made from: a
    /// reload must keep them (routes change only with a restart).
    pub(crate) configured: Option<Vec<crate::config::RouteConfig>>,
}

impl<S> std::fmt::Debug for RouteService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteService")
            .field("routes", &self.labels.len())
            .finish_non_exhaustive()
    }
}

impl<S> RouteService<S> {
    /// A service with no routes whose shards build their state with `factory`.
    pub(crate) fn new(factory: super::startup::StateFactory<S>) -> Self {
        Self {
            routes: Router::new(),
            labels: Vec::new(),
            state: factory,
            shutdown: Vec::new(),
            readiness: Vec::new(),
            fallback: None,
            method_not_allowed: None,
            operations: Vec::new(),
            settings: None,
            body_rules: false,
            largest_buffered: 0,
            largest: 0,
            configured: None,
        }
    }

    /// Routes `method` requests for `pattern` to `handler` inside
    /// `layers` (outermost first).
    ///
    /// # Errors
    /// When the pattern is malformed or already routed for this method.
    pub(crate) fn route(
        &mut self,
        method: Method,
        pattern: &str,
        handler: SharedHandler<S>,
        layers: Box<[Layer<S>]>,
        max_body: Option<u64>,
    ) -> Result<(), String> {
        self.add(method, pattern, handler, layers, max_body, false)
    }

    fn add(
        &mut self,
        method: Method,
        pattern: &str,
        handler: SharedHandler<S>,
        layers: Box<[Layer<S>]>,
        max_body: Option<u64>,
        configured: bool,
    ) -> Result<(), String> {
        let streams = handler.streams_body();
        if !configured {
            let mut operation = crate::http::describe::Operation::default();
            handler.describe(&mut operation);
            self.operations
                .push((method, pattern.to_owned(), operation));
        }
        if streams || max_body.is_some() {
            self.body_rules = true;
        }
        if let Some(limit) = max_body {
            self.largest = self.largest.max(limit);
            if !streams {
                self.largest_buffered = self.largest_buffered.max(limit);
            }
        }
        let routed = Routed {
            slot: FIRST_APP_ROUTE + self.labels.len(),
            handler,
            layers,
            max_body,
            configured,
        };
        self.routes
            .insert(method, pattern, routed)
            .map_err(|error| error.to_string())?;
        self.labels.push(RouteLabel {
            method: method.as_str(),
            route: pattern.to_owned(),
        });
        Ok(())
    }

    /// Routes `methods` for `pattern` to `handler`, a route made from the
    /// configuration: left out of the OpenAPI document, and the built-in
    /// paths it covers stay built-in.
    ///
    /// # Errors
    /// When the pattern is malformed or already routed.
    pub(crate) fn route_configured(
        &mut self,
        methods: &[Method],
        pattern: &str,
        handler: &SharedHandler<S>,
        max_body: Option<u64>,
    ) -> Result<(), String> {
        for &method in methods {
            self.add(
                method,
                pattern,
                Arc::clone(handler),
                Box::new([]),
                max_body,
                true,
            )?;
        }
        Ok(())
    }

    /// Gives the app's routes that `route` covers its body limit; returns
    /// how many it covers.
    pub(crate) fn limit_routes_under(&mut self, route: &crate::config::RouteConfig) -> usize {
        let covered: Vec<usize> = self
            .labels
            .iter()
            .enumerate()
            .filter(|(_, label)| route.covers(&label.route))
            .map(|(at, _)| FIRST_APP_ROUTE + at)
            .collect();
        if let Some(limit) = route.max_body_bytes
            && !covered.is_empty()
        {
            self.body_rules = true;
            self.largest = self.largest.max(limit);
            let mut buffered = self.largest_buffered;
            self.routes.for_each_mut(&mut |routed: &mut Routed<S>| {
                if covered.contains(&routed.slot) {
                    routed.max_body = Some(limit);
                    if !routed.handler.streams_body() {
                        buffered = buffered.max(limit);
                    }
                }
            });
            self.largest_buffered = buffered;
        }
        covered.len()
    }

    /// Answers what no route matches with `handler` inside `layers`.
    pub(crate) fn set_fallback(&mut self, handler: SharedHandler<S>, layers: Box<[Layer<S>]>) {
        self.fallback = Some(Routed {
            slot: UNMATCHED,
            handler,
            layers,
            max_body: None,
            configured: false,
        });
    }

    /// Writes 405 bodies with `handler` inside `layers`.
    pub(crate) fn set_method_not_allowed(
        &mut self,
        handler: SharedHandler<S>,
        layers: Box<[Layer<S>]>,
    ) {
        self.method_not_allowed = Some(Routed {
            slot: UNMATCHED,
            handler,
            layers,
            max_body: None,
            configured: false,
        });
    }

    /// The built-in paths of `config` served on the shards' listeners that
    /// a route of this service also claims: each would be shadowed, so
    /// percore refuses to start (or reload) with them.
    pub(crate) fn builtin_conflicts(&self, config: &Config) -> Vec<Problem> {
        let metrics_here = config.metrics.listen.is_none();
        let builtins = [
            ("health.liveness_path", config.health.liveness_path.as_str()),
            (
                "health.readiness_path",
                config.health.readiness_path.as_str(),
            ),
            (
                "metrics.path",
                if metrics_here {
                    config.metrics.path.as_str()
                } else {
                    ""
                },
            ),
            ("openapi.path", config.openapi.path.as_str()),
            ("openapi.docs_path", config.openapi.docs_path.as_str()),
        ];
        let mut problems = Vec::new();
        for (key, path) in builtins {
            if path.is_empty() {
                continue;
            }
            let mut params = [("", ""); MAX_PARAMS];
            let shadowed = match self.routes.lookup(Method::Get, path, &mut params) {
                Lookup::Found(routed, _) => !routed.configured,
                Lookup::MethodNotAllowed(_) => true,
                Lookup::NotFound => false,
            };
            if shadowed {
                problems.push(Problem {
                    key: key.to_owned(),
                    message: format!(
                        "{path} is percore's built-in route, and the app routes it too; \
                         move the built-in (set {key} to another path, or to \"\" to turn it off) \
                         or the app's route"
                    ),
                });
            }
        }
        problems
    }

    /// How the route of `method` and `path` takes its body, when `default`
    /// is `limits.max_body_bytes`.
    pub(crate) fn body_rule(&self, method: Method, path: &str, default: u64) -> BodyRule {
        let mut params = [("", ""); MAX_PARAMS];
        match self.routes.lookup(method, path, &mut params) {
            Lookup::Found(routed, _) => BodyRule {
                limit: routed.max_body.unwrap_or(default),
                streams: routed.handler.streams_body(),
            },
            _ => BodyRule {
                limit: default,
                streams: false,
            },
        }
    }

    /// The codec limits a connection decodes with: the body limit raised to
    /// the largest route's (each route's own is checked once its head is
    /// routed), and the largest body a connection may buffer.
    pub(crate) fn connection_limits(
        &self,
        mut limits: crate::http::parse::Limits,
    ) -> (crate::http::parse::Limits, u64) {
        let buffered = limits.max_body_bytes.max(self.largest_buffered);
        limits.max_body_bytes = limits.max_body_bytes.max(self.largest);
        (limits, buffered)
    }

    /// Checks `config` for this app: every problem of the configuration,
    /// the built-in paths the app's routes would shadow and `[app]`
    /// settings that do not fit; else the app's parsed settings.
    ///
    /// # Errors
    /// Every problem found.
    pub(crate) fn check(&self, config: &Config) -> Result<Accepted, Vec<Problem>> {
        let mut problems = config.validate();
        problems.extend(self.builtin_conflicts(config));
        let parsed = match &self.settings {
            Some(read) => match read(&config.app) {
                Ok(parsed) => Some(parsed),
                Err(mut found) => {
                    problems.append(&mut found);
                    None
                }
            },
            None if !config.app.is_empty() => {
                problems.push(Problem {
                    key: "app".to_owned(),
                    message: "this app reads no settings (App::settings), so the [app] table would be ignored; remove it".to_owned(),
                });
                None
            }
            None => None,
        };
        let mut route_timeouts = vec![None; self.route_count()];
        let mut route_compress = vec![None; self.route_count()];
        for route in &config.route {
            let Some(compress) = route.compress else {
                continue;
            };
            for (at, label) in self.labels.iter().enumerate() {
                if route.covers(&label.route) {
                    route_compress[FIRST_APP_ROUTE + at] = Some(compress);
                }
            }
        }
        for (pattern, &secs) in &config.timeouts.routes {
            let mut found = false;
            for (at, label) in self.labels.iter().enumerate() {
                if label.route == *pattern {
                    route_timeouts[FIRST_APP_ROUTE + at] =
                        Some(std::time::Duration::from_secs(secs));
                    found = true;
                }
            }
            if !found {
                problems.push(Problem {
                    key: format!("timeouts.routes.\"{pattern}\""),
                    message: "no route of the app has this pattern".to_owned(),
                });
            }
        }
        if let Some(started) = &self.configured {
            if *started != config.route {
                problems.push(Problem::new(
                    "route",
                    "[[route]] tables change only with a restart (the upstreams they name may change on reload)",
                ));
            }
            for route in &config.route {
                if route.timeout_secs == 0 {
                    continue;
                }
                for (at, label) in self.labels.iter().enumerate() {
                    if route.covers(&label.route) {
                        route_timeouts[FIRST_APP_ROUTE + at] =
                            Some(std::time::Duration::from_secs(route.timeout_secs));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let proxy: Arc<dyn std::any::Any + Send + Sync> =
            Arc::new(crate::config::ProxyTable::of(config));
        Ok(Accepted {
            proxy: Some(proxy),
            route_timeouts: route_timeouts.into(),
            route_compress: route_compress.into(),
            settings: parsed,
            openapi: super::openapi::document(&self.operations, config).map(Arc::new),
        })
    }

    /// How many metrics slots the app's requests use.
    pub(crate) fn route_count(&self) -> usize {
        FIRST_APP_ROUTE + self.labels.len()
    }

    /// The pattern of the route in `slot` (`-` for a built-in or the
    /// fallback).
    pub(crate) fn route_name(&self, slot: usize) -> &str {
        slot.checked_sub(FIRST_APP_ROUTE)
            .and_then(|at| self.labels.get(at))
            .map_or("-", |label| label.route.as_str())
    }

    /// The metrics label of every slot.
    pub(crate) fn route_labels(&self) -> Vec<RouteLabel> {
        let mut labels = RouteLabel::built_in();
        labels.extend(self.labels.iter().cloned());
        labels
    }
}
