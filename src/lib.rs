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
//! Dependencies point one way, bottom to top; `tests/layers.rs` fails on
//! any path from a module to one of its own layer or above, so no cycle
//! between top-level modules can be written.
//!
//! 1. `http`: the protocol, sans-IO, a leaf. `http::parse` decodes heads
//!    with httparse and applies the RFC 9112 framing rules; `http::body`
//!    decodes chunked bodies in place; `http::request` is the borrowed
//!    view a handler sees; `http::write` encodes responses into the write
//!    buffer; `http::response` is what handlers may return;
//!    `http::compress` negotiates `Accept-Encoding` and runs gzip, brotli
//!    and zstd; `http::date` caches the `Date` value per shard.
//! 2. [`config`]: the configuration's schema, defaults, validation and its
//!    value types (CPU lists, client-key sources, address blocks,
//!    access-log formats).
//! 3. [`error`](Error): every failure that stops percore, each naming its fix.
//! 4. `observe`: logging, the access log, rejection counters, metrics and
//!    the watchdog's vitals; then `uring`, each shard's own `io_uring`, a
//!    leaf (an owning record per operation; multishot accept and receive
//!    into provided buffers, batched sends, connect, timeouts and file
//!    operations, and a connected socket as an `AsyncRead`/`AsyncWrite`
//!    stream for the outbound clients), and `net`, their TCP connects.
//! 5. `ratelimit` (per-shard rate limiting: GCRA over bounded key tables) and
//!    `route` (`route::router` maps method and path to a handler;
//!    `route::handler` turns `async fn`s into handlers; `route::extract`
//!    holds the extractors (`route::auth`: `Bearer`, `Basic`); `route::json`
//!    is JSON with simd-json; `route::layer` is middleware, whose futures
//!    live in `route::pooled` blocks; `route::cors`, `route::sse` and
//!    `route::shutdown` are CORS, server-sent events and the drain signal;
//!    `route::startup` builds each shard's state and runs its shutdown hooks;
//!    `route::service` is an app frozen for serving).
//! 6. `files`: static files as route handlers (`[[route]] static`,
//!    [`App::files`]): paths resolved beneath the root by `openat2` on the
//!    ring (`files::path`), RFC 9110 validators and ranges
//!    (`files::conditional`) and a per-shard open-file cache (`files::cache`).
//! 7. `tls` (rustls configuration, certificates, SNI, shared ticket keys).
//! 8. `transport`: the byte stream under a connection, plain (the ring or
//!    glommio's stream) or TLS over plain, with the shard's buffer pool.
//! 9. `server`: one shard's serving. Its context (`server::shard`), the
//!    accept loops, the connection gate, and per connection a thin I/O loop
//!    (`server::connection`: read, work, send, close under two timers,
//!    protocol-agnostic) driving a protocol state machine — HTTP/1.1 is
//!    `server::conn` (phases idle, head, body, handling, sending, streaming,
//!    closing; pooled buffers, pipelining, lingering close after refusals)
//!    — over the exchange (`pipeline` decode loop, `builtin` endpoints,
//!    `dispatch` to rate limit, router and handler), deadlines and pooled
//!    blocks. The same state machine serves without a socket as
//!    [`LocalService`]. `server::h2` is HTTP/2 over it (framing, HPACK and
//!    flow control of its own in `session`; each stream answered by the
//!    HTTP/1.1 machine in memory).
//!    Beside it, [`ws`]: WebSocket handlers, which take a connection over
//!    after their `101` (`tungstenite`'s protocol machine, sans-IO).
//! 10. [`client`]: calling other services from a shard. An HTTP/1.1 client
//!     on the shard's own ring (`client::conn`: TCP, TLS with rustls, Unix
//!     sockets), pooled per origin (`client::pool`), with `client::response`
//!     reading the framing, and `client::resilience` (backoff with full
//!     jitter, a retry budget, a circuit breaker per origin); `postgres` and
//!     `redis` (below the rate limiter, whose fleet-wide policies use it)
//!     connect through `net`, which resolves off the shard.
//! 11. [`proxy`]: the reverse proxy, over the client's pools. Proxied
//!     routes (`[[route]]`, [`App::proxy`]) forward to an upstream's
//!     servers picked by `proxy::balance` (weighted round robin, least
//!     connections, consistent client hash, two random choices), each
//!     shard with its own pools, passive and active health and counts
//!     (`proxy::state`); `proxy::headers` drops hop-by-hop fields and sets
//!     the forwarding ones; `proxy::tunnel` carries an upgraded
//!     connection (WebSocket) both ways.
//! 12. `runtime`: the process. `runtime::cpus` picks the CPUs (affinity ∩
//!     cgroup cpuset, capped by the quota); `listener` opens every listener
//!     before any shard starts (`runtime::steer`'s cBPF program sends each
//!     client to one shard when limits need it); `shard` brings a shard up on
//!     its own pinned executor thread; `control` talks to shards only by
//!     message (stop, reload, metrics snapshot); `supervise` restarts a
//!     shard that dies and watches for blocked event loops; `admin` serves
//!     metrics on their own listener; [`Server`] is the handle.
//! 13. `app` ([`App`]): the builder service authors use, frozen into a
//!     [`RouteService`] that the layers below take.
//! 14. `doctor` (host checks), [`reference`](mod@reference) (the app `percore serve`
//!     runs) and `testing` ([`TestClient`]: an app on a real one-shard
//!     server, requests over a loopback socket), then [`cli`], the command
//!     line over them ([`main`] for your own binary).
//!
//! ## Public surface
//!
//! The modules are private to the crate (`unreachable_pub` is on); a
//! service author or operator uses what the crate root re-exports, the
//! configuration schema in [`config`], [`cli::run`] (the `percore` command
//! line, for your own binary) and [`reference`](mod@reference). The codec,
//! router and limiter internals that percore's own benches and fuzz targets
//! measure are reached through one hidden module, `percore::internals`,
//! which is not part of the API.
//!
//! ## Unsafe code
//!
//! `unsafe_code` is denied crate-wide and allowed in seven modules; every
//! block carries a `SAFETY:` argument beside it (`undocumented_unsafe_blocks`
//! is denied). The inventory below counts each file's `unsafe` blocks and
//! functions; `tests/layers.rs` fails when a count here and in the code
//! differ, so a new one is argued here too.
//!
//! | file | count | what for |
//! |---|---|---|
//! | `uring/mod.rs` | 19 | the start-up probe's no-op, ring setup (buffer registration, eventfd), `Inner::push` (an `unsafe fn`: callers argue every address in an entry points into what the operation's record holds, valid until its last completion) and its call sites, dropping the `ManuallyDrop` ring and buffers once, `borrow_fd` |
//! | `uring/buffers.rs` | 8 | the provided-buffer ring: allocation with checked non-zero sizes, entries written through raw pointers (the kernel reads them), the tail as an atomic, lent buffer bytes |
//! | `uring/oneshot.rs` | 9 | `Ring::start` (an `unsafe fn`: the entry may point only into its `Held`), `with_bytes` (the same for an op on one buffer: send, read) and the send, timeout, connect and writable poll built on them; adopting an unread open's descriptor |
//! | `uring/file.rs` | 22 | open, stat, read and splice through `Ring::start`; zeroed `statx` buffers; adopting opened descriptors and a new pipe's ends; the blocking fallbacks' `openat2`, `statx` and `pread` into a buffer's spare capacity; `cachestat`, and the `send`, `fcntl` and `sendfile` calls a cached file part goes out with |
//! | `uring/socket.rs` | 5 | adopting accepted descriptors, received bytes lent from the buffer ring, the close pushed at drop |
//! | `uring/op.rs` | 1 | closing a descriptor an abandoned accept or open returned |
//! | `route/pooled.rs` | 4 | a future placed in a pooled block (a connection's work, a middleware layer's future, type-erased): written, pinned, dropped in place once |
//! | `runtime/adopt.rs` | 2 | handing sockets to glommio, whose only way to adopt one is `FromRawFd` |
//! | `runtime/steer.rs` | 1 | `setsockopt` with the cBPF steering program |
//! | `runtime/descriptors.rs` | 2 | `getrlimit` and `setrlimit` for the descriptor budget |
//! | `client/conn.rs` | 1 | a non-blocking `recv(MSG_PEEK)` on a pooled connection's socket, to skip one its peer closed |
//! | `runtime/memory.rs` | 1 | `malloc_trim`, giving a burst's freed pages back |

pub(crate) mod app;
pub mod cli;
pub mod client;
pub mod config;
pub(crate) mod doctor;
pub(crate) mod error;
pub mod files;
pub(crate) mod http;
mod net;
pub(crate) mod observe;
pub mod postgres;
pub mod proxy;
pub(crate) mod ratelimit;
pub mod redis;
pub mod reference;
pub(crate) mod route;
pub(crate) mod runtime;
pub(crate) mod server;
pub(crate) mod testing;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod uring;
pub mod ws;

pub use app::{App, Scope};
pub use cli::main;
pub use config::{CompressionConfig, Config, StaticConfig};
/// The `cookie` crate, whose [`Cookie`](cookie::Cookie) builder sets a
/// cookie's attributes for [`Cookies`].
pub use cookie;
pub use error::{Error, IoUringRefusal};
pub use http::describe::Operation;
pub use http::incoming::BodyError;
pub use http::parse::{Limits, Method};
pub use http::request::Request;
pub use http::response::{HttpError, IntoResponse, Response};
pub use http::status::Status;
pub use http::write::{ResponseWriter, StreamFraming};
pub use observe::counters::Rejection;
pub use observe::log::init as init_logging;
pub use route::auth::{Basic, Bearer};
pub use route::body::{Body, Multipart, MultipartError, MultipartLimits, Part};
pub use route::cookies::Cookies;
pub use route::extract::{
    Bytes, Form, FromRequest, Headers, InputError, Path, Peer, Query, RequestId, Settings, ShardId,
    State,
};
pub use route::handler::Handler;
pub use route::json::Json;
pub use route::layer::{Layer, LayerFn, Next, from_fn, timeout};
pub use route::service::RouteService;
pub use route::shutdown::{Background, Shutdown};
pub use route::sse::{Event, LastEventId, Sse};
pub use route::startup::{Startup, StartupError};
pub use route::validate::{FieldError, Loc, ValidationError};
pub use runtime::Server;
pub use server::LocalService;
pub use server::blocking::blocking;
pub use testing::{TestClient, TestRequest, TestResponse};

/// Not part of the API: the codec, router and limiter internals that
/// percore's own benches and fuzz targets measure. They may change in any
/// release.
#[doc(hidden)]
pub mod internals {
    pub use crate::http::body::{ChunkLimits, ChunkedDecoder};
    pub use crate::http::parse::{Decoded, Decoder, ParseError};
    pub use crate::http::write::{ResponseContext, ResponseWriter};
    pub use crate::ratelimit::gcra::Gcra;
    pub use crate::ratelimit::table::Table;
    pub use crate::route::router::{Lookup, MAX_PARAMS, Router};
    pub use crate::runtime::steer::shard_of;
}
