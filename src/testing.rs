//! A test client for an [`App`]: the app runs as a real server (one shard
//! on its own pinned executor, on a loopback port), so `percore::blocking`,
//! timers, layers, limits and the built-in routes all work as in
//! production, and requests go over a real socket.
//!
//! ```
//! use percore::{App, Json, Status, TestClient};
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Note { title: String }
//!
//! let app = App::new().post("/notes", async |Json(note): Json<Note>| (Status::CREATED, Json(note)));
//! let client = TestClient::new(app);
//! futures_lite::future::block_on(async {
//!     let reply = client.post("/notes").json(&Note { title: "hi".into() }).send().await;
//!     assert_eq!(reply.status(), Status::CREATED);
//!     assert_eq!(reply.json::<Note>().unwrap(), Note { title: "hi".into() });
//! });
//! ```

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::app::App;
use crate::config::Config;
use crate::error::Error;
use crate::http::status::Status;
use crate::runtime::Server;

/// How long a request may take before the client gives up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs an app as a one-shard server on a loopback port and sends it
/// requests; the server stops when the client is dropped. Cookies the app
/// sets are kept and sent back, like a browser's (by name only: no domain
/// or path scoping).
pub struct TestClient {
    server: Option<Server>,
    addr: SocketAddr,
    /// A keep-alive connection, reopened when the server closed it.
    stream: RefCell<Option<TcpStream>>,
    cookies: RefCell<Vec<(String, String)>>,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestClient {
    /// Starts `app` with the default configuration, one shard, on
    /// `127.0.0.1` port 0.
    ///
    /// # Panics
    /// When the server cannot start (the error says why).
    #[must_use]
    pub fn new<S: 'static>(app: App<S>) -> Self {
        match Self::with_config(app, Config::default()) {
            Ok(client) => client,
            Err(error) => panic!("the test server did not start: {error}"),
        }
    }

    /// Starts `app` with `config`, listening on `127.0.0.1` port 0 with
    /// one shard whatever `config` says.
    ///
    /// # Errors
    /// When the server cannot start.
    pub fn with_config<S: 'static>(app: App<S>, mut config: Config) -> Result<Self, Error> {
        config.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        config.server.shards = Some(1);
        config.tls.listen.clear();
        let server = app.start(&config)?;
        let addr = server.local_addrs()[0];
        Ok(Self {
            server: Some(server),
            addr,
            stream: RefCell::new(None),
            cookies: RefCell::new(Vec::new()),
        })
    }

    /// The address the app serves on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A request with `method` (`"GET"`, `"PROPFIND"`…) for `target`.
    #[must_use]
    pub fn request(&self, method: &str, target: &str) -> TestRequest<'_> {
        TestRequest {
            client: self,
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request for `target`.
    #[must_use]
    pub fn get(&self, target: &str) -> TestRequest<'_> {
        self.request("GET", target)
    }

    /// A `POST` request for `target`.
    #[must_use]
    pub fn post(&self, target: &str) -> TestRequest<'_> {
        self.request("POST", target)
    }

    /// A `PUT` request for `target`.
    #[must_use]
    pub fn put(&self, target: &str) -> TestRequest<'_> {
        self.request("PUT", target)
    }

    /// A `PATCH` request for `target`.
    #[must_use]
    pub fn patch(&self, target: &str) -> TestRequest<'_> {
        self.request("PATCH", target)
    }

    /// A `DELETE` request for `target`.
    #[must_use]
    pub fn delete(&self, target: &str) -> TestRequest<'_> {
        self.request("DELETE", target)
    }

    /// Sends `bytes` and reads one response, on the kept connection or,
    /// when the server had closed it, on a new one.
    fn exchange(&self, bytes: &[u8], head_request: bool) -> std::io::Result<TestResponse> {
        let mut slot = self.stream.borrow_mut();
        if let Some(stream) = slot.as_mut()
            && let Ok(Some(response)) = round_trip(stream, bytes, head_request)
        {
            if response.closes() {
                *slot = None;
            }
            return Ok(response);
        }
        let mut stream = TcpStream::connect_timeout(&self.addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        let response = round_trip(&mut stream, bytes, head_request)?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection without a response",
            )
        })?;
        *slot = (!response.closes()).then_some(stream);
        Ok(response)
    }

    fn remember_cookies(&self, response: &TestResponse) {
        let mut jar = self.cookies.borrow_mut();
        for line in response.header_values("set-cookie") {
            let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let expired = value.is_empty()
                || attributes.split(';').any(|attribute| {
                    attribute.split_once('=').is_some_and(|(key, age)| {
                        key.trim().eq_ignore_ascii_case("max-age") && age.trim() == "0"
                    })
                });
            jar.retain(|(kept, _)| kept != name);
            if !expired {
                jar.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.stream.borrow_mut().take();
        if let Some(server) = self.server.take() {
            let _ = server.stop();
        }
    }
}

/// A request being built; [`send`](Self::send) sends it.
#[derive(Debug)]
pub struct TestRequest<'c> {
    client: &'c TestClient,
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl TestRequest<'_> {
    /// Adds a header field.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// `Authorization: Bearer TOKEN`.
    #[must_use]
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// A JSON body (and its `Content-Type`).
    ///
    /// # Panics
    /// When `value` cannot be serialized.
    #[must_use]
    pub fn json(mut self, value: &impl serde::Serialize) -> Self {
        self.body = simd_json::to_vec(value).expect("the value serializes to JSON");
        self.header("Content-Type", "application/json")
    }

    /// A form body (`application/x-www-form-urlencoded`).
    ///
    /// # Panics
    /// When `value` cannot be encoded as a form.
    #[must_use]
    pub fn form(mut self, value: &impl serde::Serialize) -> Self {
        self.body = serde_urlencoded::to_string(value)
            .expect("the value encodes as a form")
            .into_bytes();
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// A raw body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request and reads the whole response. The socket I/O is
    /// done here, in the caller's thread, while the app runs on its own
    /// shard, so this can be awaited from any executor (or
    /// `futures_lite::future::block_on` in a plain `#[test]`).
    ///
    /// # Panics
    /// When the server does not answer (closed, timed out after 30 s, or an
    /// unreadable response): in a test, a failure to report.
    #[allow(
        clippy::unused_async,
        reason = "async in the API, so a client that awaits can replace it later without changes to tests"
    )]
    pub async fn send(self) -> TestResponse {
        let mut bytes = Vec::with_capacity(256 + self.body.len());
        bytes.extend_from_slice(
            format!("{} {} HTTP/1.1\r\nHost: test\r\n", self.method, self.target).as_bytes(),
        );
        for (name, value) in &self.headers {
            crate::http::write::push_line(&mut bytes, name.as_bytes(), value);
        }
        {
            let jar = self.client.cookies.borrow();
            if !jar.is_empty() {
                let line: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
                bytes.extend_from_slice(format!("Cookie: {}\r\n", line.join("; ")).as_bytes());
            }
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&self.body);
        let response = match self.client.exchange(&bytes, self.method == "HEAD") {
            Ok(response) => response,
            Err(error) => panic!("{} {}: {error}", self.method, self.target),
        };
        self.client.remember_cookies(&response);
        response
    }
}

/// A whole response.
#[derive(Debug)]
pub struct TestResponse {
    status: Status,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl TestResponse {
    /// The status.
    #[must_use]
    pub fn status(&self) -> Status {
        self.status
    }

    /// The first value of header `name` (any case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// Every value of header `name`, in order.
    pub fn header_values<'r, 'n>(
        &'r self,
        name: &'n str,
    ) -> impl Iterator<Item = &'r str> + use<'r, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header field, in order.
    #[must_use]
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Errors
    /// When the body is not JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, simd_json::Error> {
        let mut body = self.body.clone();
        simd_json::serde::from_slice(&mut body)
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Writes `request` and reads one response; `None` when the connection
/// was closed before any byte of it came (a kept connection the server
/// had closed: the caller retries on a new one).
/// One read, retried when a signal interrupts it (a blocking read on a
/// test thread may be interrupted; that is not an answer).
fn read_some(stream: &mut TcpStream, chunk: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(chunk) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn round_trip(
    stream: &mut TcpStream,
    request: &[u8],
    head_request: bool,
) -> std::io::Result<Option<TestResponse>> {
    if stream.write_all(request).is_err() {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = parsed
            .parse(&buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let code = parsed.code.unwrap_or(0);
            let status = Status::from_u16(code).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad status")
            })?;
            let fields: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            if code < 200 {
                // An interim response (100 Continue): the real one follows.
                buf.drain(..head_len);
                continue;
            }
            let mut body = buf.split_off(head_len);
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            let chunked = field("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            let length = field("content-length").and_then(|v| v.trim().parse::<usize>().ok());
            let body = if head_request || !status.allows_body() {
                Vec::new()
            } else if chunked {
                read_chunked(stream, body)?
            } else if let Some(length) = length {
                while body.len() < length {
                    let read = read_some(stream, &mut chunk)?;
                    if read == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    body.extend_from_slice(&chunk[..read]);
                }
                body.truncate(length);
                body
            } else {
                stream.read_to_end(&mut body)?;
                body
            };
            return Ok(Some(TestResponse {
                status,
                headers: fields,
                body,
            }));
        }
        let read = match read_some(stream, &mut chunk) {
            Ok(read) => read,
            // Reset before any byte: the connection was closed (a kept one
            // is retried on a new connection). A timeout is an error.
            Err(error)
                if buf.is_empty()
                    && !matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        if read == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Reads a chunked body whose first bytes are `pending`.
fn read_chunked(stream: &mut TcpStream, mut pending: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut more = |pending: &mut Vec<u8>| -> std::io::Result<()> {
        let read = read_some(stream, &mut chunk)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&chunk[..read]);
        Ok(())
    };
    loop {
        let Some(line_end) = pending.windows(2).position(|w| w == b"\r\n") else {
            more(&mut pending)?;
            continue;
        };
        let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // The last chunk, then trailers up to a blank line.
            while !pending[line_end..].windows(4).any(|w| w == b"\r\n\r\n") {
                more(&mut pending)?;
            }
            return Ok(body);
        }
        let need = line_end + 2 + size + 2;
        while pending.len() < need {
            more(&mut pending)?;
        }
        body.extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
        pending.drain(..need);
    }
}
