//! The `Date` header value, cached per shard and refreshed once a second.

use std::cell::Cell;
use std::time::SystemTime;

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// A shard's current `Date` value; `refresh` is called by a once-a-second
/// timer so that requests only copy bytes.
#[derive(Debug)]
pub struct DateCache {
    value: Cell<[u8; DATE_LEN]>,
}

impl DateCache {
    /// A cache holding the current time.
    #[must_use]
    pub fn new() -> Self {
        let cache = Self {
            value: Cell::new([b' '; DATE_LEN]),
        };
        cache.refresh();
        cache
    }

    /// Re-reads the clock.
    pub fn refresh(&self) {
        let text = httpdate::fmt_http_date(SystemTime::now());
        let mut value = [b' '; DATE_LEN];
        let len = text.len().min(DATE_LEN);
        value[..len].copy_from_slice(&text.as_bytes()[..len]);
        self.value.set(value);
    }

    /// The cached value.
    #[must_use]
    pub fn get(&self) -> [u8; DATE_LEN] {
        self.value.get()
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::DateCache;

    #[test]
    fn holds_an_imf_fixdate() {
        let value = DateCache::new().get();
        let text = std::str::from_utf8(&value).unwrap();
        assert!(text.ends_with(" GMT"), "{text}");
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
