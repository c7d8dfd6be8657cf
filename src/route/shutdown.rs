//! The shard's drain, as handlers see it: [`Shutdown`] resolves when the
//! shard starts to stop, so a long response (server-sent events, a slow
//! stream) can end cleanly instead of being cut at the graceful timeout.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::extract::FromRequest;
use crate::http::request::Request;
use crate::http::response::HttpError;

/// A shard's drain signal: set once, wakes every waiter.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    started: Cell<bool>,
    /// One entry per waiting future, removed when it is dropped.
    waiters: RefCell<Slab<Option<Waker>>>,
    /// Background tasks still running ([`Background::run`]).
    tasks: Cell<usize>,
    /// The stopping shard, waiting for them to finish.
    tasks_waiter: RefCell<Option<Waker>>,
}

thread_local! {
    /// The drain of the shard running on this thread.
    static CURRENT: RefCell<Option<Rc<Drain>>> = const { RefCell::new(None) };
    /// This thread runs a shard's executor (so its timers work).
    static ON_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as a shard's, whose executor has timers.
pub(crate) fn mark_shard_thread() {
    ON_SHARD.with(|on| on.set(true));
}

/// Whether this thread runs a shard's executor: timers (a route timeout,
/// SSE keep-alive comments) work only there, not under `LocalService`.
pub(crate) fn on_shard() -> bool {
    ON_SHARD.with(Cell::get)
}

impl Drain {
    /// A new signal, installed as this thread's (a shard's thread).
    pub(crate) fn install() -> Rc<Self> {
        let drain = Rc::new(Self::default());
        CURRENT.with(|current| *current.borrow_mut() = Some(Rc::clone(&drain)));
        drain
    }

    /// The shard starts to stop: every waiter wakes.
    pub(crate) fn start(&self) {
        self.started.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(|(_, waker)| waker.take())
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Waits until no background task runs.
    pub(crate) async fn tasks_done(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.tasks.get() == 0 {
                return Poll::Ready(());
            }
            *self.tasks_waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// Background tasks still running.
    pub(crate) fn tasks(&self) -> usize {
        self.tasks.get()
    }
}

/// Runs work after the response, on the shard that served the request
/// (`FastAPI`'s `BackgroundTasks`): send the e-mail, write the audit record,
/// warm a cache. A task starts once the handler's response has been
/// written and handed to the connection, so the client does not wait for
/// it; a stopping shard waits for running tasks within
/// `server.graceful_timeout_secs`. A task that panics is logged and
/// dropped; the shard lives on.
///
/// ```no_run
/// use percore::{App, Background};
///
/// let app = App::new().post("/signup", async |background: Background| {
///     background.run(async {
///         // e.g. an outbound call that the client need not wait for
///     });
///     "welcome"
/// });
/// ```
///
/// Off a shard ([`LocalService`](crate::LocalService)), there is no executor
/// to run them: `run` logs an error and drops the task.
#[derive(Clone, Debug)]
pub struct Background(Option<Rc<Drain>>);

impl Background {
    /// Runs `task` on this shard after the response.
    pub fn run(&self, task: impl Future<Output = ()> + 'static) {
        let Some(drain) = self.0.clone().filter(|_| on_shard()) else {
            tracing::error!("a background task was started off a shard; it was dropped");
            return;
        };
        drain.tasks.set(drain.tasks.get() + 1);
        let running = Running(drain);
        glommio::spawn_local(async move {
            let _running = running;
            let finished =
                futures_lite::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(task)).await;
            if finished.is_err() {
                tracing::error!("a background task panicked; it was dropped");
            }
        })
        .detach();
    }
}

/// Counts a background task while it lives (also when it is cancelled).
struct Running(Rc<Drain>);

impl Drop for Running {
    fn drop(&mut self) {
        let left = self.0.tasks.get() - 1;
        self.0.tasks.set(left);
        if left == 0
            && let Some(waker) = self.0.tasks_waiter.borrow_mut().take()
        {
            waker.wake();
        }
    }
}

impl<S> FromRequest<S> for Background {
    type Rejection = std::convert::Infallible;

    async fn from_request(_: &mut Request<'_>, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Background(CURRENT.with(|current| current.borrow().clone())))
    }
}

/// Resolves when the shard starts to drain (SIGTERM, `Server::stop`, a
/// reload that stops it). Take it as an extractor and end a long stream on
/// it — [`Sse::until`](crate::Sse::until) does — so the client sees the
/// stream end rather than a cut. Without a server around the app
/// ([`LocalService`](crate::LocalService)) it never resolves.
#[derive(Clone, Debug)]
pub struct Shutdown(Option<Rc<Drain>>);

impl Shutdown {
    /// Whether the drain has begun.
    #[must_use]
    pub fn is_started(&self) -> bool {
        self.0.as_ref().is_some_and(|drain| drain.started.get())
    }

    /// Waits for the drain to begin.
    pub async fn wait(&self) {
        Wait {
            drain: self.0.as_deref(),
            key: None,
        }
        .await;
    }
}

/// The future of [`Shutdown::wait`]: one waker slot, freed when dropped.
struct Wait<'d> {
    drain: Option<&'d Drain>,
    key: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(drain) = self.drain else {
            return Poll::Pending;
        };
        if drain.started.get() {
            return Poll::Ready(());
        }
        let mut waiters = drain.waiters.borrow_mut();
        if let Some(key) = self.key {
            if let Some(slot) = waiters.get_mut(key)
                && !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
            {
                *slot = Some(cx.waker().clone());
            }
        } else {
            let key = waiters.insert(Some(cx.waker().clone()));
            drop(waiters);
            self.key = Some(key);
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let (Some(drain), Some(key)) = (self.drain, self.key) {
            drain.waiters.borrow_mut().try_remove(key);
        }
    }
}

impl<S> FromRequest<S> for Shutdown {
    type Rejection = HttpError;

    async fn from_request(_: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(Shutdown(CURRENT.with(|current| current.borrow().clone())))
    }
}
