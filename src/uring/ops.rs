//! What tasks hold: a listener's [`Acceptor`], a socket's [`Connection`]
//! (receives lent as [`Received`], sends that keep their buffer until the
//! kernel is done with it).
#![allow(unsafe_code, reason = "adopting descriptors and reading lent buffers")]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::{opcode, types};

use super::{IGNORED, RecvEvent, Ring, Slot};

/// A listener's multishot accept.
pub(crate) struct Acceptor {
    pub(super) ring: Rc<Ring>,
    pub(super) key: usize,
    pub(super) listener: RawFd,
}

impl Acceptor {
    /// The next accepted socket.
    pub(crate) async fn next(&mut self) -> io::Result<OwnedFd> {
        let result = futures_lite::future::poll_fn(|cx| {
            let mut inner = self.ring.inner.borrow_mut();
            let rearm = match inner.slots.get_mut(self.key) {
                Some(Slot::Accept(stream)) => {
                    if let Some(result) = stream.queue.pop_front() {
                        return Poll::Ready(result);
                    }
                    stream.waker = Some(cx.waker().clone());
                    !stream.armed && !stream.stopping
                }
                _ => return Poll::Ready(-libc::EBADF),
            };
            if rearm {
                Ring::arm_accept(&mut inner, self.key, self.listener);
            }
            Poll::Pending
        })
        .await;
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        // SAFETY: a successful accept completion is a new descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(result) })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        let mut inner = self.ring.inner.borrow_mut();
        if let Some(Slot::Accept(stream)) = inner.slots.get_mut(self.key) {
            for accepted in stream.queue.drain(..).filter(|&fd| fd >= 0) {
                // SAFETY: a successful accept completion is a descriptor we
                // own; nobody took this one.
                drop(unsafe { OwnedFd::from_raw_fd(accepted) });
            }
            stream.abandoned = true;
            let armed = stream.armed;
            inner.abandon(self.key, armed);
        }
    }
}

/// A connected socket served through the ring.
pub(crate) struct Connection {
    pub(super) ring: Rc<Ring>,
    pub(super) key: usize,
    pub(super) fd: Option<OwnedFd>,
}

/// Received bytes, lent from the provided-buffer ring until dropped.
pub(crate) struct Received {
    ring: Rc<Ring>,
    id: u16,
    len: usize,
}

impl Received {
    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        let inner = self.ring.inner.borrow();
        // SAFETY: the kernel handed us buffer `id` with `len` bytes and it is
        // returned only when `self` drops; the buffer memory outlives the
        // borrow of `inner` because it is freed only with the ring, which
        // `self.ring` keeps alive.
        let bytes: &[u8] = unsafe { inner.buffers.bytes(self.id, self.len) };
        // SAFETY: as above; the slice does not depend on the RefCell guard.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.ring.give_back(self.id);
    }
}

impl Connection {
    /// The next bytes from the peer; `Ok(None)` at end of stream.
    pub(crate) async fn recv(&mut self) -> io::Result<Option<Received>> {
        let event = futures_lite::future::poll_fn(|cx| {
            let mut inner = self.ring.inner.borrow_mut();
            let rearm = match inner.slots.get_mut(self.key) {
                Some(Slot::Recv(stream, _)) => {
                    if let Some(event) = stream.queue.pop_front() {
                        return Poll::Ready(event);
                    }
                    stream.waker = Some(cx.waker().clone());
                    !stream.armed && !inner.starved.contains(&self.key)
                }
                _ => return Poll::Ready(RecvEvent::Error(libc::EBADF)),
            };
            if rearm {
                Ring::arm_recv(&mut inner, self.key);
            }
            Poll::Pending
        })
        .await;
        match event {
            RecvEvent::Data { id, len } => Ok(Some(Received {
                ring: Rc::clone(&self.ring),
                id,
                len: len as usize,
            })),
            RecvEvent::End => Ok(None),
            RecvEvent::Error(errno) => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Sends all of `buffer`; gives the buffer back for reuse.
    pub(crate) async fn send_all(&mut self, buffer: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let fd = self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let mut buffer = buffer;
        let mut sent = 0;
        while sent < buffer.len() {
            let (result, returned) = Send::start(&self.ring, fd, buffer, sent).await;
            buffer = returned;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buffer),
                Ok(n) => sent += n,
                Err(e) => return (Err(e), buffer),
            }
        }
        (Ok(()), buffer)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut inner = self.ring.inner.borrow_mut();
        let mut release = Vec::new();
        if let Some(Slot::Recv(stream, _)) = inner.slots.get_mut(self.key) {
            for event in stream.queue.drain(..) {
                if let RecvEvent::Data { id, .. } = event {
                    release.push(id);
                }
            }
            stream.abandoned = true;
            let armed = stream.armed;
            inner.abandon(self.key, armed);
        }
        inner.starved.retain(|&key| key != self.key);
        for id in release {
            inner.buffers.give_back(id);
        }
        if let Some(fd) = self.fd.take() {
            // The ring closes it after the cancel, in the same batch.
            let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
            let close = opcode::Close::new(types::Fd(fd)).build().user_data(IGNORED);
            Ring::push(&mut inner, &close);
        }
    }
}

/// One send in flight; the slot keeps the buffer until the kernel is done.
struct Send {
    ring: Rc<Ring>,
    key: usize,
    done: bool,
}

impl Send {
    async fn start(
        ring: &Rc<Ring>,
        fd: RawFd,
        buffer: Vec<u8>,
        offset: usize,
    ) -> (io::Result<usize>, Vec<u8>) {
        let key = {
            let mut inner = ring.inner.borrow_mut();
            let remaining = &buffer[offset..];
            let entry = opcode::Send::new(
                types::Fd(fd),
                remaining.as_ptr(),
                u32::try_from(remaining.len()).unwrap_or(u32::MAX),
            )
            .flags(libc::MSG_NOSIGNAL)
            .build();
            let key = inner.slots.insert(Slot::Send {
                result: None,
                waker: None,
                buffer,
                abandoned: false,
            });
            Ring::push(&mut inner, &entry.user_data(key as u64));
            key
        };
        let mut send = Send {
            ring: Rc::clone(ring),
            key,
            done: false,
        };
        futures_lite::future::poll_fn(|cx| send.poll_done(cx)).await
    }

    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<(io::Result<usize>, Vec<u8>)> {
        let mut inner = self.ring.inner.borrow_mut();
        match inner.slots.get_mut(self.key) {
            Some(Slot::Send {
                result: Some(result),
                ..
            }) => {
                let result = *result;
                let Slot::Send { buffer, .. } = inner.slots.remove(self.key) else {
                    unreachable!("checked above")
                };
                self.done = true;
                let outcome = if result < 0 {
                    Err(io::Error::from_raw_os_error(-result))
                } else {
                    Ok(result.unsigned_abs() as usize)
                };
                Poll::Ready((outcome, buffer))
            }
            Some(Slot::Send { waker, .. }) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => {
                self.done = true;
                Poll::Ready((Err(io::ErrorKind::BrokenPipe.into()), Vec::new()))
            }
        }
    }
}

impl Drop for Send {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Still in flight: the slot keeps the buffer until the completion.
        if let Some(Slot::Send { abandoned, .. }) =
            self.ring.inner.borrow_mut().slots.get_mut(self.key)
        {
            *abandoned = true;
        }
    }
}
