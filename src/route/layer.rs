//! Middleware: async layers around handlers.
//!
//! A [`Layer`] sees the request before the handler, may answer it itself
//! (short-circuit) or call the rest of the chain with [`Next::run`], and
//! then reads and changes the response written ([`ResponseWriter::status_sent`],
//! [`ResponseWriter::insert_header`], [`ResponseWriter::replace_status`]).
//! Layers wrap the whole app ([`App::layer`](crate::App::layer)), a route
//! group ([`Scope::layer`](crate::Scope::layer)), or one route (a group of
//! one). The last layer added is the outermost.
//!
//! Each layer's future is placed in a block from the shard's pool, so the
//! layer outside it holds it at a fixed size and a chain of layers
//! allocates nothing per request; a route without layers calls its
//! handler directly.

use std::sync::Arc;

use super::handler::ErasedHandler;
use super::pooled::{BlockPool, PlacedDyn};
use crate::http::request::Request;
use crate::http::write::ResponseWriter;

/// A middleware layer, made with [`from_fn`].
pub struct Layer<S = ()> {
    inner: Arc<dyn ErasedLayer<S>>,
}

impl<S> Clone for Layer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for Layer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer").finish_non_exhaustive()
    }
}

/// A layer with its function's type erased.
trait ErasedLayer<S>: Send + Sync {
    fn call<'a>(
        &'a self,
        request: &'a mut Request<'_>,
        response: &'a mut ResponseWriter<'_>,
        next: Next<'a, S>,
    ) -> PlacedDyn<'a>;
}

/// A layer from an async function (see [`from_fn`]).
struct FromFn<F>(F);

/// What [`from_fn`] takes: an async function of the request, the response
/// writer and the rest of the chain, callable from any shard.
pub trait LayerFn<S>:
    for<'a, 'r, 'w> AsyncFn(&'a mut Request<'r>, &'a mut ResponseWriter<'w>, Next<'a, S>)
    + Send
    + Sync
    + 'static
{
}

impl<S, F> LayerFn<S> for F where
    F: for<'a, 'r, 'w> AsyncFn(&'a mut Request<'r>, &'a mut ResponseWriter<'w>, Next<'a, S>)
        + Send
        + Sync
        + 'static
{
}

impl<S: 'static, F: LayerFn<S>> ErasedLayer<S> for FromFn<F> {
    fn call<'a>(
        &'a self,
        request: &'a mut Request<'_>,
        response: &'a mut ResponseWriter<'_>,
        next: Next<'a, S>,
    ) -> PlacedDyn<'a> {
        let blocks = next.blocks;
        blocks.place_dyn((self.0)(request, response, next))
    }
}

/// A layer from an async function of the request, the response writer and
/// the rest of the chain:
///
/// ```
/// use percore::{App, LocalService, Next, Request, ResponseWriter, Status, from_fn};
///
/// async fn timed(request: &mut Request<'_>, response: &mut ResponseWriter<'_>, next: Next<'_>) {
///     let started = std::time::Instant::now();
///     if request.header("x-block").is_some() {
///         // Short-circuit: the handler never runs.
///         return response.send_error(Status::FORBIDDEN, "blocked");
///     }
///     next.run(request, response).await;
///     let micros = started.elapsed().as_micros().to_string();
///     response.insert_header("Server-Timing", format!("app;dur={micros}").as_bytes());
/// }
///
/// let app = App::new().get("/", async || "hi").layer(from_fn(timed));
/// let mut service = LocalService::new(app);
/// let mut out = Vec::new();
/// futures_lite::future::block_on(service.serve(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut out));
/// assert!(String::from_utf8_lossy(&out).contains("Server-Timing: app;dur="));
/// ```
pub fn from_fn<S: 'static, F: LayerFn<S>>(function: F) -> Layer<S> {
    Layer {
        inner: Arc::new(FromFn(function)),
    }
}

/// The rest of a chain of layers, ending in the route's handler.
pub struct Next<'a, S = ()> {
    layers: &'a [Layer<S>],
    handler: &'a dyn ErasedHandler<S>,
    state: &'a S,
    blocks: &'a BlockPool,
}

impl<S> std::fmt::Debug for Next<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next")
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl<'a, S> Next<'a, S> {
    /// The chain `layers` (outermost first) around `handler`.
    pub(crate) fn new(
        layers: &'a [Layer<S>],
        handler: &'a dyn ErasedHandler<S>,
        state: &'a S,
        blocks: &'a BlockPool,
    ) -> Self {
        Self {
            layers,
            handler,
            state,
            blocks,
        }
    }

    /// The shard's state, as the handler sees it.
    pub fn state(&self) -> &'a S {
        self.state
    }

    /// Runs the rest of the chain: the next layer, or the handler, which
    /// writes its response into `response`.
    pub async fn run(self, request: &mut Request<'_>, response: &mut ResponseWriter<'_>) {
        match self.layers.split_first() {
            Some((layer, rest)) => {
                let next = Next {
                    layers: rest,
                    ..self
                };
                layer.inner.call(request, response, next).await;
            }
            None => self.handler.call(request, self.state, response).await,
        }
    }
}

/// Runs `work` for at most `limit`: whether it finished (its future is
/// dropped when it did not). Off a shard, with no timers, it runs to its
/// end. The route timeouts of code ([`timeout`]) and of the file
/// (`timeouts.routes`) both stand on it.
pub(crate) async fn finishes_within(
    limit: std::time::Duration,
    work: impl Future<Output = ()>,
) -> bool {
    if !super::shutdown::on_shard() {
        work.await;
        return true;
    }
    futures_lite::future::or(
        async {
            work.await;
            true
        },
        async {
            glommio::timer::Timer::new(limit).await;
            false
        },
    )
    .await
}

/// A layer that answers 504 when the rest of the chain takes longer than
/// `limit` (the handler's future is dropped): a per-route request timeout,
/// tighter than `timeouts.request_secs` for the whole connection. On a
/// shard only: under [`LocalService`](crate::LocalService), which has no
/// timers, the chain runs without it.
pub fn timeout<S: 'static>(limit: std::time::Duration) -> Layer<S> {
    from_fn(
        async move |request: &mut Request<'_>,
                    response: &mut ResponseWriter<'_>,
                    next: Next<'_, S>| {
            if !finishes_within(limit, next.run(request, response)).await {
                response.reset();
                response.send_error(
                    crate::http::status::Status::GATEWAY_TIMEOUT,
                    "the request took longer than this route allows",
                );
            }
        },
    )
}
