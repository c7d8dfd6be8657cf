//! The request path of an app without a socket, for tests, benchmarks and
//! fuzzing: bytes in, response bytes out.

use std::rc::Rc;
use std::sync::Arc;

use futures_lite::StreamExt;

use super::exchange::serve_buffered;
use crate::config::ConnectionRules;
use crate::http::parse::{Decoder, Limits};
use crate::http::write::{LAST_CHUNK, encode_chunk};
use crate::observe::counters::Rejection;
use crate::route::service::RouteService;
use crate::server::shard::{Settings, ShardContext};

/// The request path of an [`App`](crate::App) without a socket: feed it request bytes,
/// get response bytes. For tests, benchmarks and fuzzing; a real server
/// runs the same code behind each connection.
///
/// ```
/// use percore::{App, LocalService};
/// let mut service = LocalService::new(App::new().get("/", async || "hi"));
/// let mut input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
/// let mut out = Vec::new();
/// let (consumed, close) = futures_lite::future::block_on(service.serve(&mut input, &mut out));
/// assert_eq!((consumed, close), (input.len(), false));
/// assert!(out.ends_with(b"\r\n\r\nhi"));
/// ```
pub struct LocalService<S> {
    shard: Rc<ShardContext<S>>,
    decoder: Decoder,
    budget: u32,
    peer: Option<std::net::SocketAddr>,
}

impl<S> std::fmt::Debug for LocalService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalService").finish_non_exhaustive()
    }
}

impl<S: 'static> LocalService<S> {
    /// A service for `app` with default limits, as shard 0.
    #[must_use]
    pub fn new(app: impl Into<RouteService<S>>) -> Self {
        Self::with_limits(app, Limits::default())
    }

    /// A service for `app` with `limits`.
    #[must_use]
    pub fn with_limits(app: impl Into<RouteService<S>>, limits: Limits) -> Self {
        let config = crate::config::Config::default();
        let settings = Settings {
            limits,
            rules: ConnectionRules {
                keepalive_requests: 0,
                ..ConnectionRules::default()
            },
            ..Settings::of(&config, 1, true)
        };
        Self::from_settings(app, settings)
    }

    /// A service for `app` with the limits, headers and rate limits of
    /// `config` (one shard's share).
    ///
    /// # Errors
    /// When `config` is invalid.
    pub fn with_config(
        app: impl Into<RouteService<S>>,
        config: &crate::Config,
    ) -> Result<Self, crate::Error> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(crate::Error::Config(problems));
        }
        Ok(Self::from_settings(app, Settings::of(config, 1, true)))
    }

    fn from_settings(app: impl Into<RouteService<S>>, settings: Settings) -> Self {
        let decoder = Decoder::new(settings.limits);
        Self {
            shard: Rc::new(ShardContext::new(0, Arc::new(app.into()), settings)),
            decoder,
            budget: u32::MAX,
            peer: None,
        }
    }

    /// Serves as if the connection came from `peer` (rate limits key on it).
    pub fn set_peer(&mut self, peer: std::net::SocketAddr) {
        self.peer = Some(peer);
    }

    /// How many requests were refused for `reason` so far.
    #[must_use]
    pub fn rejections(&self, reason: Rejection) -> u64 {
        self.shard.counters.get(reason)
    }

    /// Answers every complete request at the start of `input` (as one
    /// connection would), appending responses to `out`. Returns the bytes
    /// consumed and whether the connection would close. A streamed body is
    /// appended whole, with its framing.
    pub async fn serve(&mut self, input: &mut [u8], out: &mut Vec<u8>) -> (usize, bool) {
        let batch = serve_buffered(
            &self.shard,
            &mut self.decoder,
            input,
            out,
            super::exchange::Origin {
                peer: self.peer,
                tls: false,
                redirect: None,
            },
            &mut self.budget,
        )
        .await;
        if let Some((mut stream, chunked)) = batch.stream {
            while let Some(piece) = stream.next().await {
                if chunked {
                    encode_chunk(out, &piece);
                } else {
                    out.extend_from_slice(&piece);
                }
            }
            if chunked {
                out.extend_from_slice(LAST_CHUNK);
            }
        }
        (batch.consumed, batch.close)
    }
}
