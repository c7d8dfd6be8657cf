//! An upgraded connection tunnelled to its upstream: once the `101` has
//! gone to the client, bytes flow both ways on the shard's ring until
//! either side closes or neither sends for the route's idle time.

use std::rc::Rc;

use super::state::ShardUpstream;
use super::{ProxyRoute, headers};
use crate::client::ClientResponse;
use crate::client::forward::Upgraded;
use crate::http::status::Status;
use crate::http::write::ResponseWriter;
use crate::transport::{BodyIo, BufferPool, Takeover};

/// A tunnel waiting for its `101` to be sent.
pub(crate) struct Tunnel {
    upgraded: Upgraded,
    upstream: Rc<ShardUpstream>,
}

/// Writes the upstream's `101` and hands the connection to a tunnel.
pub(crate) fn relay_upgrade(
    route: &ProxyRoute,
    upstream: &Rc<ShardUpstream>,
    response: ClientResponse,
    writer: &mut ResponseWriter<'_>,
) {
    let protocol = response.header("upgrade").unwrap_or("websocket").to_owned();
    let echoes = writer.echoes_request_id();
    let mut fields = headers::response_fields(response.headers(), echoes, &route.response_set);
    fields.push(("Connection", b"upgrade"));
    fields.push(("Upgrade", protocol.as_bytes()));
    let head: Vec<(String, Vec<u8>)> = fields
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_vec()))
        .collect();
    let Some(upgraded) = response.into_upgraded(route.tunnel_idle) else {
        return writer.send_error(Status::BAD_GATEWAY, "the upstream's upgrade failed");
    };
    writer.send(
        Status::SWITCHING_PROTOCOLS,
        None,
        head.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        b"",
    );
    let tunnel: Box<dyn Takeover> = Box::new(Tunnel {
        upgraded,
        upstream: Rc::clone(upstream),
    });
    writer.upgrade(Box::new(tunnel));
}

/// What a tunnel read.
enum Got {
    Client(std::io::Result<usize>),
    Upstream(std::io::Result<usize>),
}

/// Largest piece moved at once.
const PIECE: usize = 64 * 1024;

impl Takeover for Tunnel {
    fn run<'a>(
        self: Box<Self>,
        io: &'a mut dyn BodyIo,
        pool: &'a BufferPool,
        early: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(run(*self, io, pool, early))
    }
}

/// Runs `tunnel` over the client's `io`; `early` is what the client sent
/// after its request head.
async fn run(tunnel: Tunnel, io: &mut dyn BodyIo, pool: &BufferPool, early: Vec<u8>) {
    let Tunnel {
        mut upgraded,
        upstream,
    } = tunnel;
    upstream.tunnels.set(upstream.tunnels.get() + 1);
    upstream.tunnels_open.set(upstream.tunnels_open.get() + 1);
    let _open = Open(Rc::clone(&upstream));
    if !early.is_empty() && upgraded.write_all(&early).await.is_err() {
        return;
    }
    let mut out = std::mem::take(&mut upgraded.early);
    if !out.is_empty() && io.write_now(&mut out, pool).await.is_err() {
        return;
    }
    let mut from_client: Vec<u8> = Vec::new();
    let mut from_upstream = vec![0u8; PIECE];
    loop {
        // Each wait for the upstream is bounded by the idle time, and
        // starts again after every byte either way: so the tunnel ends
        // when neither side has sent for that long.
        let got = futures_lite::future::or(
            async { Got::Client(io.read_more(&mut from_client, 0, PIECE, pool).await) },
            async { Got::Upstream(upgraded.read(&mut from_upstream).await) },
        )
        .await;
        match got {
            Got::Client(Ok(n)) if n > 0 => {
                if upgraded.write_all(&from_client[..n]).await.is_err() {
                    return;
                }
            }
            Got::Upstream(Ok(n)) if n > 0 => {
                out.clear();
                out.extend_from_slice(&from_upstream[..n]);
                if io.write_now(&mut out, pool).await.is_err() {
                    return;
                }
            }
            // An end, an error, or the idle time passed.
            _ => return,
        }
    }
}

/// Counts a tunnel as open while it lives.
struct Open(Rc<ShardUpstream>);

impl Drop for Open {
    fn drop(&mut self) {
        let open = &self.0.tunnels_open;
        open.set(open.get().saturating_sub(1));
    }
}
