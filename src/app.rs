//! The service author's entry point: routes, handlers and shard state.

use crate::config::Config;
use crate::error::Error;
use crate::http::parse::Method;
use std::sync::Arc;

use crate::route::handler::Handler;
use crate::route::layer::Layer;
use crate::route::router::Router;
use crate::route::service::{RouteService, SharedHandler, share};
use crate::runtime::{self, Server};

/// An application: routes to handlers, plus a factory that builds each
/// shard's own state.
///
/// ```no_run
/// use percore::{App, Config, Json, Path};
///
/// #[derive(serde::Serialize)]
/// struct User { id: u64, name: String }
///
/// async fn user(Path(id): Path<u64>) -> Json<User> {
///     Json(User { id, name: format!("user {id}") })
/// }
///
/// fn main() -> Result<(), percore::Error> {
///     App::new().get("/users/{id}", user).serve(Config::default())
/// }
/// ```
pub struct App<S = ()> {
    service: RouteService<S>,
    /// Routes, inserted with their final layers when the app is frozen.
    root: Scope<S>,
    fallback: Option<SharedHandler<S>>,
    method_not_allowed: Option<SharedHandler<S>>,
    /// Every pattern and method routed so far, to report a conflict where
    /// the route is added.
    claimed: Router<()>,
}

/// A group of routes under a path prefix with their own layers, nested
/// into an [`App`] (or another scope) with [`App::nest`]:
///
/// ```
/// use percore::{App, LocalService, Scope, from_fn};
///
/// let api = Scope::new()
///     .get("/users", async || "users")
///     .get("", async || "the api")
///     .layer(from_fn(async |request, response, next: percore::Next<'_>| {
///         next.run(request, response).await;
///         response.insert_header("X-Api", b"1");
///     }));
/// let app = App::new().get("/", async || "home").nest("/api", api);
/// let mut service = LocalService::new(app);
/// let mut out = Vec::new();
/// futures_lite::future::block_on(service.serve(b"GET /api/users HTTP/1.1\r\nHost: x\r\n\r\n", &mut out));
/// let text = String::from_utf8_lossy(&out);
/// assert!(text.contains("X-Api: 1") && text.ends_with("users"));
/// ```
pub struct Scope<S = ()> {
    routes: Vec<Pending<S>>,
    /// In the order added; the last is the outermost.
    layers: Vec<Layer<S>>,
    /// The body limit of the group's routes that set none of their own.
    max_body: Option<u64>,
}

/// A route not yet in the table.
struct Pending<S> {
    method: Method,
    pattern: String,
    handler: SharedHandler<S>,
    /// Outermost first.
    layers: Vec<Layer<S>>,
    max_body: Option<u64>,
}

impl<S> std::fmt::Debug for Scope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("routes", &self.routes.len())
            .field("layers", &self.layers.len())
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl<S> Default for Scope<S> {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            layers: Vec::new(),
            max_body: None,
        }
    }
}

/// Every method [`any`](Scope::any) routes (`HEAD` comes with `GET`).
const ANY: [Method; 6] = [
    Method::Get,
    Method::Post,
    Method::Put,
    Method::Patch,
    Method::Delete,
    Method::Options,
];

/// The method shortcuts, the same on [`App`] and [`Scope`].
macro_rules! method_shortcuts {
    () => {
        /// Routes `GET` (and `HEAD`) requests for `pattern`.
        #[must_use]
        pub fn get<H: Handler<S, Args>, Args: 'static>(self, pattern: &str, handler: H) -> Self {
            self.route(Method::Get, pattern, handler)
        }

        /// Routes `POST` requests for `pattern`.
        #[must_use]
        pub fn post<H: Handler<S, Args>, Args: 'static>(self, pattern: &str, handler: H) -> Self {
            self.route(Method::Post, pattern, handler)
        }

        /// Routes `PUT` requests for `pattern`.
        #[must_use]
        pub fn put<H: Handler<S, Args>, Args: 'static>(self, pattern: &str, handler: H) -> Self {
            self.route(Method::Put, pattern, handler)
        }

        /// Routes `PATCH` requests for `pattern`.
        #[must_use]
        pub fn patch<H: Handler<S, Args>, Args: 'static>(self, pattern: &str, handler: H) -> Self {
            self.route(Method::Patch, pattern, handler)
        }

        /// Routes `DELETE` requests for `pattern`.
        #[must_use]
        pub fn delete<H: Handler<S, Args>, Args: 'static>(self, pattern: &str, handler: H) -> Self {
            self.route(Method::Delete, pattern, handler)
        }

        /// Routes `OPTIONS` requests for `pattern`.
        #[must_use]
        pub fn options<H: Handler<S, Args>, Args: 'static>(
            self,
            pattern: &str,
            handler: H,
        ) -> Self {
            self.route(Method::Options, pattern, handler)
        }

        /// Routes `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` and
        /// `OPTIONS` requests for `pattern` to one handler.
        #[must_use]
        pub fn any<H: Handler<S, Args>, Args: 'static>(
            mut self,
            pattern: &str,
            handler: H,
        ) -> Self {
            let handler = share(handler);
            for method in ANY {
                self = self.route_shared(method, pattern, Arc::clone(&handler));
            }
            self
        }

        /// Proxies every request under `prefix` (by whole segments:
        /// `"/api/"` takes `/api/` and below, `"/api"` also `/api`) to
        /// `upstream`, keeping the path; see [`proxy`](crate::proxy).
        ///
        /// # Panics
        /// When the upstream's settings are invalid or a pattern is taken.
        #[must_use]
        pub fn proxy(self, prefix: &str, upstream: crate::proxy::Upstream) -> Self {
            let route = crate::config::RouteConfig {
                prefix: prefix.to_owned(),
                proxy: upstream.config().name.clone(),
                ..crate::config::RouteConfig::default()
            };
            self.proxy_with(route, upstream)
        }

        /// Proxies the requests `route` takes to `upstream`, with the
        /// route's settings (prefix stripping, `Host`, body limit, header
        /// rules, buffering, upgrades) as a `[[route]]` table gives them.
        ///
        /// # Panics
        /// When the settings are invalid or a pattern is taken.
        #[must_use]
        pub fn proxy_with(
            self,
            mut route: crate::config::RouteConfig,
            upstream: crate::proxy::Upstream,
        ) -> Self {
            upstream.config().name.clone_into(&mut route.proxy);
            let problems = upstream.problems(&route);
            assert!(
                problems.is_empty(),
                "invalid proxy route: {}",
                problems.join("; ")
            );
            let proxied = crate::proxy::ProxyRoute::new(&route, Some(upstream.config().clone()))
                .unwrap_or_else(|e| panic!("invalid proxy route: {e}"));
            let handler: SharedHandler<S> = Arc::new(proxied.handler());
            let mut scope = Scope::new();
            for pattern in route.patterns() {
                for method in ANY {
                    scope = scope.route_shared(method, &pattern, Arc::clone(&handler));
                }
            }
            if let Some(max) = route.max_body_bytes {
                scope = scope.max_body_bytes(max);
            }
            self.nest("", scope)
        }

        /// Serves the files of `files` under `prefix` (by whole segments,
        /// as [`proxy`](Self::proxy)); see [`files`](crate::files) and
        /// [`StaticConfig`](crate::StaticConfig).
        ///
        /// # Panics
        /// When the settings are invalid or the directory cannot be opened.
        #[must_use]
        pub fn files(self, prefix: &str, files: crate::config::StaticConfig) -> Self {
            let route = crate::config::RouteConfig {
                prefix: prefix.to_owned(),
                files: Some(files),
                ..crate::config::RouteConfig::default()
            };
            let handler: SharedHandler<S> = Arc::new(
                crate::files::handler_for(&route)
                    .unwrap_or_else(|e| panic!("invalid static route: {e}")),
            );
            let mut scope = Scope::new();
            for pattern in route.patterns() {
                scope = scope.route_shared(Method::Get, &pattern, Arc::clone(&handler));
            }
            self.nest("", scope)
        }
    };
}

impl<S: 'static> Scope<S> {
    /// An empty group.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `method` requests for `pattern` (relative to the prefix the
    /// group is nested under; `""` is the prefix itself) to `handler`.
    #[must_use]
    pub fn route<H: Handler<S, Args>, Args: 'static>(
        self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Self {
        self.route_shared(method, pattern, share(handler))
    }

    fn route_shared(mut self, method: Method, pattern: &str, handler: SharedHandler<S>) -> Self {
        self.routes.push(Pending {
            method,
            pattern: pattern.to_owned(),
            handler,
            layers: Vec::new(),
            max_body: None,
        });
        self
    }

    method_shortcuts!();

    /// Wraps every route of the group, whenever added, in `layer`; the
    /// last layer added is the outermost.
    #[must_use]
    pub fn layer(mut self, layer: Layer<S>) -> Self {
        self.layers.push(layer);
        self
    }

    /// Limits the bodies of the group's routes to `bytes` (nginx's
    /// per-location `client_max_body_size`), above or below
    /// `limits.max_body_bytes`; a group nested inside keeps its own. A
    /// route that buffers its body holds up to this much in memory; one
    /// that streams it ([`Body`](crate::Body), [`Multipart`](crate::Multipart))
    /// holds a piece at a time. Past it: `413`, before the body is read
    /// when `Content-Length` says so.
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Adds `scope`'s routes under `prefix`, inside `scope`'s layers.
    #[must_use]
    pub fn nest(mut self, prefix: &str, scope: Scope<S>) -> Self {
        self.routes.extend(scope.under(prefix));
        self
    }

    /// The group's routes under `prefix`, its own layers outside each
    /// route's.
    fn under(self, prefix: &str) -> impl Iterator<Item = Pending<S>> {
        let outer: Vec<Layer<S>> = self.layers.into_iter().rev().collect();
        let prefix = prefix.trim_end_matches('/').to_owned();
        self.routes.into_iter().map(move |mut route| {
            route.pattern = match (prefix.as_str(), route.pattern.as_str()) {
                ("", "") => "/".to_owned(),
                (prefix, "") => prefix.to_owned(),
                (prefix, pattern) => format!("{prefix}{pattern}"),
            };
            let mut layers = outer.clone();
            layers.append(&mut route.layers);
            route.layers = layers;
            route.max_body = route.max_body.or(self.max_body);
            route
        })
    }
}

impl<S> std::fmt::Debug for App<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl<S: 'static> From<App<S>> for RouteService<S> {
    /// Freezes the app: every route goes into the table inside the app's
    /// layers and its groups'.
    fn from(app: App<S>) -> Self {
        let App {
            mut service,
            root,
            fallback,
            method_not_allowed,
            ..
        } = app;
        let app_layers: Vec<Layer<S>> = root.layers.iter().rev().cloned().collect();
        for route in root.under("") {
            let layers = route.layers.into_boxed_slice();
            let routed = service.route(
                route.method,
                &route.pattern,
                route.handler,
                layers,
                route.max_body,
            );
            debug_assert!(routed.is_ok(), "checked when added");
        }
        if let Some(handler) = method_not_allowed {
            service.set_method_not_allowed(handler, app_layers.clone().into());
        }
        if let Some(handler) = fallback {
            service.set_fallback(handler, app_layers.into());
        }
        service
    }
}

impl App<()> {
    /// An application without shard state.
    #[must_use]
    pub fn new() -> Self {
        Self::with_state(|| ())
    }
}

impl Default for App<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: 'static> App<S> {
    /// An application whose shards each own a state built by `factory`
    /// (called once on every shard). Handlers reach it with
    /// [`State`](crate::State); it need not be `Send`.
    pub fn with_state(factory: impl Fn() -> S + Send + Sync + 'static) -> Self {
        Self::with_factory(crate::route::startup::sync_factory(factory))
    }

    /// An application whose shards each own a state built by the async
    /// `factory`, on the shard's own thread and ring, before the shard
    /// serves: connect pools, warm caches. The future need not be `Send`.
    /// A factory that fails stops the server from starting, naming the
    /// dependency ([`StartupError`](crate::StartupError)).
    ///
    /// ```no_run
    /// use percore::{App, Startup, StartupError, State};
    /// use percore::client::Client;
    ///
    /// #[derive(Clone)]
    /// struct Shard { api: Client }
    ///
    /// let app = App::with_async_state(|startup: Startup| async move {
    ///     let api = Client::new();
    ///     api.get("http://127.0.0.1:9000/health")
    ///         .send()
    ///         .await
    ///         .map_err(|e| StartupError::new("api", e))?;
    ///     let _ = startup.shard();
    ///     Ok(Shard { api })
    /// })
    /// .get("/", async |State(shard): State<Shard>| {
    ///     let _ = &shard.api;
    ///     "hi"
    /// });
    /// ```
    pub fn with_async_state<F, Fut>(factory: F) -> Self
    where
        F: Fn(crate::Startup) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<S, crate::StartupError>> + 'static,
    {
        Self::with_factory(std::sync::Arc::new(move |startup| {
            Box::pin(factory(startup))
        }))
    }

    fn with_factory(factory: crate::route::startup::StateFactory<S>) -> Self {
        Self {
            service: RouteService::new(factory),
            root: Scope::new(),
            fallback: None,
            method_not_allowed: None,
            claimed: Router::new(),
        }
    }

    /// Reads the app's own settings, `T`, from the `[app]` table of the
    /// configuration file, with environment variables named `PREFIX_KEY`
    /// over it (`NOTES_DATABASE_URL` for `app.database_url`; a double
    /// underscore nests: `NOTES_POOL__SIZE` for `app.pool.size`). They are
    /// checked at start, by `check-config` and at every reload, with the
    /// key path of each problem; handlers read the values in force with
    /// the [`Settings`](crate::Settings) extractor.
    ///
    /// ```no_run
    /// use percore::{App, Settings};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Notes { title: String, max_notes: u32 }
    ///
    /// fn main() -> std::process::ExitCode {
    ///     percore::main(|| {
    ///         App::new()
    ///             .settings::<Notes>("NOTES")
    ///             .get("/", async |Settings(notes): Settings<Notes>| notes.title.clone())
    ///     })
    /// }
    /// ```
    #[must_use]
    pub fn settings<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        mut self,
        prefix: &str,
    ) -> Self {
        self.service.settings = Some(crate::config::app_settings::reader::<T>(prefix));
        self
    }

    /// Routes `method` requests for `pattern` to `handler`.
    ///
    /// # Panics
    /// When the pattern is malformed or already routed for this method: a
    /// programming error, reported at startup.
    #[must_use]
    pub fn route<H: Handler<S, Args>, Args: 'static>(
        self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Self {
        self.route_shared(method, pattern, share(handler))
    }

    fn route_shared(mut self, method: Method, pattern: &str, handler: SharedHandler<S>) -> Self {
        self.claim(method, pattern);
        self.root = self.root.route_shared(method, pattern, handler);
        self
    }

    /// Records a route, panicking on a malformed or taken one.
    fn claim(&mut self, method: Method, pattern: &str) {
        if let Err(error) = self.claimed.insert(method, pattern, ()) {
            panic!("{error}");
        }
    }

    method_shortcuts!();

    /// Adds `scope`'s routes under `prefix` (`"/api"`), inside the
    /// scope's layers.
    ///
    /// # Panics
    /// When a route of the scope is malformed or already routed.
    #[must_use]
    pub fn nest(mut self, prefix: &str, scope: Scope<S>) -> Self {
        let routes: Vec<Pending<S>> = scope.under(prefix).collect();
        for route in &routes {
            self.claim(route.method, &route.pattern);
        }
        self.root.routes.extend(routes);
        self
    }

    /// Builds a group under `prefix` with `build` and nests it:
    /// `app.scope("/api", |api| api.get("/users", users).layer(auth))`.
    #[must_use]
    pub fn scope(self, prefix: &str, build: impl FnOnce(Scope<S>) -> Scope<S>) -> Self {
        self.nest(prefix, build(Scope::new()))
    }

    /// Wraps every route of the app, whenever added (and the fallback), in
    /// `layer`; the last layer added is the outermost, outside every
    /// group's.
    #[must_use]
    pub fn layer(mut self, layer: Layer<S>) -> Self {
        self.root.layers.push(layer);
        self
    }

    /// Writes the body of every 405 with `handler` (inside the app's
    /// layers) instead of the JSON one; the `Allow` field lists the
    /// path's methods, and the status is 405 unless the handler sets one.
    #[must_use]
    pub fn method_not_allowed<H: Handler<S, Args>, Args: 'static>(mut self, handler: H) -> Self {
        self.method_not_allowed = Some(share(handler));
        self
    }

    /// Answers requests no route matches with `handler` (inside the app's
    /// layers) instead of the JSON 404.
    #[must_use]
    pub fn fallback<H: Handler<S, Args>, Args: 'static>(mut self, handler: H) -> Self {
        self.fallback = Some(share(handler));
        self
    }

    /// Adds a readiness check named `name`: the readiness route
    /// (`/health/ready` by default) answers 503 naming every failing check.
    /// Checks run on the shard answering, with its state.
    #[must_use]
    pub fn readiness_check(
        mut self,
        name: &str,
        check: impl Fn(&S) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.service
            .readiness
            .push((name.to_owned(), Box::new(check)));
        self
    }

    /// Runs `hook` on every shard once its connections have drained (or
    /// the graceful timeout passed), before the shard ends: close pools,
    /// flush buffers. It is given the shard's state and returns a future
    /// that owns what it needs (clone a pool's handle into it); it has the
    /// graceful timeout to finish.
    #[must_use]
    pub fn on_shutdown<Fut>(mut self, hook: impl Fn(&S) -> Fut + Send + Sync + 'static) -> Self
    where
        Fut: std::future::Future<Output = ()> + 'static,
    {
        self.service
            .shutdown
            .push(std::sync::Arc::new(move |state| Box::pin(hook(state))));
        self
    }

    /// Starts the shards and returns at once; the [`Server`] stops them.
    ///
    /// # Errors
    /// Startup failures: bad CPUs, an address in use, `io_uring` refused.
    pub fn start(self, config: &Config) -> Result<Server, Error> {
        runtime::start(config, self.into())
    }

    /// Serves until SIGINT or SIGTERM, then stops.
    ///
    /// # Errors
    /// Startup failures, as for [`start`](Self::start).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "lets callers write .serve(Config::default())"
    )]
    pub fn serve(self, config: Config) -> Result<(), Error> {
        runtime::run_until_signalled(&config, self.into(), None)
    }

    /// Serves like [`serve`](Self::serve); on SIGHUP, `reload` reads the
    /// configuration again and what can change live (limits, timeouts,
    /// headers, health and metrics routes, log level, graceful timeout,
    /// stall threshold) changes on every shard. An invalid configuration is
    /// refused whole (logged) and the running one stays.
    ///
    /// # Errors
    /// Startup failures, as for [`start`](Self::start).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "lets callers write .serve_reloading(Config::default(), ...)"
    )]
    pub fn serve_reloading(
        self,
        config: Config,
        reload: impl FnMut() -> Result<Config, Error> + Send + 'static,
    ) -> Result<(), Error> {
        runtime::run_until_signalled(&config, self.into(), Some(Box::new(reload)))
    }
}
