//! A shard's connections to one origin: kept alive between calls, capped,
//! with a bounded wait for a free one. Nothing here is shared with another
//! shard, so nothing is locked.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::conn::Stream;
use super::resilience::Breaker;

/// How a shard keeps connections to each origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections to one origin at once, busy or idle (0: no cap).
    pub max_per_origin: usize,
    /// Idle connections kept per origin.
    pub max_idle_per_origin: usize,
    /// How long a connection beyond `max_idle_per_origin` may stay idle
    /// before it is closed. A burst's connections then serve the next
    /// burst instead of being closed and made again; the pool never holds
    /// more than it had busy at once within this window (zero: closed as
    /// soon as they are idle, as nginx's `keepalive` does).
    pub surplus_idle: Duration,
    /// An idle connection older than this is closed, not reused.
    pub idle_timeout: Duration,
    /// A connection is not reused once this old (`None`: no limit).
    pub max_lifetime: Option<Duration>,
    /// A connection is closed after this many requests (0: no limit).
    pub max_requests: u32,
    /// How long a call waits for a connection when all are busy.
    pub wait_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_per_origin: 64,
            // As many as may be open: a burst's connections stay for the
            // next one instead of being closed and made again.
            max_idle_per_origin: 64,
            surplus_idle: SURPLUS_IDLE,
            idle_timeout: Duration::from_mins(1),
            max_lifetime: None,
            max_requests: 0,
            wait_timeout: Duration::from_secs(5),
        }
    }
}

/// One connection with its read buffer and its history.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    pub(crate) start: usize,
    pub(crate) end: usize,
    created: Instant,
    pub(crate) uses: u32,
}

/// The default [`PoolConfig::surplus_idle`].
const SURPLUS_IDLE: Duration = Duration::from_secs(1);

/// An idle connection is checked for a close by its peer once idle this long.
const STALE_CHECK_AFTER: Duration = Duration::from_secs(1);

/// Read buffer of each connection.
const BUFFER: usize = 16 * 1024;

impl Conn {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            created: Instant::now(),
            uses: 0,
        }
    }

    /// Moves unread bytes to the front, so a read can fill the rest.
    pub(crate) fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The connections of one origin on one shard.
pub(crate) struct OriginPool {
    config: PoolConfig,
    /// The origin as errors and logs name it.
    pub(crate) name: Rc<str>,
    /// Least recently used first: calls take from the back, so the front
    /// is the one idle longest.
    idle: RefCell<VecDeque<Idle>>,
    /// Whether a task is waiting to close idle connections as they expire.
    sweeping: Cell<bool>,
    /// Connections open (busy, idle, or being made).
    open: Cell<usize>,
    waiters: RefCell<VecDeque<oneshot::Sender<()>>>,
    pub(crate) breaker: Breaker,
    /// Calls that waited for a free connection, and that gave up waiting.
    pub(crate) waited: Cell<u64>,
}

impl std::fmt::Debug for OriginPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginPool")
            .field("open", &self.open.get())
            .field("idle", &self.idle.borrow().len())
            .finish_non_exhaustive()
    }
}

/// What `checkout` found.
pub(crate) enum Checkout {
    /// A kept-alive connection.
    Reused(Lease),
    /// Room for a new one: connect, then `Opening::opened`.
    Open(Opening),
    /// Every connection is busy and none was freed within the wait.
    TimedOut,
}

impl OriginPool {
    pub(crate) fn new(config: PoolConfig, name: Rc<str>) -> Rc<Self> {
        Rc::new(Self {
            config,
            name,
            idle: RefCell::new(VecDeque::new()),
            sweeping: Cell::new(false),
            open: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
            breaker: Breaker::default(),
            waited: Cell::new(0),
        })
    }

    /// Connections open now, and idle among them.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.open.get(), self.idle.borrow().len())
    }

    fn reusable(&self, conn: &Conn, now: Instant) -> bool {
        (self.config.max_requests == 0 || conn.uses < self.config.max_requests)
            && self
                .config
                .max_lifetime
                .is_none_or(|life| now.duration_since(conn.created) < life)
    }

    /// A connection for one call: the most recently used idle one that is
    /// still good, or room to open one, waiting up to the pool's wait
    /// (and never past `deadline`) when all are busy.
    pub(crate) async fn checkout(self: &Rc<Self>, deadline: Instant) -> Checkout {
        let wait_until = deadline.min(Instant::now() + self.config.wait_timeout);
        let mut waited = false;
        loop {
            let now = Instant::now();
            // What is left after the trim is within its idle timeout: the
            // list is ordered by when each went idle.
            self.trim(now);
            loop {
                let Some(idle) = self.idle.borrow_mut().pop_back() else {
                    break;
                };
                let idled = now.duration_since(idle.since);
                // A peer closes an idle connection after its own idle
                // timeout (seconds); one idle for less than a second is
                // not checked (a syscall per call saved), and a request
                // that still meets a closed one fails without a response,
                // which an idempotent request retries.
                let closed = idled >= STALE_CHECK_AFTER && idle.conn.stream.peer_closed();
                if self.reusable(&idle.conn, now) && !closed {
                    return Checkout::Reused(Lease {
                        conn: Some(idle.conn),
                        pool: Rc::clone(self),
                        keep: false,
                    });
                }
                self.closed();
            }
            if self.config.max_per_origin == 0 || self.open.get() < self.config.max_per_origin {
                self.open.set(self.open.get() + 1);
                return Checkout::Open(Opening {
                    pool: Some(Rc::clone(self)),
                });
            }
            if !waited {
                waited = true;
                self.waited.set(self.waited.get() + 1);
            }
            let left = wait_until.saturating_duration_since(now);
            if left.is_zero() {
                return Checkout::TimedOut;
            }
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push_back(tx);
            let freed = futures_lite::future::or(async { rx.await.is_ok() }, async {
                glommio::timer::sleep(left).await;
                false
            })
            .await;
            if !freed && Instant::now() >= wait_until {
                return Checkout::TimedOut;
            }
        }
    }

    /// Closes every idle connection.
    pub(crate) fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.idle.borrow_mut());
        for conn in idle {
            drop(conn);
            self.closed();
        }
    }

    /// A connection closed: its place goes to a waiter.
    fn closed(&self) {
        crate::observe::outbound::closed();
        self.released();
    }

    /// A place in the pool is free again.
    fn released(&self) {
        self.open.set(self.open.get().saturating_sub(1));
        self.wake_one();
    }

    fn wake_one(&self) {
        while let Some(waiter) = self.waiters.borrow_mut().pop_front() {
            if waiter.send(()).is_ok() {
                break;
            }
        }
    }

    fn give_back(self: &Rc<Self>, mut conn: Conn) {
        let now = Instant::now();
        let room = self.idle.borrow().len() < self.config.max_idle_per_origin
            || !self.config.surplus_idle.is_zero();
        if self.reusable(&conn, now) && room {
            conn.start = 0;
            conn.end = 0;
            self.idle.borrow_mut().push_back(Idle { conn, since: now });
            self.trim(now);
            self.wake_one();
            if !self.sweeping.get() {
                self.sweeping.set(true);
                glommio::spawn_local(Self::sweep(Rc::downgrade(self))).detach();
            }
        } else {
            drop(conn);
            self.closed();
        }
    }

    /// When the longest-idle connection expires: past the surplus window
    /// while there are more idle than kept, else past the idle timeout.
    fn next_expiry(&self) -> Option<Instant> {
        let idle = self.idle.borrow();
        let oldest = idle.front()?.since;
        Some(if idle.len() > self.config.max_idle_per_origin {
            oldest + self.config.surplus_idle.min(self.config.idle_timeout)
        } else {
            oldest + self.config.idle_timeout
        })
    }

    /// Closes the idle connections that have expired, longest idle first.
    fn trim(&self, now: Instant) {
        while self.next_expiry().is_some_and(|at| at <= now) {
            let expired = self.idle.borrow_mut().pop_front();
            drop(expired);
            self.closed();
        }
    }

    /// Closes idle connections as they expire, so none outstays its time
    /// when no call comes to notice. It ends once it finds none idle twice
    /// in a row (or the pool gone), and starts again with the next one
    /// given back: under load, where every connection may be busy at the
    /// moment it looks, it is not made again for each call.
    async fn sweep(pool: Weak<Self>) {
        let mut empty_before = false;
        loop {
            let wait = {
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let tick = if pool.config.surplus_idle.is_zero() {
                    pool.config.idle_timeout
                } else {
                    pool.config.surplus_idle
                }
                .max(Duration::from_millis(10));
                match pool.next_expiry() {
                    None if empty_before => {
                        pool.sweeping.set(false);
                        return;
                    }
                    None => {
                        empty_before = true;
                        tick
                    }
                    // A burst may add surplus connections meanwhile, which
                    // expire sooner than the idle timeout this wait may be
                    // for: look again at least every `surplus_idle`.
                    Some(at) => {
                        empty_before = false;
                        at.saturating_duration_since(Instant::now()).min(tick)
                    }
                }
            };
            glommio::timer::sleep(wait).await;
            let Some(pool) = pool.upgrade() else {
                return;
            };
            pool.trim(Instant::now());
        }
    }
}

/// Room for a new connection; dropped without `opened`, it gives the room
/// back (a failed or abandoned connect).
pub(crate) struct Opening {
    pool: Option<Rc<OriginPool>>,
}

impl Opening {
    pub(crate) fn opened(mut self, stream: Stream) -> Lease {
        let pool = self
            .pool
            .take()
            .unwrap_or_else(|| unreachable!("taken once"));
        crate::observe::outbound::count(|o| &o.connects);
        crate::observe::outbound::count(|o| &o.open);
        Lease {
            conn: Some(Conn::new(stream)),
            pool,
            keep: false,
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        // Never opened: the room is free, no connection closed.
        if let Some(pool) = self.pool.take() {
            pool.released();
        }
    }
}

/// A connection lent to one call. Dropped, it goes back to the pool if the
/// call marked it reusable (`keep`), else it closes.
pub(crate) struct Lease {
    conn: Option<Conn>,
    pool: Rc<OriginPool>,
    pub(crate) keep: bool,
}

impl Lease {
    /// Takes the connection out of the pool for good (a tunnel): its
    /// place is free again.
    pub(crate) fn detach(mut self) -> Conn {
        let conn = self
            .conn
            .take()
            .unwrap_or_else(|| unreachable!("present until dropped"));
        self.pool.closed();
        conn
    }

    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("present until dropped"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep {
                self.pool.give_back(conn);
            } else {
                drop(conn);
                self.pool.closed();
            }
        }
    }
}
