//! The service author's entry point: routes, handlers and shard state.

use crate::config::Config;
use crate::error::Error;
use crate::http::parse::Method;
use crate::route::handler::Handler;
use crate::route::service::RouteService;
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
}

impl<S> std::fmt::Debug for App<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl<S> From<App<S>> for RouteService<S> {
    fn from(app: App<S>) -> Self {
        app.service
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
        Self {
            service: RouteService::new(factory),
        }
    }

    /// Routes `method` requests for `pattern` to `handler`.
    ///
    /// # Panics
    /// When the pattern is malformed or already routed for this method: a
    /// programming error, reported at startup.
    #[must_use]
    pub fn route<H: Handler<S, Args>, Args: 'static>(
        mut self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Self {
        if let Err(error) = self.service.route(method, pattern, handler) {
            panic!("{error}");
        }
        self
    }

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

    /// Starts the shards and returns at once; the [`Server`] stops them.
    ///
    /// # Errors
    /// Startup failures: bad CPUs, an address in use, `io_uring` refused.
    pub fn start(self, config: &Config) -> Result<Server, Error> {
        runtime::start(config, self.service)
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
        runtime::run_until_signalled(&config, self.service, None)
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
        runtime::run_until_signalled(&config, self.service, Some(Box::new(reload)))
    }
}
