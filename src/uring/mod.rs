//! The shard's own `io_uring` for the socket data path.
//!
//! glommio stays the executor (tasks, timers, channels); sockets go through
//! this ring instead of glommio's streams. It is set up with `SINGLE_ISSUER`,
//! `DEFER_TASKRUN` and `COOP_TASKRUN`, so completions are processed only when the
//! shard asks, in one batch for every connection: listeners use multishot
//! accept, connections a multishot receive into a shared provided-buffer
//! ring (an idle connection holds no buffer), and sends are queued and
//! submitted together. A driver task submits and reaps; when there is
//! nothing to do it waits, through glommio, on an eventfd the ring signals,
//! so an idle shard sleeps and timers and messages are never delayed.
#![allow(unsafe_code, reason = "io_uring shares memory with the kernel")]

mod buffers;
mod ops;

pub(crate) use ops::{Acceptor, Connection};

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, types};
use slab::Slab;

use buffers::{BufferRing, GROUP};

/// The smallest spin the adaptive idle poll grows back from.
const SPIN_STEP: Duration = Duration::from_micros(2);

/// `user_data` of operations whose completion is ignored (cancel, close).
const IGNORED: u64 = u64::MAX;

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

/// What a multishot receive delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvEvent {
    Data { id: u16, len: u32 },
    End,
    Error(i32),
}

/// A queue of results from a multishot operation, read by one task.
struct Stream<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    armed: bool,
    /// The owner is gone; drop the slot once the kernel is done with it.
    abandoned: bool,
    /// Cancelled on purpose: not re-armed when it ends.
    stopping: bool,
}

impl<T> Default for Stream<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            waker: None,
            armed: false,
            abandoned: false,
            stopping: false,
        }
    }
}

enum Slot {
    Accept(Stream<i32>),
    Recv(Stream<RecvEvent>, RawFd),
    Send {
        result: Option<i32>,
        waker: Option<Waker>,
        buffer: Vec<u8>,
        abandoned: bool,
    },
}

struct Inner {
    // Dropped first: the kernel lets go of the buffers before they are freed.
    uring: IoUring,
    buffers: BufferRing,
    slots: Slab<Slot>,
    /// Receives stopped for want of buffers, re-armed when one comes back.
    starved: Vec<usize>,
    driver: Option<Waker>,
    wake: Vec<Waker>,
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
        let mut uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(config.entries * 4)
            .build(config.entries)?;
        let buffers = BufferRing::new(config.buffers, config.buffer_size)?;
        let (address, count) = buffers.registration();
        // SAFETY: the ring memory lives in `buffers`, which outlives `uring`
        // (field order in `Inner`), and is not freed while registered.
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
        uring.completion().disable_eventfd();
        let ring = Rc::new(Ring {
            inner: RefCell::new(Inner {
                uring,
                buffers,
                slots: Slab::with_capacity(256),
                starved: Vec::new(),
                driver: None,
                wake: Vec::new(),
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

    /// Queues one submission and wakes the driver to submit it.
    fn push(inner: &mut Inner, entry: &io_uring::squeue::Entry) {
        // SAFETY: every entry built here points only at memory that outlives
        // the operation: send buffers are kept in their slot until the
        // completion, receives use the provided-buffer ring.
        let pushed = unsafe { inner.uring.submission().push(entry) };
        if pushed.is_err() {
            // Queue full: submit what is there, then retry once.
            let _ = inner.uring.submit();
            // SAFETY: as above.
            if unsafe { inner.uring.submission().push(entry) }.is_err() {
                tracing::error!("io_uring submission queue stays full; operation dropped");
            }
        }
        if let Some(driver) = inner.driver.take() {
            driver.wake();
        }
    }

    /// Starts a multishot accept on `listener`.
    pub(crate) fn accept(self: &Rc<Self>, listener: RawFd) -> Acceptor {
        let mut inner = self.inner.borrow_mut();
        let key = inner.slots.insert(Slot::Accept(Stream::default()));
        Ring::arm_accept(&mut inner, key, listener);
        Acceptor {
            ring: Rc::clone(self),
            key,
            listener,
        }
    }

    /// Ends every multishot accept: each acceptor then yields the sockets
    /// already accepted, and `ECANCELED` after them.
    pub(crate) fn cancel_accepts(&self) {
        let mut inner = self.inner.borrow_mut();
        let mut cancel = Vec::new();
        let mut wake = Vec::new();
        for (key, slot) in &mut inner.slots {
            if let Slot::Accept(stream) = slot {
                stream.stopping = true;
                if stream.armed {
                    cancel.push(key);
                } else {
                    stream.queue.push_back(-libc::ECANCELED);
                    wake.extend(stream.waker.take());
                }
            }
        }
        for key in cancel {
            let entry = opcode::AsyncCancel::new(key as u64)
                .build()
                .user_data(IGNORED);
            Ring::push(&mut inner, &entry);
        }
        drop(inner);
        wake.into_iter().for_each(Waker::wake);
    }

    fn arm_accept(inner: &mut Inner, key: usize, listener: RawFd) {
        if let Some(Slot::Accept(stream)) = inner.slots.get_mut(key) {
            stream.armed = true;
        }
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(key as u64);
        Self::push(inner, &entry);
    }

    /// Starts a multishot receive on the connected socket `fd`, which the
    /// returned connection owns and closes.
    pub(crate) fn connection(self: &Rc<Self>, fd: OwnedFd) -> Connection {
        let mut inner = self.inner.borrow_mut();
        let raw = fd.as_raw_fd();
        let key = inner.slots.insert(Slot::Recv(Stream::default(), raw));
        Ring::arm_recv(&mut inner, key);
        Connection {
            ring: Rc::clone(self),
            key,
            fd: Some(fd),
        }
    }

    fn arm_recv(inner: &mut Inner, key: usize) {
        let Some(Slot::Recv(stream, fd)) = inner.slots.get_mut(key) else {
            return;
        };
        stream.armed = true;
        let entry = opcode::RecvMulti::new(types::Fd(*fd), GROUP)
            .build()
            .user_data(key as u64);
        Self::push(inner, &entry);
    }

    /// Returns a receive buffer to the kernel and re-arms starved receives.
    fn give_back(&self, id: u16) {
        let mut inner = self.inner.borrow_mut();
        inner.buffers.give_back(id);
        while let Some(key) = inner.starved.pop() {
            Ring::arm_recv(&mut inner, key);
        }
    }

    /// Submits what is queued and dispatches every completion. Returns how
    /// many submissions and completions there were.
    fn turn(&self) -> usize {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
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
        let eventfd = crate::runtime::adopt::eventfd_reader(&self.eventfd);
        let mut waiting: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
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
            let read = waiting.get_or_insert_with(|| {
                let eventfd = eventfd.clone();
                Box::pin(async move {
                    let _ = eventfd.read_at(0, 8).await;
                })
            });
            // The kernel signals the eventfd only while the shard sleeps;
            // work that came before this is seen by the checks below.
            self.inner.borrow_mut().uring.completion().enable_eventfd();
            let signalled = futures_lite::future::poll_fn(|cx| {
                if read.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                let mut inner = self.inner.borrow_mut();
                let pending = !inner.uring.submission().is_empty()
                    || inner.uring.submission().taskrun()
                    || !inner.uring.completion().is_empty();
                if pending {
                    return Poll::Ready(false);
                }
                inner.driver = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            let mut inner = self.inner.borrow_mut();
            inner.driver = None;
            inner.uring.completion().disable_eventfd();
            drop(inner);
            if signalled {
                waiting = None;
            }
            if asleep.elapsed() < self.spin {
                spin = grow(spin);
            }
        }
    }
}

thread_local! {
    /// This thread's rings, for [`release_after_crash`].
    static RINGS: RefCell<Vec<Weak<Ring>>> = const { RefCell::new(Vec::new()) };
}

/// After a shard's executor died in a panic, its tasks (and the rings and
/// connections they hold each other by) are never dropped. This ends what
/// they held: every operation is cancelled, every connection socket the
/// ring still serves is closed (their owners will never run again), then
/// the ring itself, which lets go of the listening sockets' accepts.
pub(crate) fn release_after_crash() {
    for ring in RINGS.take().iter().filter_map(Weak::upgrade) {
        let Ok(mut inner) = ring.inner.try_borrow_mut() else {
            tracing::error!("a crashed shard's ring was in use; its sockets stay open");
            continue;
        };
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(IGNORED);
        let mut ops = vec![cancel];
        for (_, slot) in &inner.slots {
            if let Slot::Recv(stream, fd) = slot
                && !stream.abandoned
            {
                ops.push(
                    opcode::Close::new(types::Fd(*fd))
                        .build()
                        .user_data(IGNORED),
                );
            }
        }
        for op in &ops {
            Ring::push(&mut inner, op);
        }
        let _ = inner.uring.submit_and_wait(ops.len());
        // SAFETY: the ring's descriptor is closed once; its owner (leaked
        // with the crashed tasks) never drops.
        unsafe { libc::close(inner.uring.as_raw_fd()) };
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel everything and give in-flight operations a moment to end
        // before their memory is freed.
        let inner = self.inner.get_mut();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(IGNORED);
        // SAFETY: a cancel entry refers to no memory.
        let _ = unsafe { inner.uring.submission().push(&cancel) };
        let deadline = Instant::now() + Duration::from_millis(100);
        while !inner.slots.is_empty() && Instant::now() < deadline {
            let timeout = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&timeout);
            if inner.uring.submitter().submit_with_args(1, &args).is_err() {
                break;
            }
            inner.reap();
            inner
                .slots
                .retain(|_, slot| !matches!(slot, Slot::Accept(_)));
        }
    }
}

impl Inner {
    /// Ends a multishot operation whose owner is gone: cancels it while the
    /// kernel still holds it (its last completion removes the slot), or
    /// removes the slot at once.
    fn abandon(&mut self, key: usize, armed: bool) {
        if armed {
            let cancel = opcode::AsyncCancel::new(key as u64)
                .build()
                .user_data(IGNORED);
            Ring::push(self, &cancel);
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
            dispatch(
                slots,
                buffers,
                starved,
                wake,
                cqe.user_data(),
                cqe.result(),
                cqe.flags(),
            );
        }
        completed
    }
}

/// Applies one completion to its slot.
fn dispatch(
    slots: &mut Slab<Slot>,
    buffers: &mut BufferRing,
    starved: &mut Vec<usize>,
    wake: &mut Vec<Waker>,
    user_data: u64,
    result: i32,
    flags: u32,
) {
    let Ok(key) = usize::try_from(user_data) else {
        return;
    };
    if user_data == IGNORED {
        return;
    }
    let more = cqueue::more(flags);
    let remove = match slots.get_mut(key) {
        None => false,
        Some(Slot::Accept(stream)) => {
            if !stream.abandoned {
                stream.queue.push_back(result);
                wake.extend(stream.waker.take());
            } else if result >= 0 {
                // Accepted after its acceptor was dropped: nobody will serve it.
                // SAFETY: a successful accept completion is a descriptor we own.
                drop(unsafe { OwnedFd::from_raw_fd(result) });
            }
            stream.armed = more;
            stream.abandoned && !more
        }
        Some(Slot::Recv(stream, _)) => {
            let event = match (result, cqueue::buffer_select(flags)) {
                (len, Some(id)) if len > 0 => Some(RecvEvent::Data {
                    id,
                    len: len.unsigned_abs(),
                }),
                (0, _) => Some(RecvEvent::End),
                (e, _) if e == -libc::ENOBUFS && !stream.abandoned => {
                    starved.push(key);
                    None
                }
                (e, _) if e == -libc::ECANCELED && stream.abandoned => None,
                (e, _) => Some(RecvEvent::Error(-e)),
            };
            stream.armed = more;
            if stream.abandoned {
                if let Some(RecvEvent::Data { id, .. }) = event {
                    buffers.give_back(id);
                }
            } else if let Some(event) = event {
                stream.queue.push_back(event);
                wake.extend(stream.waker.take());
            }
            stream.abandoned && !more
        }
        Some(Slot::Send {
            result: done,
            waker,
            abandoned,
            ..
        }) => {
            *done = Some(result);
            wake.extend(waker.take());
            *abandoned
        }
    };
    if remove {
        slots.remove(key);
    }
}
