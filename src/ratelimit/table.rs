//! A bounded table of keys to their GCRA state, one per policy per shard,
//! like nginx's `limit_req_zone` size: at most `capacity` keys; when it is
//! full, the least recently seen key makes room. Lookups, updates and
//! evictions are O(1) (a hash map into a slab threaded on a recency list);
//! nothing is allocated once a key is in, nor once the table is full.

use std::collections::HashMap;

use super::gcra::{Gcra, Verdict};

/// A key: a client address (IPv4 mapped into IPv6, IPv6 cut to its
/// prefix) or the hash of a header value.
pub(crate) type Key = u128;

/// No neighbour on the recency list.
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Key,
    tat: u64,
    /// Towards the most recently seen.
    newer: u32,
    /// Towards the least recently seen.
    older: u32,
}

/// Keys and their state, bounded.
#[derive(Debug)]
pub struct Table {
    index: HashMap<Key, u32>,
    entries: Vec<Entry>,
    newest: u32,
    oldest: u32,
    capacity: usize,
    evictions: u64,
}

impl Table {
    /// A table holding at most `capacity` keys (at least 1). Memory grows
    /// with the keys seen, up to the capacity.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            index: HashMap::new(),
            entries: Vec::new(),
            newest: NONE,
            oldest: NONE,
            capacity: capacity.max(1),
            evictions: 0,
        }
    }

    /// Checks a request from `key` at `now` (ns) against `gcra`.
    pub fn check(&mut self, key: Key, gcra: &Gcra, now: u64) -> Verdict {
        let slot = match self.index.get(&key) {
            Some(&slot) => {
                self.unlink(slot);
                slot
            }
            None => self.insert(key),
        };
        self.push_newest(slot);
        gcra.check(&mut self.entries[slot as usize].tat, now)
    }

    /// Keys held now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Keys evicted so far to make room.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// A slot for a new key: a fresh one while below capacity, else the
    /// least recently seen key's.
    fn insert(&mut self, key: Key) -> u32 {
        let entry = Entry {
            key,
            tat: 0,
            newer: NONE,
            older: NONE,
        };
        let slot = if self.entries.len() < self.capacity {
            self.entries.push(entry);
            u32::try_from(self.entries.len() - 1).unwrap_or(NONE - 1)
        } else {
            let slot = self.oldest;
            self.unlink(slot);
            let old = std::mem::replace(&mut self.entries[slot as usize], entry);
            self.index.remove(&old.key);
            self.evictions += 1;
            slot
        };
        self.index.insert(key, slot);
        slot
    }

    fn unlink(&mut self, slot: u32) {
        let Entry { newer, older, .. } = self.entries[slot as usize];
        match newer {
            NONE => self.newest = older,
            newer => self.entries[newer as usize].older = older,
        }
        match older {
            NONE => self.oldest = newer,
            older => self.entries[older as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let previous = self.newest;
        {
            let entry = &mut self.entries[slot as usize];
            entry.newer = NONE;
            entry.older = previous;
        }
        match previous {
            NONE => self.oldest = slot,
            previous => self.entries[previous as usize].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::{Gcra, Table};

    #[test]
    fn the_least_recently_seen_key_makes_room() {
        let gcra = Gcra::new(1.0, 1);
        let mut table = Table::new(3);
        let now = 1_000;
        for key in [1, 2, 3] {
            assert!(table.check(key, &gcra, now).allowed);
        }
        // Key 1 seen again: 2 is now the oldest.
        assert!(!table.check(1, &gcra, now).allowed);
        assert!(table.check(4, &gcra, now).allowed);
        assert_eq!((table.len(), table.evictions()), (3, 1));
        // 2 was evicted: it starts afresh (allowed); 1 and 3 kept their state.
        assert!(table.check(2, &gcra, now).allowed);
        assert!(!table.check(1, &gcra, now).allowed);
        assert_eq!(table.evictions(), 2, "3 made room for 2");
        assert!(!table.check(4, &gcra, now).allowed);
    }

    #[test]
    fn a_flood_of_keys_stays_within_the_capacity() {
        let gcra = Gcra::new(10.0, 5);
        let mut table = Table::new(1000);
        for i in 0..100_000u64 {
            table.check(u128::from(i), &gcra, 1 + i);
        }
        assert_eq!(table.len(), 1000);
        assert_eq!(table.evictions(), 99_000);
        assert!(table.entries.capacity() <= 2048);
        // The recency list still covers every entry exactly once.
        let mut seen = 0;
        let mut slot = table.newest;
        while slot != super::NONE {
            seen += 1;
            slot = table.entries[slot as usize].older;
        }
        assert_eq!(seen, 1000);
    }
}
