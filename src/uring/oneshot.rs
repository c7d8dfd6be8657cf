//! Single-shot operations as futures: the record keeps what the kernel
//! uses ([`Held`]) and hands it back with the result; a future dropped
//! before its completion cancels the operation and leaves the record to
//! keep those resources until the kernel is done. Sends, connects and
//! timeouts are built on it here; file operations in `file`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::op::{Held, Lifecycle, Oneshot, Slot};
use super::{Connection, Ring};

/// A single-shot operation in flight; resolves to the kernel's result and
/// what the record held.
pub(crate) struct Op {
    ring: Rc<Ring>,
    key: usize,
    finished: bool,
}

impl Ring {
    /// Starts one operation whose entry `build` makes from `held` (after
    /// `held` is in its record, so heap addresses inside it are final).
    ///
    /// # Safety
    /// The entry `build` returns may carry only addresses into the `Held`
    /// it is given (heap memory that stays put while the record moves), or
    /// none.
    pub(super) unsafe fn start(
        self: &Rc<Self>,
        held: Held,
        yields_fd: bool,
        build: impl FnOnce(&mut Held) -> squeue::Entry,
    ) -> Op {
        let mut inner = self.inner.borrow_mut();
        let key = inner.slots.insert(Slot::Oneshot(Oneshot {
            life: Lifecycle::Waiting(None),
            held,
            yields_fd,
        }));
        let Some(Slot::Oneshot(op)) = inner.slots.get_mut(key) else {
            unreachable!("inserted above")
        };
        let entry = build(&mut op.held).user_data(key as u64);
        // SAFETY: the entry points only into `held`, which its record keeps
        // until the operation's completion (an abandoned record too).
        let _ = unsafe { inner.push(entry) };
        Op {
            ring: Rc::clone(self),
            key,
            finished: false,
        }
    }
}

impl Future for Op {
    type Output = (i32, Held);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut inner = this.ring.inner.borrow_mut();
        let Some(Slot::Oneshot(op)) = inner.slots.get_mut(this.key) else {
            this.finished = true;
            return Poll::Ready((-libc::ECANCELED, Held::Nothing));
        };
        match &mut op.life {
            Lifecycle::Done(result) => {
                let result = *result;
                let Slot::Oneshot(op) = inner.slots.remove(this.key) else {
                    unreachable!("matched above")
                };
                this.finished = true;
                Poll::Ready((result, op.held))
            }
            Lifecycle::Waiting(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Lifecycle::Abandoned => unreachable!("abandoned only by its dropped owner"),
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut inner = self.ring.inner.borrow_mut();
        let Some(Slot::Oneshot(op)) = inner.slots.get_mut(self.key) else {
            return;
        };
        if let Lifecycle::Done(result) = op.life {
            // Answered but never read: release it now.
            let yields_fd = op.yields_fd;
            inner.slots.remove(self.key);
            if yields_fd && result >= 0 {
                // SAFETY: a successful open is a new descriptor nobody took.
                drop(unsafe { OwnedFd::from_raw_fd(result) });
            }
            return;
        }
        // Still in the kernel: the record keeps its resources until the
        // completion; cancelling ends an operation that may wait forever (a
        // send to a peer that stopped reading holds the socket open).
        op.life = Lifecycle::Abandoned;
        inner.cancel(self.key);
    }
}

/// A kernel result as an I/O result.
pub(super) fn io_result(result: i32) -> io::Result<usize> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result.unsigned_abs() as usize)
    }
}

/// Sends what `buffer` holds from `offset` on `fd`; returns the bytes
/// sent and the buffer.
pub(super) async fn send(
    ring: &Rc<Ring>,
    fd: RawFd,
    buffer: Vec<u8>,
    offset: usize,
) -> (io::Result<usize>, Vec<u8>) {
    // SAFETY: the entry points into the held buffer's heap memory.
    unsafe {
        with_bytes(ring, buffer, |buffer| {
            let remaining = &buffer[offset..];
            opcode::Send::new(
                types::Fd(fd),
                remaining.as_ptr(),
                u32::try_from(remaining.len()).unwrap_or(u32::MAX),
            )
            .flags(libc::MSG_NOSIGNAL)
            .build()
        })
    }
    .await
}

/// Runs the operation `build` makes on `buffer`, which its record holds
/// until the kernel is done; returns the result and the buffer.
///
/// # Safety
/// The entry `build` returns may carry only addresses into the buffer
/// it is given (its heap memory, which stays put), or none.
pub(super) async unsafe fn with_bytes(
    ring: &Rc<Ring>,
    buffer: Vec<u8>,
    build: impl FnOnce(&mut Vec<u8>) -> squeue::Entry,
) -> (io::Result<usize>, Vec<u8>) {
    // SAFETY: the caller's guarantee: the entry points only into the
    // buffer, which is the record's `Held::Bytes`.
    let op = unsafe {
        ring.start(Held::Bytes(buffer), false, |held| {
            let Held::Bytes(buffer) = held else {
                unreachable!("held above")
            };
            build(buffer)
        })
    };
    let (result, held) = op.await;
    let Held::Bytes(buffer) = held else {
        return (io_result(result), Vec::new());
    };
    (io_result(result), buffer)
}

/// Waits until `fd` can take more bytes (an `IORING_OP_POLL_ADD` for
/// `POLLOUT`; an error or hang-up ends the wait too).
pub(super) async fn writable(ring: &Rc<Ring>, fd: RawFd) -> io::Result<()> {
    // SAFETY: the entry carries a descriptor only, which the caller keeps
    // open until the wait ends.
    let op = unsafe {
        ring.start(Held::Nothing, false, |_| {
            opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build()
        })
    };
    let (result, _) = op.await;
    io_result(result).map(drop)
}

#[allow(dead_code, reason = "tested in uring::tests; timers use glommio's")]
/// Waits `duration` on the ring (an `IORING_OP_TIMEOUT`).
pub(crate) async fn sleep(ring: &Rc<Ring>, duration: Duration) {
    let time = types::Timespec::new()
        .sec(duration.as_secs())
        .nsec(duration.subsec_nanos());
    // SAFETY: the entry points at the held, boxed timespec.
    let op = unsafe {
        ring.start(Held::Time(Box::new(time)), false, |held| {
            let Held::Time(time) = held else {
                unreachable!("held above")
            };
            opcode::Timeout::new(&raw const **time).build()
        })
    };
    op.await;
}

/// Opens a TCP connection to `addr` through the ring, within `timeout`;
/// the connection then receives like an accepted one.
pub(crate) async fn connect(
    ring: &Rc<Ring>,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<Connection> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    connect_socket(ring, socket, addr.into(), timeout).await
}

/// Opens a connection to the Unix socket at `path` through the ring,
/// within `timeout`.
pub(crate) async fn connect_unix(
    ring: &Rc<Ring>,
    path: &std::path::Path,
    timeout: Duration,
) -> io::Result<Connection> {
    let socket =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM.cloexec(), None)?;
    connect_socket(ring, socket, socket2::SockAddr::unix(path)?, timeout).await
}

/// Connects `socket` to `addr` with an `IORING_OP_CONNECT`, within
/// `timeout`.
async fn connect_socket(
    ring: &Rc<Ring>,
    socket: socket2::Socket,
    addr: socket2::SockAddr,
    timeout: Duration,
) -> io::Result<Connection> {
    let fd = socket.as_raw_fd();
    let shown = addr
        .as_socket()
        .map(|a| a.to_string())
        .or_else(|| addr.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_default();
    // SAFETY: the entry points at the held, boxed address.
    let op = unsafe {
        ring.start(Held::Address(Box::new(addr)), false, |held| {
            let Held::Address(address) = held else {
                unreachable!("held above")
            };
            opcode::Connect::new(types::Fd(fd), address.as_ptr().cast(), address.len()).build()
        })
    };
    let connected = futures_lite::future::or(async { Some(op.await.0) }, async {
        sleep(ring, timeout).await;
        None
    })
    .await;
    match connected {
        // The losing connect was dropped, which cancelled it.
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {shown} took longer than {timeout:?}"),
        )),
        Some(result) => {
            io_result(result)?;
            Ok(ring.connection(OwnedFd::from(socket)))
        }
    }
}
