//! Process-level runtime: choose CPUs, open listeners, start one pinned
//! glommio executor (shard) per CPU, and stop them.

pub(crate) mod adopt;
pub mod blocking;
pub mod cpus;
pub(crate) mod listener;
pub(crate) mod notify;
pub(crate) mod shard;

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc;

use glommio::{ExecutorJoinHandle, GlommioError, LocalExecutorBuilder, Placement};

use crate::app::App;
use crate::config::Config;
use crate::config::Problem;
use crate::error::Error;
use crate::observe::access::{self, AccessFormat};
use crate::observe::counters::{Counters, Rejection};
use cpus::Usable;
use shard::ShardStart;

/// I/O memory glommio registers per executor. percore does no file I/O, so
/// the minimum keeps each shard's locked memory small.
const IO_MEMORY: usize = 64 * 1024;

/// A running server: its shards and the addresses they listen on.
/// Dropping it stops the shards too.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<SocketAddr>,
    counters: Vec<Arc<Counters>>,
    heartbeats: Vec<Arc<std::sync::atomic::AtomicU64>>,
    /// The access log's writer thread, joined (all lines written) at stop.
    access_writer: Option<std::thread::JoinHandle<()>>,
    cpus: Vec<usize>,
    stop: Option<UnixStream>,
    shards: Vec<ExecutorJoinHandle<bool>>,
}

impl Server {
    /// The bound listen addresses (ports resolved when 0 was asked for).
    #[must_use]
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The CPU of each shard, in shard order.
    #[must_use]
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// How many requests or connections all shards refused for `reason`.
    #[must_use]
    pub fn rejections(&self, reason: Rejection) -> u64 {
        self.counters.iter().map(|c| c.get(reason)).sum()
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
        drop(self.stop.take());
        let mut failed = None;
        let mut late = 0;
        for (index, handle) in self.shards.drain(..).enumerate() {
            match handle.join() {
                Ok(true) => {}
                Ok(false) => late += 1,
                Err(error) => {
                    failed.get_or_insert(Error::Shard(index, error.to_string()));
                }
            }
        }
        // Every shard has dropped its sender: the writer ends once written.
        if let Some(writer) = self.access_writer.take() {
            let _ = writer.join();
        }
        match (failed, late) {
            (Some(error), _) => Err(error),
            (None, 0) => Ok(()),
            (None, shards) => Err(Error::DrainTimedOut(shards)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts every shard; returns once all of them listen.
pub(crate) fn start<S: 'static>(config: &Config, app: App<S>) -> Result<Server, Error> {
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    let cpus = Usable::of_this_process()
        .choose(config.server.shards, config.server.cpus.as_ref())
        .map_err(Error::Cpus)?;
    let group = listener::bind(&config.server.listen, cpus.len(), config.server.backlog)?;
    let (stop, stop_peer) = UnixStream::pair()?;
    let (ready, ready_rx) = mpsc::channel();
    let mut server = Server {
        addrs: group.addrs,
        counters: Vec::new(),
        heartbeats: Vec::new(),
        access_writer: None,
        cpus: cpus.clone(),
        stop: Some(stop),
        shards: Vec::new(),
    };
    let app = Arc::new(app);
    let access = match config.log.access {
        AccessFormat::Off => None,
        format => {
            let (writer, handle) = access::start_writer(&config.log.access_file).map_err(|e| {
                Error::Config(vec![Problem::new(
                    "log.access_file",
                    format!("cannot open: {e}"),
                )])
            })?;
            server.access_writer = Some(handle);
            Some((format, writer, request_id_prefix()))
        }
    };
    for (index, (&cpu, listeners)) in cpus.iter().zip(group.per_shard).enumerate() {
        let counters = Arc::new(Counters::default());
        server.counters.push(Arc::clone(&counters));
        let heartbeat = Arc::new(std::sync::atomic::AtomicU64::new(notify::now_millis()));
        server.heartbeats.push(Arc::clone(&heartbeat));
        let start = ShardStart {
            rules: config.connection_rules(),
            counters,
            heartbeat,
            index,
            cpu,
            app: Arc::clone(&app),
            limits: config.codec_limits(),
            graceful_timeout: std::time::Duration::from_secs(config.server.graceful_timeout_secs),
            fixed_headers: config.headers.render().into_boxed_slice(),
            health: config.health.clone(),
            access: access.clone(),
            io: config.server.io,
            ring: crate::uring::RingConfig {
                spin: std::time::Duration::from_micros(config.server.idle_poll_us),
                ..crate::uring::RingConfig::default()
            },
            listeners,
            stop: stop_peer.try_clone()?,
            ready: ready.clone(),
        };
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("percore-shard-{index}"))
            .io_memory(IO_MEMORY)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(
                config.server.blocking_threads,
            ))
            .spawn(move || shard::run(start))
            .map_err(|e| startup_error(index, e))?;
        server.shards.push(handle);
    }
    drop((stop_peer, ready, access));
    for _ in 0..cpus.len() {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(why)) => return Err(Error::Shard(0, why)),
            // A shard ended before reporting: its join result says why.
            Err(_) => return Err(first_failure(&mut server)),
        }
    }
    for (index, cpu) in cpus.iter().enumerate() {
        tracing::info!(shard = index, cpu, listen = ?server.addrs, "shard listening");
    }
    Ok(server)
}

/// A per-process prefix for generated request IDs, so two processes (an
/// old and a new one during an upgrade) do not repeat each other's.
fn request_id_prefix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

/// Stops the shards that started and reports the first that failed.
fn first_failure(server: &mut Server) -> Error {
    drop(server.stop.take());
    let mut failure = None;
    for (index, handle) in server.shards.drain(..).enumerate() {
        if let Err(error) = handle.join() {
            failure.get_or_insert_with(|| startup_error(index, error));
        }
    }
    failure.unwrap_or_else(|| Error::Shard(0, "a shard stopped while starting".into()))
}

/// Names the fix for glommio's startup failures.
fn startup_error(index: usize, error: GlommioError<()>) -> Error {
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
            Error::IoUringRefused(io.to_string())
        }
        other => {
            // A shard's thread reports the reactor's memlock refusal wrapped
            // in an I/O error; its text carries the two numbers.
            let text = other.to_string();
            memlock_numbers(&text).map_or_else(
                || Error::Shard(index, text),
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

/// Starts, then serves until SIGINT or SIGTERM, then stops gracefully; a
/// second SIGINT during the drain exits at once.
pub(crate) fn serve<S: 'static>(config: &Config, app: App<S>) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let server = start(config, app)?;
    notify::notify("READY=1");
    notify::start_watchdog(server.heartbeats.clone());
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "stopping: draining connections");
    }
    notify::notify("STOPPING=1");
    std::thread::spawn(move || {
        if signals.forever().any(|signal| signal == SIGINT) {
            eprintln!("percore: second interrupt; exiting without draining");
            std::process::exit(130);
        }
    });
    server.stop()
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
