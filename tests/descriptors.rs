//! Connections that end give their descriptors back (the ring path closes
//! sockets asynchronously). Alone in its binary: other tests would open
//! descriptors while this one counts them.

mod support;

use percore::App;
use support::{Client, addr, get, start};

fn app() -> App {
    App::new().get("/plaintext", async || "Hello, World!")
}

/// Open descriptors of this process.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Opens `count` connections, makes one request on each, then half-closes
/// each and waits for the server's FIN, which comes once the server has
/// closed its socket.
fn open_use_and_close(server: &percore::Server, count: usize) {
    use std::io::Read;
    let mut streams: Vec<std::net::TcpStream> = (0..count)
        .map(|_| {
            let mut client = Client::connect(addr(server));
            assert_eq!(client.request(&get("/plaintext")).status, 200);
            client.into_stream()
        })
        .collect();
    for stream in &mut streams {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}

#[test]
fn closed_connections_release_their_descriptors() {
    let server = start(app(), 1);
    // One connection first, so lazily created state exists before counting.
    open_use_and_close(&server, 1);
    let baseline = open_descriptors();
    for _ in 0..3 {
        open_use_and_close(&server, 50);
        assert_eq!(open_descriptors(), baseline, "descriptors leaked");
    }
    server.stop().unwrap();
}
