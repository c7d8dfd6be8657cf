//! Black-box HTTP/1.1 tests over real loopback sockets, asserting on bytes.

mod support;

use std::cell::Cell;
use std::rc::Rc;

use percore::{App, Bytes, Headers, Json, Path, Query, Response, State, Status};
use support::{Client, addr, get, post_json, start};

#[derive(serde::Deserialize, serde::Serialize)]
struct Search {
    q: String,
    #[serde(default)]
    page: u32,
}

async fn panics() -> &'static str {
    panic!("handler bug")
}

fn app() -> App<Rc<Cell<u64>>> {
    App::with_state(|| Rc::new(Cell::new(0)))
        .get("/plaintext", async || "Hello, World!")
        .post("/echo", async |Json(value): Json<Search>| Json(value))
        .post("/raw", async |Bytes(body): Bytes| body)
        .get("/users/{id}", async |Path(id): Path<u64>| {
            format!("user {id}")
        })
        .get("/files/{*path}", async |Path(path): Path<String>| path)
        .get("/search", async |Query(search): Query<Search>| {
            format!("{} p{}", search.q, search.page)
        })
        .get("/agent", async |headers: Headers| {
            headers.get("user-agent").unwrap_or("none").to_owned()
        })
        .get("/count", async |State(count): State<Rc<Cell<u64>>>| {
            count.set(count.get() + 1);
            count.get().to_string()
        })
        .get("/stream", async || {
            let pieces = vec![b"first,".to_vec(), b"second".to_vec()];
            Response::new(Status::OK)
                .content_type("text/plain")
                .stream(futures_lite::stream::iter(pieces))
        })
        .get("/sized/{claim}", async |Path(claim): Path<u64>| {
            let pieces = vec![b"first,".to_vec(), b"second".to_vec()];
            Response::new(Status::OK)
                .content_type("text/plain")
                .stream_sized(claim, futures_lite::stream::iter(pieces))
        })
        .get("/created", async || (Status::CREATED, "made"))
        .get("/panic", panics)
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    for expected in 1..=3 {
        let reply = client.request(&get("/count"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), expected.to_string());
        assert_eq!(reply.header("connection"), None);
        assert_eq!(reply.header("server"), Some("percore"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(
            reply.header("referrer-policy"),
            Some("strict-origin-when-cross-origin")
        );
        assert!(reply.header("date").is_some_and(|d| d.ends_with(" GMT")));
    }
    server.stop().unwrap();
}

#[test]
fn three_pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let mut batch = get("/users/1");
    batch.extend(get("/users/2"));
    batch.extend(post_json("/echo", r#"{"q":"x","page":3}"#));
    client.send(&batch);
    assert_eq!(client.read_reply(false).text(), "user 1");
    assert_eq!(client.read_reply(false).text(), "user 2");
    assert_eq!(client.read_reply(false).text(), r#"{"q":"x","page":3}"#);
    server.stop().unwrap();
}

#[test]
fn chunked_request_body_is_decoded() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(
        b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Checksum: x\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello, world");
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    // The connection is still in step.
    assert_eq!(client.request(&get("/users/9")).text(), "user 9");
    server.stop().unwrap();
}

#[test]
fn head_gets_headers_without_a_body() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    client.send(b"HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let reply = client.read_reply(true);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("13"));
    // Were a body sent, this next response would be misread.
    assert_eq!(client.request(&get("/plaintext")).text(), "Hello, World!");
    server.stop().unwrap();
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(b"GET /plaintext HTTP/1.0\r\n\r\n");
    assert_eq!(reply.text(), "Hello, World!");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(client.is_closed());

    let mut client = Client::connect(addr(&server));
    let reply = client.request(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(reply.header("connection"), Some("keep-alive"));
    assert_eq!(
        client.request(b"GET /users/5 HTTP/1.0\r\n\r\n").text(),
        "user 5"
    );
    assert!(client.is_closed());
    server.stop().unwrap();
}

#[test]
fn connection_close_is_honoured() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(client.is_closed());
    server.stop().unwrap();
}

#[test]
fn unknown_paths_and_methods() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/nowhere"));
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), r#"{"detail":"Not Found"}"#);
    let reply = client.request(b"DELETE /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    server.stop().unwrap();
}

#[test]
fn json_round_trip_and_rejections() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&post_json("/echo", r#"{"page": 2, "q": "héllo \"x\""}"#));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.text(), r#"{"q":"héllo \"x\"","page":2}"#);

    let reply = client.request(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(reply.status, 415);
    assert_eq!(
        reply.text(),
        r#"{"detail":"expected Content-Type: application/json"}"#
    );

    // A value that does not fit its type: 422, FastAPI's shape.
    let reply = client.request(&post_json("/echo", r#"{"q": 5}"#));
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.text(),
        r#"{"detail":[{"loc":["body","q"],"msg":"Input should be a valid string","type":"string_type"}]}"#
    );

    let reply = client.request(&post_json("/echo", r#"{"q": "a""#));
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .text()
            .starts_with(r#"{"detail":"invalid JSON at byte "#),
        "{}",
        reply.text()
    );
    server.stop().unwrap();
}

#[test]
fn extractors() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    assert_eq!(
        client.request(&get("/search?q=rust&page=2")).text(),
        "rust p2"
    );
    let reply = client.request(&get("/search?page=x"));
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.text(),
        concat!(
            r#"{"detail":[{"loc":["query","page"],"msg":"Input should be a valid integer from 0 to 4294967295","type":"int_type"},"#,
            r#"{"loc":["query","q"],"msg":"Field required","type":"missing"}]}"#
        )
    );
    let reply = client.request(&get("/users/abc"));
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.text(),
        r#"{"detail":[{"loc":["path","id"],"msg":"Input should be a valid integer","type":"int_type"}]}"#
    );
    assert_eq!(
        client.request(&get("/files/a/b%20c.txt")).text(),
        "a/b c.txt"
    );
    let reply = client.request(b"GET /agent HTTP/1.1\r\nHost: t\r\nUser-Agent: probe/1\r\n\r\n");
    assert_eq!(reply.text(), "probe/1");
    let reply = client.request(&get("/created"));
    assert_eq!((reply.status, reply.text()), (201, "made"));
    server.stop().unwrap();
}

#[test]
fn streamed_body_uses_chunked_framing() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/stream"));
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.header("content-length"), None);
    assert_eq!(reply.text(), "first,second");
    assert_eq!(client.request(&get("/users/3")).text(), "user 3");

    let mut client = Client::connect(addr(&server));
    let reply = client.request(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(reply.text(), "first,second");
    server.stop().unwrap();
}

#[test]
fn a_streamed_body_may_declare_its_length() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/sized/12"));
    assert_eq!(reply.header("content-length"), Some("12"));
    assert_eq!(reply.header("transfer-encoding"), None);
    assert_eq!(reply.text(), "first,second");
    // More than declared: cut at the length; the connection carries on.
    let reply = client.request(&get("/sized/8"));
    assert_eq!(reply.text(), "first,se");
    client.send(b"HEAD /sized/12 HTTP/1.1\r\nHost: t\r\n\r\n");
    let reply = client.read_reply(true);
    assert_eq!(reply.header("content-length"), Some("12"));
    assert_eq!(client.request(&get("/users/3")).text(), "user 3");

    // Fewer than declared: the body is cut off by a close, never padded
    // or followed by another response.
    let mut stream = std::net::TcpStream::connect(addr(&server)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    std::io::Write::write_all(&mut stream, &get("/sized/100")).unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("Content-Length: 100\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nfirst,second"), "{text}");
    server.stop().unwrap();
}

#[test]
fn a_panicking_handler_gets_a_500_and_the_shard_lives_on() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/panic"));
    assert_eq!(reply.status, 500);
    assert_eq!(reply.text(), r#"{"detail":"Internal Server Error"}"#);
    assert_eq!(client.request(&get("/plaintext")).status, 200);
    server.stop().unwrap();
}

#[test]
fn malformed_requests_get_400_and_close() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(
        b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(
        reply.text(),
        r#"{"detail":"both Transfer-Encoding and Content-Length"}"#
    );
    assert!(client.is_closed());

    let mut client = Client::connect(addr(&server));
    let reply = client.request(b"GET / HTTP/2.0\r\n\r\n");
    assert_eq!(reply.status, 505);
    assert!(client.is_closed());
    server.stop().unwrap();
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    client.send(
        b"POST /raw HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    let interim = client.read_reply(false);
    assert_eq!(interim.status, 100);
    let reply = client.request(b"body");
    assert_eq!((reply.status, reply.text()), (200, "body"));
    server.stop().unwrap();
}

#[test]
fn bodies_over_the_limit_are_refused() {
    let mut config = support::config();
    config.limits.max_body_bytes = 8;
    let server = app().start(&config).unwrap();
    let mut client = Client::connect(addr(&server));
    let reply = client.request(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n");
    assert_eq!(reply.status, 413);
    assert!(client.is_closed());
    server.stop().unwrap();
}

#[test]
fn large_bodies_span_many_receive_buffers() {
    let server = start(app(), 1);
    let mut client = Client::connect(addr(&server));
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut request = format!(
        "POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let reply = client.request(&request);
    assert_eq!(reply.status, 200);
    assert!(reply.body == body, "echoed body differs");
    assert_eq!(client.request(&get("/users/1")).text(), "user 1");
    server.stop().unwrap();
}

#[test]
fn the_glommio_stream_path_still_serves() {
    let mut config = support::config();
    config.server.io = percore::config::IoPath::Glommio;
    let server = app().start(&config).unwrap();
    let mut client = Client::connect(addr(&server));
    let mut batch = get("/users/1");
    batch.extend(
        b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
    batch.extend(get("/count"));
    client.send(&batch);
    assert_eq!(client.read_reply(false).text(), "user 1");
    assert_eq!(client.read_reply(false).text(), "ok");
    assert_eq!(client.read_reply(false).text(), "1");
    server.stop().unwrap();
}

#[test]
fn security_headers_are_configurable_and_on_errors_too() {
    let mut config = support::config();
    config.headers.frame_options = "SAMEORIGIN".into();
    config.headers.referrer_policy = String::new();
    let server = app().start(&config).unwrap();
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/nowhere"));
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), None);
    let reply = Client::connect(addr(&server)).request(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        (reply.status, reply.header("x-content-type-options")),
        (400, Some("nosniff"))
    );
    server.stop().unwrap();
}

#[test]
fn health_routes_and_readiness_checks() {
    let app = App::with_state(|| Rc::new(Cell::new(0u64)))
        .get("/down", async |State(flag): State<Rc<Cell<u64>>>| {
            flag.set(1);
            "down"
        })
        .readiness_check("database", |flag: &Rc<Cell<u64>>| flag.get() == 0)
        .readiness_check("always", |_: &Rc<Cell<u64>>| true);
    let server = start(app, 1);
    let mut client = Client::connect(addr(&server));
    let live = client.request(&get("/health"));
    assert_eq!((live.status, live.text()), (200, r#"{"status":"ok"}"#));
    assert_eq!(
        client.request(&get("/health/ready")).text(),
        r#"{"status":"ready"}"#
    );
    client.request(&get("/down"));
    let unready = client.request(&get("/health/ready"));
    assert_eq!(unready.status, 503);
    assert_eq!(
        unready.text(),
        r#"{"status":"unready","failing":["database"]}"#
    );
    // Liveness does not depend on readiness.
    assert_eq!(client.request(&get("/health")).status, 200);
    server.stop().unwrap();
}

#[test]
fn a_sleeping_shard_answers_each_request_as_it_comes() {
    // Without idle polling the shard sleeps between the requests of one
    // client. Each must wake it at once: a shard that slept through its
    // ring's completions answered one only when some other event woke it,
    // about 16 ms each here (nearly 5 s for these 300); at once they take
    // tens of milliseconds. The bound is far above either on a busy machine.
    let mut config = support::config();
    config.server.shards = Some(1);
    config.server.idle_poll_us = 0;
    let server = percore::reference::app().start(&config).unwrap();
    // curl, another process, sends them one after another on one
    // connection (the stall did not show with a client thread in the
    // server's own process).
    let url = format!("http://{}/plaintext", addr(&server));
    let started = std::time::Instant::now();
    let output = std::process::Command::new("curl")
        .args(["-s", "-w", "%{http_code}%{num_connects}\n"])
        .args((0..300).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
        .output()
        .expect("curl runs (.ci/run installs it)");
    let took = started.elapsed();
    let answers = String::from_utf8_lossy(&output.stdout);
    // Each line is the status, then 1 for a new connection (only the first).
    assert_eq!(
        answers.lines().filter(|l| l.starts_with("200")).count(),
        300
    );
    assert_eq!(answers.lines().filter(|l| *l == "2001").count(), 1);
    assert!(
        took < std::time::Duration::from_secs(2),
        "300 requests one after another took {took:?}"
    );
    server.stop().unwrap();
}
