//! Value types of the configuration: CPU lists, access-log formats,
//! client-key sources and address blocks. They live with the schema so
//! that the schema depends on nothing above it; the layers that use them
//! (runtime, observe, limit) import them from here.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A list of CPU numbers, written like the kernel's: `0,2-3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut cpus = Vec::new();
        for part in text
            .trim()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let number = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("'{s}' in CPU list '{text}' is not a CPU number"))
            };
            match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (number(first)?, number(last)?);
                    if first > last {
                        return Err(format!(
                            "range '{part}' in CPU list '{text}' runs backwards"
                        ));
                    }
                    cpus.extend(first..=last);
                }
                None => cpus.push(number(part)?),
            }
        }
        if cpus.is_empty() {
            return Err(format!("CPU list '{text}' names no CPU"));
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for CpuList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How requests are logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// Not logged.
    #[default]
    Off,
    /// nginx's `combined`, then the request time and the request ID.
    Combined,
    /// One JSON object per line.
    Json,
}

/// Whom requests are counted against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// The peer's address.
    Ip,
    /// Behind trusted proxies, the address they forwarded.
    Forwarded,
    /// A request header's value (lower-case name); the client address when
    /// the header is absent.
    Header(String),
}

/// An address block, such as `10.0.0.0/8` or `::1/128`, in IPv6 space
/// (IPv4 as mapped addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address (one host).
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or block (like 10.0.0.0/8)"))?;
        let (base, width) = match ip {
            IpAddr::V4(_) => (96, 32),
            IpAddr::V6(_) => (0, 128),
        };
        let bits = match prefix {
            None => width,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {width}"))?,
        };
        let prefix = base + bits;
        Ok(Self {
            net: mapped(ip) & mask(prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside the block.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        mapped(ip) & mask(self.prefix) == self.net
    }
}

/// An address as 128 bits, IPv4 as its IPv4-mapped IPv6 form.
pub(crate) fn mapped(ip: IpAddr) -> u128 {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    u128::from(v6)
}

/// The bits of a prefix of `prefix` bits.
pub(crate) fn mask(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

/// The cookie key `text` (base64 of at least 32 bytes) stands for.
///
/// # Errors
/// The fix, when it is not base64 of at least 32 bytes.
pub(crate) fn cookie_key(text: &str) -> Result<cookie::Key, &'static str> {
    let bytes = crate::http::base64::decode(text.trim())
        .ok_or("must be base64 (generate one: head -c 32 /dev/urandom | base64)")?;
    match bytes.len() {
        64.. => Ok(cookie::Key::from(&bytes[..64])),
        32.. => Ok(cookie::Key::derive_from(&bytes)),
        _ => Err("must be at least 32 bytes once decoded (head -c 32 /dev/urandom | base64)"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Cidr, CpuList};

    fn cpus(text: &str) -> Vec<usize> {
        text.parse::<CpuList>().unwrap().0
    }

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        assert_eq!(cpus("0,2-3"), [0, 2, 3]);
        assert_eq!(cpus(" 3, 1 ,1 "), [1, 3]);
        assert!("3-1".parse::<CpuList>().is_err());
        assert!("a".parse::<CpuList>().is_err());
        assert!("".parse::<CpuList>().is_err());
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let block = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(block.contains("10.1.2.3".parse().unwrap()));
        assert!(!block.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }
}
