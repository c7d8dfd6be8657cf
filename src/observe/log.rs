//! Logging: tracing to standard error, filtered by one directive string
//! that a reload can change.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// The installed subscriber's filter, for reloads.
static FILTER: OnceLock<Box<dyn Fn(EnvFilter) + Send + Sync>> = OnceLock::new();
/// The filter came from `--log-level` or `RUST_LOG`: reloads keep it.
static PINNED: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber with `filter` (such as `info` or
/// `percore=debug,warn`). A second call keeps the first subscriber.
pub fn init(filter: &str) {
    let filter =
        EnvFilter::try_new(quiet_libraries(filter)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter_reloading();
    let handle = builder.reload_handle();
    if builder.try_init().is_ok() {
        let _ = FILTER.set(Box::new(move |filter| {
            let _ = handle.reload(filter);
        }));
    }
}

/// `filter`, with rustls held to errors unless it names it itself:
/// rustls warns once per connection about some client quirks (an IP
/// address sent as SNI, as wrk does), which would let any client flood
/// the log and cost the server a formatted line each.
fn quiet_libraries(filter: &str) -> String {
    let mut out = filter.to_owned();
    let named = out
        .split(',')
        .any(|d| d.split(['=', ':', '[']).next() == Some("rustls"));
    if !named {
        out.push_str(",rustls=error");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn libraries_are_quiet_unless_named() {
        assert_eq!(super::quiet_libraries("info"), "info,rustls=error");
        assert_eq!(super::quiet_libraries("rustls=warn"), "rustls=warn");
        assert_eq!(
            super::quiet_libraries("rustls_pki=info"),
            "rustls_pki=info,rustls=error"
        );
    }
}

/// Marks the filter as given on the command line or by `RUST_LOG`, so a
/// reload of the configuration file does not replace it.
pub(crate) fn pin_filter() {
    PINNED.store(true, Ordering::Relaxed);
}

/// Puts the configuration's `log.level` in force, unless the filter is
/// pinned or the subscriber is not ours.
pub(crate) fn reload_filter(level: &str) {
    if PINNED.load(Ordering::Relaxed) {
        return;
    }
    if let (Some(set), Ok(filter)) = (FILTER.get(), EnvFilter::try_new(quiet_libraries(level))) {
        set(filter);
    }
}

/// Lets a log line through at most once a second, so a flood (refused
/// connections, rate-limited clients) cannot flood the log too.
#[derive(Debug, Default)]
pub(crate) struct OncePerSecond(std::cell::Cell<Option<std::time::Instant>>);

impl OncePerSecond {
    /// Whether a line may be logged now (and, if so, starts a new second).
    pub(crate) fn ready(&self) -> bool {
        let now = std::time::Instant::now();
        let ready = self
            .0
            .get()
            .is_none_or(|last| now.duration_since(last) >= std::time::Duration::from_secs(1));
        if ready {
            self.0.set(Some(now));
        }
        ready
    }
}
