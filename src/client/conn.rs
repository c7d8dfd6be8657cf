//! One outbound connection on the shard's ring: TCP, TLS over TCP
//! (rustls), or a Unix socket, with its read and write timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};

use super::error::{ClientError, ErrorKind};
use crate::transport::LazyTimer;

/// The byte stream under one connection.
pub(crate) enum Stream {
    /// Plain TCP on the shard's own ring (multishot receive into its
    /// provided buffers, sends as ring operations): the path of a shard
    /// serving with `io = "uring"`.
    Ring(Box<OnRing>),
    Tcp(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

/// A stream on the ring and the timer its reads and writes share.
pub(crate) struct OnRing {
    stream: crate::uring::RingStream,
    timer: LazyTimer,
}

impl OnRing {
    fn new(stream: crate::uring::RingStream) -> Box<Self> {
        Box::new(Self {
            stream,
            timer: LazyTimer::default(),
        })
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ring(_) => "Ring",
            Self::Tcp(_) => "Tcp",
            Self::Tls(_) => "Tls",
            Self::Unix(_) => "Unix",
        })
    }
}

/// The error of a connect that failed on every address (`last` is the
/// last address tried and its error).
fn connect_error(last: Option<(&SocketAddr, std::io::Error)>, origin: &str) -> ClientError {
    match last {
        Some((addr, error)) if error.kind() == std::io::ErrorKind::TimedOut => ClientError::new(
            ErrorKind::Timeout,
            origin,
            format_args!("connect to {addr}"),
        ),
        Some((addr, error)) => {
            ClientError::new(ErrorKind::Connect, origin, format_args!("{addr}: {error}"))
        }
        None => ClientError::new(ErrorKind::Timeout, origin, "connect"),
    }
}

/// Tries `connect` on each of `addrs` in turn until one answers, all
/// within `timeout`.
async fn first_answer<T, F: std::future::Future<Output = std::io::Result<T>>>(
    addrs: &[SocketAddr],
    timeout: Duration,
    origin: &str,
    connect: impl Fn(SocketAddr, Duration) -> F,
) -> Result<T, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match connect(*addr, left).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some((addr, error)),
        }
    }
    Err(connect_error(last, origin))
}

/// As [`within`], with `timer` (kept from one operation to the next)
/// instead of a timer per operation, and none at all for work that is
/// ready at once.
async fn within_lazy<T>(
    timer: &mut LazyTimer,
    limit: Duration,
    work: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    let deadline = Instant::now() + limit;
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(done) = work.as_mut().poll(cx) {
            return std::task::Poll::Ready(done);
        }
        timer
            .poll_passed(deadline, cx)
            .map(|()| Err(std::io::ErrorKind::TimedOut.into()))
    })
    .await
}

/// Waits for `work` at most `limit`: a timeout is `TimedOut`.
async fn within<T>(
    limit: Duration,
    work: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    futures_lite::future::or(work, async {
        glommio::timer::sleep(limit).await;
        Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
    })
    .await
}

impl Stream {
    /// Connects to the first of `addrs` that answers on the shard's
    /// `ring`, within `timeout` in all.
    pub(crate) async fn ring(
        ring: &std::rc::Rc<crate::uring::Ring>,
        addrs: &[SocketAddr],
        timeout: Duration,
        origin: &str,
    ) -> Result<Self, ClientError> {
        let stream = first_answer(addrs, timeout, origin, |addr, left| {
            crate::uring::connect_stream(ring, addr, left)
        })
        .await?;
        Ok(Self::Ring(OnRing::new(stream)))
    }

    /// Connects to the first of `addrs` that answers, within `timeout` in
    /// all.
    pub(crate) async fn tcp(
        addrs: &[SocketAddr],
        timeout: Duration,
        origin: &str,
    ) -> Result<TcpStream, ClientError> {
        let stream = first_answer(addrs, timeout, origin, |addr, left| async move {
            TcpStream::connect_timeout(addr, left)
                .await
                .map_err(std::io::Error::from)
        })
        .await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// TLS over `tcp`, checking the certificate for `host`.
    pub(crate) async fn tls(
        tcp: TcpStream,
        config: &Arc<rustls::ClientConfig>,
        host: &str,
        timeout: Duration,
        origin: &str,
    ) -> Result<Self, ClientError> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| ClientError::new(ErrorKind::Url, origin, e))?;
        let connector = futures_rustls::TlsConnector::from(Arc::clone(config));
        match within(timeout, connector.connect(name, tcp)).await {
            Ok(stream) => Ok(Self::Tls(Box::new(stream))),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => Err(ClientError::new(
                ErrorKind::Timeout,
                origin,
                "TLS handshake",
            )),
            Err(error) => Err(ClientError::new(ErrorKind::Tls, origin, error)),
        }
    }

    /// Connects to the Unix socket at `path`.
    pub(crate) async fn unix(
        path: &std::path::Path,
        timeout: Duration,
        origin: &str,
    ) -> Result<Self, ClientError> {
        if let Some(ring) = crate::uring::current() {
            // On the shard's ring, like TCP: and an idle one can tell it
            // was closed.
            return match crate::uring::connect_unix_stream(&ring, path, timeout).await {
                Ok(stream) => Ok(Self::Ring(OnRing::new(stream))),
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    Err(ClientError::new(ErrorKind::Timeout, origin, "connect"))
                }
                Err(error) => Err(ClientError::new(ErrorKind::Connect, origin, error)),
            };
        }
        match within(timeout, async {
            UnixStream::connect(path)
                .await
                .map_err(std::io::Error::from)
        })
        .await
        {
            Ok(stream) => Ok(Self::Unix(stream)),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                Err(ClientError::new(ErrorKind::Timeout, origin, "connect"))
            }
            Err(error) => Err(ClientError::new(ErrorKind::Connect, origin, error)),
        }
    }

    /// Gives the TCP socket under this stream `read` and `write`
    /// timeouts of its own (`io_uring` linked timeouts, cheaper than a timer
    /// per operation); a Unix socket has none and uses a timer.
    pub(crate) fn set_timeouts(&self, read: Duration, write: Duration) {
        let tcp = match self {
            Self::Tcp(s) => s,
            Self::Tls(s) => s.get_ref().0,
            // Timed by a timer per operation.
            Self::Ring(_) | Self::Unix(_) => return,
        };
        let _ = tcp.set_read_timeout(Some(read));
        let _ = tcp.set_write_timeout(Some(write));
    }

    /// Reads what arrives into `buf`, waiting at most `limit`; `socket`
    /// is the timeout the socket itself has (a limit no shorter needs no
    /// timer of its own).
    pub(crate) async fn read(
        &mut self,
        buf: &mut [u8],
        limit: Duration,
        socket: Duration,
    ) -> std::io::Result<usize> {
        match self {
            Self::Ring(s) => within_lazy(&mut s.timer, limit, s.stream.read(buf)).await,
            Self::Tcp(s) if limit >= socket => s.read(buf).await,
            Self::Tls(s) if limit >= socket => s.read(buf).await,
            Self::Tcp(s) => within(limit, s.read(buf)).await,
            Self::Tls(s) => within(limit, s.read(buf)).await,
            Self::Unix(s) => within(limit, s.read(buf)).await,
        }
    }

    /// Writes all of `bytes` (and flushes TLS), waiting at most `limit`
    /// (`socket`: as for [`read`](Self::read)).
    pub(crate) async fn write_all(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        socket: Duration,
    ) -> std::io::Result<()> {
        match self {
            Self::Ring(s) => {
                let OnRing { stream, timer } = &mut **s;
                within_lazy(timer, limit, async {
                    stream.write_all(bytes).await?;
                    stream.flush().await
                })
                .await
            }
            Self::Tcp(s) if limit >= socket => s.write_all(bytes).await,
            Self::Tcp(s) => within(limit, s.write_all(bytes)).await,
            Self::Tls(s) => {
                let written = async {
                    s.write_all(bytes).await?;
                    s.flush().await
                };
                if limit >= socket {
                    written.await
                } else {
                    within(limit, written).await
                }
            }
            Self::Unix(s) => within(limit, s.write_all(bytes)).await,
        }
    }

    /// Whether the peer closed (or reset) the connection while it sat in
    /// the pool: a read that would block means it is still open. One
    /// `recv(MSG_PEEK | MSG_DONTWAIT)`, so a stale connection is never
    /// handed to a request (the keep-alive race).
    pub(crate) fn peer_closed(&self) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match self {
            // Its receive is always armed: whatever the peer did is news.
            Self::Ring(s) => return s.stream.has_news(),
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Tls(s) => s.get_ref().0.as_raw_fd(),
            // glommio's Unix stream does not lend its descriptor: a stale
            // one fails its call, which an idempotent request retries.
            Self::Unix(_) => return false,
        };
        peek::peer_closed(fd)
    }
}

mod peek {
    #![allow(unsafe_code, reason = "one non-blocking recv on a socket we own")]

    /// Whether `fd`'s peer has closed or reset (or sent bytes nobody asked
    /// for, which make the connection unusable too): only nothing to read
    /// yet (`EAGAIN`) means a good idle connection.
    pub(super) fn peer_closed(fd: std::os::fd::RawFd) -> bool {
        let mut byte = 0u8;
        // SAFETY: `byte` is a valid one-byte buffer for the call's length,
        // and `fd` is a socket the caller owns for the call's duration.
        let n = unsafe {
            libc::recv(
                fd,
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            n if n >= 0 => true,
            _ => std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}
