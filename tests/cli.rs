//! The `percore` binary: configuration checks, startup errors as one
//! sentence with a non-zero exit, and a clean stop on SIGTERM.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

const PERCORE: &str = env!("CARGO_BIN_EXE_percore");

/// Runs `percore args` to completion with no `PERCORE_*`/`RUST_LOG` from
/// the test's own environment.
fn percore(args: &[&str]) -> Output {
    command(args).output().expect("percore runs")
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(PERCORE);
    command.args(args).env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        if name.starts_with("PERCORE_") {
            command.env_remove(name);
        }
    }
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An expected failure is one `percore: ...` sentence, never a panic.
fn assert_clean_failure(output: &Output, code: i32, says: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{text}");
    assert!(text.starts_with("percore: "), "{text}");
    assert!(text.contains(says), "{text}");
    assert!(
        !text.contains("panicked") && !text.contains("backtrace"),
        "{text}"
    );
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = [\"localhost\"]\nbogus = 1\n[limits]\nmax_headers = 9000\n",
    )
    .unwrap();
    let output = percore(&["check-config", file.to_str().unwrap()]);
    assert_clean_failure(&output, 2, "server.listen[0]");
    assert!(
        stderr(&output).contains("server.bogus: unknown key"),
        "{}",
        stderr(&output)
    );

    let output = percore(&[
        "check-config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_clean_failure(&output, 2, "cannot read");
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("good.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = [\"127.0.0.1:8080\", \"[::1]:8080\"]\nshards = 1\n",
    )
    .unwrap();
    let output = percore(&["check-config", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok (2 listen address(es))"));
}

#[test]
fn a_taken_port_is_one_sentence_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = percore(&["--listen", &addr, "--shards", "1"]);
    assert_clean_failure(&output, 1, &format!("address {addr} is already in use"));
}

#[test]
fn a_port_another_percore_serves_is_refused_unless_taken_over() {
    // SO_REUSEPORT would let a second process share the port silently.
    let (mut first, addr, _log) = support::spawn_percore(&[]);
    let output = percore(&["--listen", &addr.to_string(), "--shards", "1"]);
    assert_clean_failure(
        &output,
        1,
        &format!("another process already listens on {addr}"),
    );
    assert!(stderr(&output).contains("--takeover"));
    // Asked for, the second one starts beside the first and serves.
    let second = support::spawn_percore_args(&["--listen", &addr.to_string(), "--takeover"], &[]);
    let mut second_child = second.child;
    assert_eq!(second.addrs[0], addr);
    support::sigterm(&second_child);
    assert!(second_child.wait().unwrap().success());
    support::sigterm(&first);
    assert!(first.wait().unwrap().success());
}

#[test]
fn cpus_outside_the_allowed_set_are_refused() {
    let output = percore(&["--listen", "127.0.0.1:0", "--cpus", "4095"]);
    assert_clean_failure(&output, 2, "CPU 4095 is not usable");
}

#[test]
fn a_bad_environment_variable_names_its_key() {
    let output = command(&[]).env("PERCORE_SHARDS", "many").output().unwrap();
    assert_clean_failure(&output, 2, "server.shards");
}

/// Kills the child if the test ends without stopping it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let (child, addr, lines) = support::spawn_percore(&[]);
    let mut running = Running(child);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply.ends_with("\r\n\r\n{\"message\":\"Hello, World!\"}"),
        "{reply}"
    );
    support::sigterm(&running.0);
    let status = running.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.collect();
    assert!(rest.iter().any(|l| l.contains("stopping")), "{rest:?}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/percore.toml");
    let output = percore(&["check-config", file]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn doctor_reports_each_check_and_fails_on_a_fail() {
    let output = percore(&["doctor", "--shards", "1"]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 6, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("PASS ") || l.starts_with("WARN ") || l.starts_with("FAIL ")),
        "{text}"
    );
    // An io_uring verdict is always given (tests/uring_refused.rs sees
    // it fail under a seccomp filter).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PASS io_uring") || l.starts_with("FAIL io_uring")),
        "{text}"
    );
    let failed = lines.iter().any(|l| l.starts_with("FAIL"));
    assert_eq!(output.status.success(), !failed, "{text}");

    let output = percore(&["doctor", "--cpus", "4095"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAIL CPUs: CPU 4095 is not usable"));
    assert!(stderr(&output).contains("check(s) failed"));
}

#[test]
fn a_low_locked_memory_limit_is_one_sentence() {
    // `ulimit -l` lowers the limit for the shell and the binary it runs.
    let output = Command::new("sh")
        .args([
            "-c",
            "ulimit -l 64 && exec \"$0\" --listen 127.0.0.1:0 --shards 1",
            PERCORE,
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_clean_failure(
        &output,
        1,
        "the locked-memory limit is 65536 bytes but a shard needs",
    );
    assert!(stderr(&output).contains("ulimit -l"));
}

/// The `hello` example, built by `cargo test` beside the `percore` binary
/// (a run of this test binary alone, `cargo test --test cli`, does not
/// build examples: build them first with `cargo build --examples`).
fn hello_example() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_percore"))
        .parent()
        .unwrap()
        .join("examples");
    dir.join("hello")
}

/// Runs `binary` with `args` to its end, or kills it after ten seconds.
fn run_bounded(binary: &std::path::Path, args: &[&str]) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("{} {args:?} did not end in 10 s", binary.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_app_of_its_own_gets_the_whole_command_line() {
    let binary = hello_example();
    assert!(binary.exists(), "{} not built", binary.display());
    let help = run_bounded(&binary, &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{text}");
    assert!(text.contains("Usage: hello"), "{text}");
    assert!(
        text.contains("check-config") && text.contains("doctor"),
        "{text}"
    );
    // A bad flag value: one sentence under the app's own name.
    let bad = run_bounded(&binary, &["--shards", "0"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.starts_with("hello: "), "{err}");
    // It serves its own routes, with the built-in ones, and stops on SIGTERM.
    let mut command = Command::new(&binary);
    command.args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"]);
    let mut spawned = support::spawn_ready(command);
    let mut client = support::Client::connect(spawned.addrs[0]);
    assert_eq!(
        client.request(&support::get("/hello/world")).text(),
        "Hello, world!"
    );
    assert_eq!(client.request(&support::get("/health")).status, 200);
    support::sigterm(&spawned.child);
    assert!(spawned.child.wait().unwrap().success());
}
