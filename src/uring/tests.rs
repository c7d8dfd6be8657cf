//! The ring's operations on a real ring, each on a glommio executor of its
//! own (one at a time: each locks memory).

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Ring, RingConfig};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `test` on a fresh executor with a ring of `buffers` receive
/// buffers of `size` bytes, its driver running beside it.
fn on_ring<F, Fut>(buffers: u16, size: usize, test: F)
where
    F: FnOnce(Rc<Ring>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 * 1024)
        .make()
        .expect("a glommio executor");
    executor.run(async move {
        let ring = Ring::new(RingConfig {
            entries: 64,
            buffers,
            buffer_size: size,
            spin: Duration::ZERO,
        })
        .expect("a ring");
        glommio::spawn_local(Rc::clone(&ring).drive()).detach();
        test(ring).await;
    });
}

/// Lets the driver run until `done` holds (bounded: five seconds).
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in 5 s");
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Whether the peer of `client` closed: after what was sent (at most
/// 128 MiB), reads see the end of the stream or a reset.
fn closed_by_peer(client: &mut TcpStream) -> bool {
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    for _ in 0..128 {
        match client.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
    false
}

#[test]
fn an_abandoned_accept_closes_what_it_accepted() {
    on_ring(8, 256, |ring| async move {
        let (listener, addr) = listener();
        let acceptor = ring.accept(listener.as_raw_fd());
        let mut client = TcpStream::connect(addr).unwrap();
        // The accepted socket is queued for the acceptor, which never takes it.
        until(|| {
            let inner = ring.inner.borrow();
            inner.slots.iter().any(|(_, slot)| {
                matches!(slot, super::op::Slot::Accept(stream) if !stream.queue.is_empty())
            })
        })
        .await;
        drop(acceptor);
        until(|| ring.in_flight() == 0).await;
        assert!(
            closed_by_peer(&mut client),
            "the accepted socket stayed open"
        );
    });
}

#[test]
fn a_starved_receive_is_re_armed_when_a_buffer_comes_back() {
    on_ring(2, 16, |ring| async move {
        let (listener, addr) = listener();
        let mut client = TcpStream::connect(addr).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let mut connection = ring.connection(socket.into());
        let sent: Vec<u8> = (0..200u8).collect();
        client.write_all(&sent).unwrap();
        let mut got = Vec::new();
        // Hold both buffers: the receive runs out (ENOBUFS) and waits.
        let first = connection.recv().await.unwrap().unwrap();
        let second = connection.recv().await.unwrap().unwrap();
        until(|| !ring.inner.borrow().starved.is_empty()).await;
        got.extend_from_slice(first.bytes());
        got.extend_from_slice(second.bytes());
        drop((first, second));
        while got.len() < sent.len() {
            let received = connection.recv().await.unwrap().unwrap();
            got.extend_from_slice(received.bytes());
        }
        assert_eq!(got, sent);
    });
}

#[test]
fn dropping_a_connection_cancels_its_armed_receive() {
    on_ring(8, 256, |ring| async move {
        let (listener, addr) = listener();
        let mut client = TcpStream::connect(addr).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let connection = ring.connection(socket.into());
        until(|| ring.in_flight() == 1).await;
        drop(connection);
        until(|| ring.in_flight() == 0).await;
        assert!(closed_by_peer(&mut client));
    });
}

#[test]
fn a_dropped_send_to_a_peer_that_stopped_reading_is_cancelled() {
    on_ring(8, 256, |ring| async move {
        let (listener, addr) = listener();
        let mut client = TcpStream::connect(addr).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let mut connection = ring.connection(socket.into());
        // Far more than the socket buffers hold: the send blocks.
        let big = vec![7u8; 64 << 20];
        let sending = futures_lite::future::or(
            async {
                let _ = connection.send_all(big).await;
                true
            },
            async {
                super::sleep(&ring, Duration::from_millis(200)).await;
                false
            },
        )
        .await;
        assert!(!sending, "64 MiB went to a client that reads nothing");
        // Only the receive is left: the send's record went with its cancel.
        until(|| ring.in_flight() == 1).await;
        connection.reset_on_close();
        drop(connection);
        until(|| ring.in_flight() == 0).await;
        assert!(
            closed_by_peer(&mut client),
            "the socket outlived its connection"
        );
    });
}

#[test]
fn connect_reaches_a_listener_and_reports_refusal() {
    on_ring(8, 256, |ring| async move {
        let (listener, addr) = listener();
        let mut connection = super::oneshot::connect(&ring, addr, Duration::from_secs(5))
            .await
            .unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        accepted.write_all(b"hello").unwrap();
        let received = connection.recv().await.unwrap().unwrap();
        assert_eq!(received.bytes(), b"hello");
        drop(received);
        let (result, _) = connection.send_all(b"back".to_vec()).await;
        result.unwrap();
        let mut back = [0u8; 4];
        accepted.set_nonblocking(false).unwrap();
        accepted.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"back");

        drop(listener);
        let refused = super::oneshot::connect(&ring, addr, Duration::from_secs(5)).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    });
}

#[test]
fn connect_times_out_when_nothing_answers() {
    on_ring(8, 256, |ring| async move {
        // A listener that never accepts, its queue full: further SYNs are
        // dropped, so a connect waits until its timeout.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(0).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let filler =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            filler.set_nonblocking(true).unwrap();
            let _ = filler.connect(&addr.into());
            fillers.push(filler);
        }
        let started = Instant::now();
        let timed_out = super::oneshot::connect(&ring, addr, Duration::from_millis(300)).await;
        assert_eq!(
            timed_out.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::TimedOut)
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        until(|| ring.in_flight() == 0).await;
    });
}

#[test]
fn files_open_beneath_their_root_only() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("inside.txt"), b"file bytes").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"no").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("leak")).unwrap();
    std::os::unix::fs::symlink("inside.txt", root.path().join("alias")).unwrap();
    let dir = std::fs::File::open(root.path()).unwrap();
    let secret = outside.path().join("secret");
    on_ring(8, 256, move |ring| async move {
        let fd = dir.as_raw_fd();
        let file = super::open_beneath(&ring, fd, "inside.txt".as_ref(), true)
            .await
            .unwrap();
        let stat = super::stat(&ring, file.as_raw_fd()).await.unwrap();
        assert_eq!(stat.size, 10);
        assert!(stat.regular);
        let (read, buffer) = super::read_at(&ring, file.as_raw_fd(), vec![0; 64], 5).await;
        assert_eq!(read.unwrap(), 5);
        assert_eq!(&buffer[..5], b"bytes");
        // A symlink that stays beneath the root is followed.
        assert!(
            super::open_beneath(&ring, fd, "alias".as_ref(), true)
                .await
                .is_ok()
        );
        for escape in ["../x", "leak", secret.to_str().unwrap(), "/etc/passwd"] {
            let refused = super::open_beneath(&ring, fd, escape.as_ref(), true).await;
            assert_eq!(
                refused.err().and_then(|e| e.raw_os_error()),
                Some(libc::EXDEV),
                "{escape} was opened"
            );
        }
        let directory = super::open_beneath(&ring, fd, ".".as_ref(), true)
            .await
            .unwrap();
        assert!(
            !super::stat(&ring, directory.as_raw_fd())
                .await
                .unwrap()
                .regular
        );
        drop(dir);
    });
}

#[test]
fn a_sleeping_shard_wakes_for_each_completion_on_its_ring() {
    // No spin: between rounds the shard has nothing to do and sleeps, so
    // each message from the client is a completion that must wake it; one
    // slept through would wait for some other event (here the five-second
    // bound). The stall a DEFER_TASKRUN ring showed needs a client in
    // another process: tests/http.rs has that case.
    on_ring(8, 256, |ring| async move {
        let (listener, addr) = listener();
        let client = TcpStream::connect(addr).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let mut connection = ring.connection(socket.into());
        let peer = std::thread::spawn(move || {
            let mut client = client;
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            for round in 0..20u8 {
                client.write_all(&[round]).unwrap();
                let mut echo = [0u8; 1];
                client.read_exact(&mut echo).unwrap();
                assert_eq!(echo[0], round);
            }
        });
        let rounds = async {
            for _ in 0..20 {
                let received = connection.recv().await.unwrap().unwrap();
                let echo = received.bytes().to_vec();
                drop(received);
                let (sent, _) = connection.send_all(echo).await;
                sent.unwrap();
            }
            true
        };
        let bound = async {
            glommio::timer::sleep(Duration::from_secs(5)).await;
            false
        };
        let answered = futures_lite::future::or(rounds, bound).await;
        assert!(answered, "the shard slept through its ring's completions");
        peer.join().unwrap();
    });
}

#[test]
fn sleep_waits_at_least_its_duration() {
    on_ring(8, 256, |ring| async move {
        let started = Instant::now();
        super::sleep(&ring, Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(ring.in_flight(), 0);
    });
}
