//! CORS through real sockets: preflights answered without a route, allow
//! fields on every response to an allowed origin, none for others, and the
//! configurations browsers refuse caught at start.

mod support;

use percore::{App, Config};
use support::{Client, addr};

fn server(configure: impl FnOnce(&mut Config)) -> percore::Server {
    let mut config = support::config();
    config.server.shards = Some(1);
    config.cors.allow_origins = vec!["https://app.example".into()];
    config.cors.expose_headers = vec!["x-total".into()];
    configure(&mut config);
    App::new()
        .get("/notes", async || "notes")
        .start(&config)
        .expect("server starts")
}

fn preflight(origin: &str, path: &str) -> Vec<u8> {
    format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: PUT\r\n\
         Access-Control-Request-Headers: content-type, x-trace\r\n\r\n"
    )
    .into_bytes()
}

fn get_from(origin: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\r\n").into_bytes()
}

#[test]
fn a_preflight_is_answered_without_a_route_of_its_own() {
    let server = server(|_| {});
    let mut client = Client::connect(addr(&server));
    // /notes routes only GET, /elsewhere nothing: both preflights succeed.
    for path in ["/notes", "/elsewhere"] {
        let reply = client.request(&preflight("https://app.example", path));
        assert_eq!(reply.status, 204, "{path}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some("GET, HEAD, POST")
        );
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("content-type, authorization")
        );
        assert_eq!(reply.header("access-control-max-age"), Some("600"));
        assert!(reply.header("vary").unwrap().contains("Origin"));
        assert!(reply.body.is_empty());
    }
    // An origin not listed is refused, in words.
    let refused = client.request(&preflight("https://evil.example", "/notes"));
    assert_eq!(refused.status, 403);
    assert!(
        refused.text().contains("cors.allow_origins"),
        "{}",
        refused.text()
    );
    assert_eq!(refused.header("access-control-allow-origin"), None);
    server.stop().unwrap();
}

#[test]
fn responses_to_an_allowed_origin_carry_the_allow_fields_and_others_do_not() {
    let server = server(|_| {});
    let mut client = Client::connect(addr(&server));
    let allowed = client.request(&get_from("https://app.example", "/notes"));
    assert_eq!(allowed.text(), "notes");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        Some("x-total")
    );
    // Error responses too: a script can read why it failed.
    let missing = client.request(&get_from("https://app.example", "/missing"));
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let other = client.request(&get_from("https://evil.example", "/notes"));
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
    let same_origin = client.request(&support::get("/notes"));
    assert_eq!(same_origin.header("access-control-allow-origin"), None);
    server.stop().unwrap();
}

#[test]
fn any_origin_and_any_header_without_credentials() {
    let server = server(|config| {
        config.cors.allow_origins = vec!["*".into()];
        config.cors.allow_headers = vec!["*".into()];
    });
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&preflight("https://anyone.example", "/notes"));
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    // "*" answers with what was asked for.
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("content-type, x-trace")
    );
    let get = client.request(&get_from("https://anyone.example", "/notes"));
    assert_eq!(get.header("access-control-allow-origin"), Some("*"));
    assert_eq!(get.header("vary"), None);
    server.stop().unwrap();
}

#[test]
fn credentials_name_the_origin() {
    let server = server(|config| config.cors.allow_credentials = true);
    let reply = Client::connect(addr(&server)).request(&get_from("https://app.example", "/notes"));
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    server.stop().unwrap();
}

#[test]
fn configurations_browsers_refuse_are_start_up_errors() {
    let mut config = support::config();
    config.cors.allow_origins = vec!["*".into()];
    config.cors.allow_credentials = true;
    let keys: Vec<String> = config.validate().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["cors.allow_credentials"]);
    config.cors.allow_credentials = false;
    config.cors.allow_origins = vec!["https://app.example/".into(), "app.example".into()];
    let problems = config.validate();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().all(|p| p.key == "cors.allow_origins"));
}
