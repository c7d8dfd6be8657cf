//! The request path of an app without a socket, for tests, benchmarks and
//! fuzzing: bytes in, response bytes out.

use std::rc::Rc;
use std::sync::Arc;

use super::conn::Conn;
use super::connection::{Protocol, Sent, Step};
use super::exchange::Origin;
use crate::config::ConnectionRules;
use crate::http::parse::Limits;
use crate::observe::counters::Rejection;
use crate::route::service::RouteService;
use crate::server::shard::{Settings, ShardContext};

/// The request path of an [`App`](crate::App) without a socket: feed it request bytes,
/// get response bytes. For tests, benchmarks and fuzzing; a real server
/// runs the same connection state machine behind each socket.
///
/// ```
/// use percore::{App, LocalService};
/// let mut service = LocalService::new(App::new().get("/", async || "hi"));
/// let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
/// let mut out = Vec::new();
/// let (consumed, close) = futures_lite::future::block_on(service.serve(input, &mut out));
/// assert_eq!((consumed, close), (input.len(), false));
/// assert!(out.ends_with(b"\r\n\r\nhi"));
/// ```
pub struct LocalService<S> {
    conn: Conn<S>,
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
        let app = app.into();
        let accepted = app.check(&config).unwrap_or_default();
        let settings = Settings {
            app: accepted,
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
        let app = app.into();
        let accepted = app.check(config).map_err(crate::Error::Config)?;
        let settings = Settings {
            app: accepted,
            ..Settings::of(config, 1, true)
        };
        Ok(Self::from_settings(app, settings))
    }

    /// Builds shard 0's state here (an async factory is polled to the end
    /// on this thread: one that awaits sockets needs a server, as
    /// [`TestClient`](crate::TestClient) starts).
    ///
    /// # Panics
    /// When the app's state factory fails: a test cannot go on without it.
    fn from_settings(app: impl Into<RouteService<S>>, settings: Settings) -> Self {
        let app: RouteService<S> = app.into();
        let built = futures_lite::future::block_on(crate::route::startup::build(
            &app.state,
            0,
            settings.app.settings.clone(),
        ));
        let state = built.unwrap_or_else(|error| panic!("the app's state factory failed: {error}"));
        let shard = Rc::new(ShardContext::new(0, Arc::new(app), settings, state));
        let settings = shard.settings();
        let origin = Origin {
            peer: None,
            tls: false,
            redirect: None,
            http2: false,
        };
        Self {
            conn: Conn::new(shard, settings, origin),
        }
    }

    /// Serves as if the connection came from `peer` (rate limits key on it).
    pub fn set_peer(&mut self, peer: std::net::SocketAddr) {
        self.conn.set_peer(peer);
    }

    /// How many requests were refused for `reason` so far.
    #[must_use]
    pub fn rejections(&self, reason: Rejection) -> u64 {
        self.conn.shard().counters.get(reason)
    }

    /// Answers every complete request at the start of `input` (as one
    /// connection would), appending responses to `out`. Returns the bytes
    /// consumed and whether the connection would close; the caller feeds
    /// the rest again with what follows it. A streamed body is appended
    /// whole, with its framing.
    pub async fn serve(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        self.conn.load(input);
        // Each pass answers, sends or closes; a bounded number of steps
        // per piece of a streamed body.
        let close = loop {
            match self.conn.step() {
                Step::Work { .. } => self.conn.work(None).await,
                // No connection to hand over: it ends.
                Step::Tunnel => self.conn.tunnel(None).await,
                Step::Send { .. } => {
                    out.append(self.conn.output());
                    self.conn.sent(Sent::Done);
                }
                // Never asked for: in-process connections do not splice.
                Step::SendFile { .. } => self.conn.file_sent(Err(Sent::Failed)),
                Step::Read { .. } => break false,
                Step::Close(_) => break true,
            }
        };
        let consumed = input.len() - self.conn.unanswered();
        self.conn.unload();
        (consumed, close)
    }
}
