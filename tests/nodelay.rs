//! Accepted sockets have `TCP_NODELAY` (set on the listener; Linux copies it to
//! each accepted socket). Alone in its binary: it walks this process's
//! descriptors, which other tests would open and close meanwhile.

mod support;

use percore::App;
use support::{Client, addr, get, start};

#[test]
fn accepted_sockets_have_nodelay() {
    // The listener sets TCP_NODELAY and Linux copies it to accepted sockets;
    // check it on the server's side through the socket the client sees the
    // other end of, by looking the server's sockets up in this process.
    let server = start(App::new().get("/", async || "x"), 1);
    let mut client = Client::connect(addr(&server));
    assert_eq!(client.request(&get("/")).text(), "x");
    let client_addr = client.local_addr();
    let mut checked = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let fd: i32 = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .parse()
            .unwrap();
        // SAFETY: borrowing a descriptor of this process for two getsockopt calls.
        #[allow(unsafe_code, reason = "inspecting the server's own sockets")]
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&socket);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer == Some(client_addr) {
            assert!(
                socket.tcp_nodelay().unwrap(),
                "accepted socket without TCP_NODELAY"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 1,
        "the server's socket for this client was not found"
    );
    server.stop().unwrap();
}
