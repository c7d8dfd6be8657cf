//! percore: a production HTTP/1.1 server and framework, thread-per-core on
//! `io_uring`.
//!
//! One shard (a glommio executor) is pinned to each usable CPU and owns its
//! own `SO_REUSEPORT` listener; shards share nothing on the request path.
//! Handlers are plain `async fn`s that run on their shard, so their futures
//! need not be `Send`.
//!
//! ```no_run
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use percore::{App, Config, Json, Path, State};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Note { text: String }
//!
//! async fn create(State(count): State<Rc<Cell<u64>>>, Json(note): Json<Note>) -> Json<Note> {
//!     count.set(count.get() + 1);
//!     Json(note)
//! }
//!
//! async fn hello(Path(name): Path<String>) -> String {
//!     format!("Hello, {name}!")
//! }
//!
//! fn main() -> Result<(), percore::Error> {
//!     App::with_state(|| Rc::new(Cell::new(0)))  // one counter per shard
//!         .post("/notes", create)
//!         .get("/hello/{name}", hello)
//!         .serve(Config::default())
//! }
//! ```
//!
//! # Layout
//!
//! A request flows top to bottom:
//!
//! - [`runtime`]: picks the CPUs ([`runtime::cpus`]: affinity ∩ cgroup
//!   cpuset, capped by the cgroup quota), opens every listener before any
//!   shard starts (`listener`, with [`runtime::steer`]'s cBPF program
//!   sending each client address to one shard when limits need it), and
//!   runs one pinned executor per CPU (`shard`) on a thread of its own. The
//!   process talks to shards only by message (`control`: stop, reload,
//!   metrics snapshot); `supervise` restarts a shard that dies and watches
//!   for blocked event loops.
//! - `uring`: each shard's own `io_uring` for sockets (multishot accept and
//!   receive into provided buffers, batched sends, deferred task work) and
//!   the driver task that submits, reaps and sleeps through glommio.
//! - [`tls`]: rustls configuration, certificates, SNI and shared ticket
//!   keys, and the TLS stream that sits between the socket and the
//!   connection loop.
//! - [`server`]: each shard's accept loop spawns one task per connection.
//!   The connection loop reads into a pooled buffer, answers every complete
//!   request in it, and sends all responses with one write; the request work
//!   runs in a pooled block (`server::placed`) so idle connections stay
//!   small. Its request path is also usable without a socket as
//!   [`LocalService`].
//! - [`http`]: the protocol, sans-IO. [`http::parse`] decodes heads with
//!   httparse and applies the RFC 9112 framing rules; [`http::body`] decodes
//!   chunked bodies in place; [`http::request`] is the borrowed view a handler
//!   sees; [`http::write`] encodes responses into the write buffer;
//!   [`http::response`] is what handlers may return; [`http::date`] caches
//!   the `Date` value per shard.
//! - [`limit`]: per-shard rate limiting (GCRA over bounded key tables),
//!   checked after routing and before the handler.
//! - [`route`]: [`route::router`] maps method and path to a handler;
//!   [`route::handler`] turns `async fn`s into handlers; [`route::extract`]
//!   holds the extractors; [`route::json`] is JSON in and out with simd-json.
//! - [`app`](App), [`config`], [`error`](Error), [`observe`], [`cli`],
//!   [`doctor`] and [`reference`] are the edges: the builder service authors use, the
//!   configuration tree, the error type, logging, access log and metrics,
//!   the command line and the app `percore serve` runs.

pub mod app;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod error;
pub mod http;
pub mod limit;
pub mod observe;
pub mod reference;
pub mod route;
pub mod runtime;
pub mod server;
pub mod tls;
pub(crate) mod transport;
pub(crate) mod uring;

pub use app::App;
pub use config::Config;
pub use error::Error;
pub use http::parse::Method;
pub use http::request::Request;
pub use http::response::{HttpError, IntoResponse, Response};
pub use http::status::Status;
pub use observe::counters::Rejection;
pub use route::extract::{Bytes, FromRequest, Headers, Path, Peer, Query, ShardId, State};
pub use route::handler::Handler;
pub use route::json::Json;
pub use runtime::Server;
pub use runtime::blocking::blocking;
pub use server::LocalService;
