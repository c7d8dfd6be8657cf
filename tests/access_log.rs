//! The access log: one line per request in `json` or `combined`, with a
//! request ID that is echoed back (the client's, or a generated one), all
//! written by the time the server has stopped.

mod support;

use percore::config::AccessFormat;
use support::{Client, addr, get};

fn logged(format: AccessFormat, requests: &[&[u8]]) -> (Vec<String>, Vec<Option<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let mut config = support::config();
    config.log.access = format;
    file.to_str()
        .unwrap()
        .clone_into(&mut config.log.access_file);
    let server = percore::reference::app().start(&config).unwrap();
    let mut client = Client::connect(addr(&server));
    let ids = requests
        .iter()
        .map(|request| {
            client
                .request(request)
                .header("x-request-id")
                .map(str::to_owned)
        })
        .collect();
    server.stop().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    (text.lines().map(str::to_owned).collect(), ids)
}

#[derive(serde::Deserialize, Debug)]
struct Line {
    remote: String,
    method: String,
    target: String,
    status: u16,
    bytes: usize,
    request_id: String,
    user_agent: String,
}

#[test]
fn json_lines_with_request_ids() {
    let (lines, ids) = logged(
        AccessFormat::Json,
        &[
            b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Request-ID: abc-123\r\nUser-Agent: probe\r\n\r\n",
            &get("/missing"),
            &get("/json"),
        ],
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    let parsed: Vec<Line> = lines
        .iter()
        .map(|l| simd_json::serde::from_slice(&mut l.clone().into_bytes()).unwrap())
        .collect();
    assert_eq!(ids[0].as_deref(), Some("abc-123"));
    assert_eq!(parsed[0].request_id, "abc-123");
    assert_eq!(
        (
            parsed[0].method.as_str(),
            parsed[0].target.as_str(),
            parsed[0].status
        ),
        ("GET", "/plaintext", 200)
    );
    assert_eq!(parsed[0].user_agent, "probe");
    assert_eq!(parsed[0].remote, "127.0.0.1");
    assert!(parsed[0].bytes > 13);
    assert_eq!(parsed[1].status, 404);
    // Generated IDs: present, echoed, distinct.
    assert_eq!(ids[1].as_deref(), Some(parsed[1].request_id.as_str()));
    assert_eq!(ids[2].as_deref(), Some(parsed[2].request_id.as_str()));
    assert_ne!(parsed[1].request_id, parsed[2].request_id);
}

#[test]
fn combined_lines() {
    let (lines, _) = logged(AccessFormat::Combined, &[&get("/plaintext")]);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(line.contains("\"GET /plaintext HTTP/1.1\" 200 "), "{line}");
    assert!(line.contains(" GMT] "), "{line}");
}

#[test]
fn off_by_default_and_no_request_id_then() {
    let server = support::start(percore::reference::app(), 1);
    let reply = Client::connect(addr(&server)).request(&get("/plaintext"));
    assert_eq!(reply.header("x-request-id"), None);
    server.stop().unwrap();
}

#[test]
fn refusals_are_logged_and_a_flood_of_them_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let mut config = support::config();
    config.log.access = AccessFormat::Json;
    config.limits.max_body_bytes = 16;
    file.to_str()
        .unwrap()
        .clone_into(&mut config.log.access_file);
    let server = percore::reference::app().start(&config).unwrap();
    let refusals: [&[u8]; 3] = [
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
    ];
    for request in refusals {
        let mut client = Client::connect(addr(&server));
        client.request(request);
    }
    // A flood: many more refusals than a second's budget.
    let started = std::time::Instant::now();
    for _ in 0..400 {
        let mut client = Client::connect(addr(&server));
        client.request(b"BAD\r\n\r\n");
    }
    let elapsed = started.elapsed();
    server.stop().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Line> = text
        .lines()
        .map(|l| simd_json::serde::from_slice(&mut l.to_owned().into_bytes()).unwrap())
        .collect();
    let status_of = |target: &str| lines.iter().find(|l| l.target == target).map(|l| l.status);
    assert_eq!(status_of("/a"), Some(400), "{text}");
    assert_eq!(status_of("/echo"), Some(413), "{text}");
    assert_eq!(
        lines.iter().filter(|l| l.status == 505).count(),
        1,
        "{text}"
    );
    assert!(lines.iter().all(|l| l.remote == "127.0.0.1"));
    let flood = lines.iter().filter(|l| l.method == "BAD").count();
    // At most 100 a second (the flood spans at most this many seconds).
    let seconds = usize::try_from(elapsed.as_secs()).unwrap() + 2;
    assert!(flood >= 1, "no flood line logged");
    assert!(flood <= 100 * seconds, "{flood} lines in {elapsed:?}");
    if elapsed < std::time::Duration::from_secs(3) {
        assert!(flood < 400, "the flood was not capped: {flood} lines");
    }
}
