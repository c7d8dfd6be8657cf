//! Fleet-wide rate limits: two percore processes with one `backend =
//! "redis"` policy against one real redis-server enforce one limit
//! between them, and each fails open or closed as configured when Redis
//! goes away.

mod support;

use support::servers::Redis;

fn config(dir: &std::path::Path, name: &str, redis: &str, on_error: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[rate_limit]
enabled = true
redis_url = "{redis}"
redis_timeout_ms = 500

[[rate_limit.policy]]
name = "fleet"
rate = 0.001
burst = 10
backend = "redis"
on_redis_error = "{on_error}"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn two_processes_share_one_allowance_and_fail_as_configured() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let closed = config(dir.path(), "closed", &redis.url(), "closed");
    let open = config(dir.path(), "open", &redis.url(), "open");
    let a = support::spawn_percore_args(
        &[
            "--config",
            closed.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let a_child = support::KillOnDrop(a.child);
    let b = support::spawn_percore_args(
        &[
            "--config",
            open.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let b_child = support::KillOnDrop(b.child);
    let mut clients = [
        support::Client::connect(a.addrs[0]),
        support::Client::connect(b.addrs[0]),
    ];
    // 30 requests, alternating hosts: 10 allowed in all (each host alone
    // would allow 10), at 0.001 requests a second nothing is earned back.
    let mut allowed = [0, 0];
    for i in 0..30 {
        let reply = clients[i % 2].request(&support::get("/plaintext"));
        match reply.status {
            200 => allowed[i % 2] += 1,
            429 => {
                assert!(reply.header("retry-after").is_some());
                assert!(reply.header("ratelimit").is_some_and(|v| v.contains("r=0")));
            }
            other => panic!("status {other}: {}", reply.text()),
        }
    }
    assert_eq!(
        allowed[0] + allowed[1],
        10,
        "one allowance for the fleet: {allowed:?}"
    );
    assert!(
        allowed[0] >= 4 && allowed[1] >= 4,
        "both hosts used it: {allowed:?}"
    );
    // Redis gone: the fail-closed host refuses with 503, the fail-open one serves.
    redis.kill();
    let reply = clients[0].request(&support::get("/plaintext"));
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("Redis"), "{}", reply.text());
    let reply = clients[1].request(&support::get("/plaintext"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Counted where operators look.
    for client in &mut clients {
        let metrics = client.request(&support::get("/metrics"));
        let errors = support::sample(
            metrics.text(),
            "percore_rate_limit_backend_errors_total{shard=\"0\"}",
        );
        assert!(errors >= 1, "{}", metrics.text());
    }
    drop((a_child, b_child));
}

#[test]
fn a_redis_policy_must_say_how_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "unsaid", "redis://127.0.0.1:1", "");
    let output = support::percore_serve(&[
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("rate_limit.policy[0].on_redis_error"),
        "{said}"
    );
    assert!(
        said.contains("\"open\"") && said.contains("\"closed\""),
        "{said}"
    );
}
