//! The systemd notification protocol against a real `NOTIFY_SOCKET`:
//! READY=1 (with the listening addresses) once serving, WATCHDOG=1 while the shards tick, STOPPING=1 on
//! SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn ready_watchdog_and_stopping_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &path)
        // Fed every half of this: 0.5 s.
        .env("WATCHDOG_USEC", "1000000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let len = socket
            .recv(&mut buf)
            .expect("a notification within the read limit");
        String::from_utf8_lossy(&buf[..len]).into_owned()
    };
    let ready = next();
    let addr = ready
        .strip_prefix("READY=1\nSTATUS=listening on ")
        .unwrap_or_else(|| panic!("{ready:?}"));
    // The address it names is the one it serves on.
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut client = support::Client::connect(addr);
    assert_eq!(client.request(&support::get("/health")).status, 200);
    assert_eq!(next(), "WATCHDOG=1");
    support::sigterm(&child);
    // Watchdog pings may still arrive before STOPPING; bounded by the read limit.
    let mut seen = Vec::new();
    loop {
        let message = next();
        if message == "STOPPING=1" {
            break;
        }
        assert_eq!(message, "WATCHDOG=1");
        seen.push(message);
        assert!(seen.len() < 50, "no STOPPING=1");
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let stderr: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(
        !stderr.iter().any(|l| l.contains("could not notify")),
        "{stderr:?}"
    );
}
