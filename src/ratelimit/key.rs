//! Whom a request is counted against: its client address (the peer, or
//! behind trusted proxies the address they forwarded), cut to a prefix for
//! IPv6, or the value of a request header such as an API key.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};

use super::table::Key;
use crate::config::{Cidr, mapped, mask};

/// The key of a client address: IPv4 whole, IPv6 cut to `v6_prefix` bits
/// (a host usually owns a whole /64).
#[must_use]
pub(crate) fn ip_key(ip: IpAddr, v6_prefix: u8) -> Key {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => u128::from(v6) & mask(v6_prefix),
        IpAddr::V6(v6) => u128::from(v6),
        IpAddr::V4(_) => mapped(ip),
    }
}

/// The key of a header value: its hash under the shard's random seed, in
/// `ff00::/8` (multicast, never a client address).
pub(crate) fn header_key(value: &[u8], seed: &impl BuildHasher) -> Key {
    (0xff << 120) | u128::from(seed.hash_one(value))
}

/// The key of a header value the same on every host (for a policy whose
/// state is in Redis): the first 15 bytes of its SHA-256, in `ff00::/8`.
pub(crate) fn stable_header_key(value: &[u8]) -> Key {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    let mut bytes = [0u8; 16];
    bytes[0] = 0xff;
    bytes[1..].copy_from_slice(&digest.as_ref()[..15]);
    u128::from_be_bytes(bytes)
}

/// The client's address for a request from `peer`: when the peer is a
/// trusted proxy, the nearest address it forwarded (from `Forwarded`, else
/// `X-Forwarded-For`) that is not itself a trusted proxy.
pub(crate) fn client_ip(
    peer: IpAddr,
    trusted: &[Cidr],
    forwarded: Option<&[u8]>,
    x_forwarded_for: Option<&[u8]>,
) -> IpAddr {
    if !trusted.iter().any(|cidr| cidr.contains(peer)) {
        return peer;
    }
    let hops: Vec<IpAddr> = match (forwarded, x_forwarded_for) {
        (Some(value), _) => forwarded_for(value),
        (None, Some(value)) => list(value).filter_map(parse_node).collect(),
        (None, None) => Vec::new(),
    };
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !trusted.iter().any(|cidr| cidr.contains(*ip)))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

/// The comma-separated members of a header value.
fn list(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
}

/// The `for=` addresses of a `Forwarded` value (RFC 7239), in order.
fn forwarded_for(value: &[u8]) -> Vec<IpAddr> {
    list(value)
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, node) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(node.trim().trim_matches('"')))?
            })
        })
        .collect()
}

/// An address from a node: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`,
/// `[2001:db8::1]:80` or a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest
            .split(']')
            .next()?
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    node.parse().ok().or_else(|| {
        let (host, port) = node.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        host.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains(ip("10.1.2.3")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.9.9.9")));
        let host = Cidr::parse("::1").unwrap();
        assert!(host.contains(ip("::1")) && !host.contains(ip("::2")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("proxy").is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix() {
        let a = ip_key(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = ip_key(ip("2001:db8:1:2:bbbb::9"), 64);
        let c = ip_key(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(ip_key(ip("127.0.0.2"), 64), ip_key(ip("127.0.0.3"), 64));
        assert_eq!(
            ip_key(ip("127.0.0.2"), 64),
            ip_key(ip("::ffff:127.0.0.2"), 64)
        );
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = Some(&b"203.0.113.7, 10.0.0.5"[..]);
        // An untrusted peer's headers are ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &trusted, None, xff),
            ip("198.51.100.1")
        );
        // Behind a trusted proxy: the nearest untrusted hop.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &trusted, None, xff),
            ip("203.0.113.7")
        );
        // A client cannot hide behind an address it wrote itself first.
        let spoofed = Some(&b"1.2.3.4, 203.0.113.7"[..]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &trusted, None, spoofed),
            ip("203.0.113.7")
        );
        let forwarded = Some(&br#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#[..]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &trusted, forwarded, xff),
            ip("2001:db8::1")
        );
        // Nothing forwarded: the peer.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &trusted, None, None),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn header_keys_differ_from_addresses_and_each_other() {
        let seed = std::collections::hash_map::RandomState::new();
        let a = header_key(b"key-a", &seed);
        assert_eq!(a, header_key(b"key-a", &seed));
        assert_ne!(a, header_key(b"key-b", &seed));
        assert_eq!(a >> 120, 0xff);
    }
}
