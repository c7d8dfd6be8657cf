//! The shard's connection gate: caps on open connections, per shard and per
//! client address. A connection over a cap is closed at once and counted;
//! the refusal is logged at most once a second so a flood cannot flood the
//! log too.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::task::{Poll, Waker};

use crate::config::ConnectionRules;
use crate::observe::counters::{Counters, Rejection};
use crate::observe::log::OncePerSecond;
use crate::ratelimit::Key;
use crate::ratelimit::key::ip_key;

/// Open connections of one shard.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    open: Cell<usize>,
    /// Woken when the last connection leaves (a draining shard waits on it).
    emptied: RefCell<Option<Waker>>,
    /// Open connections per client key (an address, IPv6 cut to the rate
    /// limiter's prefix, so steering sends all of a client's to this shard).
    per_client: RefCell<HashMap<Key, u32>>,
    last_log: OncePerSecond,
}

/// An admitted connection; leaving the gate when dropped.
#[derive(Debug)]
pub(crate) struct Admitted<'g> {
    gate: &'g Gate,
    /// The client's key as bytes: a `u128` would align (and so pad) every
    /// connection's task to 16 bytes.
    client: Option<[u8; 16]>,
}

impl Gate {
    /// Admits a connection from `peer`, or refuses it (counted and logged).
    pub(crate) fn admit(
        &self,
        peer: Option<SocketAddr>,
        rules: &ConnectionRules,
        counters: &Counters,
        shard: usize,
    ) -> Option<Admitted<'_>> {
        if self.open.get() >= rules.max_connections {
            self.refuse(Rejection::ShardConnectionLimit, counters, shard, peer);
            return None;
        }
        let client = match peer {
            Some(peer) if rules.max_connections_per_ip > 0 => {
                let mut per_client = self.per_client.borrow_mut();
                let key = ip_key(peer.ip(), rules.client_prefix);
                let count = per_client.entry(key).or_insert(0);
                if *count >= rules.max_connections_per_ip {
                    drop(per_client);
                    self.refuse(
                        Rejection::ClientConnectionLimit,
                        counters,
                        shard,
                        Some(peer),
                    );
                    return None;
                }
                *count += 1;
                Some(key.to_ne_bytes())
            }
            _ => None,
        };
        self.open.set(self.open.get() + 1);
        Some(Admitted { gate: self, client })
    }

    /// Connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.open.get()
    }

    /// Resolves once no connection is open.
    pub(crate) async fn empty(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.open.get() == 0 {
                return Poll::Ready(());
            }
            *self.emptied.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    fn refuse(
        &self,
        reason: Rejection,
        counters: &Counters,
        shard: usize,
        peer: Option<SocketAddr>,
    ) {
        counters.count(reason);
        if self.last_log.ready() {
            tracing::warn!(
                shard,
                reason = reason.name(),
                ?peer,
                open = self.open.get(),
                "connection refused"
            );
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.gate.open.set(self.gate.open.get() - 1);
        if self.gate.open.get() == 0
            && let Some(waker) = self.gate.emptied.borrow_mut().take()
        {
            waker.wake();
        }
        if let Some(client) = self.client.map(Key::from_ne_bytes) {
            let mut per_client = self.gate.per_client.borrow_mut();
            if let Some(count) = per_client.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    per_client.remove(&client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;
    use crate::config::ConnectionRules;
    use crate::observe::counters::{Counters, Rejection};

    #[test]
    fn caps_per_shard_and_per_client() {
        let gate = Gate::default();
        let counters = Counters::default();
        let rules = ConnectionRules {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..ConnectionRules::default()
        };
        let a = Some("127.0.0.2:1".parse().unwrap());
        let b = Some("127.0.0.3:1".parse().unwrap());
        let first = gate.admit(a, &rules, &counters, 0).unwrap();
        let _second = gate.admit(a, &rules, &counters, 0).unwrap();
        assert!(gate.admit(a, &rules, &counters, 0).is_none());
        assert_eq!(counters.get(Rejection::ClientConnectionLimit), 1);
        let _third = gate.admit(b, &rules, &counters, 0).unwrap();
        assert!(gate.admit(b, &rules, &counters, 0).is_none());
        assert_eq!(counters.get(Rejection::ShardConnectionLimit), 1);
        drop(first);
        assert_eq!(gate.open_connections(), 2);
        assert!(gate.admit(a, &rules, &counters, 0).is_some());
    }
}
