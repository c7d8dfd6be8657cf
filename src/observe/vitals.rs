//! What a shard publishes for the process's watchdog: a heartbeat and the
//! route it last started, read by another thread now and then.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

/// What a shard publishes for the watchdog: plain stores the shard makes
/// and another thread reads now and then (on x86-64 a relaxed store is an
/// ordinary `mov`; nothing is read-modify-written on the request path).
#[derive(Debug, Default)]
pub(crate) struct Vitals {
    /// Milliseconds since the Unix epoch when the loop last turned; 0 when
    /// the shard is not running.
    pub(crate) heartbeat: AtomicU64,
    /// The route slot of the last request the shard started.
    pub(crate) route: AtomicU32,
    /// Stalls seen by the watchdog.
    pub(crate) stalls: AtomicU64,
    /// Times the shard was restarted.
    pub(crate) restarts: AtomicU64,
}

impl Vitals {
    /// Stamps the heartbeat with now.
    pub(crate) fn beat(&self) {
        self.heartbeat.store(now_millis(), Ordering::Relaxed);
    }

    /// Records that a request to route `slot` started.
    pub(crate) fn started(&self, slot: usize) {
        self.route
            .store(u32::try_from(slot).unwrap_or(0), Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
