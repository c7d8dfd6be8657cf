//! Supervision: a shard whose thread dies is started again on its CPU with
//! its listening socket, and the service recovers; a handler that blocks
//! the shard's event loop is reported by the watchdog (shard, how long,
//! which request) and counted.

mod support;

use std::time::Duration;

use percore::App;
use support::{Client, addr, get};

#[test]
fn a_shard_that_dies_is_restarted_with_its_listener() {
    let log = support::Captured::install();
    let app = App::new().get("/", async || "ok").get("/crash", async || {
        // A panic in a task the handler spawned is outside the handler's
        // own guard: it takes the shard's thread down.
        glommio::spawn_local(async {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            panic!("a bug in a spawned task")
        })
        .detach();
        "crashing"
    });
    let server = support::start(app, 1);
    let cpu = server.cpus()[0];
    assert_eq!(
        Client::connect(addr(&server)).request(&get("/")).status,
        200
    );
    let mut victim = Client::connect(addr(&server));
    victim.send(&get("/crash"));
    // The connection dies with its shard (answered or not).
    let _ = std::io::Read::read_to_end(&mut victim.into_stream(), &mut Vec::new());
    // A new connection waits in the kept listener's queue until the
    // restarted shard accepts it.
    for _ in 0..3 {
        assert_eq!(
            Client::connect(addr(&server)).request(&get("/")).text(),
            "ok"
        );
    }
    let metrics = server.metrics();
    assert_eq!(
        support::sample(&metrics, r#"percore_shard_restarts_total{shard="0"}"#),
        1
    );
    assert_eq!(
        support::sample(&metrics, r#"percore_shard_up{shard="0"}"#),
        1
    );
    assert_eq!(server.cpus(), [cpu]);
    let text = log.text();
    assert!(text.contains("shard died; restarting it"), "{text}");
    assert!(text.contains("a bug in a spawned task"), "{text}");
    assert!(text.contains("shard restarted"), "{text}");
    server.stop().unwrap();
}

#[test]
fn the_watchdog_reports_a_blocked_event_loop() {
    let log = support::Captured::install();
    let mut config = support::config();
    config.server.stall_threshold_ms = 300;
    let app = App::new().get("/", async || "ok").get("/block", async || {
        // The anti-pattern: a blocking call on the shard's thread.
        std::thread::sleep(Duration::from_millis(1500));
        "done"
    });
    let server = app.start(&config).unwrap();
    assert_eq!(
        Client::connect(addr(&server))
            .request(&get("/block"))
            .text(),
        "done"
    );
    assert_eq!(
        Client::connect(addr(&server)).request(&get("/")).text(),
        "ok"
    );
    let metrics = server.metrics();
    assert_eq!(
        support::sample(&metrics, r#"percore_stalls_total{shard="0"}"#),
        1
    );
    server.stop().unwrap();
    let text = log.text();
    let blocked = text
        .lines()
        .find(|line| line.contains("shard event loop blocked"))
        .unwrap_or_else(|| panic!("no stall report in\n{text}"));
    assert!(blocked.contains("shard=0"), "{blocked}");
    assert!(blocked.contains("GET /block"), "{blocked}");
    assert!(blocked.contains("blocked_ms="), "{blocked}");
}
