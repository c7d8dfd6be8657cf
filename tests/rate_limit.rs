//! Rate limiting: steering sends each client address to one shard, so a
//! limit keyed by address is exact across shards and connections; 429s say
//! when to retry; the tables stay bounded under a flood of addresses.
//! Clients use many loopback source addresses (127.0.0.2, 127.0.0.3, …).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use percore::config::PolicyConfig;
use percore::internals::shard_of;
use percore::{App, Config, ShardId};
use support::{Client, addr, get};

fn app() -> App {
    App::new()
        .get("/", async || "ok")
        .get("/shard", async |ShardId(shard): ShardId| shard.to_string())
        .post("/login", async || "welcome")
}

fn policy(name: &str, rate: f64, burst: u32, routes: &[&str]) -> PolicyConfig {
    PolicyConfig {
        name: name.into(),
        rate,
        burst,
        routes: routes.iter().map(|r| (*r).to_owned()).collect(),
        ..PolicyConfig::default()
    }
}

fn limited(shards: usize, policies: Vec<PolicyConfig>) -> Config {
    let mut config = support::config();
    config.server.shards = Some(shards);
    config.rate_limit.enabled = true;
    config.rate_limit.policy = policies;
    config
}

fn loopback(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

/// One request on a new connection from `source`.
fn from(source: IpAddr, server: SocketAddr, request: &[u8]) -> support::Reply {
    Client::connect_from(source, server).request(request)
}

#[test]
fn each_client_address_always_reaches_the_same_shard() {
    let config = limited(2, vec![policy("default", 1e6, 1_000_000, &[])]);
    let server = app().start(&config).unwrap();
    let mut shards_seen = std::collections::HashSet::new();
    for last in 2..=17 {
        let source = loopback(0, last);
        let expected = shard_of(source, 2, 64);
        for _ in 0..5 {
            let reply = from(source, addr(&server), &get("/shard"));
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.text(),
                expected.to_string(),
                "{source} reached another shard"
            );
        }
        shards_seen.insert(expected);
    }
    assert_eq!(shards_seen.len(), 2, "the 16 addresses use both shards");
    server.stop().unwrap();
}

#[test]
fn ipv6_clients_are_steered_too() {
    let mut config = limited(2, vec![policy("default", 1e6, 1_000_000, &[])]);
    config.server.listen = vec!["[::1]:0".parse().unwrap()];
    let server = app().start(&config).unwrap_or_else(|error| {
        panic!(
            "cannot listen on [::1] ({error}): this test needs IPv6 on loopback \
             (sysctl net.ipv6.conf.lo.disable_ipv6=0; .ci/run sets it)"
        )
    });
    let source: IpAddr = "::1".parse().unwrap();
    let expected = shard_of(source, 2, 64).to_string();
    for _ in 0..10 {
        assert_eq!(from(source, addr(&server), &get("/shard")).text(), expected);
    }
    server.stop().unwrap();
}

#[test]
fn a_client_gets_burst_plus_rate_times_time_across_connections_and_shards() {
    let (rate, burst) = (20.0, 5);
    let config = limited(2, vec![policy("default", rate, burst, &[])]);
    let server = app().start(&config).unwrap();
    let source = loopback(0, 20);
    // A neighbour on the other shard (or the same): its own budget.
    let neighbour = loopback(0, 21);
    let (mut allowed, mut refused) = (0u64, 0u64);
    let started = Instant::now();
    let mut first_answered = None;
    let mut last_sent = started;
    // New connections as fast as they go, for about a second (bounded).
    for _ in 0..20_000 {
        if started.elapsed() >= Duration::from_secs(1) {
            break;
        }
        last_sent = Instant::now();
        match from(source, addr(&server), &get("/")).status {
            200 => allowed += 1,
            429 => refused += 1,
            other => panic!("status {other}"),
        }
        first_answered.get_or_insert_with(Instant::now);
    }
    let finished = Instant::now();
    let shortest = last_sent
        .duration_since(first_answered.unwrap())
        .as_secs_f64();
    let longest = finished.duration_since(started).as_secs_f64();
    let low = f64::from(burst) + (rate * shortest).floor() - 1.0;
    let high = f64::from(burst) + (rate * longest).ceil() + 1.0;
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let got = allowed as f64;
    eprintln!("{allowed} allowed, {refused} refused in {longest:.3} s; bounds {low}..={high}");
    assert!(
        (low..=high).contains(&got),
        "{allowed} allowed, {refused} refused; expected {low}..={high}"
    );
    assert!(refused > 0);
    assert_eq!(from(neighbour, addr(&server), &get("/")).status, 200);
    let metrics = server.metrics();
    let total: u64 = (0..2)
        .map(|s| {
            support::sample(
                &metrics,
                &format!(r#"percore_rate_limited_total{{shard="{s}"}}"#),
            )
        })
        .sum();
    assert_eq!(total, refused);
    server.stop().unwrap();
}

#[test]
fn refusals_say_when_to_retry_and_carry_the_ratelimit_fields() {
    let config = limited(
        1,
        vec![
            policy("api", 1.0, 2, &[]),
            policy("login", 1.0, 1, &["POST /login"]),
        ],
    );
    let server = app().start(&config).unwrap();
    let source = loopback(0, 30);
    let first = from(source, addr(&server), &get("/"));
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-policy"), Some(r#""api";q=2;w=2"#));
    assert_eq!(first.header("ratelimit"), Some(r#""api";r=1;t=1"#));
    let second = from(source, addr(&server), &get("/"));
    assert_eq!(second.header("ratelimit"), Some(r#""api";r=0;t=2"#));
    let third = from(source, addr(&server), &get("/"));
    assert_eq!(third.status, 429);
    assert_eq!(third.header("retry-after"), Some("1"));
    assert_eq!(third.header("ratelimit"), Some(r#""api";r=0;t=2"#));
    assert_eq!(third.header("ratelimit-policy"), Some(r#""api";q=2;w=2"#));
    assert_eq!(third.header("content-type"), Some("application/json"));
    assert_eq!(
        third.text(),
        r#"{"detail":"Too Many Requests: retry in 1 s"}"#
    );
    // The login route has its own policy and budget.
    let login = |client: IpAddr| {
        let request = b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
        from(client, addr(&server), request)
    };
    let in_ = login(source);
    assert_eq!(in_.status, 200);
    assert_eq!(in_.header("ratelimit"), Some(r#""login";r=0;t=1"#));
    assert_eq!(login(source).status, 429);
    // Health routes are never limited and carry no fields.
    let health = from(source, addr(&server), &get("/health"));
    assert_eq!(health.status, 200);
    assert_eq!(health.header("ratelimit"), None);
    // Another address has its own budget.
    assert_eq!(from(loopback(0, 31), addr(&server), &get("/")).status, 200);
    server.stop().unwrap();
}

#[test]
fn a_flood_of_addresses_keeps_the_tables_bounded() {
    let mut config = limited(1, vec![policy("default", 1.0, 1, &[])]);
    config.rate_limit.max_keys = 50;
    let server = app().start(&config).unwrap();
    for i in 0..300u16 {
        let [a, b] = (i + 256).to_be_bytes();
        assert_eq!(from(loopback(a, b), addr(&server), &get("/")).status, 200);
    }
    let metrics = server.metrics();
    assert_eq!(
        support::sample(&metrics, r#"percore_rate_limit_keys{shard="0"}"#),
        50
    );
    assert_eq!(
        support::sample(&metrics, r#"percore_rate_limit_evictions_total{shard="0"}"#),
        250
    );
    // The most recent keys are still held: their budget is spent.
    assert_eq!(from(loopback(2, 43), addr(&server), &get("/")).status, 429);
    server.stop().unwrap();
}

#[test]
fn a_dry_run_counts_and_refuses_nothing() {
    let mut config = limited(1, vec![policy("default", 1.0, 1, &[])]);
    config.rate_limit.dry_run = true;
    let server = app().start(&config).unwrap();
    let source = loopback(0, 40);
    for _ in 0..5 {
        let reply = from(source, addr(&server), &get("/"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit"), None);
    }
    let metrics = server.metrics();
    assert_eq!(
        support::sample(&metrics, r#"percore_rate_limited_dry_run_total{shard="0"}"#),
        4
    );
    assert_eq!(
        support::sample(&metrics, r#"percore_rate_limited_total{shard="0"}"#),
        0
    );
    server.stop().unwrap();
}

#[test]
fn keys_from_a_header_or_from_trusted_proxies() {
    let mut config = limited(1, vec![policy("default", 1.0, 1, &[])]);
    config.rate_limit.key = "header:X-Api-Key".into();
    let server = app().start(&config).unwrap();
    let with_key =
        |key: &str| format!("GET / HTTP/1.1\r\nHost: t\r\nX-Api-Key: {key}\r\n\r\n").into_bytes();
    let source = loopback(0, 50);
    assert_eq!(from(source, addr(&server), &with_key("alice")).status, 200);
    assert_eq!(from(source, addr(&server), &with_key("alice")).status, 429);
    assert_eq!(from(source, addr(&server), &with_key("bob")).status, 200);
    server.stop().unwrap();

    let mut config = limited(1, vec![policy("default", 1.0, 1, &[])]);
    config.rate_limit.key = "forwarded".into();
    config.rate_limit.trusted_proxies = vec!["127.0.0.1".into()];
    let server = app().start(&config).unwrap();
    let forwarded = |client: &str| {
        format!("GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {client}\r\n\r\n").into_bytes()
    };
    let proxy = loopback(0, 1);
    assert_eq!(
        from(proxy, addr(&server), &forwarded("203.0.113.9")).status,
        200
    );
    assert_eq!(
        from(proxy, addr(&server), &forwarded("203.0.113.9")).status,
        429
    );
    assert_eq!(
        from(proxy, addr(&server), &forwarded("203.0.113.10")).status,
        200
    );
    // An untrusted peer's header is ignored: it is keyed by its own address.
    let stranger = loopback(0, 60);
    assert_eq!(
        from(stranger, addr(&server), &forwarded("198.51.100.1")).status,
        200
    );
    assert_eq!(
        from(stranger, addr(&server), &forwarded("198.51.100.2")).status,
        429
    );
    server.stop().unwrap();
}

#[test]
fn bad_policies_are_configuration_errors() {
    let mut config = limited(1, vec![policy("a b", 0.0, 0, &["login"])]);
    config.rate_limit.key = "cookie".into();
    config.rate_limit.trusted_proxies = vec!["not-an-address".into()];
    let problems: Vec<String> = config.validate().iter().map(|p| p.key.clone()).collect();
    for key in [
        "rate_limit.key",
        "rate_limit.trusted_proxies",
        "rate_limit.policy[0].name",
        "rate_limit.policy[0].rate",
        "rate_limit.policy[0].burst",
        "rate_limit.policy[0].routes",
    ] {
        assert!(
            problems.iter().any(|p| p == key),
            "{key} not in {problems:?}"
        );
    }
    let mut config = Config::default();
    config.rate_limit.enabled = true;
    assert!(
        config
            .validate()
            .iter()
            .any(|p| p.key == "rate_limit.policy")
    );
}
