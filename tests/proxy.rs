//! The reverse proxy against real upstreams: Python's HTTP/1.1 server
//! (`tests/support/proxy_upstream.py`) and percore itself. Forwarding
//! fields, hop-by-hop fields, bodies both ways, streaming, failures (down,
//! slow, reset mid-body, one of two down), keep-alive reuse, balancing,
//! passive and active health, readiness, upgrades, metrics and the
//! configuration's errors.

mod support;

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use percore::config::{RouteConfig, ServerEntry, UpstreamConfig};
use percore::{App, Config, Server};
use support::Client;

/// The Python upstream with `listeners` ports, killed when dropped.
struct Upstream {
    _child: support::KillOnDrop,
    ports: Vec<u16>,
}

impl Upstream {
    fn start(listeners: usize) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/proxy_upstream.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg("--listeners")
            .arg(listeners.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (.ci/run installs it)");
        let stdout = child.stdout.take().unwrap();
        let child = support::KillOnDrop(child);
        let mut ports = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line == "ready" {
                break;
            }
            let port = line.strip_prefix("port ").expect("a port line");
            ports.push(port.parse().unwrap());
        }
        assert_eq!(ports.len(), listeners, "the upstream did not start");
        Self {
            _child: child,
            ports,
        }
    }

    fn address(&self, at: usize) -> String {
        format!("127.0.0.1:{}", self.ports[at])
    }

    /// `GET path` straight to listener `at`.
    fn get(&self, at: usize, path: &str) -> support::Reply {
        let addr: SocketAddr = self.address(at).parse().unwrap();
        Client::connect(addr).request(&support::get(path))
    }

    fn post(&self, at: usize, path: &str) {
        let addr: SocketAddr = self.address(at).parse().unwrap();
        let request = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            Client::connect(addr).request(request.as_bytes()).status,
            200
        );
    }
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn upstream(name: &str, servers: &[String]) -> UpstreamConfig {
    UpstreamConfig {
        name: name.to_owned(),
        servers: servers.iter().cloned().map(ServerEntry::Address).collect(),
        connect_timeout_ms: 2000,
        read_timeout_secs: 5,
        ..UpstreamConfig::default()
    }
}

fn route(prefix: &str, proxy: &str) -> RouteConfig {
    RouteConfig {
        prefix: prefix.to_owned(),
        proxy: proxy.to_owned(),
        ..RouteConfig::default()
    }
}

/// percore proxying `/` to `servers`, shaped further by `tweak`.
fn proxy(servers: &[String], tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = support::config();
    config.upstream = vec![upstream("app", servers)];
    config.route = vec![route("/", "app")];
    tweak(&mut config);
    App::new().start(&config).expect("the proxy starts")
}

fn json(reply: &support::Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("JSON: {}", reply.text()))
}

/// The values of header `name` the upstream saw, in order.
fn seen<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|pair| pair[1].as_str().unwrap())
        .collect()
}

fn metrics(server: &Server) -> String {
    server.metrics()
}

#[test]
fn forwarding_fields_are_set_and_hop_by_hop_ones_dropped_both_ways() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |c| c.log.request_id = true);
    let mut client = Client::connect(support::addr(&server));
    let reply = client.request(
        b"GET /echo/a?x=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive, X-Secret\r\n\
          X-Secret: hop\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
          X-Forwarded-For: 203.0.113.9\r\nX-Request-ID: req-42\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    let echo = json(&reply);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["target"], "/echo/a?x=1");
    assert_eq!(seen(&echo, "host"), ["shop.example"]);
    assert_eq!(seen(&echo, "accept"), ["text/plain"]);
    for gone in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "connection",
    ] {
        assert!(
            seen(&echo, gone).is_empty(),
            "{gone} reached the upstream: {echo}"
        );
    }
    // The peer is not a trusted proxy: its X-Forwarded-For is not kept.
    assert_eq!(seen(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen(&echo, "x-forwarded-host"), ["shop.example"]);
    assert_eq!(
        seen(&echo, "forwarded"),
        ["for=127.0.0.1;proto=http;host=\"shop.example\""]
    );
    assert_eq!(seen(&echo, "x-request-id"), ["req-42"]);
    // The response: the upstream's hop-by-hop fields are gone, the framing
    // is percore's, and percore's own fields appear once.
    assert!(
        reply.header("x-upstream-hop").is_none(),
        "{:?}",
        reply.headers
    );
    assert!(reply.header("keep-alive").is_none(), "{:?}", reply.headers);
    assert!(reply.header("connection").is_none(), "{:?}", reply.headers);
    let servers: Vec<_> = reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("server"))
        .collect();
    assert_eq!(servers.len(), 1, "{:?}", reply.headers);
    assert_eq!(reply.header("x-request-id"), Some("req-42"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        reply.header("content-length").unwrap(),
        reply.body.len().to_string()
    );
    // The connection is kept alive for the next request.
    let again = client.request(&support::get("/whoami"));
    assert_eq!(again.text(), up.ports[0].to_string());
    server.stop().unwrap();
}

#[test]
fn a_trusted_proxys_forwarded_for_is_kept_and_extended() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |c| {
        c.rate_limit.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.route[0].via = true;
    });
    let reply = Client::connect(support::addr(&server)).request(
        b"GET /echo HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n",
    );
    let echo = json(&reply);
    assert_eq!(seen(&echo, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(seen(&echo, "x-real-ip"), ["203.0.113.9"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(seen(&echo, "via"), ["1.1 percore"]);
    server.stop().unwrap();
}

#[test]
fn prefixes_are_stripped_and_host_set_as_the_route_says() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |c| {
        c.route = vec![RouteConfig {
            strip_prefix: true,
            host: "upstream".into(),
            request_headers: [("X-Env".to_owned(), "test".to_owned())].into(),
            response_headers: [("Cache-Control".to_owned(), "no-store".to_owned())].into(),
            ..route("/api/", "app")
        }];
    });
    let mut client = Client::connect(support::addr(&server));
    let reply = client.request(&support::get("/api/echo?q=2"));
    let echo = json(&reply);
    assert_eq!(echo["target"], "/echo?q=2");
    assert_eq!(seen(&echo, "host"), [up.address(0).as_str()]);
    assert_eq!(seen(&echo, "x-env"), ["test"]);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // Outside the prefix: not proxied.
    assert_eq!(client.request(&support::get("/echo")).status, 404);
    // `/api` itself is not under `/api/`.
    assert_eq!(client.request(&support::get("/api")).status, 404);
    server.stop().unwrap();
}

#[test]
fn request_bodies_stream_upstream_with_their_framing() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |c| {
        c.route[0].max_body_bytes = Some(64 << 20);
    });
    let body: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let sum = body.iter().map(|&b| u64::from(b)).sum::<u64>() % 1_000_003;
    let mut client = Client::connect(support::addr(&server));
    client.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(&body);
    let echo = json(&client.read_reply(false));
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_sum"], sum);
    assert_eq!(echo["framing"], "length");
    // Chunked from the client, arriving after the head (the client waits
    // for 100 Continue): chunked to the upstream, as it arrives.
    client.send(b"PUT /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    let interim = client.read_reply(true);
    assert_eq!(interim.status, 100);
    client.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let echo = json(&client.read_reply(false));
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_len"], 11);
    assert_eq!(echo["framing"], "chunked");
    assert!(seen(&echo, "expect").is_empty(), "{echo}");
    // A chunked body that arrived whole with its head goes with a length.
    client.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    let echo = json(&client.read_reply(false));
    assert_eq!(echo["body_len"], 3);
    // Over the route's limit: 413 from percore, before the upstream.
    let mut client = Client::connect(support::addr(&server));
    let reply =
        client.request(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999\r\n\r\n");
    assert_eq!(reply.status, 413);
    server.stop().unwrap();
}

#[test]
fn responses_stream_to_the_client_intact() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |_| {});
    let mut client = Client::connect(support::addr(&server));
    // Chunked from the upstream: chunked to the client, every piece.
    let reply = client.request(&support::get("/stream?n=20"));
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    let expected: Vec<String> = (0..20).map(|i| format!("piece {i}\n")).collect();
    let expected = expected.concat();
    assert_eq!(reply.text(), expected);
    // A large body with Content-Length keeps it, and arrives whole.
    let size = 20 << 20;
    let reply = client.request(&support::get(&format!("/big?bytes={size}")));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert_eq!(reply.body.len(), size);
    assert!(
        reply
            .body
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i % 256)
    );
    // HEAD: the upstream's length, no body; the connection stays usable.
    client.send(b"HEAD /big?bytes=5000 HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = client.read_reply(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5000"));
    assert_eq!(client.request(&support::get("/whoami")).status, 200);
    server.stop().unwrap();
}

/// Reads everything until the server closes.
fn read_to_close(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    all
}

#[test]
fn an_upstream_reset_mid_body_cuts_the_clients_response_off() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |_| {});
    let addr = support::addr(&server);
    let all = read_to_close(addr, &support::get("/reset"));
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("Content-Length: 1000"), "{head}");
    assert!(
        body.len() < 1000,
        "a cut body looked complete: {} bytes",
        body.len()
    );
    // Chunked: no last chunk.
    let all = read_to_close(addr, &support::get("/reset-chunked"));
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
    assert!(text.contains("hello"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a cut body was terminated: {text:?}"
    );
    let m = metrics(&server);
    let broken = format!(
        "percore_upstream_failures_total{{shard=\"0\",upstream=\"app\",server=\"{}\",kind=\"broken\"}}",
        up.address(0)
    );
    assert!(support::sample(&m, &broken) >= 2, "{m}");
    server.stop().unwrap();
}

#[test]
fn a_down_upstream_is_a_502_and_a_slow_one_a_504() {
    let up = Upstream::start(1);
    let down = format!("127.0.0.1:{}", closed_port());
    let server = proxy(std::slice::from_ref(&down), |c| {
        c.upstream.push(UpstreamConfig {
            read_timeout_secs: 1,
            ..upstream("slow", &[up.address(0)])
        });
        c.route = vec![route("/slow", "slow"), route("/", "app")];
    });
    let mut client = Client::connect(support::addr(&server));
    let started = Instant::now();
    let reply = client.request(&support::get("/anything"));
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not within the connect timeout"
    );
    assert!(
        json(&reply)["detail"]
            .as_str()
            .unwrap()
            .contains("upstream app")
    );
    let reply = client.request(&support::get("/slow?ms=3000"));
    assert_eq!(reply.status, 504, "{}", reply.text());
    server.stop().unwrap();
}

#[test]
fn an_error_page_answers_for_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("50x.html");
    std::fs::write(&page, "<h1>down for maintenance</h1>").unwrap();
    let down = format!("127.0.0.1:{}", closed_port());
    let server = proxy(&[down], |c| {
        c.route[0].error_page = page.display().to_string();
    });
    let reply = Client::connect(support::addr(&server)).request(&support::get("/x"));
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.text(), "<h1>down for maintenance</h1>");
    server.stop().unwrap();
}

#[test]
fn with_one_of_two_servers_down_every_request_is_served_by_the_other() {
    let up = Upstream::start(1);
    let down = format!("127.0.0.1:{}", closed_port());
    let server = proxy(&[down.clone(), up.address(0)], |_| {});
    let mut client = Client::connect(support::addr(&server));
    for _ in 0..20 {
        let reply = client.request(&support::get("/whoami"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), up.ports[0].to_string());
    }
    // A POST (not idempotent) is also retried after a connect failure:
    // nothing reached the first server.
    let reply = client.request(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(reply.status, 200);
    // The down server rests after its failure (max_fails = 1).
    let m = metrics(&server);
    let up_series = |addr: &str| {
        format!("percore_upstream_server_up{{shard=\"0\",upstream=\"app\",server=\"{addr}\"}}")
    };
    assert_eq!(support::sample(&m, &up_series(&down)), 0, "{m}");
    assert_eq!(support::sample(&m, &up_series(&up.address(0))), 1, "{m}");
    server.stop().unwrap();
}

#[test]
fn keep_alive_connections_to_the_upstream_are_reused() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |_| {});
    let before: u64 = up.get(0, "/connections").text().parse().unwrap();
    let mut client = Client::connect(support::addr(&server));
    for _ in 0..50 {
        assert_eq!(client.request(&support::get("/echo")).status, 200);
    }
    let after: u64 = up.get(0, "/connections").text().parse().unwrap();
    // 50 requests, one connection (plus the two /connections probes).
    assert!(
        after - before <= 3,
        "{} connections for 50 requests",
        after - before
    );
    server.stop().unwrap();
}

/// `count` requests for `path` at once, each on its own connection.
fn burst(server: &Server, path: &str, count: usize) {
    let start = std::sync::Barrier::new(count);
    std::thread::scope(|scope| {
        for _ in 0..count {
            scope.spawn(|| {
                let mut client = Client::connect(support::addr(server));
                start.wait();
                assert_eq!(client.request(&support::get(path)).status, 200);
            });
        }
    });
}

#[test]
fn a_bursts_connections_beyond_keepalive_linger_then_close() {
    let up = Upstream::start(1);
    let idle = format!(
        "percore_upstream_connections_idle{{shard=\"0\",upstream=\"app\",server=\"{}\"}}",
        up.address(0)
    );
    let open = idle.replace("_idle{", "_open{");
    // nginx's policy: what is idle beyond `keepalive` closes at once.
    let server = proxy(&[up.address(0)], |c| {
        c.upstream[0].keepalive = 1;
        c.upstream[0].keepalive_surplus_ms = 0;
    });
    burst(&server, "/slow?ms=300", 4);
    await_sample(&server, &open, 1);
    await_sample(&server, &idle, 1);
    server.stop().unwrap();

    // percore's default: the burst's connections stay for a while, so a
    // second burst reuses them, then the surplus closes with no traffic.
    let server = proxy(&[up.address(0)], |c| {
        c.upstream[0].keepalive = 1;
        c.upstream[0].keepalive_surplus_ms = 3000;
    });
    burst(&server, "/slow?ms=300", 4);
    let m = metrics(&server);
    let lingering = support::sample(&m, &idle);
    assert!(lingering > 1, "{lingering} idle after a burst of 4:\n{m}");
    let before: u64 = up.get(0, "/connections").text().parse().unwrap();
    burst(&server, "/slow?ms=10", usize::try_from(lingering).unwrap());
    let after: u64 = up.get(0, "/connections").text().parse().unwrap();
    // The probe's own connection only.
    assert_eq!(after - before, 1, "the second burst made new connections");
    await_sample(&server, &idle, 1);
    await_sample(&server, &open, 1);
    server.stop().unwrap();
}

#[test]
fn round_robin_alternates_and_ip_hash_sticks() {
    let up = Upstream::start(2);
    let servers = [up.address(0), up.address(1)];
    let server = proxy(&servers, |_| {});
    let mut client = Client::connect(support::addr(&server));
    let ports: Vec<String> = (0..6)
        .map(|_| client.request(&support::get("/whoami")).text().to_owned())
        .collect();
    let a = ports
        .iter()
        .filter(|p| **p == up.ports[0].to_string())
        .count();
    assert_eq!(a, 3, "{ports:?}");
    assert!(ports.windows(2).all(|w| w[0] != w[1]), "{ports:?}");
    server.stop().unwrap();

    let server = proxy(&servers, |c| c.upstream[0].balance = "ip_hash".into());
    let mut client = Client::connect(support::addr(&server));
    let first = client.request(&support::get("/whoami")).text().to_owned();
    for _ in 0..10 {
        assert_eq!(client.request(&support::get("/whoami")).text(), first);
    }
    server.stop().unwrap();
}

/// Polls `/metrics` until `series` reads `value`, for at most 10 s.
fn await_sample(server: &Server, series: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(server);
        if m.lines().any(|l| {
            l.strip_prefix(series)
                .is_some_and(|v| v.trim() == value.to_string())
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never read {value}:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn active_health_checks_take_a_server_out_and_bring_it_back() {
    let up = Upstream::start(2);
    let servers = [up.address(0), up.address(1)];
    let server = proxy(&servers, |c| {
        let health = &mut c.upstream[0].health;
        health.path = "/health".into();
        health.interval_secs = 1;
        health.fall = 1;
        health.rise = 1;
        health.readiness = true;
    });
    let series = format!(
        "percore_upstream_server_up{{shard=\"0\",upstream=\"app\",server=\"{}\"}}",
        up.address(0)
    );
    up.post(0, "/health/down");
    await_sample(&server, &series, 0);
    let mut client = Client::connect(support::addr(&server));
    for _ in 0..6 {
        assert_eq!(
            client.request(&support::get("/whoami")).text(),
            up.ports[1].to_string()
        );
    }
    assert_eq!(client.request(&support::get("/health/ready")).status, 200);
    // Both down: readiness names the upstream; health stays local.
    up.post(1, "/health/down");
    let other = series.replace(&up.address(0), &up.address(1));
    await_sample(&server, &other, 0);
    let ready = client.request(&support::get("/health/ready"));
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("app"), "{}", ready.text());
    assert_eq!(client.request(&support::get("/health")).status, 200);
    up.post(0, "/health/up");
    await_sample(&server, &series, 1);
    assert_eq!(
        client.request(&support::get("/whoami")).text(),
        up.ports[0].to_string()
    );
    server.stop().unwrap();
}

#[test]
fn a_websocket_upgrade_is_tunnelled_both_ways() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |_| {});
    let mut stream = std::net::TcpStream::connect(support::addr(&server)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = support::websocket_handshake(&mut stream, "/ws");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains(support::WEBSOCKET_ACCEPT), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    let large = vec![7u8; 100_000];
    for message in [&b"hello"[..], &large[..]] {
        stream.write_all(message).unwrap();
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message);
    }
    let m = metrics(&server);
    assert_eq!(
        support::sample(
            &m,
            "percore_upstream_tunnels_open{shard=\"0\",upstream=\"app\"}"
        ),
        1
    );
    drop(stream);
    await_sample(
        &server,
        "percore_upstream_tunnels_open{shard=\"0\",upstream=\"app\"}",
        0,
    );
    // An upgrade the route does not allow is a plain request.
    let reply = Client::connect(support::addr(&server))
        .request(b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
    let echo = json(&reply);
    assert!(seen(&echo, "upgrade").is_empty(), "{echo}");
    server.stop().unwrap();
}

#[test]
fn the_app_proxies_from_code_to_percore_itself() {
    let upstream_app = App::new().get(
        "/hello/{name}",
        async |percore::Path(name): percore::Path<String>| format!("hello {name}"),
    );
    let upstream_server = support::start(upstream_app, 1);
    let target = support::addr(&upstream_server).to_string();
    let app = App::new().get("/local", async || "local").proxy(
        "/remote/",
        percore::proxy::Upstream::new("backend").server(&target),
    );
    let server = support::start(app, 1);
    let mut client = Client::connect(support::addr(&server));
    assert_eq!(client.request(&support::get("/local")).text(), "local");
    for _ in 0..5 {
        let reply = client.request(&support::get("/remote/hello/ada"));
        assert_eq!(reply.status, 404, "the path is kept: {}", reply.text());
    }
    server.stop().unwrap();
    let app = App::new().proxy_with(
        RouteConfig {
            prefix: "/remote/".into(),
            strip_prefix: true,
            ..RouteConfig::default()
        },
        percore::proxy::Upstream::new("backend").server(&target),
    );
    let server = support::start(app, 1);
    let mut client = Client::connect(support::addr(&server));
    for _ in 0..5 {
        assert_eq!(
            client.request(&support::get("/remote/hello/ada")).text(),
            "hello ada"
        );
    }
    let accepted = support::sample(
        &metrics(&upstream_server),
        "percore_connections_accepted_total{shard=\"0\"}",
    );
    assert!(
        accepted <= 3,
        "{accepted} upstream connections for 5 requests"
    );
    server.stop().unwrap();
    upstream_server.stop().unwrap();
}

#[test]
fn a_route_may_have_its_own_rate_limit_policy() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.policy = vec![percore::config::PolicyConfig {
            name: "api".into(),
            rate: 1.0,
            burst: 2,
            routes: vec!["/nothing".into()],
            ..percore::config::PolicyConfig::default()
        }];
        c.route[0].rate_limit = "api".into();
    });
    let mut client = Client::connect(support::addr(&server));
    let statuses: Vec<u16> = (0..4)
        .map(|_| client.request(&support::get("/whoami")).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429, 429]);
    // Health is never limited.
    assert_eq!(client.request(&support::get("/health")).status, 200);
    server.stop().unwrap();
}

#[test]
fn bad_proxy_configurations_are_refused_with_their_keys() {
    let mut config = support::config();
    config.route = vec![route("/api/", "missing")];
    let error = App::new().start(&config).unwrap_err().to_string();
    assert!(error.contains("route[0].proxy"), "{error}");
    let mut config = support::config();
    config.upstream = vec![UpstreamConfig {
        balance: "fastest".into(),
        keepalive_surplus_ms: 3_600_000,
        ..upstream("app", &["nowhere".into()])
    }];
    let error = App::new().start(&config).unwrap_err().to_string();
    assert!(error.contains("upstream[0].servers[0].address"), "{error}");
    assert!(error.contains("upstream[0].balance"), "{error}");
    assert!(
        error.contains("upstream[0].keepalive_surplus_ms"),
        "{error}"
    );
    // A prefix the app also routes.
    let mut config = support::config();
    config.upstream = vec![upstream("app", &["127.0.0.1:9".into()])];
    config.route = vec![route("/api", "app")];
    let error = App::new()
        .get("/api", async || "mine")
        .start(&config)
        .unwrap_err()
        .to_string();
    assert!(error.contains("route[0]"), "{error}");
}

/// The seeds' `gzip on` (proxied JSON) and `location /static` (alias,
/// `expires 1y`, `Cache-Control: public, immutable`) through `tls`.
fn seeds_gzip_and_static(tls: &mut support::pki::Tls) {
    use support::pki;
    // gzip on, gzip_proxied any: a proxied JSON body over 1000 bytes.
    let pad = "p".repeat(1500);
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: api.example.com\r\nAccept-Encoding: gzip\r\nX-Pad: {pad}\r\n\r\n"
    );
    let zipped = pki::exchange(tls, request.as_bytes()).unwrap();
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("Accept-Encoding"));
    let mut json = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&zipped.body[..]),
        &mut json,
    )
    .unwrap();
    assert_eq!(
        seen(&serde_json::from_slice(&json).unwrap(), "x-pad"),
        [pad.as_str()]
    );
    // location /static: alias, expires 1y, Cache-Control public, immutable.
    let css = pki::exchange(
        tls,
        b"GET /static/app.css HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    )
    .unwrap();
    assert_eq!(css.status, 200);
    assert_eq!(css.body, b"body { margin: 0 }\n");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    // nginx sends `expires`' max-age and add_header's value as two fields.
    assert_eq!(
        css.header("cache-control"),
        Some("max-age=31536000, public, immutable")
    );
    assert!(css.header("expires").is_some() && css.header("etag").is_some());
}

#[test]
fn the_seeds_nginx_configuration_translated_serves_through_percore() {
    use support::pki;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tuning/nginx-seeds.toml"
    ))
    .unwrap();
    let mut config = Config::from_toml(&text).expect("the translation parses");
    let up = Upstream::start(2);
    let pki = pki::Pki::new("seeds");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("50x.html");
    std::fs::write(&page, "<h1>maintenance</h1>").unwrap();
    // This machine's ports, certificate and app; everything else as written.
    config.server.shards = Some(1);
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.redirect_listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![pki.leaf("api", &["api.example.com"])];
    for (at, server) in config.upstream[0].servers.iter_mut().enumerate() {
        if let ServerEntry::Full(server) = server {
            server.address = up.address(at);
        }
    }
    config.route[0].error_page = page.display().to_string();
    let assets = tempfile::tempdir().unwrap();
    std::fs::write(assets.path().join("app.css"), "body { margin: 0 }\n").unwrap();
    let files = config.route[1].files.as_mut().expect("the /static/ route");
    files.alias = assets.path().display().to_string();
    let server = App::new().start(&config).expect("the translation starts");
    // Plain HTTP: 301 to HTTPS.
    let redirect = Client::connect(server.redirect_addrs()[0])
        .request(b"GET /items?a=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    assert_eq!(redirect.status, 301);
    assert!(
        redirect
            .header("location")
            .unwrap()
            .starts_with("https://api.example.com")
    );
    // HTTPS: proxied, with the security headers and the forwarding fields.
    let client = pki.client();
    let mut tls = pki::connect(server.tls_addrs()[0], "api.example.com", &client).unwrap();
    let answer = pki::exchange(
        &mut tls,
        b"GET /echo HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(answer.header("x-xss-protection"), Some("1; mode=block"));
    assert!(answer.header("content-security-policy").is_some());
    assert!(answer.header("strict-transport-security").is_some());
    let id = answer
        .header("x-request-id")
        .expect("a request ID")
        .to_owned();
    let echo: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(seen(&echo, "x-request-id"), [id.as_str()]);
    assert_eq!(seen(&echo, "host"), ["api.example.com"]);
    seeds_gzip_and_static(&mut tls);
    // A WebSocket through TLS and the tunnel.
    let mut ws = pki::connect(server.tls_addrs()[0], "api.example.com", &client).unwrap();
    let head = support::websocket_handshake(&mut ws, "/ws");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    ws.write_all(b"ping over tls").unwrap();
    let mut echoed = [0u8; 13];
    ws.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping over tls");
    drop(ws);
    // Health is percore's own, and never limited; the API is (10 r/s,
    // burst 20): of 60 requests one after another, some are refused
    // unless they take over 3.9 s (21 at once, then one per 100 ms).
    let mut refused = 0;
    for _ in 0..60 {
        let answer = pki::exchange(
            &mut tls,
            b"GET /whoami HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        )
        .unwrap();
        if answer.status == 429 {
            refused += 1;
        }
    }
    assert!(refused > 0, "60 requests in a row, none refused (burst 20)");
    let health = pki::exchange(
        &mut tls,
        b"GET /health HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    )
    .unwrap();
    assert_eq!(health.status, 200);
    server.stop().unwrap();
}

#[test]
fn the_proxy_serves_on_glommio_streams_too() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |c| {
        c.server.io = percore::config::IoPath::Glommio;
    });
    let mut client = Client::connect(support::addr(&server));
    for _ in 0..10 {
        assert_eq!(
            client.request(&support::get("/whoami")).text(),
            up.ports[0].to_string()
        );
    }
    let reply = client.request(&support::get("/big?bytes=3000000"));
    assert_eq!(reply.body.len(), 3_000_000);
    server.stop().unwrap();
}

/// The resident memory of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_client_that_stops_reading_holds_a_bounded_buffer_not_the_response() {
    let up = Upstream::start(1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n[[route]]\nprefix = \"/\"\nproxy = \"app\"\n",
            up.address(0)
        ),
    )
    .unwrap();
    let spawned = support::spawn_percore_args(
        &[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let proxy = support::KillOnDrop(spawned.child);
    let before = rss(proxy.0.id());
    // Ask for 512 MiB and read none of it.
    let mut stalled = std::net::TcpStream::connect(spawned.addrs[0]).unwrap();
    stalled
        .write_all(&support::get("/big?bytes=536870912"))
        .unwrap();
    // Wait until the upstream stops being able to send (bounded): when the
    // proxy stops reading from it, its count stays put.
    let sent = || -> u64 { up.get(0, "/sent").text().parse().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = sent();
    let mut steady = 0;
    while steady < 5 {
        assert!(Instant::now() < deadline, "the upstream never stalled");
        std::thread::sleep(Duration::from_millis(100));
        let now = sent();
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    let grown = rss(proxy.0.id()).saturating_sub(before);
    eprintln!("upstream sent {last} bytes; proxy grew {grown} bytes");
    assert!(
        last < 64 << 20,
        "{last} bytes left the upstream for a client that reads none"
    );
    assert!(
        grown < 32 << 20,
        "the proxy grew by {grown} bytes for one stalled client"
    );
    // The stalled client still gets its bytes when it reads.
    let mut head = [0u8; 4096];
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stalled.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"));
    drop(proxy);
}

#[test]
fn a_reload_moves_an_upstream_to_new_servers_and_keeps_its_routes() {
    let up = Upstream::start(2);
    let mut config = support::config();
    config.upstream = vec![upstream("app", &[up.address(0)])];
    config.route = vec![route("/", "app")];
    let mut server = App::new().start(&config).expect("the proxy starts");
    let mut client = Client::connect(support::addr(&server));
    assert_eq!(
        client.request(&support::get("/whoami")).text(),
        up.ports[0].to_string()
    );
    config.upstream = vec![upstream("app", &[up.address(1)])];
    server.reload(&config).expect("the reload is accepted");
    // The same client connection, the upstream's new server.
    assert_eq!(
        client.request(&support::get("/whoami")).text(),
        up.ports[1].to_string()
    );
    // Routes change only with a restart: such a reload is refused whole.
    let mut changed = config.clone();
    changed.route = vec![route("/other/", "app")];
    let error = server.reload(&changed).unwrap_err().to_string();
    assert!(error.contains("route"), "{error}");
    assert_eq!(
        client.request(&support::get("/whoami")).text(),
        up.ports[1].to_string()
    );
    server.stop().unwrap();
}

#[test]
fn a_route_without_an_upstream_limits_the_apps_own_routes_under_it() {
    let app = App::new()
        .post("/reports/{id}", async |body: percore::Bytes| {
            format!("{} bytes", body.0.len())
        })
        .get("/reports/slow", async || {
            glommio::timer::sleep(Duration::from_secs(5)).await;
            "late"
        })
        .get("/reports/{id}", async || "report")
        .post("/other", async |body: percore::Bytes| {
            format!("{} bytes", body.0.len())
        });
    let mut config = support::config();
    config.rate_limit.enabled = true;
    config.rate_limit.policy = vec![percore::config::PolicyConfig {
        name: "reports".into(),
        rate: 0.5,
        burst: 3,
        routes: vec!["/nothing".into()],
        ..percore::config::PolicyConfig::default()
    }];
    config.route = vec![RouteConfig {
        prefix: "/reports/".into(),
        max_body_bytes: Some(10),
        rate_limit: "reports".into(),
        timeout_secs: 1,
        ..RouteConfig::default()
    }];
    let server = app.start(&config).expect("starts");
    let mut client = Client::connect(support::addr(&server));
    let post = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // The body limit: the route's under the prefix, the default elsewhere.
    let mut other = Client::connect(support::addr(&server));
    assert_eq!(
        other
            .request(post("/other", "twenty bytes of body").as_bytes())
            .status,
        200
    );
    assert_eq!(
        client.request(post("/reports/1", "tiny").as_bytes()).status,
        200
    );
    let mut big = Client::connect(support::addr(&server));
    assert_eq!(
        big.request(post("/reports/1", "twenty bytes of body").as_bytes())
            .status,
        413
    );
    // The timeout: 504 well before the handler's 5 s.
    let started = Instant::now();
    assert_eq!(client.request(&support::get("/reports/slow")).status, 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    // The policy: three at once (two spent above), then 429; /other is not under it.
    let mut client = Client::connect(support::addr(&server));
    let statuses: Vec<u16> = (0..4)
        .map(|_| client.request(&support::get("/reports/2")).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    for _ in 0..4 {
        assert_eq!(other.request(post("/other", "x").as_bytes()).status, 200);
    }
    server.stop().unwrap();

    // A table that covers nothing is a mistake, said at start.
    let mut config = support::config();
    config.route = vec![RouteConfig {
        prefix: "/reprots/".into(),
        max_body_bytes: Some(10),
        ..RouteConfig::default()
    }];
    let error = App::new()
        .get("/reports/{id}", async || "report")
        .start(&config)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("route[0]") && error.contains("no route of the app"),
        "{error}"
    );
}

#[test]
fn a_kept_alive_connection_the_upstream_closed_is_replaced_not_answered_502() {
    let up = Upstream::start(1);
    let server = proxy(&[up.address(0)], |_| {});
    let mut client = Client::connect(support::addr(&server));
    for _ in 0..5 {
        // The upstream answers as if it kept the connection, then closes
        // it: the next request meets the closed one in the pool.
        assert_eq!(client.request(&support::get("/then-close")).text(), "bye");
        let reply = client.request(&support::get("/whoami"));
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let m = metrics(&server);
    let series = format!(
        "percore_upstream_server_up{{shard=\"0\",upstream=\"app\",server=\"{}\"}}",
        up.address(0)
    );
    assert_eq!(
        support::sample(&m, &series),
        1,
        "a stale connection counted as a failure:\n{m}"
    );
    server.stop().unwrap();
}
