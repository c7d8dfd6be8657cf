//! Observability: logs and rejection counters; metrics and access logs
//! join here.

pub mod access;
pub mod counters;
pub mod log;
