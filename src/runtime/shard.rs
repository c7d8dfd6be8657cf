//! One shard: its context (routes, state, `Date` cache, limits) and the task
//! that brings it up on its executor, serves, and returns when told to stop.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use futures_lite::AsyncReadExt;

use super::adopt;
use crate::app::App;
use crate::config::{ConnectionRules, HealthConfig, IoPath};
use crate::http::date::DateCache;
use crate::http::parse::Limits;
use crate::observe::access::{AccessFormat, AccessLog};
use crate::observe::counters::Counters;
use crate::server::accept;
use crate::server::deadline::Deadlines;
use crate::server::gate::Gate;
use crate::server::placed::BlockPool;
use crate::server::pool::BufferPool;
use crate::uring::{Ring, RingConfig};

/// Everything a shard's connections read; owned by that shard alone.
pub(crate) struct ShardContext<S> {
    pub(crate) index: usize,
    pub(crate) app: Arc<App<S>>,
    pub(crate) state: S,
    pub(crate) date: DateCache,
    pub(crate) limits: Limits,
    pub(crate) rules: ConnectionRules,
    pub(crate) pool: BufferPool,
    pub(crate) blocks: BlockPool,
    pub(crate) deadlines: Rc<Deadlines>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) gate: Gate,
    /// Set when the shard stops: connections finish what they are doing,
    /// answer with `Connection: close`, and idle ones close.
    pub(crate) draining: Cell<bool>,
    /// Security header lines for every response.
    pub(crate) fixed_headers: Box<[u8]>,
    /// The built-in health routes.
    pub(crate) health: HealthConfig,
    /// The access log, when on.
    pub(crate) access: Option<AccessLog>,
}

impl<S> ShardContext<S> {
    /// Builds the context, calling the app's state factory on this thread.
    pub(crate) fn new(
        index: usize,
        app: Arc<App<S>>,
        limits: Limits,
        rules: ConnectionRules,
        counters: Arc<Counters>,
    ) -> Self {
        let state = (app.state)();
        Self {
            index,
            app,
            state,
            date: DateCache::new(),
            limits,
            rules,
            pool: BufferPool::default(),
            blocks: BlockPool::default(),
            deadlines: Rc::default(),
            counters,
            gate: Gate::default(),
            draining: Cell::new(false),
            fixed_headers: Box::default(),
            health: HealthConfig::default(),
            access: None,
        }
    }
}

/// What a shard is given when it starts.
pub(crate) struct ShardStart<S> {
    pub(crate) index: usize,
    pub(crate) cpu: usize,
    pub(crate) app: Arc<App<S>>,
    pub(crate) limits: Limits,
    pub(crate) rules: ConnectionRules,
    pub(crate) counters: Arc<Counters>,
    /// Stamped every second by the shard's loop (the systemd watchdog reads it).
    pub(crate) heartbeat: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) io: IoPath,
    pub(crate) ring: RingConfig,
    pub(crate) listeners: Vec<std::net::TcpListener>,
    /// Security header lines for every response.
    pub(crate) fixed_headers: Box<[u8]>,
    pub(crate) health: HealthConfig,
    /// The access log's format, writer and request-ID prefix, when on.
    pub(crate) access: Option<(AccessFormat, std::sync::mpsc::Sender<Vec<u8>>, u32)>,
    /// How long open connections may take to finish when the shard stops.
    pub(crate) graceful_timeout: Duration,
    /// Reads end-of-file when the process wants the shard to stop.
    pub(crate) stop: std::os::unix::net::UnixStream,
    /// Told `Ok(index)` once the shard serves, or why it could not.
    pub(crate) ready: Sender<Result<usize, String>>,
}

/// Runs on the shard's own executor thread until stopped, then drains:
/// returns whether every connection finished within the graceful timeout.
pub(crate) async fn run<S: 'static>(start: ShardStart<S>) -> bool {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: start.cpu }) {
        let _ = start
            .ready
            .send(Err(format!("could not pin to CPU {}", start.cpu)));
        return true;
    }
    let mut context = ShardContext::new(
        start.index,
        start.app,
        start.limits,
        start.rules,
        start.counters,
    );
    context.fixed_headers = start.fixed_headers;
    context.health = start.health;
    context.access = start
        .access
        .map(|(format, writer, prefix)| AccessLog::new(format, writer, prefix, start.index));
    let shard = Rc::new(context);
    glommio::spawn_local(Rc::clone(&shard.deadlines).run(start.heartbeat)).detach();
    // Kept, not detached: dropping them stops accepting.
    let mut accepting = Vec::new();
    match start.io {
        IoPath::Glommio => {
            for listener in start.listeners {
                let listener = adopt::listener(listener);
                accepting.push(glommio::spawn_local(accept::accept_loop(
                    listener,
                    Rc::clone(&shard),
                )));
            }
        }
        IoPath::Uring => {
            let ring = match Ring::new(start.ring) {
                Ok(ring) => ring,
                Err(error) => {
                    let _ = start.ready.send(Err(format!(
                        "cannot set up the shard's io_uring ({error}); set server.io = \"glommio\" on kernels before 6.1"
                    )));
                    return true;
                }
            };
            glommio::spawn_local(Rc::clone(&ring).drive()).detach();
            for listener in start.listeners {
                accepting.push(glommio::spawn_local(accept::ring_accept_loop(
                    Rc::clone(&ring),
                    listener,
                    Rc::clone(&shard),
                )));
            }
        }
    }
    let mut stop = adopt::unix_stream(start.stop);
    let _ = start.ready.send(Ok(start.index));
    // End-of-file (or any error) on the stop socket means: stop.
    let _ = stop.read(&mut [0u8; 1]).await;
    drain(&shard, accepting, start.graceful_timeout).await
}

/// Stops accepting, lets open connections finish (idle ones close now, busy
/// ones after their response, which says `Connection: close`), and waits for
/// them up to `timeout`. Returns whether they all finished.
async fn drain<S, T>(
    shard: &ShardContext<S>,
    accepting: Vec<glommio::Task<T>>,
    timeout: Duration,
) -> bool {
    drop(accepting);
    shard.draining.set(true);
    shard.deadlines.drain();
    let open = shard.gate.open_connections();
    if open > 0 {
        tracing::info!(shard = shard.index, open, "draining connections");
    }
    let finished = futures_lite::future::or(
        async {
            shard.gate.empty().await;
            true
        },
        async {
            glommio::timer::sleep(timeout).await;
            false
        },
    )
    .await;
    if !finished {
        let open = shard.gate.open_connections();
        tracing::warn!(
            shard = shard.index,
            open,
            "graceful timeout passed; closing the remaining connections"
        );
    }
    finished
}
