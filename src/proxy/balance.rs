//! Picking a server of an upstream for one request, on one shard, among
//! those in rotation and not tried yet: weighted round robin (nginx's
//! smooth algorithm), least connections, a consistent client-address hash
//! (weighted rendezvous hashing: adding a server moves only the clients it
//! now wins), or the less busy of two random choices.

use std::cell::Cell;
use std::net::IpAddr;

/// How an upstream spreads requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Balance {
    RoundRobin,
    LeastConn,
    IpHash,
    RandomTwo,
}

impl Balance {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "round_robin" => Self::RoundRobin,
            "least_conn" => Self::LeastConn,
            "ip_hash" => Self::IpHash,
            "random_two" => Self::RandomTwo,
            _ => return None,
        })
    }
}

/// What the balancer reads of a server.
pub(crate) trait Candidate {
    fn weight(&self) -> u32;
    /// Requests in flight to it from this shard.
    fn active(&self) -> u32;
    /// Its smooth round-robin credit.
    fn credit(&self) -> &Cell<i64>;
    /// A hash of its address, the same on every shard and every start.
    fn key(&self) -> u64;
}

impl<C: Candidate> Candidate for std::rc::Rc<C> {
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn active(&self) -> u32 {
        (**self).active()
    }
    fn credit(&self) -> &Cell<i64> {
        (**self).credit()
    }
    fn key(&self) -> u64 {
        (**self).key()
    }
}

/// A stable 64-bit hash (FNV-1a, then a final mix): the same input gives
/// the same value in every process.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Whether `a` is less loaded than `b`, relative to their weights.
fn lighter(a: &impl Candidate, b: &impl Candidate) -> bool {
    u64::from(a.active()) * u64::from(b.weight()) < u64::from(b.active()) * u64::from(a.weight())
}

/// Picks one of `servers` for which `eligible` holds.
pub(crate) fn pick<C: Candidate>(
    balance: Balance,
    servers: &[C],
    eligible: impl Fn(usize) -> bool,
    client: Option<IpAddr>,
    turn: &Cell<usize>,
) -> Option<usize> {
    let candidates: Vec<usize> = (0..servers.len()).filter(|&i| eligible(i)).collect();
    match candidates.len() {
        0 => return None,
        1 => return Some(candidates[0]),
        _ => {}
    }
    match (balance, client) {
        (Balance::IpHash, Some(ip)) => Some(rendezvous(servers, &candidates, ip)),
        (Balance::RoundRobin | Balance::IpHash, _) => Some(smooth(servers, &candidates)),
        (Balance::LeastConn, _) => {
            // Among the least loaded, take turns.
            let start = turn.get();
            turn.set(start.wrapping_add(1));
            let n = candidates.len();
            let mut best = candidates[start % n];
            for k in 1..n {
                let at = candidates[(start + k) % n];
                if lighter(&servers[at], &servers[best]) {
                    best = at;
                }
            }
            Some(best)
        }
        (Balance::RandomTwo, _) => {
            let first = weighted_random(servers, &candidates, None);
            let second = weighted_random(servers, &candidates, Some(first));
            Some(if lighter(&servers[second], &servers[first]) {
                second
            } else {
                first
            })
        }
    }
}

/// nginx's smooth weighted round robin: every candidate gains its weight,
/// the richest is picked and pays the total.
fn smooth<C: Candidate>(servers: &[C], candidates: &[usize]) -> usize {
    let mut total = 0i64;
    let mut best = candidates[0];
    for &at in candidates {
        let server = &servers[at];
        let weight = i64::from(server.weight());
        server.credit().set(server.credit().get() + weight);
        total += weight;
        if server.credit().get() > servers[best].credit().get() {
            best = at;
        }
    }
    let credit = servers[best].credit();
    credit.set(credit.get() - total);
    best
}

/// Weighted rendezvous hashing: each server scores `weight / -ln(u)` for a
/// `u` in (0, 1) from the client and the server; the highest wins.
fn rendezvous<C: Candidate>(servers: &[C], candidates: &[usize], ip: IpAddr) -> usize {
    let client = match ip {
        IpAddr::V4(v4) => stable_hash(&v4.octets()),
        IpAddr::V6(v6) => stable_hash(&v6.octets()),
    };
    let score = |at: usize| {
        let server = &servers[at];
        let h = mix(client ^ server.key());
        // 53 random bits, strictly inside (0, 1).
        #[allow(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        f64::from(server.weight()) / -u.ln()
    };
    let mut best = candidates[0];
    let mut best_score = score(best);
    for &at in &candidates[1..] {
        let s = score(at);
        if s > best_score {
            best = at;
            best_score = s;
        }
    }
    best
}

/// A candidate drawn with probability proportional to its weight, other
/// than `not` when given.
fn weighted_random<C: Candidate>(servers: &[C], candidates: &[usize], not: Option<usize>) -> usize {
    let pool: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&c| Some(c) != not)
        .collect();
    let total: u64 = pool.iter().map(|&c| u64::from(servers[c].weight())).sum();
    let mut draw = fastrand::u64(0..total.max(1));
    for &at in &pool {
        let weight = u64::from(servers[at].weight());
        if draw < weight {
            return at;
        }
        draw -= weight;
    }
    pool[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S {
        weight: u32,
        active: u32,
        credit: Cell<i64>,
        key: u64,
    }

    impl Candidate for S {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn active(&self) -> u32 {
            self.active
        }
        fn credit(&self) -> &Cell<i64> {
            &self.credit
        }
        fn key(&self) -> u64 {
            self.key
        }
    }

    fn servers(weights: &[u32]) -> Vec<S> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| S {
                weight,
                active: 0,
                credit: Cell::new(0),
                key: stable_hash(format!("10.0.0.{i}:80").as_bytes()),
            })
            .collect()
    }

    fn counts(balance: Balance, servers: &[S], rounds: usize) -> Vec<usize> {
        let turn = Cell::new(0);
        let mut counts = vec![0; servers.len()];
        for _ in 0..rounds {
            counts[pick(balance, servers, |_| true, None, &turn).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_follows_the_weights_smoothly() {
        let servers = servers(&[5, 1, 1]);
        let turn = Cell::new(0);
        let order: Vec<usize> = (0..7)
            .map(|_| pick(Balance::RoundRobin, &servers, |_| true, None, &turn).unwrap())
            .collect();
        // nginx's documented sequence for weights 5, 1, 1.
        assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(counts(Balance::RoundRobin, &servers, 700), [500, 100, 100]);
    }

    #[test]
    fn ineligible_servers_are_skipped() {
        let servers = servers(&[1, 1, 1]);
        let turn = Cell::new(0);
        for _ in 0..10 {
            let at = pick(Balance::RoundRobin, &servers, |i| i != 1, None, &turn).unwrap();
            assert_ne!(at, 1);
        }
        assert_eq!(
            pick(Balance::LeastConn, &servers, |_| false, None, &turn),
            None
        );
    }

    #[test]
    fn least_conn_takes_the_least_loaded_by_weight() {
        let mut servers = servers(&[1, 2, 1]);
        servers[0].active = 3;
        servers[1].active = 4; // 2 per weight
        servers[2].active = 1;
        let turn = Cell::new(0);
        assert_eq!(
            pick(Balance::LeastConn, &servers, |_| true, None, &turn),
            Some(2)
        );
        servers[2].active = 5;
        assert_eq!(
            pick(Balance::LeastConn, &servers, |_| true, None, &turn),
            Some(1)
        );
    }

    #[test]
    fn random_two_prefers_the_idle_server() {
        let mut servers = servers(&[1, 1]);
        servers[0].active = 10;
        let turn = Cell::new(0);
        for _ in 0..20 {
            assert_eq!(
                pick(Balance::RandomTwo, &servers, |_| true, None, &turn),
                Some(1)
            );
        }
    }

    #[test]
    fn ip_hash_is_sticky_and_moves_few_clients_when_a_server_is_added() {
        let before = servers(&[1, 1, 1, 1]);
        let after = servers(&[1, 1, 1, 1, 1]);
        let turn = Cell::new(0);
        let mut moved = 0;
        let clients = 2000u32;
        let mut per_server = [0; 4];
        for c in 0..clients {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + c));
            let a = pick(Balance::IpHash, &before, |_| true, Some(ip), &turn).unwrap();
            assert_eq!(
                pick(Balance::IpHash, &before, |_| true, Some(ip), &turn),
                Some(a)
            );
            per_server[a] += 1;
            let b = pick(Balance::IpHash, &after, |_| true, Some(ip), &turn).unwrap();
            if a != b {
                assert_eq!(b, 4, "a client moved between old servers");
                moved += 1;
            }
        }
        // About a fifth move (to the new server), and the old spread is even.
        assert!((300..=500).contains(&moved), "{moved} moved");
        assert!(
            per_server.iter().all(|&n| (400..=600).contains(&n)),
            "{per_server:?}"
        );
    }
}
