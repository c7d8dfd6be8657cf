//! Zero-downtime upgrade: a second percore starts on the same port
//! (`SO_REUSEPORT`), the first gets SIGTERM, and a client opening a new
//! connection for every request meanwhile sees no failure. That needs
//! `net.ipv4.tcp_migrate_req = 1` (the kernel moves connections still
//! queued on the old process's listener to the new one instead of
//! resetting them): the test sets it, and puts the old value back after;
//! it fails, naming the fix, where it may not (run it as root).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const MIGRATE: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Sets `tcp_migrate_req` to 1 while alive; puts the old value back.
struct Migrate {
    restore: Option<String>,
}

impl Migrate {
    fn on() -> Self {
        let before = std::fs::read_to_string(MIGRATE).unwrap_or_default();
        if before.trim() == "1" {
            return Self { restore: None };
        }
        if let Err(error) = std::fs::write(MIGRATE, "1") {
            panic!(
                "cannot set {MIGRATE} to 1 ({error}): a lossless handover needs it; \
                 run this test as root, or set the sysctl first"
            );
        }
        Self {
            restore: Some(before),
        }
    }
}

impl Drop for Migrate {
    fn drop(&mut self) {
        if let Some(before) = self.restore.take() {
            let _ = std::fs::write(MIGRATE, before.trim());
        }
    }
}

/// One request on a new connection; whether a complete 200 came back.
fn one_request(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        Ok(reply.starts_with(b"HTTP/1.1 200 ") && reply.ends_with(b"Hello, World!"))
    };
    attempt().unwrap_or(false)
}

#[test]
fn a_new_process_takes_over_without_a_failed_request() {
    let _migrate = Migrate::on();
    let (mut old, addr, _old_log) = support::spawn_percore(&[]);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The client reports each hundredth success, so the test can wait for
    // progress without sleeping.
    let (progress, progress_rx) = mpsc::channel();
    let client = {
        let (ok, failed, stop) = (Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stop));
        std::thread::spawn(move || {
            // Bounded: at most 200,000 requests.
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if one_request(addr) {
                    if ok.fetch_add(1, Ordering::Relaxed) % 100 == 99 {
                        let _ = progress.send(());
                    }
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Waits for n hundred more successes from now.
    let wait_hundreds = |n: usize| {
        let _stale = progress_rx.try_iter().count();
        for _ in 0..n {
            progress_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the client makes progress");
        }
    };
    wait_hundreds(3);
    let (mut new, new_addr, _new_log) =
        support::spawn_percore_on(&addr.to_string(), &[("PERCORE_TAKEOVER", "1")]);
    assert_eq!(new_addr, addr);
    wait_hundreds(3);
    support::sigterm(&old);
    assert!(
        old.wait().unwrap().success(),
        "the old process drained in time"
    );
    let before_exit = ok.load(Ordering::Relaxed);
    wait_hundreds(3);
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    support::sigterm(&new);
    assert!(new.wait().unwrap().success());
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "handover: {ok} requests answered ({before_exit} before the old process exited), {failed} failed"
    );
    assert!(ok >= before_exit + 200, "the new process served on");
    assert_eq!(failed, 0, "requests failed during the handover");
}
