//! `percore::blocking` runs work off the shard: while a handler waits on
//! blocking work, the same shard keeps serving other connections.

mod support;

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percore::{App, State};
use support::{Client, addr, get, start};

/// What the blocking work holds: where to say it started, and what it waits on.
type Gate = Arc<(Mutex<Sender<()>>, Mutex<Receiver<&'static str>>)>;

struct Release(Sender<&'static str>);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.0.send("released");
    }
}

#[test]
fn the_shard_serves_while_blocking_work_waits() {
    let (started_tx, started) = channel();
    let (release, waiting) = channel();
    let gate: Gate = Arc::new((Mutex::new(started_tx), Mutex::new(waiting)));
    let app = App::with_state(move || Arc::clone(&gate))
        .get("/block", async |State(gate): State<Gate>| {
            percore::blocking(move || {
                gate.0.lock().unwrap().send(()).unwrap();
                gate.1.lock().unwrap().recv().unwrap()
            })
            .await
        })
        .get("/fast", async || "fast");
    let server = start(app, 1);
    // Dropped before the server if an assertion fails, so a shard stuck in
    // the work is let go and the test fails instead of hanging.
    let release = Release(release);
    let mut blocked = Client::connect(addr(&server));
    blocked.send(&get("/block"));
    // The blocking work is now running and waiting.
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocking work started");
    // Answered meanwhile: had the work run on the shard, the shard would be
    // stuck in it and this read would hit its limit.
    let mut other = Client::connect(addr(&server));
    assert_eq!(other.request(&get("/fast")).text(), "fast");
    release.0.send("released").unwrap();
    assert_eq!(blocked.read_reply(false).text(), "released");
    server.stop().unwrap();
}
