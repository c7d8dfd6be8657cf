//! Listening sockets: one per shard and address, opened with socket2
//! (`SO_REUSEPORT`, the configured backlog, IPv6-only for IPv6 addresses so
//! `0.0.0.0` and `[::]` can both be listened on).
//!
//! All sockets are opened before any shard starts, in shard order. A port of
//! 0 is resolved by the first socket and reused for the rest, so every shard
//! listens on the same port.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::Error;

pub(crate) use crate::server::Role;

/// The sockets of every shard (`[shard][address]`) and the bound addresses.
#[derive(Debug)]
pub(crate) struct ListenerGroup {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) per_shard: Vec<Vec<TcpListener>>,
}

/// Opens `shards` sockets on each address of `addrs`; with `steer` (the
/// IPv6 key prefix), attaches the steering program to each group. Unless
/// `takeover`, an address another process already listens on is an error:
/// `SO_REUSEPORT` would otherwise split its traffic between two processes
/// without a word.
pub(crate) fn bind(
    addrs: &[SocketAddr],
    shards: usize,
    backlog: u32,
    steer: Option<u8>,
    takeover: bool,
) -> Result<ListenerGroup, Error> {
    let mut per_shard: Vec<Vec<TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let unserved = addr.port() == 0 || takeover || !served_elsewhere(addr);
        let first = open(addr, backlog).map_err(|e| bind_error(addr, e))?;
        if !unserved {
            return Err(Error::AddrServed(addr));
        }
        let actual = first.local_addr().map_err(|e| bind_error(addr, e))?;
        per_shard[0].push(first);
        for sockets in per_shard.iter_mut().skip(1) {
            sockets.push(open(actual, backlog).map_err(|e| bind_error(actual, e))?);
        }
        if let Some(prefix) = steer.filter(|_| shards > 1) {
            super::steer::attach(per_shard[0].last().expect("just opened"), shards, prefix)
                .map_err(Error::Steering)?;
        }
        bound.push(actual);
    }
    Ok(ListenerGroup {
        addrs: bound,
        per_shard,
    })
}

/// Whether a socket is listening on `addr` (or on a wildcard covering it)
/// already: a plain bind, without `SO_REUSEPORT`, is refused then. (With
/// `SO_REUSEADDR`, so that connections in TIME-WAIT do not count.)
fn served_elsewhere(addr: SocketAddr) -> bool {
    let probe = || -> io::Result<()> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())
    };
    probe().is_err_and(|e| e.kind() == io::ErrorKind::AddrInUse)
}

fn open(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

pub(crate) fn bind_error(addr: SocketAddr, error: io::Error) -> Error {
    if error.kind() == io::ErrorKind::AddrInUse {
        Error::AddrInUse(addr)
    } else {
        Error::Bind(addr, error)
    }
}

#[cfg(test)]
mod tests {
    use super::bind;
    use crate::error::Error;

    #[test]
    fn port_zero_is_shared_by_every_shard() {
        let group = bind(&["127.0.0.1:0".parse().unwrap()], 2, 16, None, false).unwrap();
        let port = group.addrs[0].port();
        assert_ne!(port, 0);
        for sockets in &group.per_shard {
            assert_eq!(sockets[0].local_addr().unwrap().port(), port);
        }
    }

    #[test]
    fn a_taken_port_is_reported() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(matches!(bind(&[addr], 1, 16, None, false), Err(Error::AddrInUse(a)) if a == addr));
    }
}
