//! The byte stream under a connection: glommio's `TcpStream`, the shard's
//! own ring (`crate::uring`), or TLS over either of them; the codec and the
//! router never see which.

use std::io;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::pool::BufferPool;
use crate::tls::stream::TlsStream;
use crate::uring;

/// A connection's byte stream.
pub(crate) enum Transport {
    /// glommio's stream: `recv`, then a poll armed through its ring.
    Stream(Box<TcpStream>),
    /// The shard's ring: multishot receive into shared buffers, batched sends.
    Ring(uring::Connection),
    /// TLS over one of the above.
    Tls(Box<TlsStream>),
}

impl Transport {
    /// Whether the connection can give its buffers back while idle.
    pub(crate) fn lends_buffers(&self) -> bool {
        matches!(self, Self::Ring(_) | Self::Tls(_))
    }

    /// Sends TLS's `close_notify`; nothing to do on a plain stream.
    pub(crate) async fn shutdown(&mut self) {
        if let Self::Tls(tls) = self {
            let _ = Box::pin(tls.shutdown()).await;
        }
    }

    /// Reads what arrives next into `buf` after `filled` bytes, growing `buf`
    /// up to `max` bytes. Returns the bytes added; 0 means the peer closed.
    pub(crate) async fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &BufferPool,
    ) -> io::Result<usize> {
        // An empty `buf` is taken from `pool`: on the ring path only once
        // bytes have arrived, so a waiting connection holds no buffer.
        match self {
            Self::Stream(stream) => {
                make_room(buf, filled, max, pool)?;
                stream.read(&mut buf[filled..]).await
            }
            Self::Ring(connection) => {
                let Some(received) = connection.recv().await? else {
                    return Ok(0);
                };
                if buf.is_empty() {
                    *buf = pool.take_read();
                }
                let bytes = received.bytes();
                if filled + bytes.len() > buf.len() {
                    grow(buf, filled + bytes.len(), max)?;
                }
                buf[filled..filled + bytes.len()].copy_from_slice(bytes);
                Ok(bytes.len())
            }
            // Boxed: this future is held while a connection idles, and the
            // TLS one (decrypt, maybe send an alert) would make every
            // connection's task as large. (It reads its ciphertext through
            // this same function on the plain transport inside.)
            Self::Tls(tls) => Box::pin(tls.read_into(buf, filled, max, pool)).await,
        }
    }

    /// Writes all of `out`, which is left empty (and keeps its capacity).
    pub(crate) async fn write_all(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Self::Tls(tls) => tls.write_all(out).await,
            plain => plain.plain_write_all(out).await,
        }
    }

    /// [`write_all`](Self::write_all) for the plain streams.
    pub(crate) async fn plain_write_all(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let result = match self {
            Self::Stream(stream) => stream.write_all(out).await,
            Self::Ring(connection) => {
                let (result, buffer) = connection.send_all(std::mem::take(out)).await;
                *out = buffer;
                result
            }
            Self::Tls(_) => Err(io::ErrorKind::Unsupported.into()),
        };
        out.clear();
        result
    }
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
    let size = needed
        .max(buf.len() * 2)
        .clamp(super::pool::READ_BUFFER, max);
    buf.resize(size, 0);
    Ok(())
}
