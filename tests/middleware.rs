//! Middleware, route groups and the fallback through real sockets: layers
//! read the request, answer it themselves or run the chain and change the
//! response; groups nest under a prefix with their own layers; a route on
//! a built-in path is a start-up error, not a silent shadow.

mod support;

use percore::{App, Error, Next, Request, ResponseWriter, Scope, Status, from_fn};
use support::{Client, addr, get, start};

/// Appends `name` to the `X-Trail` header of the response, after the
/// rest of the chain: the outermost layer appends last.
fn trail(name: &'static str) -> percore::Layer {
    from_fn(
        async move |request: &mut Request<'_>,
                    response: &mut ResponseWriter<'_>,
                    next: Next<'_>| {
            next.run(request, response).await;
            response.insert_header("X-Trail", name.as_bytes());
        },
    )
}

/// Refuses requests without `Authorization: Bearer secret` before the
/// handler runs.
async fn bearer(request: &mut Request<'_>, response: &mut ResponseWriter<'_>, next: Next<'_>) {
    if request.header("authorization") != Some(b"Bearer secret".as_slice()) {
        response.insert_header("WWW-Authenticate", b"Bearer");
        return response.send_error(Status::UNAUTHORIZED, "a bearer token is required");
    }
    next.run(request, response).await;
}

fn app() -> App {
    let admin = Scope::new()
        .get("/stats", async || "stats")
        .get("", async || "admin home")
        .layer(from_fn(bearer))
        .layer(trail("admin"));
    App::new()
        .get("/", async || "home")
        .get("/teapot", async || "short and stout")
        .any("/anything", async || "any method")
        .options("/opts", async || (Status::NO_CONTENT, ""))
        .get("/panics-in-layer", async || "never seen")
        .nest("/admin", admin)
        .scope("/v1", |v1| {
            v1.get("/ping", async || "pong").layer(trail("v1"))
        })
        .fallback(async || (Status::NOT_FOUND, "nothing here, from the app"))
        .layer(trail("app-inner"))
        .layer(trail("app-outer"))
        .layer(from_fn(
            async |request: &mut Request<'_>, response: &mut ResponseWriter<'_>, next: Next<'_>| {
                let teapot = request.path() == "/teapot";
                assert!(request.path() != "/panics-in-layer", "layer bug");
                next.run(request, response).await;
                if teapot {
                    response.replace_status(Status::IM_A_TEAPOT);
                }
            },
        ))
}

fn trails(reply: &support::Reply) -> Vec<&str> {
    reply
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-trail"))
        .map(|(_, value)| value.as_str())
        .collect()
}

#[test]
fn app_layers_wrap_every_route_the_last_added_outermost() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "home");
    // The inner layer finished first, so its header comes first.
    assert_eq!(trails(&reply), ["app-inner", "app-outer"]);
    server.stop().unwrap();
}

#[test]
fn a_layer_changes_the_status_after_the_handler() {
    let server = start(app(), 1);
    let reply = Client::connect(addr(&server)).request(&get("/teapot"));
    assert_eq!(reply.status, 418);
    assert_eq!(reply.text(), "short and stout");
    server.stop().unwrap();
}

#[test]
fn a_group_has_its_prefix_and_its_own_layers() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    // Refused by the group's auth layer: the handler never ran.
    let refused = client.request(&get("/admin/stats"));
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert!(
        refused.text().contains("bearer token"),
        "{}",
        refused.text()
    );
    assert_eq!(trails(&refused), ["admin", "app-inner", "app-outer"]);
    let allowed = client
        .request(b"GET /admin/stats HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\n\r\n");
    assert_eq!((allowed.status, allowed.text()), (200, "stats"));
    let home =
        client.request(b"GET /admin HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer secret\r\n\r\n");
    assert_eq!(home.text(), "admin home");
    // Another group's layer does not reach here, and this one's not there.
    let ping = client.request(&get("/v1/ping"));
    assert_eq!(ping.text(), "pong");
    assert_eq!(trails(&ping), ["v1", "app-inner", "app-outer"]);
    server.stop().unwrap();
}

#[test]
fn any_and_options_routes() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let reply = client.request(
            format!("{method} /anything HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(reply.status, 200, "{method}");
    }
    let reply = client.request(b"OPTIONS /opts HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 204);
    server.stop().unwrap();
}

#[test]
fn the_fallback_answers_unmatched_paths_inside_the_app_layers() {
    let server = start(app(), 1);
    let reply = Client::connect(addr(&server)).request(&get("/no/such/path"));
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), "nothing here, from the app");
    assert_eq!(trails(&reply), ["app-inner", "app-outer"]);
    server.stop().unwrap();
}

#[test]
fn a_panic_in_a_layer_is_a_500_and_the_connection_serves_on() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/panics-in-layer"));
    assert_eq!(reply.status, 500);
    assert_eq!(client.request(&get("/")).text(), "home");
    server.stop().unwrap();
}

#[test]
fn a_route_on_a_built_in_path_is_a_start_up_error_unless_the_built_in_moves() {
    let app = || App::new().get("/health", async || "my own health");
    let mut config = support::config();
    config.server.shards = Some(1);
    let Err(Error::Config(problems)) = app().start(&config) else {
        panic!("a route on /health started");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "health.liveness_path");
    assert!(
        problems[0].message.contains("/health"),
        "{}",
        problems[0].message
    );
    // Turned off explicitly: the app's route serves.
    config.health.liveness_path = String::new();
    let server = app().start(&config).unwrap();
    let reply = Client::connect(addr(&server)).request(&get("/health"));
    assert_eq!(reply.text(), "my own health");
    // A reload that would move the built-in onto the route is refused.
    let mut next = config.clone();
    next.health.liveness_path = "/health".into();
    let mut server = server;
    assert!(matches!(server.reload(&next), Err(Error::Config(_))));
    server.stop().unwrap();
}

#[test]
fn a_custom_405_body_keeps_the_status_and_allow() {
    let app = App::new()
        .get("/only-get", async || "got")
        .method_not_allowed(async || "use another method, see Allow");
    let server = start(app, 1);
    let reply = Client::connect(addr(&server))
        .request(b"POST /only-get HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(reply.text(), "use another method, see Allow");
    server.stop().unwrap();
}

#[test]
fn timer_layers_and_keep_alive_run_without_a_shard_under_local_service() {
    use percore::{Event, LocalService, Sse, timeout};
    use std::time::Duration;
    let app = App::new()
        .get("/", async || "hi")
        .get("/sse", async || {
            Sse::new(futures_lite::stream::iter([Event::data("x")]))
                .keep_alive(Duration::from_millis(1))
        })
        .layer(timeout(Duration::from_secs(1)));
    let mut service = LocalService::new(app);
    let mut out = Vec::new();
    futures_lite::future::block_on(service.serve(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", &mut out));
    assert!(out.ends_with(b"hi"), "{}", String::from_utf8_lossy(&out));
    out.clear();
    futures_lite::future::block_on(
        service.serve(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n", &mut out),
    );
    assert!(
        String::from_utf8_lossy(&out).contains("data: x\n\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn a_route_timeout_from_the_file_answers_504_and_is_checked() {
    let app = || {
        App::new()
            .get("/stuck/{id}", async || {
                futures_lite::future::pending::<()>().await;
                "never"
            })
            .get("/quick", async || "quick")
    };
    let mut config = percore::Config::default();
    config.timeouts.routes.insert("/stuck/{id}".into(), 1);
    let client = percore::TestClient::with_config(app(), config.clone()).unwrap();
    futures_lite::future::block_on(async {
        let reply = client.get("/stuck/1").send().await;
        assert_eq!(reply.status(), Status::GATEWAY_TIMEOUT);
        assert!(reply.text().contains("timeouts.routes"), "{}", reply.text());
        assert_eq!(client.get("/quick").send().await.text(), "quick");
    });
    // A pattern the app does not route, or a timeout looser than the
    // server's, is refused with its key.
    let mut unknown = percore::Config::default();
    unknown.timeouts.routes.insert("/nowhere".into(), 1);
    let error = app().start(&unknown).unwrap_err().to_string();
    assert!(error.contains("timeouts.routes.\"/nowhere\""), "{error}");
    let mut looser = percore::Config::default();
    looser.timeouts.routes.insert("/quick".into(), 100);
    let error = app().start(&looser).unwrap_err().to_string();
    assert!(error.contains("timeouts.routes.\"/quick\""), "{error}");
}
