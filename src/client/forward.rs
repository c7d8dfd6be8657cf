//! One exchange on a pooled connection: a connection from the pool or new
//! (`Client::open`), then the request written and the response head read
//! (`Client::exchange`). `RequestBuilder::send` makes each of its tries
//! with them. The reverse proxy calls them itself: it picks the server,
//! writes a head it built from the client's request, streams a body that
//! may fail (the client went away), and needs to know which step failed
//! (connect, or before any response byte) to decide whether the next server
//! may be tried. A `101` hands over the raw connection for a tunnel.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::conn::Stream;
use super::pool::{Checkout, Lease, OriginPool};
use super::response::{ClientResponse, ReadRules};
use super::target::Target;
use super::{Client, ClientError, ErrorKind, Payload, write_request};

/// One server's origin and its pool on this shard.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    target: Rc<Target>,
    pool: Rc<OriginPool>,
}

impl Endpoint {
    /// Connections open to it (busy or idle), and idle among them.
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.pool.counts()
    }

    /// Closes its idle connections (after one turned out stale, the rest,
    /// idle as long, likely are too).
    pub(crate) fn close_idle(&self) {
        self.pool.close_idle();
    }

    /// The origin as logs name it.
    pub(crate) fn name(&self) -> &Rc<str> {
        &self.pool.name
    }
}

/// Why an exchange failed, and how far it had got.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: ClientError,
    /// Part of a response had arrived.
    pub(crate) answered: bool,
}

/// A request body forwarded as it arrives: `length` when the client
/// declared one (sent with `Content-Length`), else chunked. An `Err`
/// piece aborts the request (the connection is dropped, so the server
/// never sees a complete-looking body).
pub(crate) fn forwarded_body(
    length: Option<u64>,
    pieces: futures_lite::stream::BoxedLocal<Result<bytes::Bytes, ClientError>>,
) -> Payload {
    Payload::Forwarded { length, pieces }
}

/// A body known whole (sent with `Content-Length`; may be sent again).
pub(crate) fn full_body(bytes: bytes::Bytes) -> Payload {
    Payload::Full(bytes)
}

/// No body.
pub(crate) fn no_body() -> Payload {
    Payload::Empty
}

impl Client {
    /// The endpoint of `url` (`http://host:port/` or `http+unix://…/`).
    pub(crate) fn endpoint(&self, url: &str) -> Result<Endpoint, ClientError> {
        let (target, pool) = self.target(url)?;
        Ok(Endpoint { target, pool })
    }

    /// A connection to `endpoint`, from its pool or new, and how long a
    /// new one took to connect.
    pub(crate) async fn open(
        &self,
        endpoint: &Endpoint,
        deadline: Instant,
    ) -> Result<(Lease, Option<Duration>), ClientError> {
        self.open_on(&endpoint.target.origin, &endpoint.pool, deadline)
            .await
    }

    /// A connection to `origin` from `pool`, or a new one, connected
    /// before `deadline`; and how long a new one took to connect.
    pub(super) async fn open_on(
        &self,
        origin: &super::target::Origin,
        pool: &Rc<OriginPool>,
        deadline: Instant,
    ) -> Result<(Lease, Option<Duration>), ClientError> {
        let config = &self.inner.config;
        let name = &pool.name;
        match pool.checkout(deadline).await {
            Checkout::Reused(lease) => Ok((lease, None)),
            Checkout::Open(opening) => {
                let started = Instant::now();
                let left = deadline.saturating_duration_since(started);
                let connecting = self.connect(origin, name);
                let stream = futures_lite::future::or(connecting, async {
                    glommio::timer::sleep(left).await;
                    Err(ClientError::new(
                        ErrorKind::Timeout,
                        name,
                        "the call took longer than its overall timeout",
                    ))
                })
                .await?;
                stream.set_timeouts(config.read_timeout, config.write_timeout);
                Ok((opening.opened(stream), Some(started.elapsed())))
            }
            Checkout::TimedOut => Err(ClientError::new(
                ErrorKind::PoolTimeout,
                name,
                format_args!(
                    "all {} connections were busy for {:?} (the pool's max_per_origin; \
                     an upstream's max_connections)",
                    config.pool.max_per_origin, config.pool.wait_timeout
                ),
            )),
        }
    }

    /// Writes `head` (complete, blank line included) and `body` on
    /// `lease`, then reads the response head.
    pub(crate) async fn exchange(
        &self,
        mut lease: Lease,
        head: &[u8],
        body: &mut Payload,
        head_request: bool,
        deadline: Instant,
        name: &Rc<str>,
    ) -> Result<ClientResponse, Failed> {
        let config = &self.inner.config;
        lease.conn().uses += 1;
        write_request(&mut lease, head, body, config.write_timeout, deadline, name)
            .await
            .map_err(|error| Failed {
                error,
                answered: false,
            })?;
        let rules = ReadRules {
            read_timeout: config.read_timeout,
            deadline,
            max_body: config.max_response_body,
            head_request,
        };
        ClientResponse::read(lease, &rules, name)
            .await
            .map_err(|(error, answered)| Failed { error, answered })
    }
}

/// The connection under a `101 Switching Protocols`, and the bytes that
/// came after its head.
pub(crate) struct Upgraded {
    stream: Stream,
    pub(crate) early: Vec<u8>,
    idle: Duration,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("early", &self.early.len())
            .finish_non_exhaustive()
    }
}

impl Upgraded {
    /// Reads what the server sends next into `buf`, waiting at most the
    /// tunnel's idle time; 0 at its end.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.read(buf, self.idle, self.idle).await
    }

    /// Writes all of `bytes`, within the tunnel's idle time.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes, self.idle, self.idle).await
    }
}

impl ClientResponse {
    /// For a `101`: the connection, taken out of its pool, for a tunnel
    /// whose reads and writes each wait at most `idle`.
    pub(crate) fn into_upgraded(mut self, idle: Duration) -> Option<Upgraded> {
        if self.status() != 101 {
            return None;
        }
        let mut conn = self.take_lease()?.detach();
        let early = conn.buf[conn.start..conn.end].to_vec();
        conn.start = conn.end;
        conn.stream.set_timeouts(idle, idle);
        Some(Upgraded {
            stream: conn.stream,
            early,
            idle,
        })
    }
}
