//! Serving connections: accept loops, the per-connection loop, and the
//! transport beneath it.

pub(crate) mod accept;
pub(crate) mod blocking;
pub(crate) mod connection;
pub(crate) mod deadline;
pub(crate) mod exchange;
pub(crate) mod gate;
pub(crate) mod local;
pub(crate) mod placed;
pub(crate) mod shard;

pub use local::LocalService;

/// What a listening address is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Plain HTTP.
    Plain,
    /// HTTPS.
    Tls,
    /// Plain HTTP answering 301 to HTTPS on this port.
    Redirect(u16),
}
