//! Serving connections: accept loops, the per-connection loop, and the
//! transport beneath it.

pub(crate) mod accept;
pub(crate) mod connection;
pub(crate) mod deadline;
pub(crate) mod exchange;
pub(crate) mod gate;
pub(crate) mod local;
pub(crate) mod placed;

pub use local::LocalService;
