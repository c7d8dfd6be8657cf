//! Reload: a new configuration changes limits, timeouts and headers on
//! every shard at once (limits for new connections, headers at once); an
//! invalid one is refused whole; listen addresses and shard counts are
//! reported, not changed. Through the library and through SIGHUP.

mod support;

use std::collections::BTreeSet;

use percore::{App, Bytes, ShardId};
use support::{Client, addr, get};

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn app() -> App {
    App::new()
        .get("/", async || "ok")
        .post("/echo", async |Bytes(body): Bytes| body.len().to_string())
        .get("/shard", async |ShardId(shard): ShardId| shard.to_string())
}

#[test]
fn reload_applies_on_every_shard_and_keeps_open_connections_whole() {
    let mut config = support::config();
    config.server.shards = Some(2);
    let mut server = app().start(&config).unwrap();
    let mut before = Client::connect(addr(&server));
    assert_eq!(
        before.request(&get("/")).header("x-frame-options"),
        Some("DENY")
    );

    let mut next = config.clone();
    next.limits.max_body_bytes = 16;
    next.headers.frame_options = "SAMEORIGIN".into();
    next.server.listen = vec!["127.0.0.1:1".parse().unwrap()];
    next.server.shards = Some(1);
    let kept = server.reload(&next).unwrap();
    assert_eq!(kept, ["server.listen", "server.shards"]);

    // Every new connection has the new body limit and headers, on both
    // shards: the kernel spreads new connections over the two listeners,
    // so 64 connections all landing on one shard has odds of 2^-63.
    let mut shards = BTreeSet::new();
    for _ in 0..64 {
        let mut client = Client::connect(addr(&server));
        let shard = client.request(&get("/shard"));
        assert_eq!(shard.header("x-frame-options"), Some("SAMEORIGIN"));
        shards.insert(shard.text().to_owned());
        let reply = client.request(&post("/echo", &[b'x'; 100]));
        assert_eq!(reply.status, 413);
        assert_eq!(reply.header("x-frame-options"), Some("SAMEORIGIN"));
        if shards.len() == 2 {
            break;
        }
    }
    assert_eq!(
        shards.len(),
        2,
        "both shards took new connections: {shards:?}"
    );
    // The connection opened before keeps its limits; headers are new.
    let reply = before.request(&post("/echo", &[b'x'; 100]));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "100");
    assert_eq!(reply.header("x-frame-options"), Some("SAMEORIGIN"));
    // Still listening where it was.
    assert_eq!(
        Client::connect(addr(&server)).request(&get("/")).status,
        200
    );
    server.stop().unwrap();
}

#[test]
fn rate_limit_policies_change_live() {
    let config = support::config();
    let mut server = app().start(&config).unwrap();
    let mut client = Client::connect(addr(&server));
    for _ in 0..3 {
        assert_eq!(client.request(&get("/")).status, 200);
    }
    let mut next = config.clone();
    next.rate_limit.enabled = true;
    next.rate_limit.policy = vec![percore::config::PolicyConfig {
        name: "tight".into(),
        rate: 1.0,
        burst: 1,
        routes: Vec::new(),
        ..percore::config::PolicyConfig::default()
    }];
    assert!(server.reload(&next).unwrap().is_empty());
    // The same open connection is limited from the next request.
    let first = client.request(&get("/"));
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit"), Some(r#""tight";r=0;t=1"#));
    assert_eq!(client.request(&get("/")).status, 429);
    server.reload(&config).unwrap();
    assert_eq!(client.request(&get("/")).status, 200);
    server.stop().unwrap();
}

#[test]
fn an_invalid_configuration_is_refused_whole() {
    let config = support::config();
    let mut server = app().start(&config).unwrap();
    let mut bad = config.clone();
    bad.headers.frame_options = "SAMEORIGIN".into();
    bad.limits.max_headers = 0;
    let error = server.reload(&bad).unwrap_err().to_string();
    assert!(error.contains("limits.max_headers"), "{error}");
    let reply = Client::connect(addr(&server)).request(&get("/"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    server.stop().unwrap();
}

#[test]
fn sighup_rereads_the_file_and_refuses_a_broken_one() {
    let dir = std::env::temp_dir().join(format!("percore-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("percore.toml");
    std::fs::write(&file, "[headers]\nframe_options = \"DENY\"\n").unwrap();
    let (mut child, server, lines) =
        support::spawn_percore(&[("PERCORE_CONFIG", file.to_str().unwrap())]);
    let mut log = support::LogLines::new(lines);
    let frame = || {
        Client::connect(server)
            .request(&get("/plaintext"))
            .header("x-frame-options")
            .map(str::to_owned)
    };
    assert_eq!(frame().as_deref(), Some("DENY"));

    std::fs::write(
        &file,
        "[headers]\nframe_options = \"SAMEORIGIN\"\n[server]\nbacklog = 64\n",
    )
    .unwrap();
    support::signal(&child, libc::SIGHUP);
    log.wait_for("configuration reloaded");
    let kept = log.wait_for("change only with a restart");
    assert!(kept.contains("server.backlog"), "{kept}");
    assert_eq!(frame().as_deref(), Some("SAMEORIGIN"));

    std::fs::write(
        &file,
        "[headers]\nframe_options = \"ALLOW\"\n[limits]\nmax_headers = \"many\"\n",
    )
    .unwrap();
    support::signal(&child, libc::SIGHUP);
    let refused = log.wait_for("reload refused");
    assert!(refused.contains("limits.max_headers"), "{refused}");
    assert_eq!(frame().as_deref(), Some("SAMEORIGIN"));

    support::sigterm(&child);
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
