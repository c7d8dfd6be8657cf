//! Helpers for black-box tests: start an app on loopback port 0, talk raw
//! HTTP/1.1 over a socket, parse responses byte by byte.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    unreachable_pub,
    reason = "a test binary is its own crate; `pub` is how its files share helpers"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use percore::{App, Config, Server};

pub mod pki;
pub mod servers;

/// Upper bound on any single read, so a broken server fails a test instead
/// of hanging it.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// One `read`, retried when a signal interrupts it. A socket with a read
/// timeout is not restarted after a signal handler even with `SA_RESTART`
/// (signal(7)), and that interruption is no answer from the server.
pub fn read_some<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// A configuration for tests: 127.0.0.1 port 0, one shard.
pub fn config() -> Config {
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.shards = Some(1);
    config
}

/// Starts `app` with `shards` shards on 127.0.0.1 port 0.
pub fn start<S: 'static>(app: App<S>, shards: usize) -> Server {
    let mut config = config();
    config.server.shards = Some(shards);
    app.start(&config).expect("server starts")
}

/// The value of one integer sample (`name{labels}`) in a Prometheus text
/// body; panics, showing the body, when it is not there.
pub fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The first listen address of `server`.
pub fn addr(server: &Server) -> SocketAddr {
    server.local_addrs()[0]
}

/// A raw client connection.
pub struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// One parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    /// A connection from the loopback address `source` (such as 127.0.0.2).
    pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Client {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind the source address");
        socket.connect(&addr.into()).expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends `bytes`, reads one response.
    pub fn request(&mut self, bytes: &[u8]) -> Reply {
        self.send(bytes);
        self.read_reply(false)
    }

    /// Reads more bytes; false at end of stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let read = read_some(&mut self.stream, &mut chunk).expect("read within the time limit");
        self.pending.extend_from_slice(&chunk[..read]);
        read > 0
    }

    /// Reads until `pending` holds `n` bytes.
    fn need(&mut self, n: usize) {
        while self.pending.len() < n {
            assert!(self.fill(), "connection closed mid-response");
        }
    }

    fn take_line(&mut self) -> String {
        loop {
            if let Some(at) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.pending[..at].to_vec()).unwrap();
                self.pending.drain(..at + 2);
                return line;
            }
            assert!(self.fill(), "connection closed mid-line");
        }
    }

    /// Reads one response; `head_request` means no body follows.
    pub fn read_reply(&mut self, head_request: bool) -> Reply {
        let status_line = self.take_line();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.take_line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header has a colon");
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || status < 200 {
            return reply;
        }
        if reply.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.take_line(), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.take_line(), "", "no trailers expected");
                    break;
                }
                self.need(size + 2);
                reply.body.extend(self.pending.drain(..size));
                self.pending.drain(..2);
            }
        } else if let Some(length) = reply.header("content-length") {
            let length: usize = length.parse().expect("numeric Content-Length");
            self.need(length);
            reply.body = self.pending.drain(..length).collect();
        } else {
            while self.fill() {}
            reply.body = std::mem::take(&mut self.pending);
        }
        reply
    }

    /// The client's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// The socket, for tests that drive it by hand.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// True when the server has closed the connection (after any pending bytes).
    pub fn is_closed(&mut self) -> bool {
        self.pending.is_empty() && !self.fill()
    }
}

/// `GET path` with a Host header.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// `POST path` with a JSON body.
pub fn post_json(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `percore` binary serving on 127.0.0.1 port 0 with one shard, its
/// standard error piped; returns it with the address from its startup line
/// and the rest of its log lines.
pub fn spawn_percore(
    extra_env: &[(&str, &str)],
) -> (
    std::process::Child,
    SocketAddr,
    impl Iterator<Item = String> + use<>,
) {
    spawn_percore_on("127.0.0.1:0", extra_env)
}

/// Like [`spawn_percore`], listening on `listen`.
pub fn spawn_percore_on(
    listen: &str,
    extra_env: &[(&str, &str)],
) -> (
    std::process::Child,
    SocketAddr,
    impl Iterator<Item = String> + use<>,
) {
    let spawned = spawn_percore_args(&["--listen", listen], extra_env);
    (spawned.child, spawned.addrs[0], spawned.lines)
}

/// A child process killed when dropped, so a failing test does not leave
/// its server running (holding the test harness's output pipe open).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `percore serve` started by [`spawn_percore_args`].
pub struct Spawned<L> {
    pub child: std::process::Child,
    /// Every listening address, in order (plain, then HTTPS…, then admin).
    pub addrs: Vec<SocketAddr>,
    /// Standard error lines logged before it was ready.
    pub preamble: Vec<String>,
    /// The log lines after those.
    pub lines: L,
    /// Holds the notification socket's directory.
    _notify: tempfile::TempDir,
}

/// `percore serve ARGS --shards 1 --log-level info` with `extra_env`,
/// standard error piped, once it is ready.
pub fn spawn_percore_args(
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> Spawned<impl Iterator<Item = String> + use<>> {
    let mut command = percore_serve(args);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    spawn_ready(command)
}

/// The command `percore serve ARGS --shards 1 --log-level info`.
pub fn percore_serve(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_percore"));
    command
        .arg("serve")
        .args(args)
        .args(["--shards", "1", "--log-level", "info"]);
    command
}

/// Spawns `command` (a `percore serve`) with standard error piped and a
/// systemd notification socket, and waits for its `READY=1`, whose
/// `STATUS=listening on …` gives the addresses it bound: the stable
/// channel, not a log line. Panics, with what it logged, if it exits or
/// stays silent for 30 s.
pub fn spawn_ready(
    mut command: std::process::Command,
) -> Spawned<impl Iterator<Item = String> + use<>> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    command
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &path)
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("percore starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let mut buf = [0u8; 1024];
        match socket.recv(&mut buf) {
            Ok(len) => {
                let message = String::from_utf8_lossy(&buf[..len]).into_owned();
                if let Some(status) = message.strip_prefix("READY=1\n") {
                    break status.to_owned();
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("notification socket: {e}"),
        }
        let exited = child.try_wait().unwrap();
        if exited.is_some() || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let mut logged = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logged);
            panic!("percore was not ready ({exited:?}); it logged:\n{logged}");
        }
    };
    let addrs = status
        .strip_prefix("STATUS=listening on ")
        .unwrap_or_else(|| panic!("readiness without addresses: {status}"))
        .split(' ')
        .map(|addr| addr.parse().expect("an address"))
        .collect();
    // Everything logged before READY=1 is in the pipe already (each line
    // is written before the notification is sent): take what is there.
    let mut stderr = child.stderr.take().unwrap();
    let early = read_available(&mut stderr);
    let (complete, partial) = match early.iter().rposition(|&b| b == b'\n') {
        Some(end) => early.split_at(end + 1),
        None => (&early[..0], &early[..]),
    };
    let preamble = String::from_utf8_lossy(complete)
        .lines()
        .map(str::to_owned)
        .collect();
    let lines = std::io::BufReader::new(std::io::Read::chain(
        std::io::Cursor::new(partial.to_vec()),
        stderr,
    ))
    .lines()
    .map_while(Result::ok);
    Spawned {
        child,
        addrs,
        preamble,
        lines,
        _notify: dir,
    }
}

/// What a pipe holds now, without waiting for more.
fn read_available(stderr: &mut std::process::ChildStderr) -> Vec<u8> {
    set_nonblocking(stderr, true);
    let mut early = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(stderr, &mut buf) {
            Ok(0) => break,
            Ok(n) => early.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    set_nonblocking(stderr, false);
    early
}

/// Switches our end of a pipe to non-blocking reads, or back.
#[allow(unsafe_code, reason = "fcntl on our own pipe end")]
fn set_nonblocking(pipe: &std::process::ChildStderr, on: bool) {
    use std::os::fd::AsRawFd;
    let fd = pipe.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "fcntl F_GETFL");
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL with an integer flag set on a descriptor we own.
    let set = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    assert_eq!(set, 0, "fcntl F_SETFL");
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &std::process::Child) {
    signal(child, libc::SIGTERM);
}

/// Sends `signal` to `child`.
pub fn signal(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's.
    #[allow(unsafe_code, reason = "sending a signal to our own child")]
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0);
}

/// Log lines read on a thread of their own, so a test can wait for one
/// with a time limit instead of blocking on a read.
pub struct LogLines {
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LogLines {
    pub fn new(lines: impl Iterator<Item = String> + Send + 'static) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines: receiver,
            seen: Vec::new(),
        }
    }

    /// Waits (at most ten seconds) for a line containing `text`.
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + READ_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(error) => panic!("no log line with {text:?} ({error}); saw {:#?}", self.seen),
            }
        }
    }
}

/// A sink for this test binary's log lines.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The binary's one sink (tests run in parallel and share it).
    pub fn install() -> Self {
        static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
        CAPTURED
            .get_or_init(|| {
                let captured = Self::default();
                let sink = captured.clone();
                tracing_subscriber::fmt()
                    .with_writer(move || sink.clone())
                    .with_ansi(false)
                    .init();
                captured
            })
            .clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `work` on a glommio executor of its own thread (as a shard would)
/// and returns what it returns.
pub fn on_shard<T, F>(work: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 * 1024)
            .make()
            .expect("an executor")
            .run(work())
    })
    .join()
    .expect("the shard thread ends")
}

/// Sends a WebSocket upgrade request for `path` on `stream` and reads the
/// response head (up to its blank line, nothing after it).
pub fn websocket_handshake(stream: &mut (impl Read + Write), path: &str) -> String {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            read_some(stream, &mut byte).expect("read"),
            1,
            "closed inside the response head"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("a text head")
}

/// The `Sec-WebSocket-Accept` of [`websocket_handshake`]'s key (RFC 6455's example).
pub const WEBSOCKET_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The test virtualenv's Python (`TEST_PYTHON_VENV`, else `.ci/.venv`,
/// which `.ci/run` makes with the packages the tests import).
pub fn python() -> std::path::PathBuf {
    let venv = std::env::var("TEST_PYTHON_VENV").unwrap_or_else(|_| ".ci/.venv".to_owned());
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(venv)
        .join("bin/python");
    assert!(
        python.exists(),
        "{} is missing (.ci/run makes the virtualenv)",
        python.display()
    );
    python
}

/// Runs a case-by-case conformance script of `tests/support` (one "ok" or
/// "FAIL" line per case, then "passed N of M") with `args`, and asserts
/// that every case passed and that there were at least `cases`.
#[allow(dead_code, reason = "not every test binary runs a case script")]
pub fn all_cases_pass(script: &str, args: &[&str], cases: usize) {
    let path = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .expect("python runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed: Vec<&str> = report.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed.is_empty(),
        "{script} {args:?}:\n{}",
        failed.join("\n")
    );
    let summary = report.lines().last().unwrap_or_default();
    let (passed, of) = summary
        .strip_prefix("passed ")
        .and_then(|rest| rest.split_once(" of "))
        .expect("the script's summary");
    assert_eq!(passed, of, "{report}");
    assert!(of.parse::<usize>().unwrap() >= cases, "{report}");
}
