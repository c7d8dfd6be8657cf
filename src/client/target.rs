//! What a URL names: the origin to connect to (pooled by it) and the
//! request target to send.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::error::{ClientError, ErrorKind};

/// Where connections go: a host and port over TCP (with TLS or not), or a
/// Unix socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    Tcp { tls: bool, host: Rc<str>, port: u16 },
    Unix(Rc<std::path::Path>),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp { tls, host, port } => {
                let scheme = if *tls { "https" } else { "http" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A parsed URL: its origin, the `Host` field and the request target.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) origin: Origin,
    pub(crate) host_field: String,
    pub(crate) path_and_query: String,
}

impl Target {
    /// Parses `http://`, `https://` and `http+unix://` URLs; the Unix
    /// socket's path is percent-encoded as the host
    /// (`http+unix://%2Frun%2Fapp.sock/items`).
    pub(crate) fn parse(raw: &str) -> Result<Self, ClientError> {
        let bad = |why: &dyn std::fmt::Display| ClientError::new(ErrorKind::Url, raw, why);
        let url = url::Url::parse(raw).map_err(|e| bad(&e))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                &"credentials in the URL are not sent; set an Authorization header",
            ));
        }
        let mut path_and_query = url.path().to_owned();
        if path_and_query.is_empty() {
            path_and_query.push('/');
        }
        if let Some(query) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        let origin = match url.scheme() {
            "http" | "https" => {
                let tls = url.scheme() == "https";
                let host = match url.host() {
                    Some(url::Host::Domain(name)) => name.to_owned(),
                    Some(url::Host::Ipv4(ip)) => ip.to_string(),
                    Some(url::Host::Ipv6(ip)) => ip.to_string(),
                    None => return Err(bad(&"no host")),
                };
                let port = url.port_or_known_default().ok_or_else(|| bad(&"no port"))?;
                Origin::Tcp {
                    tls,
                    host: host.into(),
                    port,
                }
            }
            "http+unix" => {
                let encoded = url.host_str().ok_or_else(|| bad(&"no socket path"))?;
                let path: String =
                    percent_decode(encoded).ok_or_else(|| bad(&"socket path is not UTF-8"))?;
                if !path.starts_with('/') {
                    return Err(bad(&"the socket path must be absolute (%2F for each /)"));
                }
                Origin::Unix(std::path::Path::new(&path).into())
            }
            other => {
                return Err(bad(&format_args!(
                    "scheme {other} is not http, https or http+unix"
                )));
            }
        };
        let host_field = match &origin {
            Origin::Tcp { tls, host, port } => {
                let default = if *tls { 443 } else { 80 };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                if *port == default {
                    host
                } else {
                    format!("{host}:{port}")
                }
            }
            Origin::Unix(_) => "localhost".to_owned(),
        };
        Ok(Self {
            origin,
            host_field,
            path_and_query,
        })
    }
}

fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A name's addresses and when they expire.
type Resolved = (Rc<[SocketAddr]>, Instant);

/// A shard's resolved names, each kept for the TTL (the system resolver
/// gives no TTL of its own, so the client's `dns_ttl` stands for it).
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    cache: std::cell::RefCell<std::collections::HashMap<(Rc<str>, u16), Resolved>>,
}

impl Resolver {
    /// The addresses of `host:port`: an IP literal at once, else from the
    /// cache or the system resolver on the blocking pool (the shard never
    /// waits on `getaddrinfo`).
    pub(crate) async fn resolve(
        &self,
        host: &Rc<str>,
        port: u16,
        ttl: Duration,
        origin: &str,
    ) -> Result<Rc<[SocketAddr]>, ClientError> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(Rc::from([SocketAddr::new(ip, port)]));
        }
        let now = Instant::now();
        let key = (Rc::clone(host), port);
        if let Some((addrs, expires)) = self.cache.borrow().get(&key)
            && now < *expires
        {
            return Ok(Rc::clone(addrs));
        }
        let name = host.to_string();
        let found = crate::server::blocking::blocking(move || {
            use std::net::ToSocketAddrs;
            (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>)
        })
        .await
        .map_err(|e| ClientError::new(ErrorKind::Dns, origin, e))?;
        if found.is_empty() {
            return Err(ClientError::new(ErrorKind::Dns, origin, "no addresses"));
        }
        let addrs: Rc<[SocketAddr]> = found.into();
        self.cache
            .borrow_mut()
            .insert(key, (Rc::clone(&addrs), now + ttl));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_origin_host_field_and_target() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(t.origin.to_string(), "http://127.0.0.1:8080");
        assert_eq!(t.host_field, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/a/b?x=1");
        let t = Target::parse("https://api.example").unwrap();
        assert_eq!(t.origin.to_string(), "https://api.example:443");
        assert_eq!(t.host_field, "api.example");
        assert_eq!(t.path_and_query, "/");
        let t = Target::parse("http://[::1]:9/x").unwrap();
        assert_eq!(t.host_field, "[::1]:9");
        let t = Target::parse("http+unix://%2Frun%2Fapp.sock/items").unwrap();
        assert_eq!(t.origin.to_string(), "unix:/run/app.sock");
        assert_eq!(t.path_and_query, "/items");
        assert_eq!(t.host_field, "localhost");
    }

    #[test]
    fn unusable_urls_are_refused_saying_why() {
        for (url, why) in [
            ("ftp://x/", "scheme ftp"),
            ("http://user:pw@x/", "credentials"),
            ("not a url", "relative URL"),
            ("http+unix://run.sock/x", "absolute"),
        ] {
            let error = Target::parse(url).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Url);
            assert!(error.to_string().contains(why), "{url}: {error}");
        }
    }
}
