//! Observability: logs, access logs, rejection counters and metrics.

pub(crate) mod access;
pub(crate) mod counters;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod outbound;
pub(crate) mod upstream;
pub(crate) mod vitals;
