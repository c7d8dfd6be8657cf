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
    IoUringRefused(String),
    /// The locked-memory limit is below what one shard needs.
    MemlockTooLow {
        /// The current limit, in bytes.
        have: u64,
        /// What one shard needs, in bytes.
        need: u64,
    },
    /// The kernel refused the steering program on the listeners.
    Steering(std::io::Error),
    /// A shard failed while starting.
    Shard(usize, String),
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
            Self::Config(_) | Self::Cpus(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
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
            Self::IoUringRefused(why) => write!(
                f,
                "the kernel refused io_uring ({why}): allow io_uring_setup in the seccomp profile and set the sysctl kernel.io_uring_disabled=0"
            ),
            Self::MemlockTooLow { have, need } => write!(
                f,
                "the locked-memory limit is {have} bytes but a shard needs {need}: raise it with `ulimit -l` or LimitMEMLOCK= in the systemd unit"
            ),
            Self::Steering(error) => write!(
                f,
                "the kernel refused the program that steers clients to shards ({error}): set server.steering = \"off\" (limits keyed by client address are then divided across shards)"
            ),
            Self::Shard(index, why) => write!(f, "shard {index} failed to start: {why}"),
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

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}
