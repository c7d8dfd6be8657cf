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
        // curl offers h2 by ALPN and the server prefers it.
        assert!(text.starts_with("HTTP/2 200"), "{text}");
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

/// Runs `openssl` with `args` in `dir`; panics if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn rsa_pkcs1_and_ec_sec1_keys_from_openssl_are_served() {
    let pki = Pki::new("keyformats");
    let dir = pki.dir.clone();
    openssl(&dir, &["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    openssl(
        &dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    for key in ["rsa.key", "ec.key"] {
        let pem = std::fs::read_to_string(dir.join(key)).unwrap();
        let kind = if key == "rsa.key" {
            "BEGIN RSA PRIVATE KEY"
        } else {
            "BEGIN EC PRIVATE KEY"
        };
        assert!(pem.contains(kind), "{key} is not in the format under test");
        let cert = format!("{key}.pem");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-key",
                key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
            ],
        );
        let mut config = support::config();
        config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.tls.certificate = vec![percore::config::CertificateConfig {
            cert: dir.join(&cert),
            key: dir.join(key),
            names: Vec::new(),
        }];
        let server = App::new()
            .get("/", async || "secure")
            .start(&config)
            .unwrap();
        let port = server.tls_addrs()[0].port();
        let output = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
            ])
            .arg("-CAfile")
            .arg(dir.join(&cert))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Verify return code: 0 (ok)"), "{key}: {text}");
        server.stop().unwrap();
    }
}

#[test]
fn dev_tls_prints_the_fingerprint_of_the_certificate_it_serves() {
    let mut spawned = support::spawn_percore_args(
        &["--listen", "127.0.0.1:0", "--dev-tls"],
        &[("PERCORE_TLS_LISTEN", "127.0.0.1:0")],
    );
    let printed = spawned
        .preamble
        .iter()
        .find_map(|line| line.split("SHA-256 fingerprint ").nth(1))
        .expect("a fingerprint line")
        .trim()
        .to_owned();
    assert_eq!(printed.len(), 32 * 3 - 1, "{printed}");
    let tls = spawned.addrs[1];
    let fetched = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {tls} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .unwrap();
    let fetched = String::from_utf8_lossy(&fetched.stdout);
    assert!(
        fetched.trim().ends_with(&printed),
        "served {fetched}, printed {printed}"
    );
    support::sigterm(&spawned.child);
    assert!(spawned.child.wait().unwrap().success());
}

#[test]
fn sighup_reloads_certificates_and_keeps_them_when_the_new_ones_are_bad() {
    let pki = Pki::new("sighup");
    let first = pki.leaf("first", &["localhost"]);
    let config = pki.dir.join("percore.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\nlisten = [\"127.0.0.1:0\"]\n[[tls.certificate]]\ncert = {:?}\nkey = {:?}\n",
            first.cert, first.key
        ),
    )
    .unwrap();
    let mut spawned = support::spawn_percore_args(
        &["--listen", "127.0.0.1:0"],
        &[("PERCORE_CONFIG", config.to_str().unwrap())],
    );
    let mut log = support::LogLines::new(spawned.lines);
    let tls = spawned.addrs[1];
    let presented = || {
        let connection = support::pki::connect(tls, "localhost", &pki.client()).unwrap();
        connection.conn.peer_certificates().unwrap()[0].to_vec()
    };
    let before = presented();

    // New certificate and key under the same file names, then SIGHUP.
    let second = pki.leaf("second", &["localhost"]);
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    support::signal(&spawned.child, libc::SIGHUP);
    log.wait_for("configuration reloaded");
    let after = presented();
    assert_ne!(before, after, "the new certificate is served");

    // A broken key: refused, the error names the file, the last good one stays.
    std::fs::write(&first.key, "garbage").unwrap();
    support::signal(&spawned.child, libc::SIGHUP);
    let refused = log.wait_for("reload refused");
    assert!(refused.contains("first.key"), "{refused}");
    assert_eq!(presented(), after);

    support::sigterm(&spawned.child);
    assert!(spawned.child.wait().unwrap().success());
}
