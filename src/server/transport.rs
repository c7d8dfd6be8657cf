//! The byte stream under a connection. Only plain TCP today; TLS and a
//! faster `io_uring` path slot in here without touching the codec or router.

use std::io;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

/// A connection's byte stream.
#[derive(Debug)]
pub(crate) struct Transport {
    stream: TcpStream,
}

impl Transport {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self { stream }
    }

    /// Reads what has arrived into `buf`; 0 means the peer closed.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf).await
    }

    /// Writes all of `bytes`.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }
}
