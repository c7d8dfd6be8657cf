//! What the shard's outbound HTTP clients did, counted on the shard's own
//! thread (every `percore::client::Client` of the shard adds to the same
//! counters) and read into the shard's metrics.

use std::cell::Cell;

/// One shard's outbound HTTP counts.
#[derive(Default)]
pub(crate) struct Outbound {
    /// Calls sent (a retried call counts once).
    pub(crate) calls: Cell<u64>,
    /// Retries made.
    pub(crate) retries: Cell<u64>,
    /// Calls that ended in an error (after their retries).
    pub(crate) failures: Cell<u64>,
    /// Connections made.
    pub(crate) connects: Cell<u64>,
    /// Connections open now.
    pub(crate) open: Cell<u64>,
    /// Times a circuit opened.
    pub(crate) circuits_opened: Cell<u64>,
}

thread_local! {
    static OUTBOUND: Outbound = Outbound::default();
}

/// Adds to one of this thread's counts.
pub(crate) fn count(what: impl FnOnce(&Outbound) -> &Cell<u64>) {
    OUTBOUND.with(|o| {
        let cell = what(o);
        cell.set(cell.get().wrapping_add(1));
    });
}

/// One connection fewer open.
pub(crate) fn closed() {
    OUTBOUND.with(|o| o.open.set(o.open.get().saturating_sub(1)));
}

/// This thread's counts: calls, retries, failures, connects, open, circuits opened.
pub(crate) fn read() -> [u64; 6] {
    OUTBOUND.with(|o| {
        [
            o.calls.get(),
            o.retries.get(),
            o.failures.get(),
            o.connects.get(),
            o.open.get(),
            o.circuits_opened.get(),
        ]
    })
}
