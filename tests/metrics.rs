//! `/metrics`: Prometheus text with per-shard series, collected from every
//! shard by message; the admin listener moves it off the public listener.

mod support;

use std::collections::HashMap;

use percore::App;
use support::{Client, addr, get};

/// The integer samples of a Prometheus text body: `name{labels}` → value.
fn samples(body: &str) -> HashMap<String, u64> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn app() -> App {
    App::new()
        .get("/hello", async || "hi")
        .get("/users/{id}", async || "user")
        .get("/boom", async || -> &'static str { panic!("handler bug") })
}

#[test]
fn metrics_count_requests_by_route_and_class_on_every_shard() {
    let mut config = support::config();
    config.server.shards = Some(2);
    let server = app().start(&config).unwrap();
    let mut client = Client::connect(addr(&server));
    for _ in 0..3 {
        assert_eq!(client.request(&get("/hello")).status, 200);
    }
    assert_eq!(client.request(&get("/users/7")).status, 200);
    assert_eq!(client.request(&get("/nowhere")).status, 404);
    assert_eq!(client.request(&get("/boom")).status, 500);
    // A malformed request is a rejection, not a routed request.
    let mut bad = Client::connect(addr(&server));
    assert_eq!(bad.request(b"GET / HTTP/1.1\r\n\r\n").status, 400);

    let reply = client.request(&get("/metrics"));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text().to_owned();
    let samples = samples(&text);
    let total = |series: &str| -> u64 {
        (0..2)
            .map(|shard| {
                let key = series.replace("SHARD", &shard.to_string());
                samples.get(&key).copied().unwrap_or(0)
            })
            .sum()
    };
    let route = |method: &str, route: &str, code: &str| {
        total(&format!(
            r#"percore_requests_total{{shard="SHARD",method="{method}",route="{route}",protocol="HTTP/1.1",code="{code}"}}"#
        ))
    };
    assert_eq!(route("GET", "/hello", "2xx"), 3, "{text}");
    assert_eq!(route("GET", "/users/{id}", "2xx"), 1, "{text}");
    assert_eq!(route("", "(unmatched)", "4xx"), 1, "{text}");
    assert_eq!(route("GET", "/boom", "5xx"), 1, "{text}");
    assert_eq!(total(r#"percore_handler_panics_total{shard="SHARD"}"#), 1);
    assert_eq!(
        total(r#"percore_rejections_total{shard="SHARD",reason="missing_host"}"#),
        1
    );
    // Six routed requests before this scrape, each in the histogram.
    assert_eq!(
        total(r#"percore_request_duration_seconds_count{shard="SHARD"}"#),
        6,
        "{text}"
    );
    assert_eq!(
        total(r#"percore_request_duration_seconds_bucket{shard="SHARD",le="+Inf"}"#),
        6
    );
    assert!(total(r#"percore_connections_accepted_total{shard="SHARD"}"#) >= 2);
    // This connection is open while the scrape runs.
    assert!(total(r#"percore_connections_open{shard="SHARD"}"#) >= 1);
    for shard in 0..2 {
        assert_eq!(
            samples[&format!(r#"percore_shard_up{{shard="{shard}"}}"#)],
            1
        );
        assert_eq!(
            samples[&format!(r#"percore_shard_restarts_total{{shard="{shard}"}}"#)],
            0
        );
    }
    // The library API gives the same series.
    let library = self::samples(&server.metrics());
    for shard in 0..2 {
        assert_eq!(
            library[&format!(r#"percore_shard_up{{shard="{shard}"}}"#)],
            1
        );
    }
    server.stop().unwrap();
}

#[test]
fn the_admin_listener_serves_metrics_and_the_public_one_does_not() {
    let mut config = support::config();
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let server = app().start(&config).unwrap();
    let admin = server.admin_addr().expect("an admin listener");
    assert_ne!(admin, addr(&server));
    assert_eq!(
        Client::connect(addr(&server))
            .request(&get("/hello"))
            .status,
        200
    );
    assert_eq!(
        Client::connect(addr(&server))
            .request(&get("/metrics"))
            .status,
        404
    );
    let reply = Client::connect(admin).request(&get("/metrics"));
    assert_eq!(reply.status, 200);
    let samples = samples(reply.text());
    assert_eq!(
        samples[r#"percore_requests_total{shard="0",method="GET",route="/hello",protocol="HTTP/1.1",code="2xx"}"#],
        1
    );
    assert_eq!(Client::connect(admin).request(&get("/other")).status, 404);
    server.stop().unwrap();
}

#[test]
fn metrics_can_be_turned_off() {
    let mut config = support::config();
    config.metrics.path = String::new();
    let server = app().start(&config).unwrap();
    assert_eq!(
        Client::connect(addr(&server))
            .request(&get("/metrics"))
            .status,
        404
    );
    server.stop().unwrap();
}

#[test]
fn metrics_are_served_only_to_allowed_addresses() {
    let mut config = support::config();
    config.metrics.allow = vec!["127.0.0.1".into()];
    let server = app().start(&config).unwrap();
    let from = |ip: &str| {
        Client::connect_from(ip.parse().unwrap(), addr(&server)).request(&get("/metrics"))
    };
    let allowed = from("127.0.0.1");
    assert_eq!(allowed.status, 200);
    assert!(allowed.text().contains("percore_requests_total"));
    let refused = from("127.0.0.2");
    assert_eq!(refused.status, 403);
    assert!(
        refused.text().contains("metrics.allow"),
        "{}",
        refused.text()
    );
    // Other routes are served to everyone.
    let mut other = Client::connect_from("127.0.0.2".parse().unwrap(), addr(&server));
    assert_eq!(other.request(&get("/health")).status, 200);
    server.stop().unwrap();
}
