//! systemd's notification protocol (`sd_notify`): `READY=1` once every shard
//! listens, `STOPPING=1` when draining starts, and `WATCHDOG=1` fed only
//! while every shard's event loop keeps ticking. Without `NOTIFY_SOCKET`
//! (not started by systemd with `Type=notify`) it does nothing.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

/// Milliseconds since the Unix epoch, as shards stamp their heartbeats.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Feeds the systemd watchdog every half `WATCHDOG_USEC`, but only while
/// every shard has ticked within that interval; runs on its own thread.
pub(crate) fn start_watchdog(heartbeats: Vec<Arc<AtomicU64>>) {
    let Some(interval) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|usec| usec.parse::<u64>().ok())
        .map(|usec| Duration::from_micros(usec / 2))
    else {
        return;
    };
    std::thread::Builder::new()
        .name("percore-watchdog".into())
        .spawn(move || {
            let limit = u64::try_from(interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(2_000);
            loop {
                std::thread::sleep(interval);
                let now = now_millis();
                let stalled: Vec<usize> = heartbeats
                    .iter()
                    .enumerate()
                    .filter(|(_, beat)| now.saturating_sub(beat.load(Ordering::Relaxed)) > limit)
                    .map(|(shard, _)| shard)
                    .collect();
                if stalled.is_empty() {
                    notify("WATCHDOG=1");
                } else {
                    tracing::error!(
                        ?stalled,
                        "shard event loop stalled; not feeding the systemd watchdog"
                    );
                }
            }
        })
        .ok();
}
