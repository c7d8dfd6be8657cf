//! systemd's notification protocol (`sd_notify`): `READY=1` once every shard
//! listens (with `STATUS=listening on ADDR ADDR…`: the shards' addresses
//! in the order of the start-up log line — plain, HTTPS, redirect — then
//! the admin listener's; the stable way for a supervisor or a test to
//! learn the ports percore bound), `STOPPING=1` when draining starts, and `WATCHDOG=1` fed only
//! while every shard's event loop keeps ticking (fed by the watchdog in
//! [`supervise`](super::supervise)). Without `NOTIFY_SOCKET`
//! (not started by systemd with `Type=notify`) it does nothing.

use std::os::unix::net::UnixDatagram;

/// The readiness message: `READY=1`, then the listening addresses.
pub(crate) fn ready(addrs: &[std::net::SocketAddr]) -> String {
    let mut message = String::from("READY=1\nSTATUS=listening on");
    for addr in addrs {
        message.push(' ');
        message.push_str(&addr.to_string());
    }
    message
}

/// Sends `state` to systemd, if it is listening.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket name.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|address| socket.send_to_addr(state.as_bytes(), &address))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(error) = sent {
        tracing::warn!(%error, state, "could not notify systemd");
    }
}
