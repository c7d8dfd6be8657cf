//! Each shard's state built by an async function before the shard serves
//! (connect pools, warm caches), and the hooks that run when it drains.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::app_settings::Parsed;
use crate::route::extract::Settings;

/// A future on the shard's own thread (it need not be `Send`).
pub(crate) type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Builds a shard's state: called once on every shard, on its thread.
pub(crate) type StateFactory<S> =
    Arc<dyn Fn(Startup) -> LocalFuture<'static, Result<S, StartupError>> + Send + Sync>;

/// Runs on a shard once its connections have drained.
pub(crate) type ShutdownHook<S> = Arc<dyn Fn(&S) -> LocalFuture<'static, ()> + Send + Sync>;

/// What a shard's state factory is given: the shard and the app's
/// settings in force.
#[derive(Clone)]
pub struct Startup {
    shard: usize,
    settings: Option<Parsed>,
}

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Startup")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl Startup {
    pub(crate) fn new(shard: usize, settings: Option<Parsed>) -> Self {
        Self { shard, settings }
    }

    /// The index of the shard being built (0 for the first).
    #[must_use]
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The app's `[app]` settings (read with `App::settings::<T>`), as in
    /// force when the shard starts.
    ///
    /// # Errors
    /// When the app reads no settings of type `T`.
    pub fn settings<T: Send + Sync + 'static>(&self) -> Result<Settings<T>, StartupError> {
        self.settings
            .as_ref()
            .and_then(|parsed| Arc::clone(parsed).downcast::<T>().ok())
            .map(Settings)
            .ok_or_else(|| {
                StartupError::new(
                    "settings",
                    format!(
                        "the state factory reads settings of type {}, but the app reads none of that type (call App::settings)",
                        std::any::type_name::<T>()
                    ),
                )
            })
    }
}

/// Why a shard's state could not be built: the dependency that failed
/// (such as `postgres`) and what went wrong. The server does not start,
/// and says so naming both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupError {
    dependency: String,
    reason: String,
}

impl StartupError {
    /// `dependency` (a name the operator knows, as in readiness checks)
    /// failed for `reason`.
    pub fn new(dependency: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            dependency: dependency.into(),
            reason: reason.to_string(),
        }
    }

    /// The dependency that failed.
    #[must_use]
    pub fn dependency(&self) -> &str {
        &self.dependency
    }

    /// What went wrong.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.dependency, self.reason)
    }
}

impl std::error::Error for StartupError {}

/// A factory for a synchronous one.
pub(crate) fn sync_factory<S: 'static>(
    factory: impl Fn() -> S + Send + Sync + 'static,
) -> StateFactory<S> {
    Arc::new(move |_| {
        let state = factory();
        Box::pin(async move { Ok(state) })
    })
}

/// Runs `factory` for shard `index` with the settings in force.
pub(crate) async fn build<S>(
    factory: &StateFactory<S>,
    index: usize,
    settings: Option<Parsed>,
) -> Result<S, StartupError> {
    factory(Startup::new(index, settings)).await
}
