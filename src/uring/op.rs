//! The ring's record of every operation in flight, and what its
//! completions do to it.
//!
//! An operation's record owns whatever the kernel may touch while it runs
//! (a send's buffer, a connect's address, a timeout's time, a path) for
//! the operation's whole life: when its owner goes away first, the record
//! becomes *abandoned* and keeps those resources until the kernel's last
//! completion for it arrives; only then is it removed. A completion that
//! carries a new descriptor nobody will take is closed.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::task::Waker;

use io_uring::{cqueue, types};
use slab::Slab;

use super::buffers::BufferRing;

/// Where a multishot operation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not in the kernel; the next poll arms it.
    Unarmed,
    /// In the kernel, producing completions.
    Armed,
    /// A receive stopped for want of buffers; re-armed when one comes back.
    Starved,
    /// Cancelled on purpose while armed: ends at its last completion and is
    /// not re-armed.
    Cancelling,
    /// Ended on purpose; its owner sees `ECANCELED` after what was queued.
    Ended,
    /// Its owner is gone while the kernel still holds it: removed at the
    /// last completion.
    Abandoned,
}

/// A queue of results from a multishot operation, read by one task.
pub(super) struct Multishot<T> {
    pub(super) queue: VecDeque<T>,
    pub(super) waker: Option<Waker>,
    pub(super) phase: Phase,
}

impl<T> Default for Multishot<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            waker: None,
            phase: Phase::Unarmed,
        }
    }
}

impl<T> Multishot<T> {
    /// Whether the kernel holds this operation now.
    pub(super) fn in_kernel(&self) -> bool {
        matches!(
            self.phase,
            Phase::Armed | Phase::Cancelling | Phase::Abandoned
        )
    }

    /// Applies the end of one completion: `more` says whether the kernel
    /// keeps the operation. Returns whether the record is finished with.
    fn settle(&mut self, more: bool) -> bool {
        if more {
            return false;
        }
        match self.phase {
            Phase::Abandoned => return true,
            Phase::Cancelling => self.phase = Phase::Ended,
            Phase::Armed => self.phase = Phase::Unarmed,
            Phase::Unarmed | Phase::Starved | Phase::Ended => {}
        }
        false
    }

    fn deliver(&mut self, value: T, wake: &mut Vec<Waker>) {
        self.queue.push_back(value);
        wake.extend(self.waker.take());
    }
}

/// What a multishot receive delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecvEvent {
    Data { id: u16, len: u32 },
    End,
    Error(i32),
}

/// Where a single-shot operation is in its life.
#[derive(Debug)]
pub(super) enum Lifecycle {
    /// In the kernel (or queued for it); the owner waits with this waker.
    Waiting(Option<Waker>),
    /// The owner is gone: the record keeps its resources until the kernel
    /// answers, then is removed.
    Abandoned,
    /// The kernel answered with this result.
    Done(i32),
}

/// What the kernel may read or write while a single-shot operation runs.
/// Heap parts are boxed so their addresses stay put while the record moves.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "connects and timeouts are the outbound client's seam (its issue)"
)]
pub(crate) enum Held {
    /// Nothing (a cancel, a close, a shutdown).
    Nothing,
    /// Bytes sent from, or read into.
    Bytes(Vec<u8>),
    /// A connect's peer address.
    Address(Box<socket2::SockAddr>),
    /// A timeout's duration.
    Time(Box<types::Timespec>),
    /// An open's path and how to resolve it.
    Open(Box<(CString, types::OpenHow)>),
    /// A stat's path and the buffer it fills.
    Stat(Box<(CString, libc::statx)>),
    /// The descriptors a splice moves bytes between (kept open until the
    /// kernel is done with them, whoever else lets go first).
    Descriptors(Box<[std::rc::Rc<std::os::fd::OwnedFd>]>),
}

/// A single-shot operation.
pub(super) struct Oneshot {
    pub(super) life: Lifecycle,
    pub(super) held: Held,
    /// Its success is a new descriptor (an open): closed if abandoned.
    pub(super) yields_fd: bool,
}

/// One operation's record.
pub(super) enum Slot {
    Accept(Multishot<i32>),
    Recv(Multishot<RecvEvent>, RawFd),
    Oneshot(Oneshot),
}

/// `user_data` of operations whose completion is ignored (cancel, close).
pub(super) const IGNORED: u64 = u64::MAX;

/// Applies one completion to its record.
pub(super) fn dispatch(
    slots: &mut Slab<Slot>,
    buffers: &mut BufferRing,
    starved: &mut Vec<usize>,
    wake: &mut Vec<Waker>,
    cqe: &cqueue::Entry,
) {
    let (user_data, result, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
    if user_data == IGNORED {
        return;
    }
    let Ok(key) = usize::try_from(user_data) else {
        return;
    };
    let more = cqueue::more(flags);
    let finished = match slots.get_mut(key) {
        None => false,
        Some(Slot::Accept(stream)) => {
            if stream.phase == Phase::Abandoned {
                close_unclaimed(result);
            } else {
                stream.deliver(result, wake);
            }
            stream.settle(more)
        }
        Some(Slot::Recv(stream, _)) => {
            let event = match (result, cqueue::buffer_select(flags)) {
                (len, Some(id)) if len > 0 => Some(RecvEvent::Data {
                    id,
                    len: len.unsigned_abs(),
                }),
                (0, _) => Some(RecvEvent::End),
                (e, _) if e == -libc::ENOBUFS && stream.phase == Phase::Armed && !more => {
                    stream.phase = Phase::Starved;
                    starved.push(key);
                    None
                }
                (e, _) if e == -libc::ECANCELED && stream.phase != Phase::Armed => None,
                (e, _) => Some(RecvEvent::Error(-e)),
            };
            match event {
                Some(RecvEvent::Data { id, .. }) if stream.phase == Phase::Abandoned => {
                    buffers.give_back(id);
                }
                Some(event) if stream.phase != Phase::Abandoned => stream.deliver(event, wake),
                _ => {}
            }
            stream.settle(more)
        }
        Some(Slot::Oneshot(op)) => match op.life {
            Lifecycle::Abandoned => {
                if op.yields_fd {
                    close_unclaimed(result);
                }
                true
            }
            Lifecycle::Waiting(ref mut waker) => {
                wake.extend(waker.take());
                op.life = Lifecycle::Done(result);
                false
            }
            // A second completion for one single-shot op does not happen.
            Lifecycle::Done(_) => false,
        },
    };
    if finished {
        slots.remove(key);
    }
}

/// Closes a descriptor a completion returned when nobody will take it.
fn close_unclaimed(result: i32) {
    if result >= 0 {
        // SAFETY: a successful accept or open completion is a new
        // descriptor that only this completion names; nobody else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(result) });
    }
}
