//! TLS against the tools operators use: `openssl s_client` (TLS 1.1
//! refused, 1.2 and 1.3 accepted, sessions reported `Reused`) and `curl`.
//! `.ci/run` installs both.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use percore::App;
use support::pki::Pki;

fn server(pki: &Pki) -> percore::Server {
    let mut config = support::config();
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![pki.leaf("server", &["localhost", "127.0.0.1"])];
    App::new()
        .get("/", async || "secure")
        .start(&config)
        .unwrap()
}

/// Runs `openssl s_client` against `port` with `args`, sending a request;
/// returns whether it succeeded and what it printed.
fn s_client(pki: &Pki, port: u16, args: &[&str]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-CAfile"])
        .arg(pki.ca_file())
        .args(["-ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (.ci/run installs it)");
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn openssl_sees_tls12_and_13_accepted_tls11_refused_and_sessions_reused() {
    let pki = Pki::new("openssl");
    let server = server(&pki);
    let port = server.tls_addrs()[0].port();

    // SECLEVEL=0 so the client itself is willing to offer TLS 1.1.
    let (ok, text) = s_client(&pki, port, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok, "TLS 1.1 was accepted:\n{text}");
    assert!(text.contains("alert"), "{text}");

    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let session = pki.dir.join(format!("session{flag}"));
        let (ok, text) = s_client(&pki, port, &[flag, "-sess_out", session.to_str().unwrap()]);
        assert!(ok, "{text}");
        assert!(text.contains(&format!("New, {version}")), "{text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        assert!(text.contains("ALPN") || text.contains("secure"), "{text}");
        let (ok, text) = s_client(&pki, port, &[flag, "-sess_in", session.to_str().unwrap()]);
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("Reused, {version}")),
            "not resumed:\n{text}"
        );
    }
    server.stop().unwrap();
}

#[test]
fn curl_gets_the_page_with_hsts_and_cannot_use_tls11() {
    let pki = Pki::new("curl");
    let server = server(&pki);
    let port = server.tls_addrs()[0].port();
    let url = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", "--cacert"])
            .arg(pki.ca_file())
            .args(["--resolve", &resolve])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl is installed (.ci/run installs it)")
    };
    for version in ["--tlsv1.2", "--tlsv1.3"] {
        let output = curl(&[version]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("strict-transport-security: max-age=31536000"),
            "{text}"
        );
        assert!(text.ends_with("secure"), "{text}");
    }
    let refused = curl(&[
        "--tlsv1.1",
        "--tls-max",
        "1.1",
        "--ciphers",
        "DEFAULT@SECLEVEL=0",
    ]);
    assert!(!refused.status.success(), "TLS 1.1 was accepted");
    server.stop().unwrap();
}
