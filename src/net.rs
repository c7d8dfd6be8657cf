//! Outbound TCP for the shard's clients (PostgreSQL, Redis): names
//! resolved off the shard, then the first address that accepts.

use std::net::SocketAddr;

/// Connects to `host:port`: resolved on the shard's blocking pool (the
/// shard never waits on `getaddrinfo`), each address tried in turn, the
/// socket with `TCP_NODELAY`. The error names the address that failed
/// last and why.
pub(crate) async fn connect(host: &str, port: u16) -> Result<glommio::net::TcpStream, String> {
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
    for addr in addrs {
        match glommio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("{addr}: {}", std::io::Error::from(e)),
        }
    }
    Err(last)
}
