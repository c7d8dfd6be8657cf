//! Serving connections on one shard: its context (`shard`), accept loops,
//! the connection gate, the I/O loop (`connection`) driving each
//! connection's protocol state machine (`conn`, HTTP/1.1; `h2`, HTTP/2
//! over it), the exchange of
//! requests for responses (`exchange`), deadlines, pooled blocks, and the
//! blocking pool.

pub(crate) mod accept;
pub(crate) mod blocking;
pub(crate) mod conn;
pub(crate) mod connection;
pub(crate) mod deadline;
pub(crate) mod exchange;
pub(crate) mod gate;
pub(crate) mod h2;
pub(crate) mod local;
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
