//! Running blocking work off the shard: a shard's event loop must never
//! wait (the "blocking handler" anti-pattern stalls every connection on
//! it), so work that blocks — a synchronous library, a slow file read, a
//! CPU-heavy step — runs on the shard's blocking thread pool
//! (`server.blocking_threads` threads) while the shard serves on.

/// Runs `work` on the shard's blocking thread pool and waits for its result
/// without blocking the shard. Call it from a handler (or any task on a
/// shard).
///
/// ```no_run
/// use percore::{App, Config};
///
/// async fn hash(body: String) -> String {
///     // A synchronous, CPU-heavy step: off the shard, so other requests
///     // on this shard keep being served meanwhile.
///     let digest = percore::blocking(move || body.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b))).await;
///     format!("{digest:016x}")
/// }
///
/// fn main() -> Result<(), percore::Error> {
///     App::new().post("/hash", hash).serve(Config::default())
/// }
/// ```
///
/// # Panics
/// When called outside a shard (no executor on this thread).
pub async fn blocking<F, R>(work: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(work).await
}
