//! A connected socket on the ring as a byte stream (`AsyncRead` and
//! `AsyncWrite`), for the outbound clients whose protocol crates read and
//! write through those traits (tokio-postgres through its compat adapter,
//! the Redis link, the HTTP client): receives come from the multishot
//! receive's provided buffers, and writes gather into one buffer that a
//! flush sends as one ring operation.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::socket::{Connection, Received};

/// The send a flush has in flight: its result, and the buffer back.
type Sending = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;

/// Writes gathered past this are sent before more are taken.
const GATHER: usize = 64 * 1024;

/// A socket on the shard's ring, read and written through the futures
/// I/O traits.
pub(crate) struct RingStream {
    conn: Connection,
    /// A receive not read to its end, and how far it was read.
    held: Option<(Received, usize)>,
    /// Bytes written, not yet sent.
    out: Vec<u8>,
    /// The send in flight, and how much of its buffer is sent.
    sending: Option<(Sending, usize)>,
    /// The buffer of the last send, for the next gather.
    spare: Vec<u8>,
}

impl std::fmt::Debug for RingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingStream")
            .field("unsent", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl RingStream {
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            conn,
            held: None,
            out: Vec::new(),
            sending: None,
            spare: Vec::new(),
        }
    }

    /// Whether the peer did something (sent bytes, closed) that nobody
    /// has read: a pooled connection with news is not clean.
    pub(crate) fn has_news(&self) -> bool {
        self.held.is_some() || self.conn.has_news()
    }

    /// Drives the send in flight and starts the next, until everything
    /// written is sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some((sending, _)) = &mut self.sending {
                let (result, buffer) = std::task::ready!(sending.as_mut().poll(cx));
                let Some((_, offset)) = self.sending.take() else {
                    unreachable!("polled above")
                };
                match result {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) if offset + n < buffer.len() => {
                        // A short send: the rest goes next.
                        self.start(buffer, offset + n);
                        continue;
                    }
                    Ok(_) => {
                        let mut buffer = buffer;
                        buffer.clear();
                        self.spare = buffer;
                    }
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            if self.out.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let spare = std::mem::take(&mut self.spare);
            let buffer = std::mem::replace(&mut self.out, spare);
            self.start(buffer, 0);
        }
    }

    fn start(&mut self, buffer: Vec<u8>, offset: usize) {
        let (ring, fd) = self.conn.ring_and_fd();
        let send: Sending =
            Box::pin(async move { super::oneshot::send(&ring, fd, buffer, offset).await });
        self.sending = Some((send, offset));
    }
}

impl futures_lite::AsyncRead for RingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.is_none() {
            match std::task::ready!(this.conn.poll_recv(cx))? {
                Some(received) => this.held = Some((received, 0)),
                None => return Poll::Ready(Ok(0)),
            }
        }
        let Some((received, at)) = &mut this.held else {
            return Poll::Ready(Ok(0));
        };
        let bytes = &received.bytes()[*at..];
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        *at += n;
        if *at == received.bytes().len() {
            this.held = None;
        }
        Poll::Ready(Ok(n))
    }
}

impl futures_lite::AsyncWrite for RingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= GATHER {
            std::task::ready!(this.poll_send(cx))?;
        }
        this.out.extend_from_slice(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send(cx))?;
        let _ = this.conn.socket().shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

/// Opens a connection to the Unix socket at `path` on the shard's `ring`
/// as a stream.
pub(crate) async fn connect_unix_stream(
    ring: &Rc<super::Ring>,
    path: &std::path::Path,
    timeout: std::time::Duration,
) -> io::Result<RingStream> {
    super::oneshot::connect_unix(ring, path, timeout)
        .await
        .map(RingStream::new)
}

/// Opens a TCP connection to `addr` on the shard's `ring` as a stream.
pub(crate) async fn connect_stream(
    ring: &Rc<super::Ring>,
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> io::Result<RingStream> {
    super::oneshot::connect(ring, addr, timeout)
        .await
        .map(RingStream::new)
}
