//! The outbound HTTP client on a shard, against percore itself as the
//! upstream: keep-alive pools, framing, JSON, timeouts, retries, the pool
//! cap, the circuit breaker, HTTPS, and a client inside a real shard's
//! handlers built by the async state factory.

mod support;

use support::on_shard;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use percore::client::{
    BreakerConfig, Client, ClientConfig, ErrorKind, PoolConfig, RetryConfig, Roots,
};
use percore::{App, Json, Path, Response, State, Status, TestClient};

static FLAKY: AtomicU32 = AtomicU32::new(0);
static POSTS: AtomicU32 = AtomicU32::new(0);

/// The upstream: percore serving the routes the client is tested on.
fn upstream() -> TestClient {
    TestClient::new(
        App::new()
            .get("/hello", async || "hello")
            .post("/echo", async |Json(value): Json<serde_json::Value>| {
                Json(value)
            })
            .get("/status/{code}", async |Path(code): Path<u16>| {
                Response::new(Status::from_u16(code).unwrap_or(Status::OK)).body("s")
            })
            // Fails twice with 503, then answers.
            .get("/flaky", async || {
                if FLAKY.fetch_add(1, Ordering::SeqCst) % 3 < 2 {
                    Response::new(Status::SERVICE_UNAVAILABLE).body("later")
                } else {
                    Response::new(Status::OK).body("now")
                }
            })
            .post("/flaky-post", async || {
                POSTS.fetch_add(1, Ordering::SeqCst);
                Response::new(Status::SERVICE_UNAVAILABLE).body("later")
            })
            .get("/slow", async || {
                glommio::timer::sleep(Duration::from_secs(3)).await;
                "slow"
            })
            .get("/stream", async || {
                let pieces = (0..1000).map(|i| format!("{i:04}").into_bytes());
                Response::new(Status::OK).stream(futures_lite::stream::iter(pieces))
            })
            .get("/big", async || vec![b'b'; 1 << 20])
            .post("/count", async |body: percore::Bytes| {
                body.0.len().to_string()
            }),
    )
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[test]
fn calls_reuse_one_kept_alive_connection_and_read_every_framing() {
    let up = upstream();
    let addr = up.addr();
    on_shard(move || async move {
        let client = Client::new();
        for _ in 0..10 {
            let reply = client.get(&url(addr, "/hello")).send().await.unwrap();
            assert_eq!(reply.status(), 200);
            assert_eq!(reply.text().await.unwrap(), "hello");
        }
        let stats = client.origin_stats(&url(addr, "/")).unwrap();
        assert_eq!(
            (stats.open, stats.idle),
            (1, 1),
            "ten calls, one connection"
        );
        // JSON both ways.
        let echoed: serde_json::Value = client
            .post(&url(addr, "/echo"))
            .json(&serde_json::json!({"a": [1, 2, 3], "b": "ü"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echoed, serde_json::json!({"a": [1, 2, 3], "b": "ü"}));
        // A chunked body arrives piece by piece, and whole.
        let mut reply = client.get(&url(addr, "/stream")).send().await.unwrap();
        assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
        let mut body = Vec::new();
        while let Some(piece) = reply.chunk().await.unwrap() {
            body.extend_from_slice(&piece);
        }
        assert_eq!(body.len(), 4000);
        assert!(body.starts_with(b"00000001") && body.ends_with(b"0999"));
        assert!(reply.is_complete());
        drop(reply);
        // A large Content-Length body, and the limit on reading one.
        let big = client.get(&url(addr, "/big")).send().await.unwrap();
        assert_eq!(big.bytes().await.unwrap().len(), 1 << 20);
        let limited = client.get(&url(addr, "/big")).send().await.unwrap();
        let error = limited.bytes_limited(1000).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TooLarge);
        // A HEAD has no body whatever Content-Length says.
        let head = client.head(&url(addr, "/big")).send().await.unwrap();
        assert_eq!(head.header("content-length"), Some("1048576"));
        assert!(head.bytes().await.unwrap().is_empty());
        // A streamed request body goes chunked, and arrives whole.
        let pieces = (0..100).map(|_| bytes::Bytes::from_static(&[b'p'; 1000]));
        let counted = client
            .post(&url(addr, "/count"))
            .body_stream(futures_lite::stream::iter(pieces))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(counted, "100000");
        // Everything went back to the pool: the body reads ended cleanly.
        let stats = client.origin_stats(&url(addr, "/")).unwrap();
        assert!(stats.open <= 2, "{stats:?}");
    });
}

#[test]
fn idempotent_calls_are_retried_with_backoff_and_posts_are_not() {
    let up = upstream();
    let addr = up.addr();
    on_shard(move || async move {
        let client = Client::with_config(ClientConfig {
            retry: RetryConfig {
                base: Duration::from_millis(5),
                ..RetryConfig::default()
            },
            ..ClientConfig::default()
        });
        FLAKY.store(0, Ordering::SeqCst);
        let reply = client.get(&url(addr, "/flaky")).send().await.unwrap();
        assert_eq!(reply.status(), 200, "two 503s, then the answer");
        assert_eq!(FLAKY.load(Ordering::SeqCst), 3);
        // Without retries the first 503 is the answer.
        FLAKY.store(0, Ordering::SeqCst);
        let once = client
            .get(&url(addr, "/flaky"))
            .no_retry()
            .send()
            .await
            .unwrap();
        assert_eq!(once.status(), 503);
        // A POST could have acted: sent once only.
        POSTS.store(0, Ordering::SeqCst);
        let post = client.post(&url(addr, "/flaky-post")).send().await.unwrap();
        assert_eq!(post.status(), 503);
        assert_eq!(POSTS.load(Ordering::SeqCst), 1);
        // A status that is not a retry status is answered at once.
        let missing = client.get(&url(addr, "/status/404")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let error = missing.error_for_status().unwrap_err();
        assert_eq!(error.status_code(), Some(404));
    });
}

#[test]
fn slow_origins_time_out_and_a_full_pool_answers_pool_timeout() {
    let up = upstream();
    let addr = up.addr();
    on_shard(move || async move {
        let client = Client::with_config(ClientConfig {
            read_timeout: Duration::from_millis(200),
            retry: RetryConfig::none(),
            ..ClientConfig::default()
        });
        let started = std::time::Instant::now();
        let error = client.get(&url(addr, "/slow")).send().await.unwrap_err();
        assert!(error.is_timeout(), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // The overall timeout also bounds a call.
        let error = client
            .get(&url(addr, "/slow"))
            .timeout(Duration::from_millis(150))
            .send()
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{error}");
        // One connection, busy with a slow call: the next call waits its
        // bounded wait, then fails saying so.
        let pooled = Client::with_config(ClientConfig {
            read_timeout: Duration::from_secs(2),
            retry: RetryConfig::none(),
            pool: PoolConfig {
                max_per_origin: 1,
                wait_timeout: Duration::from_millis(100),
                ..PoolConfig::default()
            },
            ..ClientConfig::default()
        });
        let busy = pooled.clone();
        let slow_url = url(addr, "/slow");
        let holder =
            glommio::spawn_local(async move { busy.get(&slow_url).send().await.map(|_| ()) });
        let mut tries = 0;
        let error = loop {
            tries += 1;
            match pooled.get(&url(addr, "/hello")).send().await {
                Err(error) if error.kind() == ErrorKind::PoolTimeout => break error,
                // The holder had not taken the connection yet.
                _ if tries < 10 => {}
                other => panic!("no pool timeout: {other:?}"),
            }
        };
        assert!(error.to_string().contains("max_per_origin"), "{error}");
        assert!(holder.await.unwrap_err().is_timeout());
    });
}

#[test]
fn a_refused_origin_fails_fast_then_opens_its_circuit() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    on_shard(move || async move {
        let client = Client::with_config(ClientConfig {
            retry: RetryConfig::none(),
            breaker: BreakerConfig {
                failures: 3,
                cooldown: Duration::from_mins(1),
            },
            ..ClientConfig::default()
        });
        for _ in 0..3 {
            let error = client.get(&url(addr, "/")).send().await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
            assert!(error.is_connect());
        }
        let error = client.get(&url(addr, "/")).send().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CircuitOpen, "{error}");
        assert!(client.origin_stats(&url(addr, "/")).unwrap().circuit_open);
        // Another origin is not affected.
        let other = client.get("http://127.0.0.1:1/").send().await.unwrap_err();
        assert_eq!(other.kind(), ErrorKind::Connect);
        // Bad URLs say what is wrong.
        let bad = client.get("ftp://x/").send().await.unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::Url);
    });
}

#[test]
fn https_origins_are_verified_against_the_configured_roots() {
    let pki = support::pki::Pki::new("client");
    let mut config = support::config();
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![pki.leaf("leaf", &["localhost"])];
    let server = App::new()
        .get("/", async || "secure")
        .start(&config)
        .unwrap();
    let port = server.tls_addrs()[0].port();
    let ca = pki.ca_file();
    on_shard(move || async move {
        let trusting = Client::with_config(ClientConfig {
            roots: Roots::PemFile(ca),
            ..ClientConfig::default()
        });
        let target = format!("https://localhost:{port}/");
        for _ in 0..3 {
            let reply = trusting.get(&target).send().await.unwrap();
            assert_eq!(reply.text().await.unwrap(), "secure");
        }
        assert_eq!(trusting.origin_stats(&target).unwrap().open, 1);
        // The public roots do not know the test CA.
        let strict = Client::with_config(ClientConfig {
            retry: RetryConfig::none(),
            ..ClientConfig::default()
        });
        let error = strict.get(&target).send().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Tls, "{error}");
        assert!(error.to_string().contains("certificate"), "{error}");
        // A CA file that is not there fails with the path named.
        let broken = Client::with_config(ClientConfig {
            roots: Roots::PemFile("/nonexistent/ca.pem".into()),
            ..ClientConfig::default()
        });
        let error = broken.check_tls().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    });
    server.stop().unwrap();
}

#[derive(Clone)]
struct Gateway {
    api: Client,
    base: String,
}

#[test]
fn a_shard_builds_its_client_before_serving_and_handlers_call_through_it() {
    let up = upstream();
    let base = format!("http://{}", up.addr());
    let app = App::with_async_state(move |_startup| {
        let base = base.clone();
        async move {
            let api = Client::new();
            // Warm the pool: the shard serves only once this succeeded.
            let ready = api.get(&format!("{base}/hello")).send().await;
            ready
                .map_err(|e| percore::StartupError::new("upstream", e))?
                .bytes()
                .await
                .ok();
            Ok(Gateway { api, base })
        }
    })
    .get("/via", async |State(gateway): State<Gateway>| {
        let reply = gateway
            .api
            .get(&format!("{}/hello", gateway.base))
            .send()
            .await?;
        Ok::<_, percore::client::ClientError>(format!("upstream said {}", reply.text().await?))
    })
    .readiness_check("upstream", |gateway: &Gateway| {
        // Unready while the upstream's circuit is open.
        gateway
            .api
            .origin_stats("http://127.0.0.1:1/")
            .is_none_or(|stats| !stats.circuit_open)
    })
    .get("/down", async |State(gateway): State<Gateway>| {
        gateway
            .api
            .get("http://127.0.0.1:1/")
            .no_retry()
            .send()
            .await
            .map(|_| "up")
    });
    let gateway = TestClient::new(app);
    futures_lite::future::block_on(async {
        let reply = gateway.get("/via").send().await;
        assert_eq!(reply.status(), Status::OK);
        assert_eq!(reply.text(), "upstream said hello");
        // A failed call answers 502 with the origin and step named.
        let reply = gateway.get("/down").send().await;
        assert_eq!(reply.status(), Status::BAD_GATEWAY);
        assert!(
            reply.text().contains("could not connect"),
            "{}",
            reply.text()
        );
        assert_eq!(
            gateway.get("/health/ready").send().await.status(),
            Status::OK
        );
        // Enough failures open the circuit, and readiness names it.
        for _ in 0..5 {
            gateway.get("/down").send().await;
        }
        let ready = gateway.get("/health/ready").send().await;
        assert_eq!(ready.status(), Status::SERVICE_UNAVAILABLE);
        assert!(ready.text().contains("\"upstream\""), "{}", ready.text());
        let reply = gateway.get("/down").send().await;
        assert_eq!(
            reply.status(),
            Status::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        // The shard's outbound calls, as operators see them.
        let metrics = gateway.get("/metrics").send().await.text();
        let sample = |name: &str| support::sample(&metrics, &format!("{name}{{shard=\"0\"}}"));
        assert!(sample("percore_client_calls_total") >= 8, "{metrics}");
        assert_eq!(sample("percore_client_circuits_opened_total"), 1);
        assert!(sample("percore_client_failures_total") >= 6);
        assert!(
            sample("percore_client_connections_open") >= 1,
            "the upstream's kept-alive one"
        );
    });
}

static CLOSED_IDLE: AtomicU32 = AtomicU32::new(0);

#[test]
fn shutdown_hooks_run_on_every_shard_once_it_has_drained() {
    let up = upstream();
    let hello = format!("http://{}/hello", up.addr());
    let warm = hello.clone();
    let app = App::with_async_state(move |_startup| {
        let warm = warm.clone();
        async move {
            let api = Client::new();
            let reply = api.get(&warm).send().await;
            let reply = reply.map_err(|e| percore::StartupError::new("upstream", e))?;
            reply
                .bytes()
                .await
                .map_err(|e| percore::StartupError::new("upstream", e))?;
            Ok(api)
        }
    })
    .on_shutdown(move |api: &Client| {
        let api = api.clone();
        let hello = hello.clone();
        async move {
            // The pool still holds its connection, then lets it go.
            let idle = api.origin_stats(&hello).map_or(0, |s| s.idle);
            api.close_idle();
            if api.origin_stats(&hello).is_some_and(|s| s.open == 0) {
                CLOSED_IDLE.fetch_add(u32::try_from(idle).unwrap_or(0), Ordering::SeqCst);
            }
        }
    });
    let server = support::start(app, 2);
    server.stop().unwrap();
    assert_eq!(
        CLOSED_IDLE.load(Ordering::SeqCst),
        2,
        "one idle connection per shard, closed"
    );
}

#[test]
fn a_failing_dependency_stops_the_start_naming_it() {
    let app = App::with_async_state(|_startup| async {
        let api = Client::new();
        api.get("http://127.0.0.1:1/")
            .send()
            .await
            .map_err(|e| percore::StartupError::new("payments", e))?;
        Ok(())
    });
    let error = app.start(&support::config()).unwrap_err().to_string();
    assert!(error.contains("payments"), "{error}");
    assert!(error.contains("could not connect"), "{error}");
}

/// The Python upstream (`tests/support/upstream.py`), killed when dropped.
struct Python {
    child: std::process::Child,
    tcp: u16,
    tls: Option<u16>,
    socket: std::path::PathBuf,
}

impl Python {
    fn start(tag: &str, tls: Option<[&std::path::Path; 3]>) -> Self {
        use std::io::BufRead;
        let socket =
            std::env::temp_dir().join(format!("percore-py-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/upstream.py");
        let mut command = std::process::Command::new("python3");
        command.arg(script).arg("--unix").arg(&socket);
        if let Some(files) = tls {
            command.arg("--tls").args(files);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (.ci/run installs it)");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut tcp, mut tls) = (0, None);
        // Each line is read once; the script exits (ending the lines) if it fails.
        for line in lines.by_ref() {
            let line = line.unwrap();
            match line.split_once(' ') {
                Some(("tcp", port)) => tcp = port.parse().unwrap(),
                Some(("tls", port)) => tls = Some(port.parse().unwrap()),
                _ if line == "ready" => break,
                _ => panic!("unexpected line from the upstream: {line}"),
            }
        }
        assert!(tcp > 0, "the Python upstream did not start");
        Self {
            child,
            tcp,
            tls,
            socket,
        }
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn a_real_python_server_over_tcp_a_unix_socket_and_until_close_framing() {
    let python = Python::start("plain", None);
    let tcp = python.tcp;
    let socket = python.socket.to_str().unwrap().replace('/', "%2F");
    on_shard(move || async move {
        let client = Client::new();
        let base = format!("http://127.0.0.1:{tcp}");
        for _ in 0..3 {
            let reply = client.get(&format!("{base}/hello")).send().await.unwrap();
            assert_eq!(reply.text().await.unwrap(), "hello from python");
        }
        assert_eq!(client.origin_stats(&base).unwrap().open, 1, "kept alive");
        let got: serde_json::Value = client
            .post(&format!("{base}/echo"))
            .json(&serde_json::json!({"n": 7}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got, serde_json::json!({"got": {"n": 7}}));
        // A body that ends when the server closes: whole, connection not kept.
        let reply = client
            .get(&format!("{base}/until-close"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.bytes().await.unwrap().len(), 100_000);
        // A body cut short is an error, never a short success.
        let reply = client
            .get(&format!("{base}/truncated"))
            .send()
            .await
            .unwrap();
        let error = reply.bytes().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Io);
        assert!(
            error.to_string().contains("before the body's end"),
            "{error}"
        );
        // The same server on its Unix socket.
        let unix = format!("http+unix://{socket}");
        for _ in 0..3 {
            let reply = client.get(&format!("{unix}/hello")).send().await.unwrap();
            assert_eq!(reply.status(), 200);
            assert_eq!(reply.text().await.unwrap(), "hello from python");
        }
        assert_eq!(client.origin_stats(&unix).unwrap().open, 1);
    });
}

#[test]
fn a_client_certificate_is_presented_to_a_server_that_requires_one() {
    let pki = support::pki::Pki::new("client-cert");
    let server = pki.leaf("server", &["localhost"]);
    let mine = pki.leaf("me", &["client.test"]);
    let ca = pki.ca_file();
    let python = Python::start("tls", Some([&server.cert, &server.key, &ca]));
    let port = python.tls.unwrap();
    on_shard(move || async move {
        let target = format!("https://localhost:{port}/peer");
        let with_cert = Client::with_config(ClientConfig {
            roots: Roots::PemFile(ca.clone()),
            client_certificate: Some((mine.cert.clone(), mine.key.clone())),
            ..ClientConfig::default()
        });
        let peer: serde_json::Value = with_cert
            .get(&target)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(peer["names"], serde_json::json!(["client.test"]), "{peer}");
        // Without one the server refuses the handshake.
        let without = Client::with_config(ClientConfig {
            roots: Roots::PemFile(ca),
            retry: RetryConfig::none(),
            ..ClientConfig::default()
        });
        let error = without.get(&target).send().await.unwrap_err();
        assert!(
            matches!(error.kind(), ErrorKind::Tls | ErrorKind::Io),
            "{error}"
        );
    });
}
