//! The public error type: everything that can stop percore from starting or
//! serving, each with one sentence that names the fix.

use std::fmt;
use std::net::SocketAddr;

use crate::config::Problem;

/// Why percore could not start, or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration has problems; each names its key.
    Config(Vec<Problem>),
    /// A listen address is taken by another process.
    AddrInUse(SocketAddr),
    /// A listen address could not be bound for another reason.
    Bind(SocketAddr, std::io::Error),
    /// The requested shards or CPUs cannot be had on this host.
    Cpus(String),
    /// The kernel refused `io_uring` (seccomp, `kernel.io_uring_disabled`).
    IoUringRefused {
        /// The system call refused (`io_uring_setup`, `_enter`, `_register`).
        call: &'static str,
        /// What this host tells of why.
        reason: IoUringRefusal,
        /// What the kernel said.
        error: std::io::Error,
    },
    /// The locked-memory limit is below what one shard needs.
    MemlockTooLow {
        /// The current limit, in bytes.
        have: u64,
        /// What one shard needs, in bytes.
        need: u64,
    },
    /// The kernel refused the steering program on the listeners.
    Steering(std::io::Error),
    /// A shard could not be pinned to its CPU.
    Pin {
        /// The shard.
        shard: usize,
        /// The CPU it was to run on.
        cpu: usize,
    },
    /// A shard's own `io_uring` could not be set up (the ring path needs
    /// Linux 6.1 or later).
    Ring {
        /// The shard.
        shard: usize,
        /// What the kernel said.
        error: std::io::Error,
    },
    /// A shard's executor could not be built.
    Executor {
        /// The shard.
        shard: usize,
        /// What glommio said.
        reason: String,
    },
    /// A shard's state factory failed: a dependency it connects to at
    /// start (a database, a cache, an API) is not reachable or refused.
    Dependency {
        /// The shard.
        shard: usize,
        /// The dependency and what went wrong.
        error: crate::StartupError,
    },
    /// A shard ended before it listened (its thread panicked while starting).
    StartupLost {
        /// The shard.
        shard: usize,
    },
    /// A shard that died was started again but did not listen in time.
    RestartTimedOut {
        /// The shard.
        shard: usize,
    },
    /// A shard died where it cannot be restarted in place (the glommio I/O
    /// path keeps a dead shard's sockets): every shard was stopped so a
    /// service manager starts percore afresh.
    ShardLost {
        /// The shard.
        shard: usize,
        /// Its panic message.
        panic: String,
    },
    /// A shard panicked while stopping.
    StopPanicked {
        /// The shard.
        shard: usize,
        /// Its panic message.
        panic: String,
    },
    /// The supervisor thread is gone (it panicked).
    SupervisorLost,
    /// A second interrupt came during the drain: stopped without waiting.
    Interrupted,
    /// The command line could not be parsed (the text says why).
    Usage(String),
    /// A listen address is served by another process already, and a
    /// takeover was not asked for.
    AddrServed(SocketAddr),
    /// The graceful timeout passed with connections still open on this many
    /// shards; they were closed.
    DrainTimedOut(usize),
    /// `percore doctor` found this many failing checks (each printed).
    Doctor(usize),
    /// Another I/O failure.
    Io(std::io::Error),
}

impl Error {
    /// The process exit status for this error: 2 for configuration and
    /// usage problems, 1 for everything else.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Cpus(_) | Self::Usage(_) => 2,
            // EX_SOFTWARE, for a service manager's restart policy.
            Self::ShardLost { .. } => 70,
            Self::Interrupted => 130,
            _ => 1,
        }
    }
}

/// Why the kernel refused `io_uring`, as far as the host tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoUringRefusal {
    /// The kernel was built without it (`ENOSYS`).
    NotBuilt,
    /// `kernel.io_uring_disabled` is set (to this value).
    Disabled(u8),
    /// A seccomp profile (a container runtime's default) refuses the calls.
    Seccomp,
    /// Something else.
    Other,
}

impl IoUringRefusal {
    /// What to change.
    pub(crate) fn fix(self) -> &'static str {
        match self {
            Self::NotBuilt => {
                "run on a kernel built with io_uring (CONFIG_IO_URING, Linux 6.1 or later)"
            }
            Self::Disabled(_) => {
                "set the sysctl kernel.io_uring_disabled=0 (or 1 with this user in kernel.io_uring_group)"
            }
            Self::Seccomp | Self::Other => {
                "allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile (docker run --security-opt seccomp=..., or Unconfined)"
            }
        }
    }
}

impl fmt::Display for Error {
    #[allow(
        clippy::too_many_lines,
        reason = "one message per error, each naming its fix"
    )]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(problems) => {
                write!(
                    f,
                    "the configuration has {} problem(s); fix each key below:",
                    problems.len()
                )?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
            Self::AddrInUse(addr) => write!(
                f,
                "address {addr} is already in use: stop the process holding it or choose another with --listen"
            ),
            Self::Bind(addr, error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                write!(
                    f,
                    "binding {addr} was refused ({error}): use a port above 1023 or grant CAP_NET_BIND_SERVICE"
                )
            }
            Self::Bind(addr, error) => write!(
                f,
                "cannot listen on {addr} ({error}): use an address this host has, such as 127.0.0.1:8080"
            ),
            Self::Cpus(why) => write!(f, "{why}"),
            Self::IoUringRefused {
                call,
                reason,
                error,
            } => write!(
                f,
                "the kernel refused io_uring ({call}: {error}): {}",
                reason.fix()
            ),
            Self::MemlockTooLow { have, need } => write!(
                f,
                "the locked-memory limit is {have} bytes but a shard needs {need}: raise it with `ulimit -l` or LimitMEMLOCK= in the systemd unit"
            ),
            Self::Steering(error) => write!(
                f,
                "the kernel refused the program that steers clients to shards ({error}): set server.steering = \"off\" (limits keyed by client address are then divided across shards)"
            ),
            Self::Pin { shard, cpu } => write!(
                f,
                "shard {shard} could not be pinned to CPU {cpu}: choose CPUs this process may use with --cpus"
            ),
            Self::Ring { shard, error } => write!(
                f,
                "shard {shard} cannot set up its io_uring ({error}): set server.io = \"glommio\" on kernels before 6.1"
            ),
            Self::Executor { shard, reason } => write!(
                f,
                "shard {shard} could not start its executor ({reason}): run `percore doctor` for this host's limits"
            ),
            Self::Dependency { shard, error } => write!(
                f,
                "shard {shard} could not build its state: {error} (start {dep} or fix its address in the configuration)",
                dep = error.dependency()
            ),
            Self::StartupLost { shard } => write!(
                f,
                "shard {shard} stopped while starting (its log says why): run `percore doctor` for this host's limits"
            ),
            Self::RestartTimedOut { shard } => write!(
                f,
                "shard {shard} was restarted but did not listen within 10 s: restart percore"
            ),
            Self::ShardLost { shard, panic } => write!(
                f,
                "shard {shard} died ({panic}) on the glommio I/O path, which cannot reclaim its sockets, so percore stopped: let the service manager restart it, or use server.io = \"uring\", which restarts shards in place"
            ),
            Self::StopPanicked { shard, panic } => write!(
                f,
                "shard {shard} panicked while stopping ({panic}); its connections were closed"
            ),
            Self::SupervisorLost => write!(
                f,
                "the shard supervisor thread is gone (its panic is in the log); restart percore"
            ),
            Self::Interrupted => write!(
                f,
                "interrupted twice: stopped without waiting for open connections"
            ),
            Self::Usage(text) => write!(f, "{}", text.trim_end()),
            Self::AddrServed(addr) => write!(
                f,
                "another process already listens on {addr}: stop it, choose another address with --listen, or start with --takeover (PERCORE_TAKEOVER=1, server.takeover = true) to share the port on purpose during a zero-downtime upgrade"
            ),
            Self::DrainTimedOut(shards) => write!(
                f,
                "connections were still open on {shards} shard(s) when the graceful timeout passed and were closed: raise server.graceful_timeout_secs if requests need longer"
            ),
            Self::Doctor(failed) => {
                write!(
                    f,
                    "{failed} check(s) failed; the FAIL lines above name the fixes"
                )
            }
            Self::Io(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind(_, error)
            | Self::Steering(error)
            | Self::Io(error)
            | Self::IoUringRefused { error, .. }
            | Self::Ring { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}
