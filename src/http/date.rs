//! The `Date` header value, cached per shard and refreshed once a second:
//! the clock is read once per batch of requests and the value re-formatted
//! only when the second has changed. No timer, so an idle shard sleeps.

use std::cell::Cell;
use std::fmt::Write;
use std::time::SystemTime;

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const DATE_LEN: usize = 29;

/// A shard's current `Date` value.
#[derive(Debug)]
pub(crate) struct DateCache {
    value: Cell<[u8; DATE_LEN]>,
    second: Cell<u64>,
}

impl DateCache {
    /// A cache holding the current time.
    #[must_use]
    pub(crate) fn new() -> Self {
        let cache = Self {
            value: Cell::new([b' '; DATE_LEN]),
            second: Cell::new(u64::MAX),
        };
        cache.now();
        cache
    }

    /// The value for the current second (re-formatted into a fixed array
    /// when the second changes: no allocation).
    pub(crate) fn now(&self) -> [u8; DATE_LEN] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second.get() {
            let mut value = Fixed {
                bytes: [b' '; DATE_LEN],
                len: 0,
            };
            let _ = write!(value, "{}", httpdate::HttpDate::from(now));
            self.value.set(value.bytes);
            self.second.set(second);
        }
        self.value.get()
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

/// A `fmt::Write` into a fixed array; extra bytes are dropped.
struct Fixed {
    bytes: [u8; DATE_LEN],
    len: usize,
}

impl Write for Fixed {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        for &byte in text.as_bytes() {
            if self.len < DATE_LEN {
                self.bytes[self.len] = byte;
                self.len += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::DateCache;

    #[test]
    fn holds_an_imf_fixdate() {
        let value = DateCache::new().now();
        let text = std::str::from_utf8(&value).unwrap();
        assert!(text.ends_with(" GMT"), "{text}");
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
