//! A rustls `ServerConnection` driven over a plain socket: ciphertext
//! comes from the socket (the ring or a glommio stream), plaintext goes to
//! the connection loop's buffer; responses are encrypted and sent with one
//! write. A peer that closes without `close_notify` ends the stream with an
//! error, never with a clean end, so a cut-off request body is never taken
//! for a complete one. Ciphertext buffers come from the shard's pool and go
//! back once drained, so an idle TLS connection holds none.

use std::io::{self, Read, Write};

use rustls::ServerConnection;

use super::{BufferPool, Plain, make_room};

/// Ciphertext read from the socket at most at once.
const CIPHER_IN: usize = 64 * 1024;

/// A TLS stream over a plain socket.
pub(crate) struct TlsStream {
    inner: Plain,
    conn: ServerConnection,
    /// Ciphertext received and not yet given to rustls: `[start..end]`.
    cipher_in: Vec<u8>,
    start: usize,
    end: usize,
    /// Ciphertext waiting to be sent.
    cipher_out: Vec<u8>,
}

impl TlsStream {
    pub(crate) fn new(inner: Plain, conn: ServerConnection) -> Self {
        Self {
            inner,
            conn,
            cipher_in: Vec::new(),
            start: 0,
            end: 0,
            cipher_out: Vec::new(),
        }
    }

    /// Whether the handshake agreed on HTTP/2 (ALPN `h2`).
    pub(crate) fn chose_h2(&self) -> bool {
        self.conn.alpn_protocol() == Some(b"h2")
    }

    /// The socket beneath.
    pub(crate) fn plain(&self) -> &Plain {
        &self.inner
    }

    /// The socket beneath, to read past TLS (a lingering close).
    pub(crate) fn plain_mut(&mut self) -> &mut Plain {
        &mut self.inner
    }

    /// Completes the handshake (the caller bounds it in time).
    pub(crate) async fn handshake(&mut self, pool: &BufferPool) -> io::Result<()> {
        while self.conn.is_handshaking() {
            self.flush(pool).await?;
            if !self.receive(pool).await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.flush(pool).await
    }

    /// Reads plaintext into `buf` after `filled` bytes (growing it up to
    /// `max`); 0 means the peer closed with `close_notify`.
    pub(crate) async fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        filled: usize,
        max: usize,
        pool: &BufferPool,
    ) -> io::Result<usize> {
        loop {
            make_room(buf, filled, max, pool)?;
            match self.conn.reader().read(&mut buf[filled..]) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: truncated, not ended.
                Err(error) => return Err(error),
            }
            self.flush(pool).await?;
            if !self.receive(pool).await? {
                // Tell rustls the socket ended; the next read says how.
                self.conn.read_tls(&mut io::empty())?;
                self.process(pool).await?;
            }
        }
    }

    /// Encrypts all of `out` and sends it; `out` is left empty.
    pub(crate) async fn write_all(
        &mut self,
        out: &mut Vec<u8>,
        pool: &BufferPool,
    ) -> io::Result<()> {
        let mut written = 0;
        while written < out.len() {
            // rustls takes up to its buffer limit at a time.
            let taken = self.conn.writer().write(&out[written..])?;
            written += taken;
            self.flush(pool).await?;
            if taken == 0 && written < out.len() {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        out.clear();
        Ok(())
    }

    /// Sends `close_notify`.
    pub(crate) async fn shutdown(&mut self, pool: &BufferPool) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush(pool).await
    }

    /// Gives rustls more ciphertext (what is left, else a new read); false
    /// at the end of the socket's stream.
    async fn receive(&mut self, pool: &BufferPool) -> io::Result<bool> {
        if self.start == self.end {
            // An empty buffer is taken from the pool once bytes arrive.
            let read = self
                .inner
                .read_into(&mut self.cipher_in, 0, CIPHER_IN, pool)
                .await?;
            if read == 0 {
                return Ok(false);
            }
            (self.start, self.end) = (0, read);
        }
        let mut pending = &self.cipher_in[self.start..self.end];
        let before = pending.len();
        // Refused while rustls's plaintext buffer is full: the caller reads
        // plaintext out, then comes back for the rest.
        let _ = self.conn.read_tls(&mut pending);
        self.start += before - pending.len();
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            pool.put_read(std::mem::take(&mut self.cipher_in));
        }
        self.process(pool).await?;
        Ok(true)
    }

    /// Processes what was received; a TLS error is sent as an alert.
    async fn process(&mut self, pool: &BufferPool) -> io::Result<()> {
        if let Err(error) = self.conn.process_new_packets() {
            let _ = self.flush(pool).await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(())
    }

    /// Sends whatever rustls has to say, from a pooled buffer that goes
    /// back once sent.
    async fn flush(&mut self, pool: &BufferPool) -> io::Result<()> {
        if !self.conn.wants_write() {
            return Ok(());
        }
        if self.cipher_out.capacity() == 0 {
            self.cipher_out = pool.take_write();
        }
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.cipher_out)?;
        }
        let sent = self.inner.write_all(&mut self.cipher_out).await;
        pool.put_write(std::mem::take(&mut self.cipher_out));
        sent
    }
}
