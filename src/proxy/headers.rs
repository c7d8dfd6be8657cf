//! The header rules of a proxied exchange (RFC 9110 §7.6): hop-by-hop
//! fields dropped both ways, forwarding fields added (only a trusted
//! proxy's earlier values kept), framing left to whoever writes next.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::config::Cidr;
use crate::http::write::push_line;

/// Fields that describe one connection, not the message (RFC 9110
/// §7.6.1), and the ones the proxy writes itself; never passed on as
/// they came.
fn own_or_hop(name: &str) -> bool {
    const DROPPED: [&str; 10] = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "expect",
        "via",
    ];
    DROPPED.iter().any(|d| name.eq_ignore_ascii_case(d))
        || name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("proxy-"))
}

/// The names a `Connection` field lists (they are hop-by-hop too).
fn connection_tokens<'a>(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<String> {
    let mut tokens = Vec::new();
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if !token.is_empty()
                    && let Ok(token) = std::str::from_utf8(token)
                {
                    tokens.push(token.to_ascii_lowercase());
                }
            }
        }
    }
    tokens
}

/// Whether a field may pass: not hop-by-hop, not named by `Connection`.
fn passes(name: &str, named: &[String]) -> bool {
    !own_or_hop(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// What the forwarding fields say about a request.
pub(crate) struct Forwarding<'a> {
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) trusted: &'a [Cidr],
    pub(crate) https: bool,
    /// The client's `Host`, if it sent one.
    pub(crate) host: Option<&'a [u8]>,
    pub(crate) request_id: &'a str,
    pub(crate) via: bool,
}

impl Forwarding<'_> {
    fn peer_trusted(&self) -> bool {
        self.peer
            .is_some_and(|peer| self.trusted.iter().any(|c| c.contains(peer.ip())))
    }
}

/// Writes the client's fields that pass, then the forwarding fields, then
/// the route's own (`set`, replacing any of the same name), into `out`.
pub(crate) fn request_fields<'a>(
    out: &mut Vec<u8>,
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    facts: &Forwarding<'_>,
    set: &[(String, String)],
) {
    let named = connection_tokens(fields.clone());
    let trusted = facts.peer_trusted();
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut forwarded: Vec<&[u8]> = Vec::new();
    let mut proto: Option<&[u8]> = None;
    for (name, value) in fields {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("x-forwarded-for") {
            forwarded_for.push(value);
        } else if is("forwarded") {
            forwarded.push(value);
        } else if is("x-forwarded-proto") {
            proto = Some(value);
        } else if is("x-forwarded-host")
            || is("x-real-ip")
            || (is("x-request-id") && !facts.request_id.is_empty())
        {
            // Replaced below.
        } else if passes(name, &named) && !set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            push_line(out, name.as_bytes(), value);
        }
    }
    // The client's address: the peer's, or behind a trusted proxy the
    // nearest untrusted one it forwarded.
    let client = facts.peer.map(|peer| {
        if !trusted {
            return peer.ip();
        }
        let xff = (!forwarded_for.is_empty()).then(|| forwarded_for.join(&b","[..]));
        let fwd = (!forwarded.is_empty()).then(|| forwarded.join(&b","[..]));
        crate::ratelimit::client_ip(peer.ip(), facts.trusted, fwd.as_deref(), xff.as_deref())
    });
    // X-Forwarded-For: a trusted proxy's list, then the peer.
    let kept_for: &[&[u8]] = if trusted { &forwarded_for } else { &[] };
    if facts.peer.is_some() || !kept_for.is_empty() {
        out.extend_from_slice(b"X-Forwarded-For: ");
        for (at, value) in kept_for.iter().enumerate() {
            if at > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(value);
        }
        if let Some(peer) = facts.peer {
            if !kept_for.is_empty() {
                out.extend_from_slice(b", ");
            }
            push_ip(out, peer.ip());
        }
        out.extend_from_slice(b"\r\n");
    }
    let scheme: &[u8] = if facts.https { b"https" } else { b"http" };
    let proto = proto.filter(|_| trusted).unwrap_or(scheme);
    push_line(out, b"X-Forwarded-Proto", proto);
    if let Some(host) = facts.host {
        push_line(out, b"X-Forwarded-Host", host);
    }
    if let Some(client) = client {
        out.extend_from_slice(b"X-Real-IP: ");
        push_ip(out, client);
        out.extend_from_slice(b"\r\n");
    }
    // Forwarded (RFC 7239): a trusted proxy's elements, then this hop's.
    out.extend_from_slice(b"Forwarded: ");
    if trusted {
        for value in &forwarded {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    match facts.peer.map(|p| p.ip()) {
        Some(IpAddr::V4(v4)) => {
            out.extend_from_slice(b"for=");
            push_ip(out, IpAddr::V4(v4));
            out.push(b';');
        }
        Some(IpAddr::V6(v6)) => {
            let _ = write!(out, "for=\"[{v6}]\";");
        }
        None => {}
    }
    out.extend_from_slice(b"proto=");
    out.extend_from_slice(scheme);
    if let Some(host) = facts
        .host
        .filter(|h| h.iter().all(|&b| b.is_ascii_graphic() && b != b'"'))
    {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host);
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
    if !facts.request_id.is_empty() {
        push_line(out, b"X-Request-ID", facts.request_id.as_bytes());
    }
    if facts.via {
        push_line(out, b"Via", b"1.1 percore");
    }
    for (name, value) in set {
        push_line(out, name.as_bytes(), value.as_bytes());
    }
}

/// Writes `ip` as text: IPv4 digit by digit (three times per proxied
/// request, where the formatting machinery showed in profiles), IPv6
/// through `Display`.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (at, octet) in v4.octets().into_iter().enumerate() {
                if at > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// The upstream's response fields that pass to the client: not hop-by-hop,
/// not named by its `Connection`, not the ones percore writes itself
/// (`Date`, `Server`, the request ID it echoes) and not the route's own.
pub(crate) fn response_fields<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    echoes_request_id: bool,
    set: &'a [(String, String)],
) -> Vec<(&'a str, &'a [u8])> {
    let named = connection_tokens(fields.clone());
    let mut kept: Vec<(&str, &[u8])> = fields
        .filter(|(name, _)| {
            let percores = name.eq_ignore_ascii_case("date")
                || name.eq_ignore_ascii_case("server")
                || (echoes_request_id && name.eq_ignore_ascii_case("x-request-id"))
                || set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            passes(name, &named) && !percores
        })
        .collect();
    kept.extend(set.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    kept
}

/// Whether the request asks for an upgrade the route allows; the
/// protocol named, as sent.
pub(crate) fn upgrade<'a>(
    mut fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    allowed: &[String],
) -> Option<&'a [u8]> {
    let asks = connection_tokens(fields.clone())
        .iter()
        .any(|t| t == "upgrade");
    let (_, protocol) = fields.find(|(name, _)| name.eq_ignore_ascii_case("upgrade"))?;
    let first = protocol
        .split(|&b| b == b'/' || b == b',')
        .next()?
        .trim_ascii();
    let allowed = allowed
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(first));
    (asks && allowed).then_some(protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding<'a>(peer: &str, trusted: &'a [Cidr]) -> Forwarding<'a> {
        Forwarding {
            peer: Some(peer.parse().unwrap()),
            trusted,
            https: true,
            host: Some(b"example.com"),
            request_id: "abc",
            via: true,
        }
    }

    fn render(fields: &[(&str, &[u8])], facts: &Forwarding<'_>) -> String {
        let mut out = Vec::new();
        request_fields(&mut out, fields.iter().copied(), facts, &[]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_dropped() {
        let fields: [(&str, &[u8]); 8] = [
            ("Connection", b"keep-alive, X-Secret"),
            ("Keep-Alive", b"timeout=5"),
            ("X-Secret", b"1"),
            ("TE", b"trailers"),
            ("Proxy-Authorization", b"Basic x"),
            ("Transfer-Encoding", b"chunked"),
            ("Accept", b"*/*"),
            ("Host", b"example.com"),
        ];
        let out = render(&fields, &forwarding("198.51.100.7:1234", &[]));
        assert!(out.starts_with("Accept: */*\r\n"), "{out}");
        for gone in [
            "Connection",
            "Keep-Alive",
            "X-Secret",
            "TE:",
            "Proxy-",
            "Transfer-",
            "Host:",
        ] {
            assert!(!out.lines().any(|l| l.starts_with(gone)), "{gone} in {out}");
        }
        assert!(out.contains("Via: 1.1 percore\r\n"));
        assert!(out.contains("X-Request-ID: abc\r\n"));
    }

    #[test]
    fn an_untrusted_peer_cannot_forge_its_address() {
        let fields: [(&str, &[u8]); 3] = [
            ("X-Forwarded-For", b"1.2.3.4"),
            ("Forwarded", b"for=1.2.3.4"),
            ("X-Forwarded-Proto", b"http"),
        ];
        let out = render(&fields, &forwarding("198.51.100.7:1234", &[]));
        assert!(out.contains("X-Forwarded-For: 198.51.100.7\r\n"), "{out}");
        assert!(out.contains("X-Real-IP: 198.51.100.7\r\n"), "{out}");
        assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
        assert!(
            out.contains("Forwarded: for=198.51.100.7;proto=https;host=\"example.com\"\r\n"),
            "{out}"
        );
        assert!(!out.contains("1.2.3.4"), "{out}");
    }

    #[test]
    fn a_trusted_proxy_list_is_kept_and_extended() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let fields: [(&str, &[u8]); 2] = [
            ("X-Forwarded-For", b"203.0.113.9"),
            ("Forwarded", b"for=203.0.113.9"),
        ];
        let out = render(&fields, &forwarding("10.1.1.1:80", &trusted));
        assert!(
            out.contains("X-Forwarded-For: 203.0.113.9, 10.1.1.1\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Real-IP: 203.0.113.9\r\n"), "{out}");
        assert!(
            out.contains("Forwarded: for=203.0.113.9, for=10.1.1.1;"),
            "{out}"
        );
    }

    #[test]
    fn ipv6_nodes_are_quoted() {
        let out = render(&[], &forwarding("[::1]:80", &[]));
        assert!(out.contains("Forwarded: for=\"[::1]\";"), "{out}");
    }

    #[test]
    fn response_fields_drop_hops_and_percores_own() {
        let fields: [(&str, &[u8]); 6] = [
            ("Connection", b"close, X-Hop"),
            ("X-Hop", b"1"),
            ("Date", b"x"),
            ("Server", b"uvicorn"),
            ("Content-Type", b"text/plain"),
            ("Set-Cookie", b"a=1"),
        ];
        let set = vec![("X-Frame".to_owned(), "DENY".to_owned())];
        let kept = response_fields(fields.iter().copied(), true, &set);
        let names: Vec<&str> = kept.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["Content-Type", "Set-Cookie", "X-Frame"]);
    }

    #[test]
    fn only_allowed_upgrades_are_tunnelled() {
        let allowed = vec!["websocket".to_owned()];
        let ws: [(&str, &[u8]); 2] = [("Connection", b"Upgrade"), ("Upgrade", b"websocket")];
        assert_eq!(
            upgrade(ws.iter().copied(), &allowed),
            Some(&b"websocket"[..])
        );
        let h2c: [(&str, &[u8]); 2] = [("Connection", b"Upgrade"), ("Upgrade", b"h2c")];
        assert_eq!(upgrade(h2c.iter().copied(), &allowed), None);
        let bare: [(&str, &[u8]); 1] = [("Upgrade", b"websocket")];
        assert_eq!(upgrade(bare.iter().copied(), &allowed), None);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let cases = [
            "0.0.0.0",
            "127.0.0.1",
            "9.10.99.100",
            "255.255.255.255",
            "10.0.200.5",
            "::1",
            "2001:db8::7",
        ];
        for case in cases {
            let ip: IpAddr = case.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
        // Every octet value, in each position.
        for octet in 0..=255u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(octet, 0, octet, 255 - octet));
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }
}
