//! Background tasks: run after the response on the serving shard, and a
//! stopping shard waits for them.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use percore::{App, Background, Shutdown, State};
use support::{Client, addr, get, start};

type Events = mpsc::Sender<&'static str>;
/// Holds a task until the test lets it go.
type Release = std::sync::Arc<std::sync::Mutex<mpsc::Receiver<()>>>;
type Shared = (Events, Release);

fn app(events: Events, release: Release) -> App<Shared> {
    App::with_state(move || (events.clone(), release.clone()))
        .get(
            "/later",
            async |State((events, release)): State<(
                Events,
                std::sync::Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
            )>,
                   background: Background| {
                background.run(async move {
                    // Held until the test has the response: the response does
                    // not wait for the task.
                    percore::blocking(move || {
                        release
                            .lock()
                            .unwrap()
                            .recv_timeout(Duration::from_secs(30))
                            .ok()
                    })
                    .await;
                    events.send("ran").unwrap();
                });
                "answered"
            },
        )
        .get(
            "/on-drain",
            async |State((events, _)): State<(
                Events,
                std::sync::Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
            )>,
                   background: Background,
                   shutdown: Shutdown| {
                background.run(async move {
                    shutdown.wait().await;
                    // Work that takes a trip through the blocking pool after
                    // the drain began: lost if the shard did not wait.
                    let sum = percore::blocking(|| (1..=1000u64).sum::<u64>()).await;
                    assert_eq!(sum, 500_500);
                    events.send("finished on drain").unwrap();
                });
                "scheduled"
            },
        )
        .get("/panics", async |background: Background| {
            background.run(async { panic!("a background task failing") });
            "fine"
        })
}

#[test]
fn a_background_task_runs_after_the_response() {
    let (events, seen) = mpsc::channel();
    let (release, held) = mpsc::channel();
    let server = start(
        app(events, std::sync::Arc::new(std::sync::Mutex::new(held))),
        1,
    );
    let mut client = Client::connect(addr(&server));
    let reply = client.request(&get("/later"));
    assert_eq!(reply.text(), "answered");
    assert!(seen.try_recv().is_err(), "the task ran before the response");
    release.send(()).unwrap();
    assert_eq!(seen.recv_timeout(Duration::from_secs(30)), Ok("ran"));

    // A panicking task is dropped; the shard serves on.
    assert_eq!(client.request(&get("/panics")).text(), "fine");
    assert_eq!(client.request(&get("/later")).text(), "answered");
    release.send(()).unwrap();
    assert_eq!(seen.recv_timeout(Duration::from_secs(30)), Ok("ran"));
    server.stop().unwrap();
}

#[test]
fn a_stopping_shard_waits_for_background_tasks() {
    let (events, seen) = mpsc::channel();
    let (_release, held) = mpsc::channel();
    let server = start(
        app(events, std::sync::Arc::new(std::sync::Mutex::new(held))),
        1,
    );
    let mut client = Client::connect(addr(&server));
    assert_eq!(client.request(&get("/on-drain")).text(), "scheduled");
    drop(client);
    server.stop().unwrap();
    assert_eq!(seen.try_recv(), Ok("finished on drain"));
}
