//! The reference app inside one `from_fn` layer, for measuring what a
//! layer, CORS and request IDs cost end to end
//! (`ONLY=layers scripts/bench-compare.sh` runs it with
//! `PERCORE_CORS_ALLOW_ORIGINS` and `PERCORE_REQUEST_ID` set).
//!
//! ```text
//! PERCORE_CORS_ALLOW_ORIGINS=http://bench.test PERCORE_REQUEST_ID=true \
//!   cargo run --release --example layered -- --shards 1
//! curl -si localhost:8080/plaintext -H 'origin: http://bench.test'
//! ```

use percore::{Next, Request, ResponseWriter, from_fn};

async fn served_by(request: &mut Request<'_>, response: &mut ResponseWriter<'_>, next: Next<'_>) {
    next.run(request, response).await;
    response.insert_header("X-Served-By", b"percore");
}

fn main() -> std::process::ExitCode {
    percore::main(|| percore::reference::app().layer(from_fn(served_by)))
}
