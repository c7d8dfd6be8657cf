//! Process-level runtime: choose CPUs, open listeners, start one pinned
//! glommio executor (shard) per CPU, and stop them.

pub(crate) mod admin;
pub(crate) mod adopt;
pub(crate) mod control;
pub(crate) mod cpus;
pub(crate) mod descriptors;
pub(crate) mod listener;
pub(crate) mod memory;
pub(crate) mod notify;
pub(crate) mod shard;
pub(crate) mod steer;
pub(crate) mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use glommio::GlommioError;

use crate::config::Config;
use crate::config::Problem;
use crate::error::{Error, IoUringRefusal};
use crate::observe::access::{self, AccessFormat};
use crate::observe::counters::Rejection;
use crate::route::service::RouteService;
use crate::server::shard::Settings;
use control::Control;
use cpus::Usable;
use supervise::{Event, ShardStarter, Watchdog};

/// A running server: its shards, the addresses they listen on, and the
/// threads that supervise them. Dropping it stops the shards too.
pub struct Server {
    addrs: Vec<SocketAddr>,
    /// What each address is for.
    roles: Vec<listener::Role>,
    /// TLS ticket keys, kept across reloads so sessions still resume.
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    cpus: Vec<usize>,
    /// The configuration in force (restart-only keys as started).
    config: Config,
    /// Whether the listeners steer clients to shards by address.
    steered: bool,
    /// The most connections a shard may hold under the descriptor limit.
    connection_ceiling: usize,
    control: Arc<Control>,
    events: mpsc::Sender<Event>,
    supervisor: Option<JoinHandle<Result<(), Error>>>,
    watchdog: Option<Watchdog>,
    admin: Option<admin::Admin>,
    /// The access log's writer thread, joined (all lines written) at stop.
    access_writer: Option<JoinHandle<()>>,
    /// What the app makes of a configuration: its problems, the built-in
    /// paths the app's routes would shadow, the app's `[app]` settings.
    check: AppCheck,
}

/// The app's verdict on a configuration (see [`RouteService::check`]).
type AppCheck = Box<
    dyn Fn(&Config) -> Result<crate::route::service::Accepted, Vec<crate::config::Problem>>
        + Send
        + Sync,
>;

/// The app's check of a configuration, kept by the server for reloads.
fn app_check<S: 'static>(app: &Arc<RouteService<S>>) -> AppCheck {
    let app = Arc::clone(app);
    Box::new(move |config| app.check(config))
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .field("cpus", &self.cpus)
            .finish_non_exhaustive()
    }
}

/// Keys that only a restart changes: a reload reports them and keeps the
/// running values.
const RESTART_ONLY_KEYS: &[&str] = &[
    "server.listen",
    "tls.listen",
    "tls.redirect_listen",
    "server.shards",
    "server.cpus",
    "server.backlog",
    "server.io",
    "server.idle_poll_us",
    "server.blocking_threads",
    "server.steering",
    "server.takeover",
    "log.access",
    "log.access_file",
    "metrics.listen",
];

impl Server {
    /// The bound plain HTTP addresses (ports resolved when 0 was asked for).
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_for(|role| role == listener::Role::Plain)
    }

    /// The bound HTTPS addresses.
    #[must_use]
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_for(|role| role == listener::Role::Tls)
    }

    /// The bound addresses that redirect to HTTPS.
    #[must_use]
    pub fn redirect_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_for(|role| matches!(role, listener::Role::Redirect(_)))
    }

    fn addrs_for(&self, wanted: impl Fn(listener::Role) -> bool) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .zip(&self.roles)
            .filter(|(_, role)| wanted(**role))
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// The CPU of each shard, in shard order.
    #[must_use]
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// The admin listener's address, when `metrics.listen` is set.
    #[must_use]
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(admin::Admin::addr)
    }

    /// How many requests or connections all shards refused for `reason`
    /// (asked of every shard by message).
    #[must_use]
    pub fn rejections(&self, reason: Rejection) -> u64 {
        self.control
            .scrape()
            .iter()
            .filter_map(|shard| shard.snapshot.as_ref())
            .map(|snapshot| snapshot.rejections[reason as usize])
            .sum()
    }

    /// Every shard's metrics in the Prometheus text format, as the
    /// metrics route serves them.
    #[must_use]
    pub fn metrics(&self) -> String {
        self.control.metrics_text()
    }

    /// Puts `config` in force on every shard at once: limits and timeouts
    /// for new connections; security headers, health and metrics routes,
    /// the graceful timeout and the stall threshold at once. Returns the
    /// keys that differ but need a restart (listen addresses, shards…);
    /// they keep their running values.
    ///
    /// # Errors
    /// When `config` is invalid; nothing changes then.
    pub fn reload(&mut self, config: &Config) -> Result<Vec<&'static str>, Error> {
        let accepted = (self.check)(config).map_err(Error::Config)?;
        let mut kept = Vec::new();
        let mut next = config.clone();
        for &key in RESTART_ONLY_KEYS {
            if keep_restart_only(key, &self.config, &mut next) {
                kept.push(key);
            }
        }
        let tls = crate::tls::load(&next.tls, &self.ticketer, next.http2.enabled)
            .map_err(Error::Config)?;
        let settings = Settings {
            tls,
            app: accepted,
            ..Settings::of(
                &within_ceiling(&next, self.connection_ceiling),
                self.cpus.len(),
                self.steered,
            )
        };
        let (done, applied) = mpsc::channel();
        if self
            .events
            .send(Event::Reload(Box::new(settings), done))
            .is_err()
        {
            return Err(Error::SupervisorLost);
        }
        // Returns once every running shard has the new settings.
        let applied = applied.recv().unwrap_or(0);
        if applied < self.cpus.len() {
            tracing::warn!(
                applied,
                shards = self.cpus.len(),
                "not every shard confirmed the reload in time"
            );
        }
        if let Some(watchdog) = &self.watchdog {
            watchdog
                .threshold_ms
                .store(next.server.stall_threshold_ms, Ordering::Relaxed);
        }
        if let Some(admin) = &self.admin {
            admin.set_path(&next.metrics.path);
        }
        self.config = next;
        Ok(kept)
    }

    /// Stops gracefully: every shard stops accepting, lets its connections
    /// finish (the next response on each says `Connection: close`, idle ones
    /// close at once) for up to `server.graceful_timeout_secs`, then ends.
    ///
    /// # Errors
    /// When connections were still open at the deadline (they were closed),
    /// or a shard's thread ended by panicking.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        let Some(supervisor) = self.supervisor.take() else {
            return Ok(());
        };
        let _ = self.events.send(Event::Stop);
        let result = supervisor.join().unwrap_or(Err(Error::SupervisorLost));
        drop(self.watchdog.take());
        drop(self.admin.take());
        // Every shard has dropped its sender: the writer ends once written.
        if let Some(writer) = self.access_writer.take() {
            let _ = writer.join();
        }
        result
    }
}

/// Puts `current`'s value of the restart-only `key` back into `next`; whether
/// they differed.
fn keep_restart_only(key: &str, current: &Config, next: &mut Config) -> bool {
    macro_rules! keep {
        ($($field:ident).+) => {{
            let differs = current.$($field).+ != next.$($field).+;
            next.$($field).+ = current.$($field).+.clone();
            differs
        }};
    }
    match key {
        "server.listen" => keep!(server.listen),
        "tls.listen" => keep!(tls.listen),
        "tls.redirect_listen" => keep!(tls.redirect_listen),
        "server.shards" => keep!(server.shards),
        "server.cpus" => keep!(server.cpus),
        "server.backlog" => keep!(server.backlog),
        "server.io" => keep!(server.io),
        "server.idle_poll_us" => keep!(server.idle_poll_us),
        "server.blocking_threads" => keep!(server.blocking_threads),
        "server.steering" => keep!(server.steering),
        "server.takeover" => keep!(server.takeover),
        "log.access" => keep!(log.access),
        "log.access_file" => keep!(log.access_file),
        "metrics.listen" => keep!(metrics.listen),
        _ => false,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Adds the routes of `[[route]]` to `app`, from a configuration that
/// holds (else its problems).
fn add_configured_routes<S: 'static>(
    app: &mut RouteService<S>,
    config: &Config,
) -> Result<(), Error> {
    let mut problems = config.validate();
    if problems.is_empty()
        && let Err(mut more) = crate::proxy::add_routes(app, config)
    {
        problems.append(&mut more);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(problems))
    }
}

/// Starts every shard; returns once all of them listen.
pub(crate) fn start<S: 'static>(
    config: &Config,
    mut app: RouteService<S>,
) -> Result<Server, Error> {
    add_configured_routes(&mut app, config)?;
    let accepted = app.check(config).map_err(Error::Config)?;
    // Before any executor: glommio panics when the kernel refuses a ring.
    crate::uring::probe().map_err(|(call, error)| Error::IoUringRefused {
        call,
        reason: refusal_reason(&error),
        error,
    })?;
    let cpus = Usable::of_this_process()
        .choose(config.server.shards, config.server.cpus.as_ref())
        .map_err(Error::Cpus)?;
    let steer = config.steering().then_some(config.rate_limit.ipv6_prefix);
    let (addrs, roles) = listen_plan(config);
    let descriptors = descriptors::raise_limit();
    let connection_ceiling =
        descriptors::connections_per_shard(descriptors, cpus.len(), addrs.len());
    let configured = config.limits.max_connections;
    let bounded = within_ceiling(config, connection_ceiling);
    let config = &bounded;
    let group = listener::bind(
        &addrs,
        cpus.len(),
        config.server.backlog,
        steer,
        config.server.takeover,
    )?;
    let roles = resolve_redirects(&roles, &group.addrs);
    let ticketer =
        crate::tls::ticketer().map_err(|e| Error::Config(vec![Problem::new("tls", e)]))?;
    let tls =
        crate::tls::load(&config.tls, &ticketer, config.http2.enabled).map_err(Error::Config)?;
    let control = Arc::new(Control::new(cpus.len(), app.route_labels()));
    let admin = match config.metrics.listen {
        Some(addr) => Some(admin::Admin::start(
            addr,
            &config.metrics.path,
            Arc::clone(&control),
        )?),
        None => None,
    };
    let (access, access_writer) = access_log(config)?;
    let (events, events_rx) = mpsc::channel();
    let app = Arc::new(app);
    let check = app_check(&app);
    let starter = ShardStarter {
        app,
        cpus: cpus.clone(),
        listeners: group.per_shard,
        roles: roles.clone(),
        settings: Settings {
            tls,
            app: accepted,
            ..Settings::of(config, cpus.len(), steer.is_some())
        },
        io: config.server.io,
        ring: crate::uring::RingConfig {
            spin: std::time::Duration::from_micros(config.server.idle_poll_us),
            ..crate::uring::RingConfig::default()
        },
        blocking_threads: config.server.blocking_threads,
        access,
        request_id_prefix: request_id_prefix(),
        control: Arc::clone(&control),
        events: events.clone(),
    };
    let (threads, failure) = spawn_all(&starter, cpus.len());
    let supervisor = std::thread::Builder::new()
        .name("percore-supervisor".into())
        .spawn(move || supervise::supervise(starter, threads, &events_rx))?;
    let mut server = Server {
        addrs: group.addrs,
        roles,
        ticketer,
        cpus: cpus.clone(),
        config: config.clone(),
        steered: steer.is_some(),
        connection_ceiling,
        control: Arc::clone(&control),
        events,
        supervisor: Some(supervisor),
        watchdog: None,
        admin,
        access_writer,
        check,
    };
    if let Some(error) = failure {
        let _ = server.shutdown();
        return Err(error);
    }
    server.watchdog = Some(Watchdog::start(control, config.server.stall_threshold_ms)?);
    log_caps(
        configured,
        config.limits.max_connections,
        descriptors,
        cpus.len(),
    );
    for (index, cpu) in cpus.iter().enumerate() {
        tracing::info!(shard = index, cpu, listen = ?server.addrs, "shard listening");
    }
    Ok(server)
}

/// What each shard's access log needs (format, the writer thread's
/// channel, the request-ID prefix) and the writer thread, when it is on.
type AccessParts = (
    Option<(AccessFormat, mpsc::Sender<Vec<u8>>)>,
    Option<JoinHandle<()>>,
);

fn access_log(config: &Config) -> Result<AccessParts, Error> {
    let format = config.log.access;
    if format == AccessFormat::Off {
        return Ok((None, None));
    }
    let (writer, handle) = access::start_writer(&config.log.access_file).map_err(|e| {
        Error::Config(vec![Problem::new(
            "log.access_file",
            format!("cannot open: {e}"),
        )])
    })?;
    Ok((Some((format, writer)), Some(handle)))
}

/// `config` with each shard's connection cap at most `ceiling` (what the
/// descriptor limit allows), at start and at every reload.
fn within_ceiling(config: &Config, ceiling: usize) -> Config {
    let mut bounded = config.clone();
    bounded.limits.max_connections = config.limits.max_connections.min(ceiling);
    bounded
}

/// Says at start what each shard's connection cap is, and when the
/// descriptor limit lowered the configured one.
fn log_caps(configured: usize, allowed: usize, descriptors: u64, shards: usize) {
    if allowed < configured {
        tracing::warn!(
            configured,
            allowed,
            descriptors,
            "limits.max_connections per shard is more than the open-files limit allows; \
             each shard takes at most the allowed number (raise LimitNOFILE= or ulimit -n for more)"
        );
    }
    tracing::info!(
        descriptors,
        shards,
        max_connections = allowed,
        "connection caps per shard"
    );
}

/// Starts `shards` shards and waits until they all listen; the threads
/// started, and the first failure.
fn spawn_all<S: 'static>(
    starter: &ShardStarter<S>,
    shards: usize,
) -> (Vec<Option<JoinHandle<()>>>, Option<Error>) {
    let (ready, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    let mut failure = None;
    for index in 0..shards {
        match starter.spawn(index, ready.clone()) {
            Ok(thread) => threads.push(Some(thread)),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    drop(ready);
    if failure.is_none() {
        let mut listening = vec![false; threads.len()];
        let deadline = std::time::Instant::now() + STARTUP;
        for _ in 0..threads.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok(Ok(index)) => listening[index] = true,
                Ok(Err(error)) => {
                    failure = Some(error);
                    break;
                }
                Err(_) => {
                    let shard = listening.iter().position(|l| !l).unwrap_or(0);
                    failure = Some(Error::StartupLost { shard });
                    break;
                }
            }
        }
    }
    (threads, failure)
}

/// How long the shards may take to listen before start-up gives up.
const STARTUP: std::time::Duration = std::time::Duration::from_secs(30);

/// Every address to listen on, with its role: plain, HTTPS, redirect.
fn listen_plan(config: &Config) -> (Vec<SocketAddr>, Vec<listener::Role>) {
    let mut addrs = Vec::new();
    let mut roles = Vec::new();
    for (list, role) in [
        (&config.server.listen, listener::Role::Plain),
        (&config.tls.listen, listener::Role::Tls),
        (&config.tls.redirect_listen, listener::Role::Redirect(0)),
    ] {
        addrs.extend(list.iter().copied());
        roles.extend(list.iter().map(|_| role));
    }
    (addrs, roles)
}

/// Redirects go to the first HTTPS address's port (known once bound).
fn resolve_redirects(roles: &[listener::Role], bound: &[SocketAddr]) -> Vec<listener::Role> {
    let https = bound
        .iter()
        .zip(roles)
        .find(|(_, role)| **role == listener::Role::Tls)
        .map_or(443, |(addr, _)| addr.port());
    roles
        .iter()
        .map(|role| match role {
            listener::Role::Redirect(_) => listener::Role::Redirect(https),
            other => *other,
        })
        .collect()
}

/// A per-process prefix for generated request IDs, so two processes (an
/// old and a new one during an upgrade) do not repeat each other's.
fn request_id_prefix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

/// Why the kernel refused `io_uring`, as far as this host tells.
pub(crate) fn refusal_reason(error: &std::io::Error) -> IoUringRefusal {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|text| text.trim().parse::<u8>().ok())
        .unwrap_or(0);
    match error.raw_os_error() {
        Some(libc::ENOSYS) => IoUringRefusal::NotBuilt,
        _ if disabled > 0 => IoUringRefusal::Disabled(disabled),
        Some(libc::EPERM | libc::EACCES) => IoUringRefusal::Seccomp,
        _ => IoUringRefusal::Other,
    }
}

/// Names the fix for glommio's startup failures.
pub(crate) fn startup_error(index: usize, error: GlommioError<()>) -> Error {
    use glommio::ReactorErrorKind;
    match error {
        GlommioError::ReactorError(ReactorErrorKind::MemLockLimit(have, need)) => {
            Error::MemlockTooLow { have, need }
        }
        GlommioError::IoError(io)
            if matches!(
                io.raw_os_error(),
                Some(libc::EPERM | libc::ENOSYS | libc::EACCES)
            ) =>
        {
            Error::IoUringRefused {
                call: "io_uring_setup",
                reason: refusal_reason(&io),
                error: io,
            }
        }
        other => {
            // A shard's thread reports the reactor's memlock refusal wrapped
            // in an I/O error; its text carries the two numbers.
            let text = other.to_string();
            memlock_numbers(&text).map_or_else(
                || Error::Executor {
                    shard: index,
                    reason: text,
                },
                |(have, need)| Error::MemlockTooLow { have, need },
            )
        }
    }
}

/// `have` and `need` from a message containing `MemLockLimit(have/need)`.
fn memlock_numbers(text: &str) -> Option<(u64, u64)> {
    let inside = text.split("MemLockLimit(").nth(1)?.split(')').next()?;
    let (have, need) = inside.split_once('/')?;
    Some((have.trim().parse().ok()?, need.trim().parse().ok()?))
}

/// Re-reads the configuration for a reload (SIGHUP).
pub(crate) type Reloader = Box<dyn FnMut() -> Result<Config, Error> + Send>;

/// Starts, then serves until SIGINT or SIGTERM, then stops gracefully; a
/// second SIGINT during the drain returns [`Error::Interrupted`] at once
/// (the drain goes on in the background; the caller should exit). SIGHUP
/// reloads: `reload` reads the configuration again and what can change live
/// changes on every shard; an invalid configuration is refused whole and
/// logged. A server that stops by itself (a shard lost for good) returns
/// its error without waiting for a signal.
pub(crate) fn run_until_signalled<S: 'static>(
    config: &Config,
    app: RouteService<S>,
    mut reload: Option<Reloader>,
) -> Result<(), Error> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Registered first, so a signal during start-up is not lost: it is
    // acted on as soon as start-up ends, which is bounded (`STARTUP`).
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let mut server = start(config, app)?;
    let closer = signals.handle();
    server.control.on_fatal(move || closer.close());
    let mut listening = server.addrs.clone();
    listening.extend(server.admin_addr());
    notify::notify(&notify::ready(&listening));
    let mut by_signal = false;
    for signal in signals.forever() {
        if signal != SIGHUP {
            tracing::info!(signal, "stopping: draining connections");
            by_signal = true;
            break;
        }
        if let Some(reload) = reload.as_mut() {
            reload_from(&mut server, reload);
        } else {
            tracing::warn!("SIGHUP: this server has no configuration source to re-read");
        }
    }
    notify::notify("STOPPING=1");
    if !by_signal {
        return server.stop();
    }
    let (ending, ended) = mpsc::channel();
    let closer = signals.handle();
    let stopped = ending.clone();
    std::thread::spawn(move || {
        let _ = stopped.send(server.stop());
        closer.close();
    });
    std::thread::spawn(move || {
        if signals.forever().any(|signal| signal == SIGINT) {
            let _ = ending.send(Err(Error::Interrupted));
        }
    });
    ended.recv().unwrap_or(Err(Error::SupervisorLost))
}

/// One reload: read, validate, apply, log what happened.
fn reload_from(server: &mut Server, reload: &mut Reloader) {
    let applied = reload().and_then(|config| Ok((server.reload(&config)?, config)));
    match applied {
        Ok((kept, config)) => {
            crate::observe::log::reload_filter(&config.log.level);
            tracing::info!("configuration reloaded on every shard");
            if !kept.is_empty() {
                tracing::warn!(
                    keys = kept.join(", "),
                    "these settings change only with a restart; the running values stay"
                );
            }
        }
        Err(error) => tracing::error!(
            "reload refused, the running configuration stays: {}",
            error.to_string().replace('\n', "; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::memlock_numbers;

    #[test]
    fn memlock_numbers_are_read() {
        assert_eq!(
            memlock_numbers("IO error occurred: MemLockLimit(65536/524288)"),
            Some((65_536, 524_288))
        );
        assert_eq!(memlock_numbers("something else"), None);
    }
}
