//! An idle shard sleeps: after a short poll it waits in the kernel, so a
//! server with nothing to do uses almost no CPU, and it still answers at once
//! when a request comes. Alone in its binary, so only this server's CPU time
//! is counted.

mod support;

use std::time::{Duration, Instant};

use support::{Client, addr, get, start};

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code, reason = "reading the clock tick rate")]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_millis(ticks * 1000 / u64::try_from(hz).unwrap())
}

#[test]
fn an_idle_shard_sleeps_and_still_answers() {
    let server = start(percore::reference::app(), 1);
    let mut client = Client::connect(addr(&server));
    assert_eq!(client.request(&get("/plaintext")).status, 200);
    // Measure over half a second of nothing to do (a measurement window,
    // not a wait for anything).
    let (wall_start, cpu_start) = (Instant::now(), cpu_time());
    std::thread::sleep(Duration::from_millis(500));
    let (wall, cpu) = (wall_start.elapsed(), cpu_time().saturating_sub(cpu_start));
    // A spinning shard would use about all of it; a sleeping one nearly none.
    assert!(
        cpu * 4 < wall,
        "idle server used {cpu:?} of CPU in {wall:?}"
    );
    assert_eq!(client.request(&get("/plaintext")).text(), "Hello, World!");
    server.stop().unwrap();
}
