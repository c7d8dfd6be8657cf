//! RFC 9112 framing and the limits, over real sockets: every rule with the
//! request it refuses and a valid neighbour that must still be served.
//! A refusal carries its status, a `{"detail": ...}` body and
//! `Connection: close`, and the connection then closes, so nothing after the
//! bad request is ever read as a request.

mod support;

use percore::{App, Bytes, Rejection, Server};
use support::{Client, addr};

fn server() -> Server {
    let mut config = support::config();
    config.limits.max_request_line_bytes = 1024;
    config.limits.max_head_bytes = 4096;
    config.limits.max_headers = 20;
    config.limits.max_body_bytes = 64;
    config.limits.max_chunk_extension_bytes = 32;
    App::new()
        .post("/echo", async |Bytes(body): Bytes| body)
        .get("/", async || "ok")
        .start(&config)
        .unwrap()
}

/// (what, request, status, rejection counted). A `None` rejection is a
/// neighbour that must be served (200) on a connection that stays open.
const CASES: &[(&str, &str, u16, Option<Rejection>)] = &[
    ("plain GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, None),
    (
        "bare LF line ends",
        "GET / HTTP/1.1\nHost: a\n\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "bare LF after a header",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "bare CR in a value",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "obs-fold",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "space before colon",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "NUL in a value",
        "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "control byte in a name",
        "GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "tab around a value is fine",
        "GET / HTTP/1.1\r\nHost:\ta\t\r\n\r\n",
        200,
        None,
    ),
    (
        "missing Host in 1.1",
        "GET / HTTP/1.1\r\n\r\n",
        400,
        Some(Rejection::MissingHost),
    ),
    (
        "two Hosts",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        400,
        Some(Rejection::RepeatedHost),
    ),
    (
        "no Host in 1.0 is fine",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        200,
        None,
    ),
    (
        "absolute-form target",
        "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        200,
        None,
    ),
    (
        "space in target",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "lower-case version",
        "GET / http/1.1\r\nHost: a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "two-digit major",
        "GET / HTTP/01.1\r\nHost: a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "version without minor",
        "GET / HTTP/1\r\nHost: a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "not HTTP",
        "GET / XTTP/1.1\r\nHost: a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "HTTP/3.0",
        "GET / HTTP/3.0\r\nHost: a\r\n\r\n",
        505,
        Some(Rejection::UnsupportedVersion),
    ),
    (
        "empty chunk extension",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\r\nhi\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "extension without name",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;=x\r\nhi\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "extension without value",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\r\nhi\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "unclosed quoted extension",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"x\r\nhi\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "space inside extension value",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b c\r\nhi\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "trailer without colon",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nNoColon\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "space before trailer colon",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A : 1\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "folded trailer",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: 1\r\n b\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "Content-Length trailer",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
    (
        "BWS before a chunk extension",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2 ;a\r\nhi\r\n0\r\n\r\n",
        200,
        None,
    ),
    (
        "HTTP/2.0",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        505,
        Some(Rejection::UnsupportedVersion),
    ),
    (
        "HTTP/1.2",
        "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        505,
        Some(Rejection::UnsupportedVersion),
    ),
    (
        "TE and CL",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        Some(Rejection::AmbiguousLength),
    ),
    (
        "two different CLs",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
        Some(Rejection::BadContentLength),
    ),
    (
        "two equal CLs are one",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
        200,
        None,
    ),
    (
        "signed CL",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\nab",
        400,
        Some(Rejection::BadContentLength),
    ),
    (
        "CL in hex",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0x2\r\n\r\nab",
        400,
        Some(Rejection::BadContentLength),
    ),
    (
        "chunked not last",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
        Some(Rejection::BadTransferEncoding),
    ),
    (
        "chunked twice",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadTransferEncoding),
    ),
    (
        "gzip then chunked",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        Some(Rejection::UnsupportedTransferCoding),
    ),
    (
        "chunked in 1.0",
        "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadTransferEncoding),
    ),
    (
        "chunked, case-insensitive",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        200,
        None,
    ),
    (
        "chunk size with a sign",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nab\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "chunk size 0x",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "chunk size with _",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\nab\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "chunk size with a space",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nab\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "chunk size overflow",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "chunk data too long",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "chunk extension",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nab\r\n0\r\n\r\n",
        200,
        None,
    ),
    (
        "chunk extension too long",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nab\r\n0\r\n\r\n",
        400,
        Some(Rejection::BadChunk),
    ),
    (
        "body at the limit",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 64\r\n\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        200,
        None,
    ),
    (
        "CL over the body limit",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n",
        413,
        Some(Rejection::BodyTooLarge),
    ),
    (
        "chunks over the body limit",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n1\r\n",
        413,
        Some(Rejection::BodyTooLarge),
    ),
    (
        "Expect over the limit: refused before the body",
        "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n",
        413,
        Some(Rejection::BodyTooLarge),
    ),
    (
        "unknown expectation",
        "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nab",
        417,
        Some(Rejection::UnsupportedExpectation),
    ),
    (
        "too many headers",
        "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\n\r\n",
        431,
        Some(Rejection::TooManyHeaders),
    ),
    (
        "malformed request line",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
        Some(Rejection::Malformed),
    ),
];

#[test]
fn every_framing_rule_and_its_valid_neighbour() {
    let server = server();
    for (what, request, status, rejection) in CASES {
        let before = rejection.map(|r| server.rejections(r));
        let mut client = Client::connect(addr(&server));
        let reply = client.request(request.as_bytes());
        assert_eq!(reply.status, *status, "{what}: {}", reply.text());
        match rejection {
            None => {
                // Still open and in step: a second request is answered.
                assert_ne!(reply.header("connection"), Some("close"), "{what}");
                let again = client.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
                assert_eq!(again.text(), "ok", "{what}");
            }
            Some(reason) => {
                assert_eq!(reply.header("connection"), Some("close"), "{what}");
                assert_eq!(
                    reply.header("content-type"),
                    Some("application/json"),
                    "{what}"
                );
                assert!(
                    reply.text().starts_with(r#"{"detail":""#),
                    "{what}: {}",
                    reply.text()
                );
                assert!(client.is_closed(), "{what}: connection left open");
                assert_eq!(
                    server.rejections(*reason),
                    before.unwrap() + 1,
                    "{what}: not counted"
                );
            }
        }
    }
    server.stop().unwrap();
}

#[test]
fn long_request_lines_and_heads() {
    let server = server();
    let ok = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1000));
    assert_eq!(
        Client::connect(addr(&server)).request(ok.as_bytes()).status,
        404
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1100));
    let reply = Client::connect(addr(&server)).request(long.as_bytes());
    assert_eq!(
        (reply.status, reply.header("connection")),
        (414, Some("close"))
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(5000)
    );
    let reply = Client::connect(addr(&server)).request(big_head.as_bytes());
    assert_eq!(
        (reply.status, reply.header("connection")),
        (431, Some("close")),
        "{}",
        reply.text()
    );
    assert_eq!(server.rejections(Rejection::RequestLineTooLong), 1);
    assert_eq!(server.rejections(Rejection::HeadTooLarge), 1);
    server.stop().unwrap();
}

#[test]
fn nothing_after_a_smuggling_attempt_is_read_as_a_request() {
    let server = server();
    let mut client = Client::connect(addr(&server));
    // If the body were framed by Content-Length, "GET /secret" would be a
    // second request; it must never be answered.
    client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: a\r\n\r\n");
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 400);
    assert!(client.is_closed());
    server.stop().unwrap();
}
