//! With two shards, both serve connections, and each has its own state.

mod support;

use std::cell::Cell;
use std::rc::Rc;

use percore::{App, ShardId, State};
use support::{Client, addr, get, start};

/// Connections opened, at most, before giving up on seeing both shards.
/// The kernel spreads `SO_REUSEPORT` connections by a hash of the client
/// port, so missing one shard 200 times has odds of 2^-199.
const MAX_CONNECTIONS: usize = 200;

#[test]
fn two_shards_both_serve_and_keep_their_own_state() {
    let app = App::with_state(|| Rc::new(Cell::new(0u64))).get(
        "/whoami",
        async |ShardId(shard): ShardId, State(count): State<Rc<Cell<u64>>>| {
            count.set(count.get() + 1);
            format!("{shard} {}", count.get())
        },
    );
    let server = start(app, 2);
    assert_eq!(server.cpus().len(), 2);
    let mut counts = [0u64; 2];
    for _ in 0..MAX_CONNECTIONS {
        let reply = Client::connect(addr(&server)).request(&get("/whoami"));
        let (shard, count) = reply.text().split_once(' ').expect("shard and count");
        let shard: usize = shard.parse().unwrap();
        counts[shard] += 1;
        // Each shard counts only its own requests.
        assert_eq!(count.parse::<u64>().unwrap(), counts[shard]);
        if counts.iter().all(|&c| c > 0) {
            break;
        }
    }
    assert!(
        counts.iter().all(|&c| c > 0),
        "one shard served nothing: {counts:?}"
    );
    server.stop().unwrap();
}

#[test]
fn every_listen_address_serves_ipv4_and_ipv6() {
    let mut config = percore::Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    config.server.shards = Some(1);
    let server = percore::reference::app().start(&config).unwrap();
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6());
    for addr in addrs {
        assert_ne!(addr.port(), 0);
        let reply = Client::connect(addr).request(&get("/plaintext"));
        assert_eq!(reply.text(), "Hello, World!", "on {addr}");
    }
    server.stop().unwrap();
}
