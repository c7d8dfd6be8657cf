//! A long response ends cleanly on drain: an SSE stream ended with
//! `Sse::until(Shutdown)` finishes with its last chunk when the server
//! stops, instead of being cut at the graceful timeout.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use percore::{App, Event, Shutdown, Sse};

#[test]
fn an_event_stream_ends_with_its_last_chunk_when_the_server_drains() {
    let app = App::new().get("/events", async |shutdown: Shutdown| {
        let ticks = futures_lite::stream::unfold(0u64, async |n| {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            Some((Event::data(n.to_string()), n + 1))
        });
        Sse::new(ticks).until(shutdown)
    });
    let mut config = support::config();
    config.server.shards = Some(1);
    // Far longer than the test waits: only the stream's own end stops it.
    config.server.graceful_timeout_secs = 120;
    let server = app.start(&config).unwrap();
    let mut stream = TcpStream::connect(support::addr(&server)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded: at most 30 s of reads for the first event.
    while !String::from_utf8_lossy(&seen).contains("data: 1\n") {
        let read = support::read_some(&mut stream, &mut buf).unwrap();
        assert!(read > 0, "closed before the first events");
        seen.extend_from_slice(&buf[..read]);
    }
    let stopping = std::thread::spawn(move || server.stop());
    stream.read_to_end(&mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.ends_with("\r\n0\r\n\r\n"),
        "the stream was cut: {text:?}"
    );
    stopping.join().unwrap().unwrap();
}
