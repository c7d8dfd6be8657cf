//! TLS with a rustls client: handshake, versions, ALPN, SNI, resumption
//! across shards, hot reload of certificates, bad certificates refused at
//! start, the HTTPS redirect, HSTS, and a correct close.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use percore::{App, Config, ShardId};
use rustls::HandshakeKind;
use support::pki::{self, Pki, connect, exchange};

fn app() -> App {
    App::new()
        .get("/", async || "secure")
        .get("/shard", async |ShardId(shard): ShardId| shard.to_string())
}

fn tls_config(pki: &Pki, shards: usize) -> Config {
    let mut config = support::config();
    config.server.shards = Some(shards);
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![
        pki.leaf("default", &["localhost", "127.0.0.1"]),
        pki.leaf("other", &["other.test", "*.wild.test"]),
    ];
    config
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

/// The leaf certificate the server presented.
fn presented(tls: &pki::Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_der(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn https_with_tls13_and_tls12_alpn_and_hsts() {
    let pki = Pki::new("basic");
    let config = tls_config(&pki, 1);
    let server = app().start(&config).unwrap();
    let addr = server.tls_addrs()[0];
    for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = Arc::new(pki.client_config(&[versions]));
        let mut tls = connect(addr, "localhost", &client).unwrap();
        assert_eq!(tls.conn.protocol_version(), Some(versions.version));
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let answer = exchange(&mut tls, &get("/")).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"secure");
        assert_eq!(
            answer.header("strict-transport-security"),
            Some("max-age=31536000")
        );
        // Keep-alive over TLS.
        assert_eq!(exchange(&mut tls, &get("/")).unwrap().status, 200);
    }
    // The plain listener serves too, without HSTS.
    let plain = support::Client::connect(support::addr(&server)).request(&get("/"));
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("strict-transport-security"), None);
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"percore_tls_handshakes_total{shard="0"} 2"#),
        "{metrics}"
    );
    server.stop().unwrap();
}

#[test]
fn the_certificate_follows_the_name_asked_for() {
    let pki = Pki::new("sni");
    let config = tls_config(&pki, 1);
    let server = app().start(&config).unwrap();
    let addr = server.tls_addrs()[0];
    let client = pki.client();
    let default = leaf_der(&config.tls.certificate[0].cert);
    let other = leaf_der(&config.tls.certificate[1].cert);
    assert_eq!(
        presented(&connect(addr, "localhost", &client).unwrap()),
        default
    );
    assert_eq!(
        presented(&connect(addr, "other.test", &client).unwrap()),
        other
    );
    assert_eq!(
        presented(&connect(addr, "a.wild.test", &client).unwrap()),
        other
    );
    // An IP address sends no SNI: the default certificate.
    assert_eq!(
        presented(&connect(addr, "127.0.0.1", &client).unwrap()),
        default
    );
    server.stop().unwrap();
}

#[test]
fn sessions_resume_on_every_shard() {
    let pki = Pki::new("resume");
    let config = tls_config(&pki, 2);
    let server = app().start(&config).unwrap();
    let addr = server.tls_addrs()[0];
    let client = pki.client();
    let mut first = connect(addr, "localhost", &client).unwrap();
    assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
    // Reading a response also reads the session tickets sent before it.
    exchange(&mut first, &get("/")).unwrap();
    let mut resumed_on = std::collections::HashSet::new();
    for _ in 0..40 {
        let mut tls = connect(addr, "localhost", &client).unwrap();
        assert_eq!(tls.conn.handshake_kind(), Some(HandshakeKind::Resumed));
        let shard = exchange(&mut tls, &get("/shard")).unwrap().body;
        resumed_on.insert(shard);
        if resumed_on.len() == 2 {
            break;
        }
    }
    assert_eq!(
        resumed_on.len(),
        2,
        "tickets from one shard resume on the other"
    );
    server.stop().unwrap();
}

#[test]
fn tls12_session_ids_resume_from_the_shards_cache() {
    let pki = Pki::new("session-id");
    let config = tls_config(&pki, 1);
    let server = app().start(&config).unwrap();
    let addr = server.tls_addrs()[0];
    let mut client = pki.client_config(&[&rustls::version::TLS12]);
    client.resumption = rustls::client::Resumption::in_memory_sessions(16)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let client = Arc::new(client);
    let mut first = connect(addr, "localhost", &client).unwrap();
    exchange(&mut first, &get("/")).unwrap();
    let second = connect(addr, "localhost", &client).unwrap();
    assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    // (A connection that has not sent a request yet may still send one
    // while the server drains, so close them first.)
    drop((first, second));
    server.stop().unwrap();
}

#[test]
fn reload_swaps_certificates_for_new_handshakes_only() {
    let pki = Pki::new("reload");
    let config = tls_config(&pki, 2);
    let mut server = app().start(&config).unwrap();
    let addr = server.tls_addrs()[0];
    let client = pki.client();
    let old = leaf_der(&config.tls.certificate[0].cert);
    let mut open = connect(addr, "localhost", &client).unwrap();
    assert_eq!(presented(&open), old);

    // A broken reload: the old certificates stay, the error names the file.
    let mut broken = config.clone();
    broken.tls.certificate[0].key = pki.dir.join("missing.key");
    let error = server.reload(&broken).unwrap_err().to_string();
    assert!(error.contains("missing.key"), "{error}");
    assert_eq!(
        presented(&connect(addr, "localhost", &client).unwrap()),
        old
    );

    // A good one: every shard's new handshakes use the new certificate.
    let mut renewed = config.clone();
    renewed.tls.certificate[0] = pki.leaf("renewed", &["localhost"]);
    server.reload(&renewed).unwrap();
    let new = leaf_der(&renewed.tls.certificate[0].cert);
    assert_ne!(old, new);
    for _ in 0..6 {
        // Fresh clients: a full handshake shows the certificate.
        let fresh = pki.client();
        assert_eq!(presented(&connect(addr, "localhost", &fresh).unwrap()), new);
    }
    // The connection opened before goes on untouched.
    assert_eq!(exchange(&mut open, &get("/")).unwrap().status, 200);
    server.stop().unwrap();
}

#[test]
fn bad_certificates_stop_the_start_with_the_file_named() {
    let pki = Pki::new("bad");
    let good = pki.leaf("good", &["localhost"]);
    let other = pki.leaf("other", &["localhost"]);
    let expired = pki.leaf_between("expired", &["localhost"], (2001, 2002));
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let cases = [
        (
            percore::config::CertificateConfig {
                cert: pki.dir.join("absent.pem"),
                ..good.clone()
            },
            "absent.pem",
        ),
        (
            percore::config::CertificateConfig {
                key: other.key.clone(),
                ..good.clone()
            },
            "does not match",
        ),
        (expired, "expired"),
        (
            percore::config::CertificateConfig {
                cert: garbage,
                ..good.clone()
            },
            "garbage.pem",
        ),
    ];
    for (certificate, expected) in cases {
        let mut config = support::config();
        config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.tls.certificate = vec![certificate];
        let error = app().start(&config).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(error.contains("tls.certificate[0]"), "{error}");
    }
}

#[test]
fn the_redirect_listener_sends_everything_but_health_to_https() {
    let pki = Pki::new("redirect");
    let mut config = tls_config(&pki, 1);
    config.tls.redirect_listen = vec!["127.0.0.1:0".parse().unwrap()];
    let server = app().start(&config).unwrap();
    let https = server.tls_addrs()[0].port();
    let plain = server.redirect_addrs()[0];
    let reply = support::Client::connect(plain)
        .request(b"GET /a/b?c=d HTTP/1.1\r\nHost: localhost:8080\r\n\r\n");
    assert_eq!(reply.status, 301);
    let expected = format!("https://localhost:{https}/a/b?c=d");
    assert_eq!(reply.header("location"), Some(expected.as_str()));
    let health = support::Client::connect(plain).request(&get("/health"));
    assert_eq!(health.status, 200);
    server.stop().unwrap();
}

#[test]
fn close_notify_is_sent_and_a_truncated_body_never_reaches_a_handler() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let pki = Pki::new("close");
    let config = tls_config(&pki, 1);
    let app = app().post("/count", async |body: String| {
        CALLS.fetch_add(1, Ordering::SeqCst);
        body.len().to_string()
    });
    let server = app.start(&config).unwrap();
    let addr: SocketAddr = server.tls_addrs()[0];
    let client = pki.client();

    // Connection: close → the server's close_notify: a clean end of stream.
    let mut tls = connect(addr, "localhost", &client).unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    tls.read_to_end(&mut all)
        .expect("a clean close (close_notify), not a cut");
    assert!(all.ends_with(b"secure"));

    // A body cut short by a bare TCP close: the handler never runs.
    let mut tls = connect(addr, "localhost", &client).unwrap();
    tls.write_all(
        b"POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .unwrap();
    tls.flush().unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = tls.sock.read_to_end(&mut rest);
    // A whole request on another connection is counted: the handler works.
    let mut tls = connect(addr, "localhost", &client).unwrap();
    let answer = exchange(
        &mut tls,
        b"POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
    )
    .unwrap();
    assert_eq!(answer.body, b"3");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        1,
        "the truncated request reached the handler"
    );
    server.stop().unwrap();
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let pki = Pki::new("slow");
    let mut config = tls_config(&pki, 1);
    config.tls.handshake_timeout_secs = 1;
    let server = app().start(&config).unwrap();
    let mut stalled = TcpStream::connect(server.tls_addrs()[0]).unwrap();
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Half a ClientHello record header, then silence.
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    assert!(
        closed.is_ok() || closed.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(server.rejections(percore::Rejection::TlsHandshake), 1);
    server.stop().unwrap();
}
