//! Observability: logs today; metrics and access logs join here.

pub mod log;
