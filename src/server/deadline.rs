//! Connection timeouts with one coarse sweep per shard.
//!
//! A connection arms its [`Watch`] when it starts waiting (for a request
//! head, a body, its handler, or its peer to take a response); nothing is
//! scheduled per read. Once a second the shard's sweeper compares every
//! armed deadline with the clock and wakes the connections that are late,
//! so a timeout fires within about a second of its setting. Deadlines are
//! computed from the clock the sweeper last read, so arming costs no clock
//! read on the request path.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

/// How often the sweeper looks at the deadlines.
pub(crate) const SWEEP: Duration = Duration::from_secs(1);

/// A connection's two clocks: one for waiting on its peer (idle, head,
/// body), one for its own work (handler, send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Waiting for the peer to send.
    Reading = 0,
    /// Handling a request and sending the response.
    Working = 1,
}

/// A shard's registry of connection deadlines (stored inline: registering
/// a connection allocates nothing once the slab has grown). Deadlines are
/// whole seconds since the registry was made, which is all a once-a-second
/// sweep can tell apart, and keeps each idle connection's entry small.
#[derive(Debug)]
pub(crate) struct Deadlines {
    epoch: Instant,
    /// Seconds since `epoch` at the last sweep.
    clock: Cell<u32>,
    watches: RefCell<Slab<Watch>>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            clock: Cell::new(0),
            watches: RefCell::new(Slab::new()),
        }
    }
}

/// One connection's deadlines, in seconds since the epoch; 0 is unarmed.
#[derive(Debug, Default)]
struct Watch {
    deadline: [u32; 2],
    fired: [bool; 2],
    /// Waiting for a new request: a draining shard closes it at once.
    idle: bool,
    waker: Option<Waker>,
}

/// A registration that leaves the registry when dropped.
#[derive(Debug)]
pub(crate) struct Registered<'d> {
    deadlines: &'d Deadlines,
    key: usize,
}

/// The armed deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expired;

impl Deadlines {
    /// Registers a new connection.
    pub(crate) fn register(&self) -> Registered<'_> {
        let key = self.watches.borrow_mut().insert(Watch::default());
        Registered {
            deadlines: self,
            key,
        }
    }

    /// Wakes every connection whose deadline has passed; returns how many.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let now = self.seconds(now);
        self.clock.set(now);
        let mut fired = 0;
        let mut wake = Vec::new();
        for (_, watch) in self.watches.borrow_mut().iter_mut() {
            for timer in 0..2 {
                let deadline = watch.deadline[timer];
                if deadline != 0 && deadline <= now && !watch.fired[timer] {
                    watch.fired[timer] = true;
                    fired += 1;
                    wake.extend(watch.waker.take());
                }
            }
        }
        wake.into_iter().for_each(Waker::wake);
        fired
    }

    /// Ends the wait of every connection idle between requests (the shard
    /// is stopping); busy ones finish their request first.
    pub(crate) fn drain(&self) {
        let mut wake = Vec::new();
        for (_, watch) in self.watches.borrow_mut().iter_mut() {
            if watch.idle {
                watch.fired[Timer::Reading as usize] = true;
                wake.extend(watch.waker.take());
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    fn seconds(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    /// Runs the sweep forever (spawned once per shard).
    pub(crate) async fn run(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(SWEEP).await;
            self.sweep(Instant::now());
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.deadlines.watches.borrow_mut().try_remove(self.key);
    }
}

impl Registered<'_> {
    /// Arms `timer` to expire `limit` from now (None: never).
    pub(crate) fn arm(&self, timer: Timer, limit: Option<Duration>) {
        self.arm_at(timer, self.after(limit));
    }

    /// The coarse clock, in the whole seconds deadlines are kept in (the
    /// sweeper's last reading; free to read).
    pub(crate) fn now(&self) -> u32 {
        self.deadlines.clock.get()
    }

    /// `limit` from now on the coarse clock (`None`: never).
    pub(crate) fn after(&self, limit: Option<Duration>) -> Option<u32> {
        let seconds = u32::try_from(limit?.as_secs()).unwrap_or(u32::MAX);
        Some(self.now().saturating_add(seconds))
    }

    /// Arms `timer` to expire at `at` on the coarse clock ([`Self::now`]),
    /// at least a second from now, so an armed deadline is never 0;
    /// `None` disarms it.
    pub(crate) fn arm_at(&self, timer: Timer, at: Option<u32>) {
        let deadline = at.map_or(0, |at| at.max(self.now().saturating_add(1)));
        if let Some(watch) = self.deadlines.watches.borrow_mut().get_mut(self.key) {
            watch.deadline[timer as usize] = deadline;
            watch.fired[timer as usize] = false;
        }
    }

    /// Marks the connection idle between requests (or not).
    pub(crate) fn set_idle(&self, idle: bool) {
        if let Some(watch) = self.deadlines.watches.borrow_mut().get_mut(self.key) {
            watch.idle = idle;
        }
    }

    /// Disarms `timer`.
    pub(crate) fn disarm(&self, timer: Timer) {
        self.arm(timer, None);
    }

    /// Awaits `future` unless `timer` expires first.
    pub(crate) async fn guard<F: Future>(
        &self,
        timer: Timer,
        future: F,
    ) -> Result<F::Output, Expired> {
        let mut future = std::pin::pin!(future);
        futures_lite::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            let mut watches = self.deadlines.watches.borrow_mut();
            let Some(watch) = watches.get_mut(self.key) else {
                return Poll::Ready(Err(Expired));
            };
            if watch.fired[timer as usize] {
                return Poll::Ready(Err(Expired));
            }
            if !watch
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                watch.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures_lite::future::{block_on, pending, poll_once};

    use super::{Deadlines, Expired, Timer};

    #[test]
    fn fires_only_after_the_deadline() {
        let deadlines = Deadlines::default();
        let start = Instant::now();
        deadlines.sweep(start);
        let watch = deadlines.register();
        watch.arm(Timer::Reading, Some(Duration::from_secs(10)));
        let mut guarded = Box::pin(watch.guard(Timer::Reading, pending::<()>()));
        assert!(block_on(poll_once(&mut guarded)).is_none());
        assert_eq!(deadlines.sweep(start + Duration::from_secs(9)), 0);
        assert_eq!(deadlines.sweep(start + Duration::from_secs(10)), 1);
        assert_eq!(block_on(poll_once(&mut guarded)), Some(Err(Expired)));
        // Fired once only.
        assert_eq!(deadlines.sweep(start + Duration::from_secs(11)), 0);
    }

    #[test]
    fn timers_are_independent_and_disarm_stops() {
        let deadlines = Deadlines::default();
        let start = Instant::now();
        deadlines.sweep(start);
        let watch = deadlines.register();
        watch.arm(Timer::Reading, Some(Duration::from_secs(5)));
        watch.arm(Timer::Working, Some(Duration::from_secs(1)));
        watch.disarm(Timer::Working);
        assert_eq!(deadlines.sweep(start + Duration::from_secs(4)), 0);
        assert_eq!(deadlines.sweep(start + Duration::from_secs(5)), 1);
        assert_eq!(block_on(watch.guard(Timer::Working, async { 3 })), Ok(3));
        assert_eq!(
            block_on(watch.guard(Timer::Reading, pending::<()>())),
            Err(Expired)
        );
    }

    #[test]
    fn dropped_connections_leave_the_registry() {
        let deadlines = Deadlines::default();
        let watch = deadlines.register();
        drop(watch);
        assert!(deadlines.watches.borrow().is_empty());
    }
}
