//! What tasks hold: a listener's [`Acceptor`], a socket's [`Connection`]
//! (receives lent as [`Received`], sends that keep their buffer in the
//! ring's record until the kernel is done with it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use io_uring::{opcode, types};

use super::Ring;
use super::op::{IGNORED, Phase, RecvEvent, Slot};

/// A listener's multishot accept.
pub(crate) struct Acceptor {
    ring: Rc<Ring>,
    key: usize,
    listener: RawFd,
}

impl Acceptor {
    pub(super) fn new(ring: Rc<Ring>, key: usize, listener: RawFd) -> Self {
        Self {
            ring,
            key,
            listener,
        }
    }

    /// The next accepted socket.
    pub(crate) async fn next(&mut self) -> io::Result<OwnedFd> {
        let result = futures_lite::future::poll_fn(|cx| {
            let mut inner = self.ring.inner.borrow_mut();
            let rearm = match inner.slots.get_mut(self.key) {
                Some(Slot::Accept(stream)) => {
                    if let Some(result) = stream.queue.pop_front() {
                        return std::task::Poll::Ready(result);
                    }
                    if stream.phase == Phase::Ended {
                        return std::task::Poll::Ready(-libc::ECANCELED);
                    }
                    stream.waker = Some(cx.waker().clone());
                    stream.phase == Phase::Unarmed
                }
                _ => return std::task::Poll::Ready(-libc::EBADF),
            };
            if rearm {
                inner.arm_accept(self.key, self.listener);
            }
            std::task::Poll::Pending
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
        }
        inner.abandon_multishot(self.key);
    }
}

/// Most bytes one `sendfile` is asked for: what the page-cache check
/// covers at once. As much as a send buffer grown by the kernel holds
/// (`tcp_wmem`'s 4 MiB). With 1 MiB a 10 MiB file went out in calls of
/// about 500 KB where nginx (which asks for 2 MiB) made calls of about
/// 1.5 MB, at 0.79x its throughput in that run (bench/README.md).
const SENDFILE_BYTES: usize = 4 << 20;

/// A connected socket served through the ring.
pub(crate) struct Connection {
    ring: Rc<Ring>,
    key: usize,
    fd: Option<OwnedFd>,
    /// The pipe file bytes are spliced through to the socket, made on the
    /// first file sent: (read end, write end).
    pipe: Option<[Rc<OwnedFd>; 2]>,
    /// The socket's file status flags, read on the first `sendfile`.
    flags: Option<i32>,
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
        // returned only when `self` drops.
        let bytes: &[u8] = unsafe { inner.buffers.bytes(self.id, self.len) };
        // SAFETY: the buffer memory is freed only with the ring, which
        // `self.ring` keeps alive, and only `self` may give buffer `id`
        // back, so the slice stays valid for `&self` after the `RefCell`
        // guard is released.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.ring.give_back(self.id);
    }
}

impl Connection {
    pub(super) fn new(ring: Rc<Ring>, key: usize, fd: OwnedFd) -> Self {
        Self {
            ring,
            key,
            fd: Some(fd),
            pipe: None,
            flags: None,
        }
    }

    /// The socket.
    pub(crate) fn socket(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(self.fd.as_ref().expect("open until dropped"))
    }

    /// Whether the receive has delivered something not taken yet (bytes,
    /// the end, an error): a pooled connection with one is not clean.
    pub(crate) fn has_news(&self) -> bool {
        let inner = self.ring.inner.borrow();
        matches!(inner.slots.get(self.key), Some(Slot::Recv(stream, _)) if !stream.queue.is_empty())
    }

    /// Makes the close abortive (`SO_LINGER` 0): the kernel answers RST and
    /// frees the socket's buffers at once instead of trying to deliver what
    /// is queued to a peer that stopped reading.
    pub(crate) fn reset_on_close(&self) {
        let _ = self.socket().set_linger(Some(Duration::ZERO));
    }

    /// The next bytes from the peer; `Ok(None)` at end of stream.
    pub(crate) async fn recv(&mut self) -> io::Result<Option<Received>> {
        futures_lite::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// As [`recv`](Self::recv), polled: `cx` is woken when bytes, the end
    /// or an error arrive.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Option<Received>>> {
        let event = {
            let mut inner = self.ring.inner.borrow_mut();
            let (event, rearm) = match inner.slots.get_mut(self.key) {
                Some(Slot::Recv(stream, _)) => {
                    if let Some(event) = stream.queue.pop_front() {
                        (Some(event), false)
                    } else {
                        stream.waker = Some(cx.waker().clone());
                        (None, stream.phase == Phase::Unarmed)
                    }
                }
                _ => (Some(RecvEvent::Error(libc::EBADF)), false),
            };
            if rearm {
                inner.arm_recv(self.key);
            }
            event
        };
        let Some(event) = event else {
            return std::task::Poll::Pending;
        };
        std::task::Poll::Ready(match event {
            RecvEvent::Data { id, len } => Ok(Some(Received {
                ring: Rc::clone(&self.ring),
                id,
                len: len as usize,
            })),
            RecvEvent::End => Ok(None),
            RecvEvent::Error(errno) => Err(io::Error::from_raw_os_error(errno)),
        })
    }

    /// The ring and the descriptor, for an operation that outlives a
    /// borrow of the connection (a stream's send in flight).
    pub(crate) fn ring_and_fd(&self) -> (Rc<Ring>, RawFd) {
        (
            Rc::clone(&self.ring),
            self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd),
        )
    }

    /// Sends all of `head`, then up to `len` bytes of `file` from `offset`
    /// with no copy through user memory (nginx's `sendfile`), all of it
    /// before this returns. Returns how many of the file's (0: the file
    /// ended first).
    ///
    /// When those pages are all in the page cache, both are system calls
    /// on the shard's own thread: the head with `MSG_MORE` (so it leaves
    /// in the file's first segment, as nginx's `tcp_nopush` does), then
    /// one `sendfile`. Otherwise the head is sent through the ring and the
    /// file spliced into the connection's pipe and from there into the
    /// socket, so a read from the disk never stalls the shard.
    pub(crate) async fn send_file(
        &mut self,
        head: &[u8],
        file: &Rc<OwnedFd>,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let socket = self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let len = len.min(SENDFILE_BYTES);
        let resident = super::file::resident(file.as_raw_fd(), offset, len);
        let mut sent = 0;
        while resident && sent < head.len() {
            match super::file::send_more_now(socket, &head[sent..]) {
                // No room now (or nothing taken): the ring sends the rest.
                Ok(0) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if sent < head.len() {
            self.send_all(head[sent..].to_vec()).await.0?;
        }
        if resident {
            // The ring's splice is always handed to a kernel worker thread
            // (two thread switches per piece); `sendfile` is not.
            let flags = match self.flags {
                Some(flags) => flags,
                None => *self.flags.insert(super::file::status_flags(socket)?),
            };
            loop {
                match super::file::sendfile_now(socket, flags, file.as_raw_fd(), offset, len) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        super::oneshot::writable(&self.ring, socket).await?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    result => return result,
                }
            }
        }
        let pipe = if let Some(pipe) = &self.pipe {
            pipe.clone()
        } else {
            let pipe = super::file::pipe()?;
            self.pipe = Some(pipe.clone());
            pipe
        };
        let result = super::file::splice_to(&self.ring, file, offset, &pipe, socket, len).await;
        if result.is_err() {
            // Bytes may be left in the pipe: never send them later.
            self.pipe = None;
        }
        result
    }

    /// Sends all of `buffer`; gives the buffer back for reuse. Dropped
    /// before it finishes, the send in flight is cancelled.
    pub(crate) async fn send_all(&mut self, buffer: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let fd = self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let mut buffer = buffer;
        let mut sent = 0;
        while sent < buffer.len() {
            let (result, returned) = super::oneshot::send(&self.ring, fd, buffer, sent).await;
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
        }
        inner.abandon_multishot(self.key);
        for id in release {
            inner.buffers.give_back(id);
        }
        if let Some(fd) = self.fd.take() {
            // The ring closes it after the cancels, in the same batch; the
            // socket itself goes once no operation holds it any more.
            let fd = fd.into_raw_fd();
            let close = opcode::Close::new(types::Fd(fd)).build().user_data(IGNORED);
            // SAFETY: a close carries no addresses.
            let _ = unsafe { inner.push(close) };
        }
    }
}
