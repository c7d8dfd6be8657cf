//! PostgreSQL from a shard: tokio-postgres's protocol over the shard's own
//! sockets (its runtime-free `connect_raw`, through a compat adapter), in
//! a pool per shard. Concurrent queries of the shard's requests are
//! pipelined on its connections (tokio-postgres sends a query without
//! waiting for the last one's answer); a transaction takes a connection of
//! its own. Each connection caches its prepared statements.
//!
//! ```no_run
//! # async fn run() -> Result<(), percore::postgres::PgError> {
//! use percore::postgres::{Pg, PgConfig};
//!
//! let db = Pg::connect(PgConfig::new("postgres://app:secret@127.0.0.1/app")).await?;
//! let row = db.query_one("SELECT $1::INT + 1", &[&41i32]).await?;
//! let answer: i32 = row.get(0);
//! # let _ = answer;
//! # Ok(())
//! # }
//! ```

mod error;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

pub use error::{PgError, PgErrorKind};
pub use tokio_postgres::types::ToSql;
pub use tokio_postgres::{Row, Statement};

/// The socket under a connection, as tokio-postgres reads it.
enum Socket {
    Tcp(Compat<crate::net::NetStream>),
    Unix(Compat<glommio::net::UnixStream>),
}

impl tokio::io::AsyncRead for Socket {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Socket {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How a shard's pool connects and how large it grows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgConfig {
    /// A `postgres://user:password@host:port/dbname` URL or a
    /// `host=... user=...` string; a host starting with `/` is the
    /// directory of the server's Unix socket.
    pub url: String,
    /// Connections per shard, at most.
    pub size: usize,
    /// Connections opened at start and kept open.
    pub min_idle: usize,
    /// A connection is replaced once this old (`None`: never).
    pub max_lifetime: Option<Duration>,
    /// How long a query or transaction waits for a connection
    /// (`PgErrorKind::PoolTimeout`, answered 503, past it).
    pub acquire_timeout: Duration,
    /// Making one connection, the handshake included.
    pub connect_timeout: Duration,
    /// Each query (`PgErrorKind::Timeout` past it). `None` (the
    /// default): the server's request timeout bounds the handler, and
    /// with it the query, at no cost per query (a timer each otherwise).
    pub query_timeout: Option<Duration>,
    /// An idle connection unused this long is checked with an empty query
    /// before it is reused.
    pub check_after: Duration,
    /// Prepared statements kept per connection.
    pub statement_cache: usize,
}

impl PgConfig {
    /// The defaults for `url`: 4 connections per shard, 1 kept open, a
    /// 5 s acquire timeout, no query timeout of its own.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            size: 4,
            min_idle: 1,
            max_lifetime: Some(Duration::from_mins(30)),
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            query_timeout: None,
            check_after: Duration::from_secs(30),
            statement_cache: 256,
        }
    }
}

/// One connection: the protocol client, its statements, and its load.
struct PgConn {
    client: tokio_postgres::Client,
    statements: RefCell<HashMap<Box<str>, Statement>>,
    /// Queries sent and not yet answered (pipelined).
    in_flight: Cell<usize>,
    /// Taken by a transaction (no shared queries meanwhile).
    leased: Cell<bool>,
    /// Left inside a transaction that was neither committed nor rolled
    /// back: closed once its lease ends.
    poisoned: Cell<bool>,
    created: Instant,
    last_used: Cell<Instant>,
}

struct Inner {
    config: PgConfig,
    parsed: tokio_postgres::Config,
    /// The shared connections (leased ones stay listed, marked).
    conns: RefCell<Vec<Rc<PgConn>>>,
    /// Connections being made.
    opening: Cell<usize>,
    waiters: RefCell<VecDeque<oneshot::Sender<()>>>,
    /// Whether the last attempt to connect succeeded.
    reachable: Cell<bool>,
    closed: Cell<bool>,
}

/// A shard's PostgreSQL pool (clone it freely on that shard; not `Send`).
#[derive(Clone)]
pub struct Pg {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("connections", &self.inner.conns.borrow().len())
            .finish_non_exhaustive()
    }
}

/// What a pool holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgStats {
    /// Open connections.
    pub open: usize,
    /// Among them, taken by a transaction.
    pub leased: usize,
    /// Queries sent and not yet answered, over all connections.
    pub in_flight: usize,
}

impl Pg {
    /// A pool for `config`, with its `min_idle` connections open (at least
    /// one: the server's address, credentials and database are checked
    /// now, so a state factory fails at start when the database is
    /// unreachable).
    ///
    /// # Errors
    /// A bad URL, or the first connection failing (the error names the
    /// address and what the server said).
    pub async fn connect(config: PgConfig) -> Result<Self, PgError> {
        let parsed: tokio_postgres::Config = config.url.parse().map_err(|e| {
            PgError::new(PgErrorKind::Config, format_args!("the database URL: {e}"))
        })?;
        if parsed.get_hosts().is_empty() {
            return Err(PgError::new(
                PgErrorKind::Config,
                "the database URL names no host",
            ));
        }
        let pg = Self {
            inner: Rc::new(Inner {
                config,
                parsed,
                conns: RefCell::new(Vec::new()),
                opening: Cell::new(0),
                waiters: RefCell::new(VecDeque::new()),
                reachable: Cell::new(false),
                closed: Cell::new(false),
            }),
        };
        for _ in 0..pg
            .inner
            .config
            .min_idle
            .clamp(1, pg.inner.config.size.max(1))
        {
            pg.inner.opening.set(pg.inner.opening.get() + 1);
            let opened = pg.open().await;
            pg.inner.opening.set(pg.inner.opening.get() - 1);
            pg.inner.conns.borrow_mut().push(opened?);
        }
        Ok(pg)
    }

    /// Whether the database answered the last connection attempt and a
    /// connection is open: for a readiness check.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.inner.reachable.get()
            && self
                .inner
                .conns
                .borrow()
                .iter()
                .any(|c| !c.client.is_closed())
    }

    /// What the pool holds now.
    #[must_use]
    pub fn stats(&self) -> PgStats {
        let conns = self.inner.conns.borrow();
        PgStats {
            open: conns.len(),
            leased: conns.iter().filter(|c| c.leased.get()).count(),
            in_flight: conns.iter().map(|c| c.in_flight.get()).sum(),
        }
    }

    /// Closes every connection (a shutdown hook calls this); later calls
    /// fail with `Closed`.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.conns.borrow_mut().clear();
        for waiter in self.inner.waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    /// One new connection, over a socket of this shard.
    async fn open(&self) -> Result<Rc<PgConn>, PgError> {
        let config = &self.inner.config;
        let connecting = self.open_raw();
        let result = futures_lite::future::or(connecting, async {
            glommio::timer::sleep(config.connect_timeout).await;
            Err(PgError::new(
                PgErrorKind::Timeout,
                format_args!("connecting took longer than {:?}", config.connect_timeout),
            ))
        })
        .await;
        self.inner.reachable.set(result.is_ok());
        result
    }

    /// A socket to the server, on this shard's ring.
    async fn socket(&self) -> Result<Socket, PgError> {
        let parsed = &self.inner.parsed;
        let port = parsed.get_ports().first().copied().unwrap_or(5432);
        Ok(match &parsed.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => {
                let stream = crate::net::connect(host, port)
                    .await
                    .map_err(|e| PgError::new(PgErrorKind::Connect, e))?;
                Socket::Tcp(stream.compat())
            }
            tokio_postgres::config::Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let stream = glommio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| {
                        PgError::new(
                            PgErrorKind::Connect,
                            format_args!("{}: {}", path.display(), std::io::Error::from(e)),
                        )
                    })?;
                Socket::Unix(stream.compat())
            }
        })
    }

    async fn open_raw(&self) -> Result<Rc<PgConn>, PgError> {
        let parsed = &self.inner.parsed;
        let socket = self.socket().await?;
        let (client, connection) = parsed
            .connect_raw(socket, tokio_postgres::NoTls)
            .await
            .map_err(PgError::from_driver)?;
        // The connection's I/O runs as a task of this shard until the
        // client is dropped or the server goes away.
        glommio::spawn_local(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "a PostgreSQL connection ended");
            }
        })
        .detach();
        let now = Instant::now();
        Ok(Rc::new(PgConn {
            client,
            statements: RefCell::new(HashMap::new()),
            in_flight: Cell::new(0),
            leased: Cell::new(false),
            poisoned: Cell::new(false),
            created: now,
            last_used: Cell::new(now),
        }))
    }

    /// Drops closed and expired connections (expired ones once idle).
    fn prune(&self, now: Instant) {
        let life = self.inner.config.max_lifetime;
        let before = self.inner.conns.borrow().len();
        self.inner.conns.borrow_mut().retain(|c| {
            let expired = life.is_some_and(|life| now.duration_since(c.created) >= life);
            let idle = c.in_flight.get() == 0 && !c.leased.get();
            !c.client.is_closed() && !(idle && (expired || c.poisoned.get()))
        });
        if self.inner.conns.borrow().len() < before {
            self.wake();
        }
    }

    fn wake(&self) {
        while let Some(waiter) = self.inner.waiters.borrow_mut().pop_front() {
            if waiter.send(()).is_ok() {
                break;
            }
        }
    }

    /// A connection for one query: the least busy shared one, a new one
    /// while the pool has room and all are busy, or (for a transaction,
    /// `exclusive`) an unused one. Waits up to the acquire timeout.
    async fn acquire(&self, exclusive: bool) -> Result<Rc<PgConn>, PgError> {
        // Set when it first has to wait: the common case reads the clock once.
        let mut deadline = None;
        loop {
            if self.inner.closed.get() {
                return Err(PgError::new(PgErrorKind::Closed, "the pool was closed"));
            }
            let now = Instant::now();
            self.prune(now);
            let chosen = {
                let conns = self.inner.conns.borrow();
                let free = conns
                    .iter()
                    .filter(|c| !c.leased.get() && !c.poisoned.get());
                if exclusive {
                    free.filter(|c| c.in_flight.get() == 0)
                        .min_by_key(|c| c.last_used.get())
                        .cloned()
                } else {
                    free.min_by_key(|c| c.in_flight.get()).cloned()
                }
            };
            let room = self.inner.conns.borrow().len() + self.inner.opening.get()
                < self.inner.config.size.max(1);
            let busy = chosen.as_ref().is_none_or(|c| c.in_flight.get() > 0);
            if room && busy {
                self.inner.opening.set(self.inner.opening.get() + 1);
                let opened = self.open().await;
                self.inner.opening.set(self.inner.opening.get() - 1);
                match opened {
                    Ok(conn) => {
                        self.inner.conns.borrow_mut().push(Rc::clone(&conn));
                        if exclusive {
                            conn.leased.set(true);
                        }
                        return Ok(conn);
                    }
                    // Pipeline on an open one rather than fail the query.
                    Err(_) if chosen.is_some() && !exclusive => {}
                    Err(error) => {
                        self.wake();
                        return Err(error);
                    }
                }
            }
            if let Some(conn) = chosen {
                if now.duration_since(conn.last_used.get()) >= self.inner.config.check_after
                    && conn.in_flight.get() == 0
                    && conn.client.simple_query("").await.is_err()
                {
                    continue;
                }
                if exclusive {
                    conn.leased.set(true);
                }
                conn.last_used.set(now);
                return Ok(conn);
            }
            let deadline = *deadline.get_or_insert(now + self.inner.config.acquire_timeout);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PgError::new(
                    PgErrorKind::PoolTimeout,
                    format_args!(
                        "all {} connections were busy for {:?} (pool size per shard)",
                        self.inner.config.size, self.inner.config.acquire_timeout
                    ),
                ));
            }
            let (tx, rx) = oneshot::channel();
            self.inner.waiters.borrow_mut().push_back(tx);
            futures_lite::future::or(async { rx.await.is_ok() }, async {
                glommio::timer::sleep(left).await;
                false
            })
            .await;
        }
    }

    /// The statement for `sql` on `conn`, prepared once per connection.
    async fn statement(&self, conn: &PgConn, sql: &str) -> Result<Statement, PgError> {
        if let Some(statement) = conn.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = conn
            .client
            .prepare(sql)
            .await
            .map_err(PgError::from_driver)?;
        let mut cache = conn.statements.borrow_mut();
        if cache.len() >= self.inner.config.statement_cache {
            cache.clear();
        }
        cache.insert(sql.into(), statement.clone());
        Ok(statement)
    }

    /// Runs `work` on a shared connection, counted in flight and bounded
    /// by the query timeout.
    async fn on_shared<T, F>(
        &self,
        sql: &str,
        work: impl FnOnce(Rc<PgConn>, Statement) -> F,
    ) -> Result<T, PgError>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let conn = self.acquire(false).await?;
        conn.in_flight.set(conn.in_flight.get() + 1);
        let _done = InFlight(&conn, self);
        let statement = self.statement(&conn, sql).await.inspect_err(|error| {
            if error.kind() == PgErrorKind::Closed {
                conn.poisoned.set(true);
            }
        })?;
        let query = work(Rc::clone(&conn), statement);
        let retire = |error: tokio_postgres::Error| {
            let error = PgError::from_driver(error);
            if error.kind() == PgErrorKind::Closed {
                // Its task may not have ended yet: never hand it out again.
                conn.poisoned.set(true);
            }
            error
        };
        let Some(limit) = self.inner.config.query_timeout else {
            return query.await.map_err(retire);
        };
        let answered =
            futures_lite::future::or(async { Some(query.await.map_err(retire)) }, async {
                glommio::timer::sleep(limit).await;
                None
            })
            .await;
        answered.unwrap_or_else(|| {
            self.abandon(&conn);
            Err(PgError::new(
                PgErrorKind::Timeout,
                format_args!("the query took longer than {limit:?}"),
            ))
        })
    }

    /// A query on `conn` timed out, but the server is still running it:
    /// no new query goes to `conn` (it closes once its others are
    /// answered), and when it was the only one in flight (so surely the
    /// one running) the server is asked to cancel it.
    fn abandon(&self, conn: &Rc<PgConn>) {
        conn.poisoned.set(true);
        if conn.in_flight.get() == 1 {
            let token = conn.client.cancel_token();
            let pg = self.clone();
            glommio::spawn_local(async move {
                if let Ok(socket) = pg.socket().await {
                    let _ = token.cancel_query_raw(socket, tokio_postgres::NoTls).await;
                }
            })
            .detach();
        }
    }

    /// Runs `sql` with `params` and returns every row. The statement is
    /// prepared once per connection; concurrent calls are pipelined.
    ///
    /// # Errors
    /// The pool's, the connection's or the server's error.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        self.on_shared(sql, |conn, statement| async move {
            conn.client.query(&statement, params).await
        })
        .await
    }

    /// Runs `sql` and returns its one row.
    ///
    /// # Errors
    /// As for [`query`](Self::query), and `NotFound`/`Query` when it
    /// returns no row or several.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            0 => Err(PgError::new(
                PgErrorKind::NotFound,
                "the query returned no row",
            )),
            n => Err(PgError::new(
                PgErrorKind::Query,
                format_args!("the query returned {n} rows, not one"),
            )),
        }
    }

    /// Runs `sql` and returns its row, if any.
    ///
    /// # Errors
    /// As for [`query`](Self::query), and `Query` for several rows.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        match self.query_one(sql, params).await {
            Ok(row) => Ok(Some(row)),
            Err(e) if e.kind() == PgErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `sql` and returns the rows it changed.
    ///
    /// # Errors
    /// As for [`query`](Self::query).
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgError> {
        self.on_shared(sql, |conn, statement| async move {
            conn.client.execute(&statement, params).await
        })
        .await
    }

    /// A connection of its own for a transaction: no other query of the
    /// shard runs on it until the lease is dropped.
    ///
    /// # Errors
    /// `PoolTimeout` when none is free within the acquire timeout.
    pub async fn lease(&self) -> Result<PgLease, PgError> {
        let conn = self.acquire(true).await?;
        Ok(PgLease {
            conn,
            pg: self.clone(),
        })
    }
}

/// Marks a query answered when dropped (also when cancelled).
struct InFlight<'a>(&'a PgConn, &'a Pg);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        // Only a transaction waits for a connection with nothing in
        // flight; the time of use was set when it was handed out.
        if self.0.in_flight.get() == 0 {
            self.1.wake();
        }
    }
}

/// A connection taken for a transaction (or a session setting); back to
/// the pool when dropped.
pub struct PgLease {
    conn: Rc<PgConn>,
    pg: Pg,
}

impl std::fmt::Debug for PgLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLease").finish_non_exhaustive()
    }
}

impl PgLease {
    /// The protocol client, for anything the pool does not wrap
    /// (`COPY`, `simple_query`, a `transaction`).
    #[must_use]
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.conn.client
    }

    /// The cached statement for `sql` on this connection.
    ///
    /// # Errors
    /// The server's error preparing it.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, PgError> {
        self.pg.statement(&self.conn, sql).await
    }

    /// Starts a transaction on this connection; it commits only when
    /// [`PgTransaction::commit`] is called. Dropped without it (an error
    /// returned early, a cancelled request), the connection is closed,
    /// which makes the server roll the transaction back.
    ///
    /// # Errors
    /// The server's error to `BEGIN`.
    pub async fn begin(&mut self) -> Result<PgTransaction<'_>, PgError> {
        self.conn
            .client
            .batch_execute("BEGIN")
            .await
            .map_err(PgError::from_driver)?;
        self.conn.poisoned.set(true);
        Ok(PgTransaction { lease: self })
    }
}

/// An open transaction on a leased connection.
pub struct PgTransaction<'l> {
    lease: &'l mut PgLease,
}

impl std::fmt::Debug for PgTransaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTransaction").finish_non_exhaustive()
    }
}

impl PgTransaction<'_> {
    /// Runs `sql` (prepared once per connection) and returns every row.
    ///
    /// # Errors
    /// The server's error.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        let statement = self.lease.prepare(sql).await?;
        self.lease
            .conn
            .client
            .query(&statement, params)
            .await
            .map_err(PgError::from_driver)
    }

    /// Runs `sql` and returns its one row.
    ///
    /// # Errors
    /// The server's error, or `NotFound` when there is no row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        let statement = self.lease.prepare(sql).await?;
        match self.lease.conn.client.query_opt(&statement, params).await {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(PgError::new(
                PgErrorKind::NotFound,
                "the query returned no row",
            )),
            Err(e) => Err(PgError::from_driver(e)),
        }
    }

    /// Runs `sql` and returns the rows it changed.
    ///
    /// # Errors
    /// The server's error.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgError> {
        let statement = self.lease.prepare(sql).await?;
        self.lease
            .conn
            .client
            .execute(&statement, params)
            .await
            .map_err(PgError::from_driver)
    }

    /// Commits.
    ///
    /// # Errors
    /// The server's error (the transaction is then rolled back).
    pub async fn commit(self) -> Result<(), PgError> {
        self.lease
            .conn
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(PgError::from_driver)?;
        self.lease.conn.poisoned.set(false);
        Ok(())
    }

    /// Rolls back, keeping the connection.
    ///
    /// # Errors
    /// The server's error.
    pub async fn rollback(self) -> Result<(), PgError> {
        self.lease
            .conn
            .client
            .batch_execute("ROLLBACK")
            .await
            .map_err(PgError::from_driver)?;
        self.lease.conn.poisoned.set(false);
        Ok(())
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        self.conn.leased.set(false);
        self.conn.last_used.set(Instant::now());
        if self.conn.poisoned.get() {
            self.pg.prune(Instant::now());
        }
        self.pg.wake();
    }
}
