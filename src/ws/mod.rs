//! WebSocket handlers (RFC 6455): the [`WebSocketUpgrade`] extractor, the
//! `101` that hands the connection over, and a [`WebSocket`] a handler
//! reads and writes messages on.
//!
//! Framing, masking, fragmentation, UTF-8 validation of text, control
//! frames, automatic pongs and the close handshake are `tungstenite`'s
//! protocol state machine (`WebSocketContext`), driven sans-IO over two
//! in-memory buffers. The connection's task moves bytes between those
//! buffers and the connection's transport on the shard's ring, and runs
//! the handler beside that: nothing crosses threads.
//!
//! ```no_run
//! use percore::{App, ws::{Message, WebSocketUpgrade}};
//! let app = App::new().get("/echo", async |upgrade: WebSocketUpgrade| {
//!     upgrade.on_upgrade(async |socket| {
//!         while let Some(message) = socket.recv().await {
//!             if socket.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! });
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tungstenite::error::{CapacityError, Error as WsError};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use crate::http::response::{HttpError, IntoResponse};
use crate::http::status::Status;
use crate::http::write::ResponseWriter;
use crate::route::extract::FromRequest;
use crate::transport::{BodyIo, BufferPool, LazyTimer, Takeover, wake};

mod broadcast;
pub use broadcast::{Broadcast, Subscription};

/// A message, as a handler sends and receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8, checked on arrival).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping from the peer (already answered with a pong), or one to send.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The peer's close, with its code and reason; or one to send.
    Close(Option<(u16, String)>),
}

impl Message {
    fn into_frame(self) -> tungstenite::Message {
        match self {
            Message::Text(text) => tungstenite::Message::Text(text.into()),
            Message::Binary(data) => tungstenite::Message::Binary(data.into()),
            Message::Ping(data) => tungstenite::Message::Ping(data.into()),
            Message::Pong(data) => tungstenite::Message::Pong(data.into()),
            Message::Close(close) => {
                tungstenite::Message::Close(close.map(|(code, reason)| CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                }))
            }
        }
    }

    fn from_frame(message: tungstenite::Message) -> Option<Self> {
        Some(match message {
            tungstenite::Message::Text(text) => Message::Text(text.as_str().to_owned()),
            tungstenite::Message::Binary(data) => Message::Binary(data.to_vec()),
            tungstenite::Message::Ping(data) => Message::Ping(data.to_vec()),
            tungstenite::Message::Pong(data) => Message::Pong(data.to_vec()),
            tungstenite::Message::Close(close) => Message::Close(
                close.map(|frame| (u16::from(frame.code), frame.reason.as_str().to_owned())),
            ),
            tungstenite::Message::Frame(_) => return None,
        })
    }
}

/// The connection is closed: the message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the WebSocket is closed")
    }
}

impl std::error::Error for Closed {}

/// A request to open a WebSocket: `GET` with `Upgrade: websocket`,
/// `Connection: upgrade`, `Sec-WebSocket-Version: 13` and a
/// `Sec-WebSocket-Key`. Anything else is refused (400; 426 with the
/// version this side speaks for another version).
#[derive(Debug)]
pub struct WebSocketUpgrade {
    accept: String,
    protocols: Vec<String>,
    limits: Limits,
    shutdown: crate::route::shutdown::Shutdown,
}

/// The limits of one WebSocket.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_message_bytes: usize,
    max_frame_bytes: usize,
    ping_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_frame_bytes: 1 << 20,
            ping_every: Duration::from_secs(30),
        }
    }
}

/// Whether the comma-separated `field` has `token` (case-insensitive).
fn has_token(field: Option<&[u8]>, token: &str) -> bool {
    field.is_some_and(|field| {
        field
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

impl<S> FromRequest<S> for WebSocketUpgrade {
    type Rejection = HttpError;

    async fn from_request(
        request: &mut crate::http::request::Request<'_>,
        state: &S,
    ) -> Result<Self, HttpError> {
        if !has_token(request.header("upgrade"), "websocket")
            || !has_token(request.header("connection"), "upgrade")
        {
            return Err(HttpError::new(
                Status::UPGRADE_REQUIRED,
                "this route takes WebSocket upgrades only",
            )
            .with_header("Upgrade", "websocket"));
        }
        if request.header("sec-websocket-version") != Some(b"13") {
            return Err(HttpError::new(
                Status::UPGRADE_REQUIRED,
                "only WebSocket version 13 is spoken here",
            )
            .with_header("Sec-WebSocket-Version", "13"));
        }
        let key = request.header("sec-websocket-key").unwrap_or_default();
        let key = std::str::from_utf8(key).unwrap_or_default().trim();
        let decoded = crate::http::base64::decode(key);
        if decoded.is_none_or(|k| k.len() != 16) {
            return Err(HttpError::bad_request(
                "Sec-WebSocket-Key must be 16 bytes in base64",
            ));
        }
        let protocols = request
            .header("sec-websocket-protocol")
            .and_then(|p| std::str::from_utf8(p).ok())
            .map(|p| p.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default();
        let shutdown = crate::route::shutdown::Shutdown::from_request(request, state).await?;
        Ok(Self {
            accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
            protocols,
            limits: Limits::default(),
            shutdown,
        })
    }
}

impl WebSocketUpgrade {
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`).
    #[must_use]
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The largest message accepted (default 1 MiB); a larger one closes
    /// the connection with 1009.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_message_bytes = bytes;
        self.limits.max_frame_bytes = self.limits.max_frame_bytes.min(bytes);
        self
    }

    /// A ping goes out after this long with nothing received (default
    /// 30 s); with nothing received for twice as long, the connection
    /// ends.
    #[must_use]
    pub fn ping_every(mut self, every: Duration) -> Self {
        self.limits.ping_every = every;
        self
    }

    /// Answers `101` and runs `handler` on the WebSocket once it is sent;
    /// when the handler returns, the close handshake ends the connection.
    pub fn on_upgrade<F, Fut>(self, handler: F) -> WebSocketResponse
    where
        F: FnOnce(WebSocket) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        WebSocketResponse {
            accept: self.accept,
            protocol: None,
            limits: self.limits,
            shutdown: self.shutdown,
            handler: Box::new(move |socket| Box::pin(handler(socket))),
        }
    }
}

/// A WebSocket handler, boxed.
type Handler = Box<dyn FnOnce(WebSocket) -> Pin<Box<dyn Future<Output = ()>>>>;

/// The `101` a handler returns: the connection becomes a WebSocket once
/// it is sent.
pub struct WebSocketResponse {
    accept: String,
    protocol: Option<String>,
    limits: Limits,
    shutdown: crate::route::shutdown::Shutdown,
    handler: Handler,
}

impl std::fmt::Debug for WebSocketResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketResponse")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl WebSocketResponse {
    /// Chooses `protocol` (one the client offered) as the subprotocol.
    #[must_use]
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.to_owned());
        self
    }
}

impl IntoResponse for WebSocketResponse {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("Connection", b"upgrade"),
            ("Upgrade", b"websocket"),
            ("Sec-WebSocket-Accept", self.accept.as_bytes()),
        ];
        if let Some(protocol) = &self.protocol {
            fields.push(("Sec-WebSocket-Protocol", protocol.as_bytes()));
        }
        writer.send(Status::SWITCHING_PROTOCOLS, None, fields, b"");
        let session: Box<dyn Takeover> = Box::new(Session {
            limits: self.limits,
            shutdown: self.shutdown,
            handler: self.handler,
        });
        writer.upgrade(Box::new(session));
    }
}

/// Frames waiting to be sent before a sender waits (backpressure).
const OUT_MAX: usize = 256 << 10;

/// Most bytes read from the socket at once.
const READ_MAX: usize = 64 << 10;

/// tungstenite's end of the socket: reads what arrived, writes into the
/// output the wire sends.
#[derive(Default)]
struct Buffers {
    input: Vec<u8>,
    read: usize,
    output: Vec<u8>,
}

impl io::Read for Buffers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let waiting = &self.input[self.read..];
        if waiting.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = waiting.len().min(buf.len());
        buf[..take].copy_from_slice(&waiting[..take]);
        self.read += take;
        if self.read == self.input.len() {
            self.input.clear();
            self.read = 0;
        }
        Ok(take)
    }
}

impl io::Write for Buffers {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the handler and the wire share.
struct Shared {
    context: WebSocketContext,
    buffers: Buffers,
    incoming: VecDeque<Message>,
    /// No more messages will arrive.
    ended: bool,
    /// The handler returned.
    handler_done: bool,
    /// The peer broke the protocol: what it sends now is not read.
    broken: bool,
    /// The peer broke the protocol after messages the handler has not
    /// taken yet: the close (with this code) waits until it has them, so
    /// it may answer them first (Autobahn 3.2, 4.1.3, 5.15).
    failure: Option<(CloseCode, &'static str)>,
    reader: Option<Waker>,
    writer: Option<Waker>,
    wire: Option<Waker>,
}

impl Shared {
    /// Queues a close frame with `code`, unless one went already.
    fn queue_close(&mut self, code: CloseCode, reason: &str) {
        if self.context.can_write() {
            let frame = CloseFrame {
                code,
                reason: reason.to_owned().into(),
            };
            let _ = self.context.close(&mut self.buffers, Some(frame));
            let _ = self.context.flush(&mut self.buffers);
        }
    }

    /// How long the wire waits in silence: a ping interval, or once our
    /// close is sent, [`LINGER`] for the peer to answer it.
    fn quiet_for(&self, ping_every: Duration) -> Duration {
        if self.context.can_write() {
            ping_every
        } else {
            LINGER
        }
    }

    /// Queues an empty ping.
    fn ping(&mut self) {
        let ping = tungstenite::Message::Ping(Vec::new().into());
        let _ = self.context.write(&mut self.buffers, ping);
        let _ = self.context.flush(&mut self.buffers);
    }

    /// The peer broke the protocol: ends with `code` once the handler has
    /// every message that came before; nothing more is read.
    fn fail(&mut self, code: CloseCode, reason: &'static str) {
        if self.incoming.is_empty() {
            self.close_with(code, reason);
        } else {
            self.failure = Some((code, reason));
            self.buffers.input.clear();
            self.buffers.read = 0;
        }
    }

    /// Ends with the deferred failure once nothing is left for the handler.
    fn fail_when_taken(&mut self) {
        if self.incoming.is_empty()
            && let Some((code, reason)) = self.failure.take()
        {
            self.close_with(code, reason);
            wake(&mut self.wire);
        }
    }

    /// Ends with `code` for a broken peer: nothing more is read.
    fn close_with(&mut self, code: CloseCode, reason: &str) {
        self.queue_close(code, reason);
        self.broken = true;
        self.end();
    }

    fn end(&mut self) {
        self.ended = true;
        wake(&mut self.reader);
        wake(&mut self.writer);
    }

    /// Reads every message the input holds.
    fn take_messages(&mut self) {
        if self.broken || self.failure.is_some() {
            self.buffers.input.clear();
            self.buffers.read = 0;
            return;
        }
        loop {
            match self.context.read(&mut self.buffers) {
                Ok(message) => {
                    if let Some(message) = Message::from_frame(message) {
                        self.incoming.push_back(message);
                        wake(&mut self.reader);
                    }
                }
                Err(WsError::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    self.end();
                    break;
                }
                Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
                    self.fail(CloseCode::Size, "message too large");
                    break;
                }
                Err(WsError::Utf8(_)) => {
                    self.fail(CloseCode::Invalid, "text is not UTF-8");
                    break;
                }
                Err(_) => {
                    self.fail(CloseCode::Protocol, "protocol error");
                    break;
                }
            }
        }
        // Pongs and the close reply tungstenite queued.
        let _ = self.context.flush(&mut self.buffers);
    }
}

/// A WebSocket, as its handler holds it. `recv` and `send` take `&self`,
/// so one task may wait for both at once (a chat: the socket and a
/// [`Broadcast`] subscription).
pub struct WebSocket {
    shared: Rc<RefCell<Shared>>,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").finish_non_exhaustive()
    }
}

impl WebSocket {
    /// The next message; `None` once the connection is closed (after the
    /// peer's [`Message::Close`], if it sent one).
    pub async fn recv(&self) -> Option<Message> {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if let Some(message) = shared.incoming.pop_front() {
                return Poll::Ready(Some(message));
            }
            shared.fail_when_taken();
            if shared.ended {
                return Poll::Ready(None);
            }
            shared.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Sends `message`, waiting while much is still unsent (a slow peer).
    ///
    /// # Errors
    /// [`Closed`] once the connection is closing or closed.
    pub async fn send(&self, message: Message) -> Result<(), Closed> {
        poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if shared.ended || !shared.context.can_write() {
                return Poll::Ready(Err(Closed));
            }
            if shared.buffers.output.len() >= OUT_MAX {
                shared.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let shared = &mut *shared;
            let sent = shared
                .context
                .write(&mut shared.buffers, message.clone().into_frame())
                .and_then(|()| shared.context.flush(&mut shared.buffers));
            // An answer to the last message before a protocol error: the
            // close follows it.
            shared.fail_when_taken();
            wake(&mut shared.wire);
            Poll::Ready(sent.map_err(|_| Closed))
        })
        .await
    }

    /// Starts the close handshake with `code` and `reason`.
    pub async fn close(&self, code: u16, reason: &str) {
        let _ = self
            .send(Message::Close(Some((code, reason.to_owned()))))
            .await;
    }
}

/// The connection once the `101` is sent.
struct Session {
    limits: Limits,
    shutdown: crate::route::shutdown::Shutdown,
    handler: Handler,
}

impl Takeover for Session {
    fn run<'a>(
        self: Box<Self>,
        io: &'a mut dyn BodyIo,
        pool: &'a BufferPool,
        early: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            let mut config = WebSocketConfig::default();
            config.read_buffer_size = 512;
            config.write_buffer_size = 0;
            config.max_write_buffer_size = usize::MAX;
            config.max_message_size = Some(self.limits.max_message_bytes);
            config.max_frame_size = Some(self.limits.max_frame_bytes);
            let shared = Rc::new(RefCell::new(Shared {
                context: WebSocketContext::new(Role::Server, Some(config)),
                buffers: Buffers {
                    input: early,
                    ..Buffers::default()
                },
                incoming: VecDeque::new(),
                ended: false,
                handler_done: false,
                broken: false,
                failure: None,
                reader: None,
                writer: None,
                wire: None,
            }));
            shared.borrow_mut().take_messages();
            let socket = WebSocket {
                shared: Rc::clone(&shared),
            };
            let running = (self.handler)(socket);
            let done = async {
                running.await;
                finish(&shared);
                std::future::pending::<()>().await;
            };
            let wire = wire(&shared, (io, pool), self.limits.ping_every, &self.shutdown);
            futures_lite::future::or(wire, done).await;
        })
    }
}

/// The handler returned: start the close handshake if it has not.
fn finish(shared: &Rc<RefCell<Shared>>) {
    let mut state = shared.borrow_mut();
    let state = &mut *state;
    state.handler_done = true;
    match state.failure.take() {
        Some((code, reason)) => state.close_with(code, reason),
        None => state.queue_close(CloseCode::Normal, ""),
    }
    wake(&mut state.wire);
}

/// What the wire waited for.
enum Woke {
    Read(io::Result<usize>),
    Output,
    Quiet,
    Drain,
}

/// Moves bytes between the socket and the buffers until the connection
/// ends: the close handshake is done both ways, the peer goes away, or it
/// is silent past two ping intervals.
async fn wire(
    shared: &Rc<RefCell<Shared>>,
    (io, pool): (&mut dyn BodyIo, &BufferPool),
    ping_every: Duration,
    shutdown: &crate::route::shutdown::Shutdown,
) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut pinged = false;
    let mut peer_gone = false;
    let mut saw_done = false;
    let mut going_away = false;
    let mut quiet = Quiet::after(ping_every);
    loop {
        {
            let mut state = shared.borrow_mut();
            std::mem::swap(&mut out, &mut state.buffers.output);
            if !out.is_empty() {
                wake(&mut state.writer);
            }
        }
        if !out.is_empty() {
            if io.write_now(&mut out, pool).await.is_err() {
                shared.borrow_mut().end();
                return;
            }
            out.clear();
            shrink(&mut out);
            continue;
        }
        if shared.borrow().broken {
            // Our close is sent; the peer's reply cannot be read any more.
            linger(io, pool, &mut buf).await;
            return;
        }
        {
            let state = shared.borrow();
            // Closed both ways (or the peer went away), everything sent.
            let finished = !state.context.can_read() || peer_gone;
            if finished && (state.handler_done || state.ended) {
                return;
            }
        }
        quiet.follow(shared.borrow().quiet_for(ping_every));
        let woke = futures_lite::future::or(
            async {
                if peer_gone {
                    std::future::pending::<()>().await;
                }
                Woke::Read(io.read_more(&mut buf, 0, READ_MAX, pool).await)
            },
            futures_lite::future::or(
                async {
                    output(shared, saw_done).await;
                    Woke::Output
                },
                futures_lite::future::or(
                    async {
                        poll_fn(|cx| quiet.poll_passed(cx)).await;
                        Woke::Quiet
                    },
                    async {
                        if going_away {
                            std::future::pending::<()>().await;
                        }
                        shutdown.wait().await;
                        Woke::Drain
                    },
                ),
            ),
        )
        .await;
        match woke {
            Woke::Output => saw_done = shared.borrow().handler_done,
            Woke::Drain => {
                // The shard stops: close 1001, then the handshake ends it
                // (or the ping interval does).
                going_away = true;
                let mut state = shared.borrow_mut();
                state.queue_close(CloseCode::Away, "the server is going away");
            }
            Woke::Read(Ok(read)) if read > 0 => {
                pinged = false;
                quiet.restart();
                let mut state = shared.borrow_mut();
                state.buffers.input.extend_from_slice(&buf[..read]);
                shrink(&mut buf);
                state.take_messages();
                if state.buffers.input.is_empty() {
                    shrink(&mut state.buffers.input);
                }
            }
            Woke::Read(_) => {
                peer_gone = true;
                shared.borrow_mut().end();
            }
            Woke::Quiet => {
                let mut state = shared.borrow_mut();
                if pinged || !state.context.can_write() {
                    // Silent through a ping interval after a ping (or
                    // through the close handshake): gone.
                    state.end();
                    return;
                }
                pinged = true;
                state.ping();
                quiet.restart();
            }
        }
    }
}

/// The wire's idle deadline, moved by every read: checked against the
/// clock on each turn, its timer set again only when it must be.
struct Quiet {
    limit: Duration,
    deadline: Instant,
    timer: LazyTimer,
}

impl Quiet {
    fn after(limit: Duration) -> Self {
        Self {
            limit,
            deadline: Instant::now() + limit,
            timer: LazyTimer::default(),
        }
    }

    /// Moves the deadline to the limit from now.
    fn restart(&mut self) {
        self.deadline = Instant::now() + self.limit;
    }

    /// Takes `limit` from now on, counted from now if it changed.
    fn follow(&mut self, limit: Duration) {
        if limit != self.limit {
            self.limit = limit;
            self.restart();
        }
    }

    /// Ready once the deadline has passed.
    fn poll_passed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.poll_passed(self.deadline, cx)
    }
}

/// Buffers over this many bytes are freed once drained, so an idle
/// WebSocket keeps only small ones.
const KEEP_BYTES: usize = 16 << 10;

fn shrink(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEEP_BYTES {
        *buffer = Vec::new();
    }
}

/// How long a connection waits for the peer's answer to its close (or,
/// closed for a broken frame, for the peer to close its side, reading and
/// discarding what still comes).
const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards until the peer closes or [`LINGER`] passes, so the
/// close frame just sent is not destroyed by a reset for unread bytes.
async fn linger(io: &mut dyn BodyIo, pool: &BufferPool, buf: &mut Vec<u8>) {
    let deadline = std::time::Instant::now() + LINGER;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let read = futures_lite::future::or(
            async { Some(io.read_more(buf, 0, READ_MAX, pool).await) },
            async {
                glommio::timer::Timer::new(left).await;
                None
            },
        )
        .await;
        match read {
            Some(Ok(read)) if read > 0 => {}
            _ => return,
        }
    }
}

/// Waits until there is output, or the handler is done (when `saw_done`
/// is false: once).
async fn output(shared: &Rc<RefCell<Shared>>, saw_done: bool) {
    poll_fn(|cx| {
        let mut state = shared.borrow_mut();
        if !state.buffers.output.is_empty() || (state.handler_done && !saw_done) {
            return Poll::Ready(());
        }
        state.wire = Some(cx.waker().clone());
        Poll::Pending
    })
    .await;
}
