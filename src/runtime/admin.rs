//! The admin listener (`metrics.listen`): the metrics route on an address
//! of its own, kept off the public listeners. One plain thread serves it,
//! one short connection at a time (scrapes are rare); a scrape collects
//! every shard's counts by message.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::control::Control;
use crate::error::Error;

/// How long a scraper may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head the admin listener reads.
const MAX_HEAD: usize = 8 * 1024;

/// The running admin listener; stopped when dropped.
pub(crate) struct Admin {
    addr: SocketAddr,
    path: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and serves `path` there.
    pub(crate) fn start(
        addr: SocketAddr,
        path: &str,
        control: Arc<Control>,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr).map_err(|e| super::listener::bind_error(addr, e))?;
        let addr = listener.local_addr()?;
        let path = Arc::new(Mutex::new(path.to_owned()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (path, stop) = (Arc::clone(&path), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("percore-admin".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Ok(stream) = stream {
                            let path = path.lock().unwrap_or_else(PoisonError::into_inner).clone();
                            let _ = answer(stream, &path, &control);
                        }
                    }
                })?
        };
        Ok(Self {
            addr,
            path,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the metrics at `path` from now on (a reload).
    pub(crate) fn set_path(&self, path: &str) {
        path.clone_into(&mut self.path.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept with one connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head and answers it, then closes.
fn answer(mut stream: TcpStream, path: &str, control: &Control) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk)?;
        if read == 0 || head.len() + read > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(&head);
    let (status, kind, body) = match (parsed, request.method, request.path) {
        (Ok(httparse::Status::Complete(_)), Some("GET" | "HEAD"), Some(target))
            if !path.is_empty() && target.split('?').next() == Some(path) =>
        {
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                control.metrics_text(),
            )
        }
        (Ok(httparse::Status::Complete(_)), Some(_), Some(_)) => (
            "404 Not Found",
            "application/json",
            r#"{"detail":"Not Found"}"#.to_owned(),
        ),
        _ => (
            "400 Bad Request",
            "application/json",
            r#"{"detail":"malformed request"}"#.to_owned(),
        ),
    };
    let head_only = request.method == Some("HEAD");
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())
}
