//! The byte streams under a connection: a plain socket (glommio's
//! `TcpStream` or the shard's own ring, [`Plain`]) and TLS over a plain
//! socket ([`TlsStream`]), as one [`Transport`]; the codec and the router
//! never see which. Buffers come from the shard's [`BufferPool`].

pub(crate) mod pool;
pub(crate) mod tls;

use std::io;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::uring;
pub(crate) use pool::{BufferPool, READ_BUFFER};
pub(crate) use tls::TlsStream;

/// A plain socket.
pub(crate) enum Plain {
    /// glommio's stream: `recv`, then a poll armed through its ring.
    Stream(Box<TcpStream>),
    /// The shard's ring: multishot receive into shared buffers, batched sends.
    Ring(uring::Connection),
}

/// A connection's byte stream.
pub(crate) enum Transport {
    /// Plain HTTP.
    Plain(Plain),
    /// TLS over a plain socket.
    Tls(Box<TlsStream>),
}

impl Transport {
    /// Whether the connection speaks HTTP/2 from its first byte (TLS with
    /// ALPN `h2`).
    pub(crate) fn chose_h2(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.chose_h2())
    }
}

impl Plain {
    /// Reads what arrives next into `buf` after `filled` bytes, growing `buf`
    /// up to `max` bytes. Returns the bytes added; 0 means the peer closed.
    pub(crate) async fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &BufferPool,
    ) -> io::Result<usize> {
        match self {
            Self::Stream(stream) => {
                make_room(buf, filled, max, pool)?;
                stream.read(&mut buf[filled..]).await
            }
            Self::Ring(connection) => {
                let Some(received) = connection.recv().await? else {
                    return Ok(0);
                };
                place(buf, filled, max, pool, received.bytes())
            }
        }
    }

    /// Writes all of `out`, which is left empty (and keeps its capacity).
    pub(crate) async fn write_all(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let result = match self {
            Self::Stream(stream) => stream.write_all(out).await,
            Self::Ring(connection) => {
                let (result, buffer) = connection.send_all(std::mem::take(out)).await;
                *out = buffer;
                result
            }
        };
        out.clear();
        result
    }

    /// Makes the close abortive: RST, and the kernel frees the socket's
    /// buffers at once (for a peer that stopped reading).
    fn reset_on_close(&self) {
        let _ = match self {
            Self::Stream(stream) => socket2::SockRef::from(&uring::borrow_fd(&**stream))
                .set_linger(Some(Duration::ZERO)),
            Self::Ring(connection) => {
                connection.reset_on_close();
                Ok(())
            }
        };
    }

    /// Ends the sending side (a FIN) while the receiving side stays open.
    fn shutdown_write(&self) {
        let _ = match self {
            Self::Stream(stream) => socket2::SockRef::from(&uring::borrow_fd(&**stream))
                .shutdown(std::net::Shutdown::Write),
            Self::Ring(connection) => connection.socket().shutdown(std::net::Shutdown::Write),
        };
    }
}

/// What a connection loop does with its byte stream: the one seam between
/// a protocol's loop and the socket under it. [`Transport`] is the real
/// one; the server's unit tests script one in memory.
pub(crate) trait Io {
    /// Whether a connection may give its buffers back to the pool while it
    /// waits (the read does not need a buffer of its own until bytes
    /// arrive).
    fn returns_idle_buffers(&self) -> bool;

    /// Reads what arrives next into `buf` after `filled` bytes, growing
    /// `buf` up to `max` bytes. Returns the bytes added; 0 means the peer
    /// closed. Past `max`: an `OutOfMemory` error.
    fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &BufferPool,
    ) -> impl Future<Output = io::Result<usize>>;

    /// Writes all of `out`, which is left empty (and keeps its capacity).
    fn write_all(
        &mut self,
        out: &mut Vec<u8>,
        pool: &BufferPool,
    ) -> impl Future<Output = io::Result<()>>;

    /// Reads and drops what the peer sends, reusing `buf`; 0 at the end.
    fn discard(
        &mut self,
        buf: &mut Vec<u8>,
        pool: &BufferPool,
    ) -> impl Future<Output = io::Result<usize>>;

    /// Ends the session cleanly (TLS `close_notify`; nothing on plain).
    fn shutdown(&mut self, pool: &BufferPool) -> impl Future<Output = ()>;

    /// Makes the close abortive: for a peer that stopped taking responses.
    fn reset_on_close(&self);

    /// Ends the sending side: the peer reads what was sent, then a FIN.
    fn shutdown_write(&self);

    /// Whether [`send_file`](Self::send_file) sends with no copy (plain
    /// TCP on the ring); else a file body is read and written.
    fn splices(&self) -> bool {
        false
    }

    /// Sends all of `head` (a response head; may be empty), then up to
    /// `len` bytes of `file` from `offset` straight from the page cache,
    /// in as few segments as they fit; returns how many of the file's
    /// (0: the file ended).
    fn send_file(
        &mut self,
        head: &[u8],
        file: &std::rc::Rc<std::os::fd::OwnedFd>,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = io::Result<usize>> {
        let _ = (head, file, offset, len);
        std::future::ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

impl Io for Transport {
    fn returns_idle_buffers(&self) -> bool {
        !matches!(self, Self::Plain(Plain::Stream(_)))
    }

    fn splices(&self) -> bool {
        matches!(self, Self::Plain(Plain::Ring(_)))
    }

    async fn send_file(
        &mut self,
        head: &[u8],
        file: &std::rc::Rc<std::os::fd::OwnedFd>,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        match self {
            Self::Plain(Plain::Ring(connection)) => {
                connection.send_file(head, file, offset, len).await
            }
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    async fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &BufferPool,
    ) -> io::Result<usize> {
        // The plain arms are spelled out rather than calling
        // `Plain::read_into`: this future is held by every idle connection,
        // and a nested one would add its own state to each.
        match self {
            Self::Plain(Plain::Stream(stream)) => {
                make_room(buf, filled, max, pool)?;
                stream.read(&mut buf[filled..]).await
            }
            Self::Plain(Plain::Ring(connection)) => {
                let Some(received) = connection.recv().await? else {
                    return Ok(0);
                };
                place(buf, filled, max, pool, received.bytes())
            }
            // Boxed: this future is held while a connection idles, and the
            // TLS one (decrypt, maybe send an alert) would make every
            // connection's task as large.
            Self::Tls(tls) => Box::pin(tls.read_into(buf, filled, max, pool)).await,
        }
    }

    async fn write_all(&mut self, out: &mut Vec<u8>, pool: &BufferPool) -> io::Result<()> {
        match self {
            Self::Plain(plain) => plain.write_all(out).await,
            Self::Tls(tls) => tls.write_all(out, pool).await,
        }
    }

    /// Raw bytes, ciphertext under TLS.
    async fn discard(&mut self, buf: &mut Vec<u8>, pool: &BufferPool) -> io::Result<usize> {
        let plain = match self {
            Self::Plain(plain) => plain,
            Self::Tls(tls) => tls.plain_mut(),
        };
        plain
            .read_into(buf, 0, READ_BUFFER.max(buf.len()), pool)
            .await
    }

    async fn shutdown(&mut self, pool: &BufferPool) {
        if let Self::Tls(tls) = self {
            let _ = Box::pin(tls.shutdown(pool)).await;
        }
    }

    /// See [`Plain`]'s.
    fn reset_on_close(&self) {
        self.plain().reset_on_close();
    }

    fn shutdown_write(&self) {
        self.plain().shutdown_write();
    }
}

impl Transport {
    /// The plain socket beneath.
    fn plain(&self) -> &Plain {
        match self {
            Self::Plain(plain) => plain,
            Self::Tls(tls) => tls.plain(),
        }
    }
}

/// Copies received `bytes` into `buf` after `filled` (growing it up to
/// `max`); returns how many. An empty `buf` is taken from `pool` only now
/// that bytes have arrived, so a waiting connection holds no buffer.
pub(crate) fn place(
    buf: &mut Vec<u8>,
    filled: usize,
    max: usize,
    pool: &BufferPool,
    bytes: &[u8],
) -> io::Result<usize> {
    if buf.is_empty() {
        *buf = pool.take_read();
    }
    if filled + bytes.len() > buf.len() {
        grow(buf, filled + bytes.len(), max)?;
    }
    buf[filled..filled + bytes.len()].copy_from_slice(bytes);
    Ok(bytes.len())
}

/// Makes room in `buf` for at least one byte after `filled`: a buffer from
/// `pool` when it has none, else grown (up to `max`) when full.
pub(crate) fn make_room(
    buf: &mut Vec<u8>,
    filled: usize,
    max: usize,
    pool: &BufferPool,
) -> io::Result<()> {
    if buf.is_empty() {
        *buf = pool.take_read();
    }
    if filled == buf.len() {
        grow(buf, filled + 1, max)?;
    }
    Ok(())
}

/// Grows `buf` to hold at least `needed` bytes (doubling), at most `max`.
fn grow(buf: &mut Vec<u8>, needed: usize, max: usize) -> io::Result<()> {
    if needed > max {
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "request larger than the buffer limit",
        ));
    }
    let size = needed.max(buf.len() * 2).clamp(READ_BUFFER, max);
    buf.resize(size, 0);
    Ok(())
}

/// Wakes a task once a deadline passes, for deadlines that move later far
/// more often than they pass (a read timeout restarted by every read, an
/// idle ping): the glommio timer behind it goes into the reactor's table
/// only when none is there, when the one there would fire after the
/// deadline (it moved nearer), or when another task waits now. A polled
/// glommio timer is taken out of the table and put back on every poll,
/// and a new one on every operation is an allocation too; this one is
/// set again only when a timer that fired before the deadline (it moved
/// later) woke the task once for nothing.
#[derive(Default)]
pub(crate) struct LazyTimer {
    /// The timer in the table, the deadline it is for, and whom it wakes.
    registered: Option<(glommio::timer::Timer, std::time::Instant, std::task::Waker)>,
}

impl LazyTimer {
    /// Ready once `deadline` has passed.
    pub(crate) fn poll_passed(
        &mut self,
        deadline: std::time::Instant,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        let now = std::time::Instant::now();
        if now >= deadline {
            self.registered = None;
            return Poll::Ready(());
        }
        let holds = self.registered.as_ref().is_some_and(|(_, at, waker)| {
            *at <= deadline && *at > now && waker.will_wake(cx.waker())
        });
        if !holds {
            let mut timer = glommio::timer::Timer::new(deadline - now);
            if std::pin::Pin::new(&mut timer).poll(cx).is_ready() {
                self.registered = None;
                return Poll::Ready(());
            }
            self.registered = Some((timer, deadline, cx.waker().clone()));
        }
        Poll::Pending
    }
}

/// Wakes the task waiting in `slot`, if one is (a takeover's halves wake
/// each other through such slots).
pub(crate) fn wake(slot: &mut Option<std::task::Waker>) {
    if let Some(waker) = slot.take() {
        waker.wake();
    }
}

/// Whoever takes a connection over once a `101` is sent (a proxy's
/// tunnel): given the connection's byte stream and what the client sent
/// after its request, it runs until the connection should end. A handler
/// hands one to the writer boxed twice (`Box<Box<dyn Takeover>>` as `Any`),
/// so the layers between need not know its type.
pub(crate) trait Takeover {
    fn run<'a>(
        self: Box<Self>,
        io: &'a mut dyn BodyIo,
        pool: &'a BufferPool,
        early: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>>;
}

/// The reads and writes a body that arrives while its handler runs needs,
/// with the transport's type erased (the exchange code is not generic over
/// it). Each call boxes its future: a streamed body reads in pieces of tens
/// of KiB, so that is one allocation per piece, never per request.
pub(crate) trait BodyIo {
    /// As [`Io::read_into`].
    fn read_more<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &'a BufferPool,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<usize>> + 'a>>;

    /// As [`Io::write_all`].
    fn write_now<'a>(
        &'a mut self,
        out: &'a mut Vec<u8>,
        pool: &'a BufferPool,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<()>> + 'a>>;
}

impl<T: Io> BodyIo for T {
    fn read_more<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &'a BufferPool,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<usize>> + 'a>> {
        Box::pin(self.read_into(buf, filled, max, pool))
    }

    fn write_now<'a>(
        &'a mut self,
        out: &'a mut Vec<u8>,
        pool: &'a BufferPool,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<()>> + 'a>> {
        Box::pin(self.write_all(out, pool))
    }
}

#[cfg(test)]
mod tests {
    use super::LazyTimer;
    use std::future::poll_fn;
    use std::time::{Duration, Instant};

    #[test]
    fn a_lazy_timer_wakes_at_the_nearest_deadline_and_never_before_one() {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 * 1024)
            .make()
            .expect("a glommio executor");
        executor.run(async {
            let mut timer = LazyTimer::default();
            // A far deadline registers a timer; a nearer one must not wait
            // for it.
            let far = Instant::now() + Duration::from_mins(1);
            let first = futures_lite::future::poll_once(poll_fn(|cx| timer.poll_passed(far, cx)));
            assert!(first.await.is_none());
            let near = Instant::now() + Duration::from_millis(30);
            poll_fn(|cx| timer.poll_passed(near, cx)).await;
            let woke = Instant::now();
            assert!(woke >= near && woke < far, "woke at the near deadline");
            // A deadline moved later after its timer was set: the early
            // timer's wake is not taken for the deadline.
            let early = Instant::now() + Duration::from_millis(10);
            let set = futures_lite::future::poll_once(poll_fn(|cx| timer.poll_passed(early, cx)));
            assert!(set.await.is_none());
            let later = Instant::now() + Duration::from_millis(80);
            poll_fn(|cx| timer.poll_passed(later, cx)).await;
            assert!(Instant::now() >= later, "not before the moved deadline");
        });
    }
}
