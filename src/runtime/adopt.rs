//! Handing file descriptors opened here to glommio. glommio offers only
//! `FromRawFd` for this, so this is the crate's one `unsafe` module.
#![allow(
    unsafe_code,
    reason = "FromRawFd is glommio's only way to adopt a socket"
)]

use std::os::fd::IntoRawFd;

/// A listening socket, as a glommio listener of the current executor.
pub(crate) fn listener(socket: std::net::TcpListener) -> glommio::net::TcpListener {
    let fd = socket.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of an open, bound and listening
    // TCP socket, so glommio becomes its only owner and closes it once.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// A connected Unix stream socket, as a glommio stream of the current executor.
pub(crate) fn unix_stream(socket: std::os::unix::net::UnixStream) -> glommio::net::UnixStream {
    let fd = socket.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of an open, connected Unix stream
    // socket, so glommio becomes its only owner and closes it once.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}
