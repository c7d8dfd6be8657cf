//! Observability: logs and rejection counters; metrics and access logs
//! join here.

pub mod counters;
pub mod log;
