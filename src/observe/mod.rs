//! Observability: logs, access logs, rejection counters and metrics.

pub mod access;
pub(crate) mod beacon;
pub mod counters;
pub mod log;
pub(crate) mod metrics;
