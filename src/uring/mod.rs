//! The shard's own `io_uring` for sockets and files.
//!
//! glommio stays the executor (tasks, timers, channels); sockets go through
//! this ring instead of glommio's streams. It is set up with `SINGLE_ISSUER`
//! and `COOP_TASKRUN` (no interrupt to post a completion: it waits for the
//! shard's next system call), and the shard reaps completions in one batch
//! for every connection: listeners use multishot accept, connections a
//! multishot receive into a shared provided-buffer ring (an idle
//! connection holds no buffer), and sends are queued and submitted
//! together. A driver task submits and reaps; when there is
//! nothing to do it waits, through glommio, on an eventfd the ring signals,
//! so an idle shard sleeps and timers and messages are never delayed.
//!
//! Every operation has a record (`op`) that owns what the kernel may touch
//! until its last completion: an owner that goes away first abandons the
//! record (and cancels the operation), never frees memory under the kernel.
//! Outbound connects, timeouts and file operations (`oneshot`, `file`) use
//! the same records as the server's sockets (`socket`).
#![allow(unsafe_code, reason = "io_uring shares memory with the kernel")]

mod buffers;
mod file;
mod oneshot;
mod op;
mod socket;
mod stream;

#[cfg(test)]
pub(crate) use file::read_at;
pub(crate) use file::{FileStat, blocking as blocking_file, open_beneath, read_append, stat};
#[allow(
    unused_imports,
    reason = "tested in uring::tests; timers use glommio's"
)]
pub(crate) use oneshot::sleep;
pub(crate) use socket::{Acceptor, Connection};
pub(crate) use stream::{RingStream, connect_stream, connect_unix_stream};

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};
use slab::Slab;

use buffers::{BufferRing, GROUP};
use op::{IGNORED, Multishot, Phase, Slot};

/// The smallest spin the adaptive idle poll grows back from.
const SPIN_STEP: Duration = Duration::from_micros(2);

/// How long a dropped ring waits for the kernel to finish its operations
/// before it leaks their memory rather than free it under the kernel.
const DROP_DEADLINE: Duration = Duration::from_millis(100);

/// Sizes of a shard's ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingConfig {
    /// Submission queue entries.
    pub(crate) entries: u32,
    /// Provided receive buffers (a power of two).
    pub(crate) buffers: u16,
    /// Bytes per receive buffer.
    pub(crate) buffer_size: usize,
    /// How long the driver keeps checking for work before it sleeps.
    pub(crate) spin: Duration,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            entries: 1024,
            buffers: 1024,
            buffer_size: 2048,
            spin: Duration::from_micros(50),
        }
    }
}

/// Where a pushed entry went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Queued {
    /// Into the submission queue.
    Now,
    /// The submission queue stayed full: into the ring's overflow list,
    /// which the next turn submits first, in order.
    Overflowed,
}

struct Inner {
    /// Dropped by hand: after every operation ended, or at a crash
    /// (`crashed`), never twice.
    uring: ManuallyDrop<IoUring>,
    /// Freed only once no operation can still write to it; leaked otherwise.
    buffers: ManuallyDrop<BufferRing>,
    slots: Slab<Slot>,
    /// Receives stopped for want of buffers, re-armed when one comes back.
    starved: Vec<usize>,
    /// Entries that found the submission queue full.
    overflow: VecDeque<squeue::Entry>,
    /// How many entries ever overflowed.
    overflowed: u64,
    driver: Option<Waker>,
    wake: Vec<Waker>,
    /// `uring` was dropped by [`release_after_crash`].
    crashed: bool,
}

thread_local! {
    /// The ring of the shard running on this thread, for the outbound
    /// client's connections (weak: the shard owns its ring).
    static CURRENT: RefCell<std::rc::Weak<Ring>> = const { RefCell::new(std::rc::Weak::new()) };
}

/// Makes `ring` the one this thread's outbound connections use.
pub(crate) fn set_current(ring: &Rc<Ring>) {
    CURRENT.with(|current| *current.borrow_mut() = Rc::downgrade(ring));
}

/// The ring of the shard on this thread, if it serves on one.
pub(crate) fn current() -> Option<Rc<Ring>> {
    CURRENT.with(|current| current.borrow().upgrade())
}

/// A shard's ring. Shared by the shard's tasks through `Rc`.
pub(crate) struct Ring {
    inner: RefCell<Inner>,
    eventfd: OwnedFd,
    spin: Duration,
}

impl Ring {
    /// Creates the ring on the current (shard) thread.
    pub(crate) fn new(config: RingConfig) -> io::Result<Rc<Ring>> {
        // Not DEFER_TASKRUN: its completions are posted only when the shard
        // asks, and a shard asleep in glommio (on the eventfd) slept through
        // them until some other event woke it, 16 ms a request to a lone
        // client (tests/http.rs: a_sleeping_shard_answers_each_request_as_it_comes).
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(config.entries.saturating_mul(4))
            .build(config.entries)?;
        let buffers = BufferRing::new(config.buffers, config.buffer_size)?;
        let (address, count) = buffers.registration();
        // SAFETY: the ring memory lives in `buffers`, which is freed only
        // after every operation that could use it ended (see `Drop`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(address, count, GROUP, 0)?;
        }
        // A blocking eventfd: glommio's read of it waits instead of failing.
        // SAFETY: eventfd(2) with valid flags; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        uring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // Signalled only while the driver sleeps (see `drive`).
        let mut uring = uring;
        uring.completion().disable_eventfd();
        let ring = Rc::new(Ring {
            inner: RefCell::new(Inner {
                uring: ManuallyDrop::new(uring),
                buffers: ManuallyDrop::new(buffers),
                slots: Slab::with_capacity(256),
                starved: Vec::new(),
                overflow: VecDeque::new(),
                overflowed: 0,
                driver: None,
                wake: Vec::new(),
                crashed: false,
            }),
            eventfd,
            spin: config.spin,
        });
        RINGS.with_borrow_mut(|rings| {
            rings.retain(|ring| ring.strong_count() > 0);
            rings.push(Rc::downgrade(&ring));
        });
        Ok(ring)
    }

    /// How many operations are in flight (records the ring keeps).
    #[cfg_attr(not(test), allow(dead_code, reason = "read by tests and metrics"))]
    pub(crate) fn in_flight(&self) -> usize {
        self.inner.borrow().slots.len()
    }

    /// Starts a multishot accept on `listener`.
    pub(crate) fn accept(self: &Rc<Self>, listener: std::os::fd::RawFd) -> Acceptor {
        let mut inner = self.inner.borrow_mut();
        let key = inner.slots.insert(Slot::Accept(Multishot::default()));
        inner.arm_accept(key, listener);
        Acceptor::new(Rc::clone(self), key, listener)
    }

    /// Ends every multishot accept: each acceptor then yields the sockets
    /// already accepted, and `ECANCELED` after them.
    pub(crate) fn cancel_accepts(&self) {
        let mut inner = self.inner.borrow_mut();
        let mut cancel = Vec::new();
        let mut wake = Vec::new();
        for (key, slot) in &mut inner.slots {
            if let Slot::Accept(stream) = slot {
                match stream.phase {
                    Phase::Armed => {
                        stream.phase = Phase::Cancelling;
                        cancel.push(key);
                    }
                    Phase::Unarmed => {
                        stream.phase = Phase::Ended;
                        stream.queue.push_back(-libc::ECANCELED);
                        wake.extend(stream.waker.take());
                    }
                    _ => {}
                }
            }
        }
        for key in cancel {
            inner.cancel(key);
        }
        drop(inner);
        wake.into_iter().for_each(Waker::wake);
    }

    /// Starts a multishot receive on the connected socket `fd`, which the
    /// returned connection owns and closes.
    pub(crate) fn connection(self: &Rc<Self>, fd: OwnedFd) -> Connection {
        let mut inner = self.inner.borrow_mut();
        let raw = fd.as_raw_fd();
        let key = inner.slots.insert(Slot::Recv(Multishot::default(), raw));
        inner.arm_recv(key);
        Connection::new(Rc::clone(self), key, fd)
    }

    /// Returns a receive buffer to the kernel and re-arms starved receives.
    fn give_back(&self, id: u16) {
        let mut inner = self.inner.borrow_mut();
        inner.buffers.give_back(id);
        while let Some(key) = inner.starved.pop() {
            inner.arm_recv(key);
        }
    }

    /// Submits what is queued and dispatches every completion. Returns how
    /// many submissions and completions there were.
    fn turn(&self) -> usize {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        inner.flush_overflow();
        let queued = inner.uring.submission().len();
        if queued > 0 || inner.uring.submission().taskrun() {
            match inner.uring.submit() {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) => {}
                Err(e) => tracing::error!(error = %e, "io_uring_enter failed"),
            }
        }
        let completed = inner.reap();
        // Wake outside the borrow; the vector is kept to avoid reallocating.
        let mut woken = std::mem::take(&mut inner.wake);
        drop(guard);
        for waker in woken.drain(..) {
            waker.wake();
        }
        self.inner.borrow_mut().wake = woken;
        queued + completed
    }

    /// Runs the ring until the shard stops: submit, reap, wake tasks; sleep
    /// on the eventfd (through glommio) when there is nothing to do.
    pub(crate) async fn drive(self: Rc<Self>) {
        // The eventfd is read by a task of its own, which glommio polls
        // only when its read completes. Polling a pending glommio read
        // from the driver each time a queued entry woke it would add a
        // waker to the read's list on every poll (glommio keeps them all
        // until the read completes), and a long enough run of such wakes
        // overflows the task's reference count.
        let signal = Rc::new(Signal::default());
        let _watcher = glommio::spawn_local({
            let signal = Rc::clone(&signal);
            let eventfd = eventfd_reader(&self.eventfd);
            async move {
                while eventfd.read_at(0, 8).await.is_ok() {
                    signal.fired.set(true);
                    if let Some(driver) = signal.driver.take() {
                        driver.wake();
                    }
                }
            }
        });
        let mut idle_since: Option<Instant> = None;
        // The spin adapts between 0 and `self.spin`: it doubles when work
        // came while spinning (or soon after going to sleep, when a spin
        // would have caught it), halves when a spin found nothing. Under a
        // steady load the shard keeps polling; when the gaps are longer
        // than the spin (a client-bound load, a quiet server) it stops
        // burning the CPU in them.
        let mut spin = self.spin;
        let grow = |spin: Duration| (spin * 2).max(SPIN_STEP).min(self.spin);
        loop {
            if self.turn() > 0 {
                if idle_since.take().is_some() {
                    spin = grow(spin);
                }
                futures_lite::future::yield_now().await;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < spin {
                futures_lite::future::yield_now().await;
                continue;
            }
            idle_since = None;
            spin /= 2;
            let asleep = Instant::now();
            // Sleep until the kernel signals the eventfd or a task queues work.
            // The kernel signals the eventfd only while the shard sleeps;
            // work that came before this is seen by the checks below.
            self.inner.borrow_mut().uring.completion().enable_eventfd();
            futures_lite::future::poll_fn(|cx| {
                if signal.fired.replace(false) {
                    return Poll::Ready(());
                }
                let mut inner = self.inner.borrow_mut();
                let pending = !inner.overflow.is_empty()
                    || !inner.uring.submission().is_empty()
                    || inner.uring.submission().taskrun()
                    || !inner.uring.completion().is_empty();
                if pending {
                    return Poll::Ready(());
                }
                inner.driver = Some(cx.waker().clone());
                signal.driver.replace(Some(cx.waker().clone()));
                Poll::Pending
            })
            .await;
            let mut inner = self.inner.borrow_mut();
            inner.driver = None;
            inner.uring.completion().disable_eventfd();
            drop(inner);
            signal.driver.take();
            if asleep.elapsed() < self.spin {
                spin = grow(spin);
            }
        }
    }
}

/// Whether this process may use `io_uring` at all: sets up a small ring,
/// submits a no-op and waits for it, and registers a probe, so each of the
/// three system calls (`io_uring_setup`, `io_uring_enter`,
/// `io_uring_register`) is tried once. Run before any glommio executor is
/// built (glommio panics when the kernel refuses its rings).
///
/// # Errors
/// The first call refused, with what the kernel said.
pub(crate) fn probe() -> Result<(), (&'static str, io::Error)> {
    let mut ring = IoUring::new(2).map_err(|e| ("io_uring_setup", e))?;
    let nop = opcode::Nop::new().build().user_data(0);
    // SAFETY: a no-op carries no addresses.
    unsafe { ring.submission().push(&nop) }.map_err(|_| {
        (
            "io_uring_enter",
            io::Error::other("a fresh ring's submission queue is full"),
        )
    })?;
    ring.submit_and_wait(1).map_err(|e| ("io_uring_enter", e))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| ("io_uring_register", e))?;
    Ok(())
}

/// The descriptor of `owner` (a glommio socket, which offers only
/// `AsRawFd`) as a borrowed descriptor, for socket options.
pub(crate) fn borrow_fd<T: AsRawFd>(owner: &T) -> std::os::fd::BorrowedFd<'_> {
    // SAFETY: `owner` keeps its descriptor open at least as long as it is
    // borrowed, and the result cannot outlive that borrow.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(owner.as_raw_fd()) }
}

/// The eventfd's news for the sleeping driver.
#[derive(Default)]
struct Signal {
    /// The eventfd was read since the driver last looked.
    fired: Cell<bool>,
    /// The driver, while it sleeps.
    driver: RefCell<Option<Waker>>,
}

/// A glommio file reading a duplicate of `eventfd`, so that the driver can
/// sleep on the eventfd through its executor.
fn eventfd_reader(eventfd: &OwnedFd) -> Rc<glommio::io::BufferedFile> {
    let duplicate = eventfd.try_clone().expect("duplicating an eventfd");
    let fd = duplicate.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of an open eventfd, so glommio
    // becomes its only owner and closes it once.
    Rc::new(unsafe { glommio::io::BufferedFile::from_raw_fd(fd) })
}

thread_local! {
    /// This thread's rings, for [`release_after_crash`].
    static RINGS: RefCell<Vec<Weak<Ring>>> = const { RefCell::new(Vec::new()) };
}

/// After a shard's executor died in a panic, its tasks (and the rings and
/// connections they hold each other by) are never dropped. This ends what
/// they held: every operation is cancelled, every connection socket the
/// ring still serves is closed (their owners will never run again), then
/// the ring itself, which lets go of the listening sockets' accepts. The
/// buffers stay allocated: the leaked ring never frees them.
pub(crate) fn release_after_crash() {
    for ring in RINGS.take().iter().filter_map(Weak::upgrade) {
        let Ok(mut inner) = ring.inner.try_borrow_mut() else {
            tracing::error!("a crashed shard's ring was in use; its sockets stay open");
            continue;
        };
        if inner.crashed {
            continue;
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(IGNORED);
        let mut ops = vec![cancel];
        for (_, slot) in &inner.slots {
            if let Slot::Recv(stream, fd) = slot
                && stream.phase != Phase::Abandoned
            {
                ops.push(
                    opcode::Close::new(types::Fd(*fd))
                        .build()
                        .user_data(IGNORED),
                );
            }
        }
        let count = ops.len();
        for op in ops {
            // SAFETY: cancels and closes carry no addresses.
            let _ = unsafe { inner.push(op) };
        }
        inner.flush_overflow();
        let _ = inner.uring.submit_and_wait(count);
        inner.crashed = true;
        // SAFETY: dropped once: `crashed` keeps every later path (this loop,
        // `Drop`) from touching it again, and the leaked tasks never run.
        unsafe { ManuallyDrop::drop(&mut inner.uring) };
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        if inner.crashed {
            return;
        }
        // Every owner is gone (each holds the ring), so each record left is
        // abandoned and waits for its last completion: cancel them all and
        // reap until they are done.
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(IGNORED);
        // SAFETY: a cancel carries no addresses.
        let _ = unsafe { inner.push(cancel) };
        let deadline = Instant::now() + DROP_DEADLINE;
        while !inner.slots.is_empty() && Instant::now() < deadline {
            inner.flush_overflow();
            let timeout = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&timeout);
            if inner.uring.submitter().submit_with_args(1, &args).is_err() {
                break;
            }
            inner.reap();
            // A multishot accept needs no memory of ours; closing the ring
            // ends it.
            inner
                .slots
                .retain(|_, slot| !matches!(slot, Slot::Accept(_)));
        }
        let leftover = inner.slots.len();
        if leftover == 0 {
            // SAFETY: no operation remains that could use the buffers.
            unsafe { ManuallyDrop::drop(&mut inner.buffers) };
        } else {
            // The kernel may still write to the buffers and to what the
            // records hold: leak them rather than free memory under it.
            tracing::warn!(
                operations = leftover,
                "io_uring operations outlived their cancel; their memory is leaked"
            );
            std::mem::forget(std::mem::take(&mut inner.slots));
        }
        // SAFETY: dropped once, here (not crashed, checked above).
        unsafe { ManuallyDrop::drop(&mut inner.uring) };
    }
}

impl Inner {
    /// Queues `entry` for the kernel. When the submission queue stays full
    /// after a submit, the entry waits in the overflow list (submitted
    /// first, in order, by the next turn): nothing is dropped.
    ///
    /// # Safety
    /// Every address `entry` carries must stay valid until the operation's
    /// last completion: it must point into what the operation's record
    /// holds (`op::Held`, the buffer ring) or at nothing.
    unsafe fn push(&mut self, entry: squeue::Entry) -> Queued {
        if let Some(driver) = self.driver.take() {
            driver.wake();
        }
        if self.overflow.is_empty() {
            // SAFETY: the caller's guarantee.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return Queued::Now;
            }
            // Full: submit what is there to make room, then try once more.
            let _ = self.uring.submit();
            // SAFETY: the caller's guarantee.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return Queued::Now;
            }
        }
        self.overflowed += 1;
        if self.overflowed.is_power_of_two() {
            tracing::warn!(
                overflowed = self.overflowed,
                "the io_uring submission queue was full; entries wait for the next submit"
            );
        }
        self.overflow.push_back(entry);
        Queued::Overflowed
    }

    /// Moves what waits in the overflow list into the submission queue.
    fn flush_overflow(&mut self) {
        while let Some(entry) = self.overflow.front() {
            // SAFETY: each entry met `push`'s contract when it was pushed,
            // and its record still holds what it points at (a record lives
            // until its operation's last completion, which has not come).
            if unsafe { self.uring.submission().push(entry) }.is_err() {
                let _ = self.uring.submit();
                // SAFETY: as above.
                if unsafe { self.uring.submission().push(entry) }.is_err() {
                    return;
                }
            }
            self.overflow.pop_front();
        }
    }

    /// Cancels the operation of record `key` (its completions still come).
    fn cancel(&mut self, key: usize) {
        let entry = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(IGNORED);
        // SAFETY: a cancel carries no addresses.
        let _ = unsafe { self.push(entry) };
    }

    fn arm_accept(&mut self, key: usize, listener: std::os::fd::RawFd) {
        if let Some(Slot::Accept(stream)) = self.slots.get_mut(key) {
            stream.phase = Phase::Armed;
        }
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(key as u64);
        // SAFETY: an accept without a peer address buffer carries no addresses.
        let _ = unsafe { self.push(entry) };
    }

    fn arm_recv(&mut self, key: usize) {
        let Some(Slot::Recv(stream, fd)) = self.slots.get_mut(key) else {
            return;
        };
        stream.phase = Phase::Armed;
        let entry = opcode::RecvMulti::new(types::Fd(*fd), GROUP)
            .build()
            .user_data(key as u64);
        // SAFETY: the receive writes only into the provided-buffer ring,
        // which outlives every operation (see `Ring`'s drop).
        let _ = unsafe { self.push(entry) };
    }

    /// Ends a multishot operation whose owner is gone: cancels it while the
    /// kernel still holds it (its last completion removes the record), or
    /// removes the record at once.
    fn abandon_multishot(&mut self, key: usize) {
        let in_kernel = match self.slots.get_mut(key) {
            Some(Slot::Accept(stream)) => {
                let in_kernel = stream.in_kernel();
                stream.phase = Phase::Abandoned;
                in_kernel
            }
            Some(Slot::Recv(stream, _)) => {
                let in_kernel = stream.in_kernel();
                stream.phase = Phase::Abandoned;
                in_kernel
            }
            _ => return,
        };
        self.starved.retain(|&starved| starved != key);
        if in_kernel {
            self.cancel(key);
        } else {
            self.slots.remove(key);
        }
    }

    /// Applies every completion in the queue; returns how many there were.
    fn reap(&mut self) -> usize {
        let mut completed = 0;
        let Inner {
            uring,
            buffers,
            slots,
            starved,
            wake,
            ..
        } = self;
        for cqe in uring.completion() {
            completed += 1;
            op::dispatch(slots, buffers, starved, wake, &cqe);
        }
        completed
    }
}

#[cfg(test)]
mod tests;
