//! The accept loop of one listener on one shard.

use std::rc::Rc;
use std::time::Duration;

use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};

use glommio::net::TcpListener;

use super::connection;
use crate::observe::log::OncePerSecond;
use crate::server::Role;
use crate::server::shard::ShardContext;
use crate::transport::{Plain, Transport};
use crate::uring::Ring;

/// Pause after a failed accept (such as EMFILE), so a shard out of file
/// descriptors does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves an accepted connection in its own task. The connection's future
/// is spawned directly, not wrapped: a wrapper would keep a second copy of
/// the arguments in every idle connection's task.
fn spawn_connection<S: 'static>(
    shard: &Rc<ShardContext<S>>,
    transport: Transport,
    peer: Option<std::net::SocketAddr>,
    role: Role,
) {
    glommio::spawn_local(connection::serve_connection(
        Rc::clone(shard),
        transport,
        peer,
        role,
    ))
    .detach();
}

/// Accepts connections forever, serving each in its own task.
pub(crate) async fn accept_loop<S: 'static>(
    listener: TcpListener,
    shard: Rc<ShardContext<S>>,
    role: Role,
) {
    let failures = AcceptFailures::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = stream.peer_addr().ok();
                let transport = Transport::Plain(Plain::Stream(Box::new(stream)));
                spawn_connection(&shard, transport, peer, role);
            }
            Err(error) => {
                failures.failed(shard.index, &error);
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Accepts connections on `listener` with the shard's ring (multishot
/// accept); the caller keeps the listening socket open while the loop runs.
pub(crate) async fn ring_accept_loop<S: 'static>(
    ring: Rc<Ring>,
    listener: RawFd,
    shard: Rc<ShardContext<S>>,
    role: Role,
) {
    let mut acceptor = ring.accept(listener);
    let failures = AcceptFailures::default();
    loop {
        match acceptor.next().await {
            // The shard is stopping (see `Ring::cancel_accepts`): every
            // socket accepted before this was taken.
            Err(error) if error.raw_os_error() == Some(libc::ECANCELED) => break,
            Ok(socket) => {
                let peer = peer_of(&socket);
                let connection = ring.connection(socket);
                let transport = Transport::Plain(Plain::Ring(connection));
                spawn_connection(&shard, transport, peer, role);
            }
            Err(error) => {
                failures.failed(shard.index, &error);
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Failed accepts (EMFILE: out of descriptors), logged at most once a
/// second with how many there were.
#[derive(Default)]
struct AcceptFailures {
    last_log: OncePerSecond,
    unlogged: std::cell::Cell<u64>,
}

impl AcceptFailures {
    fn failed(&self, shard: usize, error: &dyn std::fmt::Display) {
        let count = self.unlogged.get() + 1;
        if self.last_log.ready() {
            self.unlogged.set(0);
            tracing::warn!(
                shard,
                %error,
                failures = count,
                "accept failed; pausing accepts for 50 ms after each (out of descriptors: raise LimitNOFILE= or lower limits.max_connections)"
            );
        } else {
            self.unlogged.set(count);
        }
    }
}

/// The peer address of an accepted socket (multishot accept does not report it).
fn peer_of(socket: &OwnedFd) -> Option<SocketAddr> {
    socket2::SockRef::from(socket).peer_addr().ok()?.as_socket()
}
