//! An app frozen for serving: its route table, the factory of each shard's
//! state, and its readiness checks. The builder (`App`) makes one; the
//! server and the runtime take it without knowing the builder.

use std::sync::Arc;

use super::handler::{Erased, ErasedHandler, Handler};
use super::router::Router;
use crate::http::parse::Method;
use crate::observe::metrics::{FIRST_APP_ROUTE, RouteLabel};

/// The route table of a handler, as every shard reads it.
pub(crate) type Routes<S> = Router<Routed<S>>;

/// A routed handler and its slot in the metrics.
pub(crate) struct Routed<S> {
    pub(crate) slot: usize,
    pub(crate) handler: Box<dyn ErasedHandler<S>>,
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
    pub(crate) state: Arc<dyn Fn() -> S + Send + Sync>,
    pub(crate) readiness: Vec<(String, ReadinessCheck<S>)>,
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
    pub(crate) fn new(factory: impl Fn() -> S + Send + Sync + 'static) -> Self {
        Self {
            routes: Router::new(),
            labels: Vec::new(),
            state: Arc::new(factory),
            readiness: Vec::new(),
        }
    }

    /// Routes `method` requests for `pattern` to `handler`.
    ///
    /// # Errors
    /// When the pattern is malformed or already routed for this method.
    pub(crate) fn route<H: Handler<S, Args>, Args: 'static>(
        &mut self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Result<(), String>
    where
        S: 'static,
    {
        let routed = Routed {
            slot: FIRST_APP_ROUTE + self.labels.len(),
            handler: Box::new(Erased::new(handler)),
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

    /// How many metrics slots the app's requests use.
    pub(crate) fn route_count(&self) -> usize {
        FIRST_APP_ROUTE + self.labels.len()
    }

    /// The metrics label of every slot.
    pub(crate) fn route_labels(&self) -> Vec<RouteLabel> {
        let mut labels = RouteLabel::built_in();
        labels.extend(self.labels.iter().cloned());
        labels
    }
}
