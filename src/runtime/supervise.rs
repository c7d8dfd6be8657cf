//! Supervision: each shard runs on a thread of ours, so a shard that dies
//! anyway (a panic outside a handler, such as in a task a handler spawned)
//! is seen and started again on the same CPU with the same listening
//! sockets, which the process keeps open for its whole life. A watchdog
//! thread reads every shard's [`Vitals`] to report a blocked event loop
//! and feeds the systemd watchdog only while none is.

use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use super::control::{self, Command, Control};
use super::notify;
use super::shard::{self, ShardStart};
use crate::config::IoPath;
use crate::error::Error;
use crate::observe::access::AccessFormat;
use crate::route::service::RouteService;
use crate::server::shard::Settings;
use crate::uring::RingConfig;

/// I/O memory glommio registers per executor. percore does no file I/O, so
/// the minimum keeps each shard's locked memory small.
const IO_MEMORY: usize = 64 * 1024;

/// How long a reload waits for the shards to apply it.
const RELOAD_ACK: Duration = Duration::from_secs(5);

/// How long a restarted shard may take to listen again.
const RESTART_READY: Duration = Duration::from_secs(10);

/// How a shard's thread ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It stopped when told; whether its connections all finished in time.
    Drained(bool),
    /// It panicked, with this message.
    Panicked(String),
    /// It could not start (the reason went to its `ready` channel).
    Failed,
}

/// What the supervisor hears.
pub(crate) enum Event {
    /// A shard's thread ended.
    Ended(usize, Outcome),
    /// Stop every shard and end.
    Stop,
    /// New settings for every shard, running or restarted later; how many
    /// running shards applied them goes back on the sender.
    Reload(Box<Settings>, Sender<usize>),
}

/// Everything needed to start shard `index` again.
pub(crate) struct ShardStarter<S> {
    pub(crate) app: Arc<RouteService<S>>,
    pub(crate) cpus: Vec<usize>,
    /// The listening sockets of each shard, kept open for the process's life.
    pub(crate) listeners: Vec<Vec<TcpListener>>,
    /// What each of a shard's listeners is for (the same for every shard).
    pub(crate) roles: Vec<super::listener::Role>,
    pub(crate) settings: Settings,
    pub(crate) io: IoPath,
    pub(crate) ring: RingConfig,
    pub(crate) blocking_threads: usize,
    pub(crate) access: Option<(AccessFormat, Sender<Vec<u8>>)>,
    /// Distinguishes this process's generated request IDs from another's.
    pub(crate) request_id_prefix: u32,
    pub(crate) control: Arc<Control>,
    pub(crate) events: Sender<Event>,
}

impl<S: 'static> ShardStarter<S> {
    /// Starts shard `index` on its own thread; it reports on `ready` once
    /// it listens (or why it could not), and on the events channel when
    /// its thread ends.
    pub(crate) fn spawn(
        &self,
        index: usize,
        ready: Sender<Result<usize, Error>>,
    ) -> Result<JoinHandle<()>, Error> {
        let (mailbox, inbox) = control::mailbox()?;
        self.control.install(index, mailbox);
        let listeners = self.listeners[index]
            .iter()
            .map(TcpListener::try_clone)
            .collect::<Result<Vec<_>, _>>()?;
        let start = ShardStart {
            index,
            cpu: self.cpus[index],
            app: Arc::clone(&self.app),
            settings: self.settings.clone(),
            io: self.io,
            ring: self.ring,
            listeners: listeners
                .into_iter()
                .zip(self.roles.iter().copied())
                .collect(),
            access: self.access.clone(),
            request_id_prefix: self.request_id_prefix,
            inbox,
            control: Arc::clone(&self.control),
            ready: ready.clone(),
        };
        let builder = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(IO_MEMORY)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(self.blocking_threads));
        let events = self.events.clone();
        let vitals = Arc::clone(&self.control.vitals[index]);
        let thread = std::thread::Builder::new()
            .name(format!("percore-shard-{index}"))
            .spawn(move || {
                // glommio panics on some refusals while it probes its
                // rings; that too is a start-up failure with a reason.
                let made = std::panic::catch_unwind(AssertUnwindSafe(|| builder.make()));
                let outcome = match made {
                    Err(payload) => {
                        let _ = ready.send(Err(Error::Executor {
                            shard: index,
                            reason: panic_message(&*payload),
                        }));
                        Outcome::Failed
                    }
                    Ok(Err(error)) => {
                        let _ = ready.send(Err(super::startup_error(index, error)));
                        Outcome::Failed
                    }
                    Ok(Ok(executor)) => {
                        drop(ready);
                        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            executor.run(shard::run(start))
                        }));
                        drop(executor);
                        match run {
                            Ok(finished) => Outcome::Drained(finished),
                            Err(payload) => {
                                shard::release_after_crash();
                                Outcome::Panicked(panic_message(&*payload))
                            }
                        }
                    }
                };
                vitals.heartbeat.store(0, Ordering::Relaxed);
                let _ = events.send(Event::Ended(index, outcome));
            })?;
        Ok(thread)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs until told to stop: restarts shards that die, hands reloads on,
/// then stops every shard and reports how the drain went.
pub(crate) fn supervise<S: 'static>(
    mut starter: ShardStarter<S>,
    mut threads: Vec<Option<JoinHandle<()>>>,
    events: &Receiver<Event>,
) -> Result<(), Error> {
    let mut stopping = false;
    let mut late = 0;
    let mut failed = None;
    let mut running = threads.iter().filter(|t| t.is_some()).count();
    while running > 0 || !stopping {
        let Ok(event) = events.recv() else { break };
        match event {
            Event::Stop => {
                stopping = true;
                // Close our copies first, so a shard's sockets leave the
                // reuseport group as soon as it stops accepting (and the
                // kernel can move queued connections to a successor).
                starter.listeners.clear();
                starter.control.broadcast(|| Command::Stop);
            }
            Event::Reload(settings, done) => {
                starter.settings = (*settings).clone();
                let (applied, acks) = mpsc::channel();
                let running = starter
                    .control
                    .broadcast(|| Command::Reload(settings.clone(), applied.clone()));
                drop(applied);
                let deadline = std::time::Instant::now() + RELOAD_ACK;
                let confirmed = (0..running)
                    .take_while(|_| {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        acks.recv_timeout(left).is_ok()
                    })
                    .count();
                let _ = done.send(confirmed);
            }
            Event::Ended(index, outcome) => {
                if let Some(thread) = threads[index].take() {
                    let _ = thread.join();
                }
                running -= 1;
                match outcome {
                    Outcome::Drained(true) => {}
                    Outcome::Drained(false) => late += 1,
                    Outcome::Failed => {
                        failed.get_or_insert(Error::StartupLost { shard: index });
                    }
                    Outcome::Panicked(message) if stopping => {
                        failed.get_or_insert(Error::StopPanicked {
                            shard: index,
                            panic: message,
                        });
                    }
                    Outcome::Panicked(message) if starter.io == IoPath::Glommio => {
                        // glommio's own reactor keeps a dead shard's sockets
                        // (its tasks are never dropped), so a new shard there
                        // would share the listener with a black hole: exit
                        // instead, and let the service manager start afresh.
                        tracing::error!(
                            shard = index,
                            panic = message,
                            "shard died on the glommio I/O path, which cannot reclaim its sockets; \
                             stopping percore for the service manager to restart it \
                             (the uring path restarts shards in place)"
                        );
                        failed.get_or_insert(Error::ShardLost {
                            shard: index,
                            panic: message,
                        });
                        stopping = true;
                        starter.listeners.clear();
                        starter.control.broadcast(|| Command::Stop);
                        starter.control.fatal();
                    }
                    Outcome::Panicked(message) => {
                        tracing::error!(
                            shard = index,
                            panic = message,
                            "shard died; restarting it"
                        );
                        starter.control.vitals[index]
                            .restarts
                            .fetch_add(1, Ordering::Relaxed);
                        match restart(&starter, index) {
                            Ok(thread) => {
                                threads[index] = Some(thread);
                                running += 1;
                            }
                            Err(error) => {
                                tracing::error!(shard = index, %error, "shard could not be restarted");
                            }
                        }
                    }
                }
            }
        }
    }
    drop(starter);
    match (failed, late) {
        (Some(error), _) => Err(error),
        (None, 0) => Ok(()),
        (None, shards) => Err(Error::DrainTimedOut(shards)),
    }
}

/// Starts shard `index` again and waits until it listens.
fn restart<S: 'static>(starter: &ShardStarter<S>, index: usize) -> Result<JoinHandle<()>, Error> {
    let (ready, ready_rx) = mpsc::channel();
    let thread = starter.spawn(index, ready)?;
    match ready_rx.recv_timeout(RESTART_READY) {
        // The shard itself says "shard restarted" before it serves.
        Ok(Ok(_)) => Ok(thread),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::RestartTimedOut { shard: index }),
    }
}

/// The watchdog thread: every 100 ms it reads each running shard's
/// heartbeat; a shard silent for longer than the threshold is blocked
/// (logged once, with the last request it started, and counted), and
/// logged again when it resumes. With `WATCHDOG_USEC` set (systemd), it
/// feeds the systemd watchdog only while no shard is blocked.
pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
    /// The stall threshold in ms (0: off); a reload may change it.
    pub(crate) threshold_ms: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

const WATCH_EVERY: Duration = Duration::from_millis(100);

impl Watchdog {
    pub(crate) fn start(control: Arc<Control>, threshold_ms: u64) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let threshold = Arc::new(AtomicU64::new(threshold_ms));
        let systemd = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .map(|usec| Duration::from_micros(usec / 2));
        let thread = {
            let stop = Arc::clone(&stop);
            let threshold = Arc::clone(&threshold);
            std::thread::Builder::new()
                .name("percore-watchdog".into())
                .spawn(move || watch(&control, &stop, &threshold, systemd))?
        };
        Ok(Self {
            stop,
            threshold_ms: threshold,
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(control: &Control, stop: &AtomicBool, threshold: &AtomicU64, systemd: Option<Duration>) {
    let mut blocked_since: Vec<Option<u64>> = vec![None; control.vitals.len()];
    let mut last_fed = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(WATCH_EVERY);
        let now = crate::observe::vitals::now_millis();
        let limit = threshold.load(Ordering::Relaxed);
        for (shard, vitals) in control.vitals.iter().enumerate() {
            let beat = vitals.heartbeat.load(Ordering::Relaxed);
            let silent = if beat == 0 {
                0
            } else {
                now.saturating_sub(beat)
            };
            let stalled = limit > 0 && silent > limit;
            match (blocked_since[shard], stalled) {
                (None, true) => {
                    blocked_since[shard] = Some(beat);
                    vitals.stalls.fetch_add(1, Ordering::Relaxed);
                    let route = control.route_name(vitals.route.load(Ordering::Relaxed) as usize);
                    tracing::error!(
                        shard,
                        blocked_ms = silent,
                        last_request = route,
                        "shard event loop blocked: a handler is waiting on the shard's thread; \
                         move blocking work to percore::blocking"
                    );
                }
                (Some(since), false) => {
                    blocked_since[shard] = None;
                    let blocked_ms = beat.max(since).saturating_sub(since);
                    tracing::warn!(shard, blocked_ms, "shard event loop resumed");
                }
                _ => {}
            }
        }
        if let Some(interval) = systemd
            && last_fed.elapsed() >= interval
        {
            last_fed = std::time::Instant::now();
            if blocked_since.iter().all(Option::is_none) {
                notify::notify("WATCHDOG=1");
            }
        }
    }
}
