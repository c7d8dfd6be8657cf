//! The process's file-descriptor budget. All shards share one
//! `RLIMIT_NOFILE`: at start the soft limit is raised to the hard one (as
//! nginx's `worker_rlimit_nofile` does), and each shard's connection cap is
//! kept within what is left after the descriptors the process itself needs,
//! so percore meets its own caps (and refuses at once) before the kernel
//! says EMFILE (and clients are left waiting).
#![allow(unsafe_code, reason = "getrlimit and setrlimit")]

/// Descriptors kept for the process: standard streams, logs, signal and
/// control pipes, the supervisor, DNS and files.
const PROCESS_RESERVE: u64 = 32;

/// Descriptors kept per shard besides its connections: its rings and
/// eventfds, glommio's own, its doorbell, blocking threads, outbound pools.
const SHARD_RESERVE: u64 = 16;

/// Raises the soft descriptor limit to the hard one; returns the limit now
/// in force.
pub(crate) fn raise_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return u64::MAX;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one valid `rlimit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    limit.rlim_cur
}

/// The most connections each of `shards` shards may hold under a
/// descriptor limit of `limit`, with `listeners` listening sockets per
/// shard (at least 1).
pub(crate) fn connections_per_shard(limit: u64, shards: usize, listeners: usize) -> usize {
    let shards = shards.max(1) as u64;
    let reserved = PROCESS_RESERVE + shards * (SHARD_RESERVE + listeners as u64);
    let per_shard = limit.saturating_sub(reserved) / shards;
    usize::try_from(per_shard).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::connections_per_shard;

    #[test]
    fn the_budget_is_shared_by_the_shards() {
        assert_eq!(connections_per_shard(20_000, 2, 1), (20_000 - 32 - 34) / 2);
        assert_eq!(connections_per_shard(64, 1, 1), 64 - 32 - 17);
        assert_eq!(connections_per_shard(10, 4, 1), 1);
        assert!(connections_per_shard(u64::MAX, 2, 1) > 1 << 40);
    }
}
