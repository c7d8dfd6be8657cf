//! Observability: logs, access logs, rejection counters and metrics.

pub mod access;
pub(crate) mod admin;
pub mod counters;
pub mod log;
pub(crate) mod metrics;
