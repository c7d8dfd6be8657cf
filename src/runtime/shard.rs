//! One shard's life: the task that brings it up on its executor (pinned,
//! listening, heartbeating), carries out the process's commands, and
//! drains when told to stop.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use std::os::fd::AsRawFd;

use futures_lite::AsyncReadExt;

use super::adopt;
use super::control::{Command, Control, Inbox};
use crate::config::IoPath;
use crate::observe::access::{AccessFormat, AccessLog, RequestIds};
use crate::route::service::RouteService;
use crate::server::Role;
use crate::server::accept;
use crate::server::shard::{Settings, ShardContext};
use crate::uring::{Ring, RingConfig};

/// How often a shard stamps its [`Vitals`]: the watchdog's resolution.
const HEARTBEAT: Duration = Duration::from_millis(100);

/// How often a shard trims its pools to their working set: a burst's
/// buffers are freed within two of these after it ends.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Connections closed between two trims that make the allocator give its
/// free pages back even when the pools freed nothing.
const CLOSED_TO_TRIM: usize = 256;

/// What a shard is given when it starts.
pub(crate) struct ShardStart<S> {
    pub(crate) index: usize,
    pub(crate) cpu: usize,
    pub(crate) app: Arc<RouteService<S>>,
    pub(crate) settings: Settings,
    pub(crate) io: IoPath,
    pub(crate) ring: RingConfig,
    pub(crate) listeners: Vec<(std::net::TcpListener, Role)>,
    /// The access log's format and writer, when on.
    pub(crate) access: Option<(AccessFormat, std::sync::mpsc::Sender<Vec<u8>>)>,
    /// Distinguishes this process's generated request IDs from another's.
    pub(crate) request_id_prefix: u32,
    /// Commands from the process (stop, reload, snapshot).
    pub(crate) inbox: Inbox,
    pub(crate) control: Arc<Control>,
    /// Told `Ok(index)` once the shard serves, or why it could not.
    pub(crate) ready: Sender<Result<usize, crate::error::Error>>,
}

/// Runs on the shard's own executor thread until stopped, then drains:
/// returns whether every connection finished within the graceful timeout.
pub(crate) async fn run<S: 'static>(start: ShardStart<S>) -> bool {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: start.cpu }) {
        let _ = start.ready.send(Err(crate::error::Error::Pin {
            shard: start.index,
            cpu: start.cpu,
        }));
        return true;
    }
    crate::route::shutdown::mark_shard_thread();
    // The ring first: the state the app builds (its database pools) and
    // the outbound client connect on it.
    let ring = match start.io {
        IoPath::Glommio => None,
        IoPath::Uring => match shard_ring(&start) {
            Some(ring) => Some(ring),
            None => return true,
        },
    };
    let Some(state) = build_state(&start).await else {
        return true;
    };
    let mut context = ShardContext::new(start.index, start.app, start.settings, state);
    context.access = start
        .access
        .map(|(format, writer)| AccessLog::new(format, writer, start.index));
    context.request_ids = RequestIds::new(start.request_id_prefix, start.index);
    context.vitals = Arc::clone(&start.control.vitals[start.index]);
    let control = start.control;
    context.scrape = Some(Arc::new(move || control.metrics_text()));
    let shard = Rc::new(context);
    // The configuration's upstreams: their health checks start now.
    if let Some(table) = shard
        .settings()
        .app
        .proxy
        .as_ref()
        .and_then(|t| t.downcast_ref::<crate::config::ProxyTable>())
    {
        crate::proxy::warm(table);
    }
    glommio::spawn_local(Rc::clone(&shard.deadlines).run()).detach();
    spawn_trimmer(&shard);
    let vitals = Arc::clone(&shard.vitals);
    glommio::spawn_local(async move {
        loop {
            vitals.beat();
            glommio::timer::sleep(HEARTBEAT).await;
        }
    })
    .detach();
    // Kept, not detached: dropping them stops accepting.
    let mut accepting = Vec::new();
    let mut shard_ring = None;
    match ring {
        None => {
            for (listener, role) in start.listeners {
                let listener = adopt::listener(listener);
                accepting.push(glommio::spawn_local(accept::accept_loop(
                    listener,
                    Rc::clone(&shard),
                    role,
                )));
            }
        }
        Some(ring) => {
            shard_ring = Some(Rc::clone(&ring));
            for (listener, role) in start.listeners {
                accepting.push(glommio::spawn_local(accept::ring_accept_loop(
                    Rc::clone(&ring),
                    listener.as_raw_fd(),
                    Rc::clone(&shard),
                    role,
                )));
                LISTENERS.with_borrow_mut(|kept| kept.push(listener));
            }
        }
    }
    let restarts = shard
        .vitals
        .restarts
        .load(std::sync::atomic::Ordering::Relaxed);
    if restarts > 0 {
        tracing::info!(
            shard = start.index,
            cpu = start.cpu,
            restarts,
            "shard restarted"
        );
    }
    let _ = start.ready.send(Ok(start.index));
    follow_control(&shard, start.inbox).await;
    let timeout = shard.settings().graceful_timeout;
    stop_accepting(accepting, shard_ring).await;
    let drained = drain(&shard, timeout).await;
    run_shutdown_hooks(&shard, timeout).await;
    drained
}

/// Trims the shard's pools every [`TRIM_EVERY`], giving free pages back
/// when a burst ended or many connections closed.
fn spawn_trimmer<S: 'static>(shard: &Rc<ShardContext<S>>) {
    let trimmed = Rc::downgrade(shard);
    glommio::spawn_local(async move {
        // Connections open at the last trim: when many have closed since,
        // their memory is free in the allocator, pools or not.
        let mut open_before = 0;
        loop {
            glommio::timer::sleep(TRIM_EVERY).await;
            let Some(shard) = trimmed.upgrade() else {
                break;
            };
            let open = shard.gate.open_connections();
            let many_closed = open + CLOSED_TO_TRIM <= open_before;
            if shard.trim() > 0 || many_closed {
                super::memory::give_back_free_pages();
            }
            open_before = open;
        }
    })
    .detach();
}

/// The shard's own ring, driven and made this thread's current one; a
/// failure goes to the `ready` channel.
fn shard_ring<S>(start: &ShardStart<S>) -> Option<Rc<Ring>> {
    match Ring::new(start.ring) {
        Ok(ring) => {
            glommio::spawn_local(Rc::clone(&ring).drive()).detach();
            crate::uring::set_current(&ring);
            Some(ring)
        }
        Err(error) => {
            let _ = start.ready.send(Err(crate::error::Error::Ring {
                shard: start.index,
                error,
            }));
            None
        }
    }
}

/// Builds the shard's state with the app's factory; a failure goes to the
/// `ready` channel, naming the dependency.
async fn build_state<S>(start: &ShardStart<S>) -> Option<S> {
    let settings = start.settings.app.settings.clone();
    match crate::route::startup::build(&start.app.state, start.index, settings).await {
        Ok(state) => Some(state),
        Err(error) => {
            let _ = start.ready.send(Err(crate::error::Error::Dependency {
                shard: start.index,
                error,
            }));
            None
        }
    }
}

/// Runs the app's shutdown hooks in the order added, each given the
/// graceful timeout to finish.
async fn run_shutdown_hooks<S>(shard: &ShardContext<S>, timeout: Duration) {
    for hook in &shard.app.shutdown {
        if !crate::route::layer::finishes_within(timeout, hook(&shard.state)).await {
            tracing::warn!(
                shard = shard.index,
                "a shutdown hook took longer than the graceful timeout; the shard ends without it"
            );
        }
    }
}

/// Stops the accept loops. On the ring path the multishot accepts are
/// cancelled and each loop first takes every connection the kernel had
/// already accepted for it (none is dropped unanswered); then the
/// listening sockets close, which lets `tcp_migrate_req` move what is still
/// queued on them to another process on the same port.
async fn stop_accepting<T>(accepting: Vec<glommio::Task<T>>, ring: Option<Rc<Ring>>) {
    if let Some(ring) = ring {
        ring.cancel_accepts();
        let () = futures_lite::future::or(
            async {
                for task in accepting {
                    task.await;
                }
            },
            async {
                glommio::timer::sleep(Duration::from_secs(1)).await;
            },
        )
        .await;
    } else {
        drop(accepting);
    }
    drop(LISTENERS.take());
}

thread_local! {
    /// The shard's listening sockets on the ring path, owned by the
    /// thread rather than by a task, so they are closed when the shard
    /// stops accepting and also after a crash (when tasks are never dropped).
    static LISTENERS: RefCell<Vec<std::net::TcpListener>> = const { RefCell::new(Vec::new()) };
}

/// Lets go of what a shard whose executor died in a panic still holds:
/// its listening sockets and its ring (with the connections it serves).
pub(crate) fn release_after_crash() {
    drop(LISTENERS.take());
    crate::uring::release_after_crash();
}

/// Carries out the process's commands until told to stop (or until the
/// process is gone: the doorbell reads end-of-file).
async fn follow_control<S>(shard: &ShardContext<S>, inbox: Inbox) {
    let mut bell = adopt::unix_stream(inbox.bell);
    let mut rings = [0u8; 64];
    loop {
        let mut stop = !matches!(bell.read(&mut rings).await, Ok(n) if n > 0);
        while let Ok(command) = inbox.commands.try_recv() {
            match command {
                Command::Stop => stop = true,
                Command::Reload(settings, applied) => {
                    shard.reload(*settings);
                    let _ = applied.send(shard.index);
                }
                Command::Snapshot(reply) => {
                    let _ = reply.send((shard.index, shard.snapshot()));
                }
            }
        }
        if stop {
            return;
        }
    }
}

/// Stops accepting, lets open connections finish (idle ones close now, busy
/// ones after their response, which says `Connection: close`), and waits for
/// them up to `timeout`. Returns whether they all finished.
async fn drain<S>(shard: &ShardContext<S>, timeout: Duration) -> bool {
    shard.draining.set(true);
    shard.shutdown.start();
    shard.deadlines.drain();
    let open = shard.gate.open_connections();
    if open > 0 {
        tracing::info!(shard = shard.index, open, "draining connections");
    }
    let finished = futures_lite::future::or(
        async {
            shard.gate.empty().await;
            let tasks = shard.shutdown.tasks();
            if tasks > 0 {
                tracing::info!(shard = shard.index, tasks, "waiting for background tasks");
            }
            shard.shutdown.tasks_done().await;
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
