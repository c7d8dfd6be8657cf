//! One exchange on a connection, without the socket: decode every complete
//! request in a buffer and answer each (`pipeline`), with the built-in
//! endpoints — health, metrics, the HTTPS redirect — answered first
//! (`builtin`), and the rest rate-limited and routed to their handlers
//! (`dispatch`, where a panic becomes a 500). The connection's state
//! machine ([`Conn`](super::conn::Conn)) drives it.

mod builtin;
mod dispatch;
mod pipeline;
mod upload;

use std::net::SocketAddr;

use crate::http::parse::HeaderSpan;
use crate::http::status::Status;
use crate::http::write::{ResponseContext, ResponseWriter};
use crate::observe::access;
use crate::server::shard::ShardContext;
pub(crate) use pipeline::serve_buffered;

/// Where a connection came from and what its listener is for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub(crate) peer: Option<SocketAddr>,
    /// Over TLS: responses carry HSTS.
    pub(crate) tls: bool,
    /// A redirect listener: everything but the health routes is answered
    /// 301 to HTTPS on this port.
    pub(crate) redirect: Option<u16>,
    /// A stream of an HTTP/2 connection, answered as HTTP/1.1 in memory
    /// (the access log says `HTTP/2.0`).
    pub(crate) http2: bool,
}

impl Origin {
    /// A connection from `peer` on a listener for `role`.
    pub(crate) fn of(peer: Option<SocketAddr>, role: crate::server::Role) -> Self {
        use crate::server::Role;
        Self {
            peer,
            tls: role == Role::Tls,
            redirect: match role {
                Role::Redirect(port) => Some(port),
                _ => None,
            },
            http2: false,
        }
    }
}

/// The value of the first header field named `name`.
fn header<'b>(headers: &[HeaderSpan], bytes: &'b [u8], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.get(bytes).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.get(bytes))
}

/// Writes a refusal to the access log, when it is on (rate-limited per
/// shard; see [`AccessLog::refusal`](crate::observe::access::AccessLog::refusal)).
pub(crate) fn log_refusal<S>(
    shard: &ShardContext<S>,
    peer: Option<SocketAddr>,
    status: Status,
    bytes: usize,
    input: &[u8],
) {
    if let Some(log) = &shard.access {
        let date = shard.date.now();
        log.refusal(&access::Refused {
            peer,
            status: status.code(),
            bytes,
            time: std::str::from_utf8(&date).unwrap_or("-"),
            input,
        });
    }
}

/// A writer for an error response on `shard`: it closes the connection and
/// carries the shard's security headers, like every other response.
pub(crate) fn error_writer<'a, S>(
    shard: &ShardContext<S>,
    common_headers: &'a [u8],
    out: &'a mut Vec<u8>,
) -> ResponseWriter<'a> {
    let context = ResponseContext {
        date: shard.date.now(),
        head_request: false,
        keep_alive: false,
        http10: false,
    };
    ResponseWriter::new(out, context).with_common_headers(common_headers)
}
