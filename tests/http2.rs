//! HTTP/2 through real clients: curl (h2 by ALPN over TLS, and h2c with
//! prior knowledge), h2load (many streams on few connections), Python's
//! `h2` library for request bodies on cue (`tests/support/h2_client.py`),
//! and the known attacks sent frame by frame by a Python script
//! (`tests/support/h2_attacks.py`), each while another client is served.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use percore::{App, Body, BodyError, Bytes, Config, Server};

/// The app every test serves.
fn app() -> App {
    let small = percore::Scope::new()
        .post("/note", async |Bytes(body): Bytes| body.len().to_string())
        .max_body_bytes(1024);
    App::new()
        .get("/plaintext", async || "Hello, World!")
        .get("/big", async || vec![b'x'; 1 << 20])
        .post("/echo", async |body: Bytes| body.0)
        // Answers once the first piece of the body is in.
        .post(
            "/first",
            async |mut body: Body| -> Result<String, BodyError> {
                let first = body.chunk().await?.map_or(0, |piece| piece.len());
                Ok(first.to_string())
            },
        )
        .post("/count", async |body: Body| -> Result<String, BodyError> {
            Ok(body.to_vec(u64::MAX).await?.len().to_string())
        })
        .nest("/small", small)
}

fn h2c_config() -> Config {
    let mut config = support::config();
    config.http2.cleartext = true;
    config
}

fn start(config: &Config) -> (Server, SocketAddr) {
    let server = app().start(config).expect("the server starts");
    let addr = support::addr(&server);
    (server, addr)
}

/// curl's exit status, `%{http_version} %{http_code}` and body.
fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl runs (.ci/run installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let tail = String::from_utf8_lossy(&out.stdout[at + 1..]).into_owned();
    (tail, out.stdout[..at].to_vec())
}

#[test]
fn curl_speaks_h2c_with_prior_knowledge_and_http1_still_works() {
    let (server, addr) = start(&h2c_config());
    let url = format!("http://{addr}");
    let (version, body) = curl(&["--http2-prior-knowledge", &format!("{url}/plaintext")]);
    assert_eq!(
        (version.as_str(), body.as_slice()),
        ("2 200", &b"Hello, World!"[..])
    );
    let (version, body) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        "@-",
        &format!("{url}/echo"),
    ]);
    assert_eq!(version, "2 200");
    assert!(body.is_empty());
    let (version, body) = curl(&["--http2-prior-knowledge", &format!("{url}/big")]);
    assert_eq!((version.as_str(), body.len()), ("2 200", 1 << 20));
    let (version, _) = curl(&["--http2-prior-knowledge", &format!("{url}/nowhere")]);
    assert_eq!(version, "2 404");
    // The same listener keeps serving HTTP/1.1.
    let (version, body) = curl(&["--http1.1", &format!("{url}/plaintext")]);
    assert_eq!(
        (version.as_str(), body.as_slice()),
        ("1.1 200", &b"Hello, World!"[..])
    );
    server.stop().unwrap();
}

#[test]
fn h2c_is_off_unless_configured() {
    let (server, addr) = start(&support::config());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
        .arg(format!("http://{addr}/plaintext"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "h2c was served with http2.cleartext off"
    );
    server.stop().unwrap();
}

#[test]
fn curl_negotiates_h2_by_alpn_over_tls() {
    let pki = support::pki::Pki::new("h2");
    let mut config = support::config();
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![pki.leaf("h2", &["localhost"])];
    let server = app().start(&config).unwrap();
    let port = server.tls_addrs()[0].port();
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    let url = format!("https://localhost:{port}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let h2 = ["--cacert", ca, "--resolve", &resolve, "--http2"];
    let (version, body) = curl(&[&h2[..], &[&format!("{url}/plaintext")]].concat());
    assert_eq!(
        (version.as_str(), body.as_slice()),
        ("2 200", &b"Hello, World!"[..])
    );
    let body_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body_file.path(), vec![b'u'; 300_000]).unwrap();
    let upload = format!("@{}", body_file.path().display());
    let (version, echoed) =
        curl(&[&h2[..], &["--data-binary", &upload, &format!("{url}/echo")]].concat());
    assert_eq!((version.as_str(), echoed.len()), ("2 200", 300_000));
    // HEAD: the head alone, with the length a GET would have.
    let (version, head) = curl(&[&h2[..], &["-I", &format!("{url}/big")]].concat());
    assert_eq!(version, "2 200");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.contains("content-length: 1048576"), "{head}");
    assert!(
        !head.contains("connection:") && !head.contains("keep-alive"),
        "{head}"
    );
    // ALPN keeps http/1.1 for clients that ask for it.
    let (version, _) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "--http1.1",
        &format!("{url}/plaintext"),
    ]);
    assert_eq!(version, "1.1 200");
    server.stop().unwrap();
}

#[test]
fn h2load_completes_every_request_over_many_streams() {
    let (server, addr) = start(&h2c_config());
    let out = Command::new("h2load")
        .args(["-n", "4000", "-c", "4", "-m", "32", "-t", "1"])
        .arg(format!("http://{addr}/plaintext"))
        .output()
        .expect("h2load runs (.ci/run installs nghttp2-client)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("4000 succeeded, 0 failed, 0 errored"),
        "{report}"
    );
    assert!(report.contains("status codes: 4000 2xx"), "{report}");
    server.stop().unwrap();
}

#[test]
fn the_frame_by_frame_conformance_cases_pass_over_h2c_and_tls() {
    let pki = support::pki::Pki::new("h2-conformance");
    let mut config = h2c_config();
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![pki.leaf("h2", &["localhost"])];
    let server = app().start(&config).unwrap();
    // Every case of tests/support/h2_conformance.py (RFC 9113 and RFC
    // 7541, after h2spec's list), with exact error codes.
    let script = "h2_conformance.py";
    support::all_cases_pass(script, &[&support::addr(&server).port().to_string()], 128);
    let tls = server.tls_addrs()[0].port().to_string();
    support::all_cases_pass(script, &[&tls, "--tls"], 128);
    server.stop().unwrap();
}

/// Runs `case` of the Python script `script` (in `tests/support`) against
/// `addr`; the line it printed.
fn run_script(script: &str, addr: SocketAddr, case: &str) -> String {
    let path = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(support::python())
        .arg(path)
        .arg(addr.port().to_string())
        .arg(case)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `attack` from the frame-by-frame script against `addr`; its verdict.
fn attack(addr: SocketAddr, attack: &str) -> String {
    run_script("h2_attacks.py", addr, attack)
}

#[test]
fn attacks_end_their_connection_while_others_are_served() {
    let mut config = h2c_config();
    config.timeouts.send_secs = 2;
    let (server, addr) = start(&config);
    assert_eq!(attack(addr, "served"), "served 200");
    // ENHANCE_YOUR_CALM (11) for floods; COMPRESSION/PROTOCOL errors or a
    // refused stream for header abuse.
    for (name, verdicts) in [
        ("rapid_reset", &["goaway 11"][..]),
        ("continuation_flood", &["goaway 11", "goaway 1"][..]),
        ("ping_flood", &["goaway 11"][..]),
        ("settings_flood", &["goaway 11"][..]),
        ("empty_data_flood", &["goaway 11"][..]),
        (
            "hpack_bomb",
            &[
                "served 431",
                "rst 1",
                "rst 11",
                "goaway 1",
                "goaway 9",
                "goaway 11",
            ][..],
        ),
    ] {
        let verdict = attack(addr, name);
        eprintln!("{name}: {verdict}");
        assert!(
            verdicts.contains(&verdict.as_str()),
            "{name}: the server answered {verdict:?}"
        );
        assert_eq!(attack(addr, "served"), "served 200", "after {name}");
    }
    // Stream ids run out at 2^31 - 1: that stream is served, and a lower
    // id after it ends the connection with PROTOCOL_ERROR.
    assert_eq!(
        attack(addr, "stream_id_exhaustion"),
        "served 200 then goaway 1"
    );
    assert_eq!(attack(addr, "served"), "served 200");
    // A client that never opens its window: the stream ends at the send
    // timeout instead of holding the response forever.
    let verdict = attack(addr, "zero_window");
    eprintln!("zero_window: {verdict}");
    assert!(
        verdict.starts_with("rst ") || verdict.starts_with("goaway"),
        "{verdict}"
    );
    assert_eq!(attack(addr, "served"), "served 200");
    server.stop().unwrap();
}

#[test]
fn a_header_block_left_unfinished_is_closed_at_the_header_timeout() {
    let mut config = h2c_config();
    config.timeouts.header_secs = 1;
    config.timeouts.keepalive_secs = 120;
    let (server, addr) = start(&config);
    // The script waits at most 10 s for each: the keepalive timeout would
    // leave both open past it.
    assert_eq!(attack(addr, "slow_headers"), "closed closed");
    assert_eq!(attack(addr, "served"), "served 200");
    server.stop().unwrap();
}

#[test]
fn a_drain_sends_goaway_and_lets_the_open_stream_finish() {
    use std::io::BufRead;
    let (started, handler_started) = std::sync::mpsc::channel::<()>();
    let server = app()
        .get("/slow", move || {
            let started = started.clone();
            async move {
                let _ = started.send(());
                glommio::timer::sleep(std::time::Duration::from_millis(300)).await;
                "late"
            }
        })
        .start(&h2c_config())
        .unwrap();
    let addr = support::addr(&server);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/h2_attacks.py");
    let mut child = Command::new(support::python())
        .arg(script)
        .arg(addr.port().to_string())
        .arg("drain")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "sent");
    handler_started
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the handler started");
    server.stop().unwrap();
    let verdict = lines.next().unwrap().unwrap();
    assert_eq!(verdict, "served 200 ended True goaway (1, 0)");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_access_log_and_metrics_say_http2_for_streams() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let mut config = h2c_config();
    config.log.access = percore::config::AccessFormat::Combined;
    file.to_str()
        .unwrap()
        .clone_into(&mut config.log.access_file);
    let (server, addr) = start(&config);
    let url = format!("http://{addr}/plaintext");
    assert_eq!(curl(&["--http2-prior-knowledge", &url]).0, "2 200");
    assert_eq!(curl(&["--http1.1", &url]).0, "1.1 200");
    let (_, metrics) = curl(&[&format!("http://{addr}/metrics")]);
    let metrics = String::from_utf8_lossy(&metrics);
    for protocol in ["HTTP/1.1", "HTTP/2"] {
        let series = format!(
            r#"percore_requests_total{{shard="0",method="GET",route="/plaintext",protocol="{protocol}",code="2xx"}} 1"#
        );
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    server.stop().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("\"GET /plaintext HTTP/2.0\" 200"),
        "{text}"
    );
    assert!(
        lines[1].contains("\"GET /plaintext HTTP/1.1\" 200"),
        "{text}"
    );
}

/// Runs `case` from the `h2` library client script against `addr`.
fn h2_client(addr: SocketAddr, case: &str) -> String {
    run_script("h2_client.py", addr, case)
}

#[test]
fn request_bodies_stream_to_their_handlers() {
    let (server, addr) = start(&h2c_config());
    // The handler answered from the first DATA frame, the request still open.
    assert_eq!(
        h2_client(addr, "first_piece"),
        "answered 200 1000 while open"
    );
    // No content-length: the pieces and the trailers that end them.
    assert_eq!(h2_client(addr, "trailers"), "200 30000");
    // expect: 100-continue gets an interim 100 before the body is sent.
    assert_eq!(h2_client(addr, "continue"), "interim 100 then 200 5");
    // Over the route's limit: 413 from the head, then RST_STREAM NO_ERROR.
    let refused = h2_client(addr, "early_refusal");
    assert!(refused.starts_with("413 ended reset 0 {"), "{refused}");
    // curl uploading past the limit gets the 413 and exits cleanly.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![b'u'; 4 << 20]).unwrap();
    let upload = format!("@{}", file.path().display());
    let url = format!("http://{addr}/small/note");
    let (version, body) = curl(&["--http2-prior-knowledge", "--data-binary", &upload, &url]);
    assert_eq!(version, "2 413", "{}", String::from_utf8_lossy(&body));
    server.stop().unwrap();
}
