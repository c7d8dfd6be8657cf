//! Outbound TCP for the shard's clients (PostgreSQL, Redis): names
//! resolved off the shard, then the first address that accepts.

use std::net::SocketAddr;

/// Longest a connect on the ring may take (glommio's own connect has the
/// kernel's).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An outbound TCP connection: on the shard's own ring when it serves on
/// one (no interrupt per socket event), else glommio's stream.
pub(crate) enum NetStream {
    Ring(Box<crate::uring::RingStream>),
    Glommio(glommio::net::TcpStream),
}

impl futures_lite::AsyncRead for NetStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Ring(s) => std::pin::Pin::new(&mut **s).poll_read(cx, buf),
            Self::Glommio(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl futures_lite::AsyncWrite for NetStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Ring(s) => std::pin::Pin::new(&mut **s).poll_write(cx, bytes),
            Self::Glommio(s) => std::pin::Pin::new(s).poll_write(cx, bytes),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Ring(s) => std::pin::Pin::new(&mut **s).poll_flush(cx),
            Self::Glommio(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Ring(s) => std::pin::Pin::new(&mut **s).poll_close(cx),
            Self::Glommio(s) => std::pin::Pin::new(s).poll_close(cx),
        }
    }
}

/// Connects to `host:port`: resolved on the shard's blocking pool (the
/// shard never waits on `getaddrinfo`), each address tried in turn, the
/// socket with `TCP_NODELAY`. The error names the address that failed
/// last and why.
pub(crate) async fn connect(host: &str, port: u16) -> Result<NetStream, String> {
    let target = format!("{host}:{port}");
    let lookup = target.clone();
    let addrs: Vec<SocketAddr> = glommio::executor()
        .spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            lookup.to_socket_addrs().map(Iterator::collect)
        })
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    let mut last = format!("{target}: no address");
    let ring = crate::uring::current();
    for addr in addrs {
        if let Some(ring) = &ring {
            // The ring's connect sets TCP_NODELAY.
            match crate::uring::connect_stream(ring, addr, CONNECT_TIMEOUT).await {
                Ok(stream) => return Ok(NetStream::Ring(Box::new(stream))),
                Err(e) => last = format!("{addr}: {e}"),
            }
            continue;
        }
        match glommio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(NetStream::Glommio(stream));
            }
            Err(e) => last = format!("{addr}: {}", std::io::Error::from(e)),
        }
    }
    Err(last)
}
