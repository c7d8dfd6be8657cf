//! Redis from a shard: one multiplexed connection per shard on the
//! shard's own socket. Commands from all the shard's requests are written
//! together as they come (pipelined) and their replies matched in order;
//! nothing is locked and no stream needs to be `Send`. Replies are decoded
//! by `redis-protocol` (RESP2, or RESP3 after `HELLO 3`).
//!
//! ```no_run
//! # async fn run() -> Result<(), percore::redis::RedisError> {
//! use percore::redis::{Redis, RedisConfig};
//!
//! let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! redis.set("greeting", "hello").await?;
//! let value: Option<String> = redis.get("greeting").await?;
//! let hits: i64 = redis.cmd(["INCR", "hits"]).await?;
//! # let _ = (value, hits);
//! # Ok(())
//! # }
//! ```

mod error;
mod value;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};

pub use error::{RedisError, RedisErrorKind};
pub use value::{FromRedis, Value};

/// How a shard's client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `redis+unix:///path`
    /// (`?db=N` for the database).
    pub url: String,
    /// Speak RESP3 (`HELLO 3`) instead of RESP2.
    pub resp3: bool,
    /// Making a connection, the handshake included.
    pub connect_timeout: Duration,
    /// Waiting for one reply.
    pub command_timeout: Duration,
}

impl RedisConfig {
    /// The defaults for `url`: RESP2, 2 s to connect, 5 s per reply.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            resp3: false,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
        }
    }
}

/// Where the server is and how to log in.
#[derive(Clone, Debug)]
struct Target {
    place: Place,
    user: Option<String>,
    password: Option<String>,
    db: u32,
}

#[derive(Clone, Debug)]
enum Place {
    Tcp(String, u16),
    Unix(std::path::PathBuf),
}

impl Target {
    fn parse(raw: &str) -> Result<Self, RedisError> {
        let bad = |why: &dyn std::fmt::Display| {
            RedisError::new(RedisErrorKind::Config, format_args!("{raw}: {why}"))
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&e))?;
        let user = (!url.username().is_empty()).then(|| url.username().to_owned());
        let password = url.password().map(str::to_owned);
        let query_db = url
            .query_pairs()
            .find(|(k, _)| k == "db")
            .map(|(_, v)| v.parse::<u32>().map_err(|_| bad(&"db is not a number")))
            .transpose()?;
        let (place, db) = match url.scheme() {
            "redis" => {
                let host = url.host_str().ok_or_else(|| bad(&"no host"))?;
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let path_db = url.path().trim_start_matches('/');
                let db = if path_db.is_empty() {
                    query_db.unwrap_or(0)
                } else {
                    path_db
                        .parse()
                        .map_err(|_| bad(&"the path is not a database number"))?
                };
                (Place::Tcp(host, url.port().unwrap_or(6379)), db)
            }
            "redis+unix" | "unix" => (Place::Unix(url.path().into()), query_db.unwrap_or(0)),
            other => {
                return Err(bad(&format_args!(
                    "scheme {other} is not redis or redis+unix"
                )));
            }
        };
        Ok(Self {
            place,
            user,
            password,
            db,
        })
    }
}

type Reply = Result<Value, RedisError>;

/// One connection: a writer task flushing `outbox`, a reader task
/// decoding replies and answering `pending` in order.
struct Link {
    outbox: RefCell<Vec<u8>>,
    bell: RefCell<mpsc::Sender<()>>,
    pending: RefCell<VecDeque<oneshot::Sender<Reply>>>,
    alive: Cell<bool>,
    /// Dropped when the link fails: stops the reader's pending read.
    stop: RefCell<Option<oneshot::Sender<()>>>,
    /// Where every frame goes instead, on a subscriber connection.
    pushes: Option<mpsc::UnboundedSender<Value>>,
}

impl Link {
    /// Connects and starts the connection's two tasks.
    async fn open(
        target: &Target,
        resp3: bool,
        pushes: Option<mpsc::UnboundedSender<Value>>,
    ) -> Result<Rc<Self>, RedisError> {
        let connect = |e: std::io::Error, at: &dyn std::fmt::Display| {
            RedisError::new(RedisErrorKind::Connect, format_args!("{at}: {e}"))
        };
        let (reader, writer): (
            Box<dyn futures_lite::AsyncRead + Unpin>,
            Box<dyn futures_lite::AsyncWrite + Unpin>,
        ) = match &target.place {
            Place::Tcp(host, port) => {
                let stream = crate::net::connect(host, *port)
                    .await
                    .map_err(|e| RedisError::new(RedisErrorKind::Connect, e))?;
                let (r, w) = futures_lite::io::split(stream);
                (Box::new(r), Box::new(w))
            }
            Place::Unix(path) => {
                let stream = glommio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| connect(e.into(), &path.display()))?;
                let (r, w) = futures_lite::io::split(stream);
                (Box::new(r), Box::new(w))
            }
        };
        let (bell, rung) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel();
        let link = Rc::new(Self {
            outbox: RefCell::new(Vec::with_capacity(4096)),
            bell: RefCell::new(bell),
            pending: RefCell::new(VecDeque::new()),
            alive: Cell::new(true),
            stop: RefCell::new(Some(stop)),
            pushes,
        });
        glommio::spawn_local(Rc::clone(&link).write_loop(writer, rung)).detach();
        glommio::spawn_local(Rc::clone(&link).read_loop(reader, resp3, stopped)).detach();
        Ok(link)
    }

    /// Queues one encoded command; the reply comes on the receiver.
    fn send(&self, encoded: &[u8], expect_reply: bool) -> Option<oneshot::Receiver<Reply>> {
        if !self.alive.get() {
            return None;
        }
        self.outbox.borrow_mut().extend_from_slice(encoded);
        let reply = expect_reply.then(|| {
            let (tx, rx) = oneshot::channel();
            self.pending.borrow_mut().push_back(tx);
            rx
        });
        // A full bell is already rung: the writer will take this too.
        let _ = self.bell.borrow_mut().try_send(());
        reply
    }

    async fn write_loop(
        self: Rc<Self>,
        mut writer: Box<dyn futures_lite::AsyncWrite + Unpin>,
        mut rung: mpsc::Receiver<()>,
    ) {
        let mut batch = Vec::with_capacity(4096);
        while rung.next().await.is_some() && self.alive.get() {
            std::mem::swap(&mut batch, &mut *self.outbox.borrow_mut());
            if batch.is_empty() {
                continue;
            }
            let written = async {
                writer.write_all(&batch).await?;
                writer.flush().await
            };
            if written.await.is_err() {
                self.fail("the connection broke while writing");
                return;
            }
            batch.clear();
        }
    }

    async fn read_loop(
        self: Rc<Self>,
        mut reader: Box<dyn futures_lite::AsyncRead + Unpin>,
        resp3: bool,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        let mut start = 0;
        let mut end = 0;
        loop {
            // Every complete frame in the buffer.
            loop {
                let input = &buf[start..end];
                let decoded = if resp3 {
                    redis_protocol::resp3::decode::complete::decode(input)
                        .map(|f| f.map(|(f, n)| (Value::from_resp3(f), n)))
                } else {
                    redis_protocol::resp2::decode::decode(input)
                        .map(|f| f.map(|(f, n)| (Value::from_resp2(f), n)))
                };
                match decoded {
                    Ok(Some((value, used))) => {
                        start += used;
                        self.deliver(value);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.fail(&format!("an undecodable reply: {}", e.details()));
                        return;
                    }
                }
            }
            if start == end {
                start = 0;
                end = 0;
            } else if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            if end == buf.len() {
                let grown = buf.len() * 2;
                buf.resize(grown, 0);
            }
            let read = futures_lite::future::or(
                async { Some(reader.read(&mut buf[end..]).await) },
                async {
                    let _ = (&mut stopped).await;
                    None
                },
            )
            .await;
            match read {
                Some(Ok(n)) if n > 0 => end += n,
                // Stopped: the link already failed.
                None => return,
                Some(_) => {
                    self.fail("the server closed the connection");
                    return;
                }
            }
        }
    }

    fn deliver(&self, value: Value) {
        if let Some(pushes) = &self.pushes {
            let _ = pushes.unbounded_send(value);
            return;
        }
        if matches!(value, Value::Push(_)) {
            // Out of band (RESP3): not the reply to a command.
            return;
        }
        if let Some(waiter) = self.pending.borrow_mut().pop_front() {
            let reply = match value {
                Value::Error(e) => Err(RedisError::new(RedisErrorKind::Server, e)),
                other => Ok(other),
            };
            let _ = waiter.send(reply);
        }
    }

    /// Ends the connection: every command waiting fails with `Closed`.
    fn fail(&self, why: &str) {
        self.alive.set(false);
        drop(self.stop.borrow_mut().take());
        for waiter in self.pending.borrow_mut().drain(..) {
            let _ = waiter.send(Err(RedisError::new(RedisErrorKind::Closed, why)));
        }
        self.bell.borrow_mut().close_channel();
        if let Some(pushes) = &self.pushes {
            pushes.close_channel();
        }
    }
}

/// Encodes one command (an array of bulk strings).
fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    use redis_protocol::resp2::types::BorrowedFrame;
    let frames: Vec<BorrowedFrame<'_>> =
        args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
    let mut buf = bytes::BytesMut::new();
    // Encoding an array of bulk strings into a growable buffer cannot fail.
    if redis_protocol::resp2::encode::extend_encode_borrowed(
        &mut buf,
        &BorrowedFrame::Array(&frames),
        false,
    )
    .is_ok()
    {
        out.extend_from_slice(&buf);
    }
}

struct Inner {
    config: RedisConfig,
    target: Target,
    link: RefCell<Option<Rc<Link>>>,
    reachable: Cell<bool>,
}

/// A shard's Redis client: one multiplexed connection, reconnected when
/// it breaks (clone it freely on the shard; not `Send`).
#[derive(Clone)]
pub struct Redis {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").finish_non_exhaustive()
    }
}

/// A command's arguments: anything that is bytes.
pub trait Arg {
    /// The argument's bytes.
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]>;
}

impl Arg for str {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        self.as_bytes().into()
    }
}
impl Arg for &str {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        self.as_bytes().into()
    }
}
impl Arg for String {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        self.as_bytes().into()
    }
}
impl Arg for [u8] {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        self.into()
    }
}
impl Arg for &[u8] {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        (*self).into()
    }
}
impl Arg for Vec<u8> {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        self.as_slice().into()
    }
}
impl Arg for bytes::Bytes {
    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        self.as_ref().into()
    }
}
macro_rules! number_args {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
                self.to_string().into_bytes().into()
            }
        }
    )*};
}
number_args!(i32, i64, u32, u64, usize, f64);

fn encode_args<A: Arg + ?Sized>(args: &[&A], out: &mut Vec<u8>) {
    let owned: Vec<_> = args.iter().map(|a| a.bytes()).collect();
    let slices: Vec<&[u8]> = owned.iter().map(AsRef::as_ref).collect();
    encode(&slices, out);
}

impl Redis {
    /// Connects now (so a state factory fails at start when Redis is
    /// unreachable), speaking RESP2 or RESP3 as configured.
    ///
    /// # Errors
    /// A bad URL, no connection, or a refused login.
    pub async fn connect(config: RedisConfig) -> Result<Self, RedisError> {
        let target = Target::parse(&config.url)?;
        let redis = Self {
            inner: Rc::new(Inner {
                config,
                target,
                link: RefCell::new(None),
                reachable: Cell::new(false),
            }),
        };
        redis.link().await?;
        Ok(redis)
    }

    /// Whether the connection is up (or was re-made at the last command).
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.inner.reachable.get()
            && self
                .inner
                .link
                .borrow()
                .as_ref()
                .is_some_and(|l| l.alive.get())
    }

    /// The live connection, or a new one (logged in, database selected).
    async fn link(&self) -> Result<Rc<Link>, RedisError> {
        if let Some(link) = self.inner.link.borrow().as_ref().filter(|l| l.alive.get()) {
            return Ok(Rc::clone(link));
        }
        let link = self.open_link(None).await;
        self.inner.reachable.set(link.is_ok());
        let link = link?;
        *self.inner.link.borrow_mut() = Some(Rc::clone(&link));
        Ok(link)
    }

    async fn open_link(
        &self,
        pushes: Option<mpsc::UnboundedSender<Value>>,
    ) -> Result<Rc<Link>, RedisError> {
        let config = &self.inner.config;
        let target = &self.inner.target;
        let subscriber = pushes.is_some();
        let opening = async {
            let link = Link::open(target, config.resp3, pushes).await?;
            let mut hello: Vec<Vec<u8>> = Vec::new();
            if config.resp3 {
                hello.extend([b"HELLO".to_vec(), b"3".to_vec()]);
                if let Some(password) = &target.password {
                    let user = target.user.clone().unwrap_or_else(|| "default".to_owned());
                    hello.extend([
                        b"AUTH".to_vec(),
                        user.into_bytes(),
                        password.clone().into_bytes(),
                    ]);
                }
            } else if let Some(password) = &target.password {
                hello.push(b"AUTH".to_vec());
                if let Some(user) = &target.user {
                    hello.push(user.clone().into_bytes());
                }
                hello.push(password.clone().into_bytes());
            }
            let mut setup: Vec<Vec<Vec<u8>>> = Vec::new();
            if !hello.is_empty() {
                setup.push(hello);
            }
            if target.db != 0 {
                setup.push(vec![b"SELECT".to_vec(), target.db.to_string().into_bytes()]);
            }
            for command in setup {
                let slices: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
                let mut encoded = Vec::new();
                encode(&slices, &mut encoded);
                if subscriber {
                    // A subscriber link routes every frame to its pushes;
                    // the handshake's replies are skipped there.
                    link.send(&encoded, false);
                    continue;
                }
                let reply = link.send(&encoded, true).ok_or_else(|| {
                    RedisError::new(RedisErrorKind::Closed, "closed during the handshake")
                })?;
                reply
                    .await
                    .map_err(|_| {
                        RedisError::new(RedisErrorKind::Closed, "closed during the handshake")
                    })?
                    .map_err(|e| {
                        RedisError::new(RedisErrorKind::Connect, format_args!("the handshake: {e}"))
                    })?;
            }
            Ok(link)
        };
        futures_lite::future::or(opening, async {
            glommio::timer::sleep(config.connect_timeout).await;
            Err(RedisError::new(
                RedisErrorKind::Timeout,
                format_args!("connecting took longer than {:?}", config.connect_timeout),
            ))
        })
        .await
    }

    async fn wait(&self, reply: oneshot::Receiver<Reply>) -> Reply {
        let limit = self.inner.config.command_timeout;
        futures_lite::future::or(
            async {
                reply.await.unwrap_or_else(|_| {
                    Err(RedisError::new(
                        RedisErrorKind::Closed,
                        "the connection ended",
                    ))
                })
            },
            async {
                glommio::timer::sleep(limit).await;
                Err(RedisError::new(
                    RedisErrorKind::Timeout,
                    format_args!("no reply within {limit:?}"),
                ))
            },
        )
        .await
    }

    async fn run_encoded(&self, encoded: &[u8]) -> Reply {
        let link = self.link().await?;
        let Some(reply) = link.send(encoded, true) else {
            return Err(RedisError::new(
                RedisErrorKind::Closed,
                "the connection ended",
            ));
        };
        self.wait(reply).await
    }

    /// Runs one command, `args` with its name first, and converts the reply.
    ///
    /// # Errors
    /// The connection's or the server's error, or a reply of another type.
    pub async fn cmd<T: FromRedis, A: Arg>(
        &self,
        args: impl IntoIterator<Item = A>,
    ) -> Result<T, RedisError> {
        let args: Vec<A> = args.into_iter().collect();
        let refs: Vec<&A> = args.iter().collect();
        let mut encoded = Vec::new();
        encode_args(&refs, &mut encoded);
        T::from_redis(self.run_encoded(&encoded).await?)
    }

    /// Runs one command given as mixed arguments (`&[&"SET", &key, &42]`).
    ///
    /// # Errors
    /// As for [`cmd`](Self::cmd).
    pub async fn cmd_args<T: FromRedis>(&self, args: &[&dyn Arg]) -> Result<T, RedisError> {
        let owned: Vec<_> = args.iter().map(|a| a.bytes()).collect();
        let slices: Vec<&[u8]> = owned.iter().map(AsRef::as_ref).collect();
        let mut encoded = Vec::new();
        encode(&slices, &mut encoded);
        T::from_redis(self.run_encoded(&encoded).await?)
    }

    /// `GET key`.
    ///
    /// # Errors
    /// As for [`cmd`](Self::cmd).
    pub async fn get<T: FromRedis>(&self, key: &str) -> Result<Option<T>, RedisError> {
        self.cmd_args(&[&"GET", &key]).await
    }

    /// `SET key value`.
    ///
    /// # Errors
    /// As for [`cmd`](Self::cmd).
    pub async fn set(&self, key: &str, value: impl Arg) -> Result<(), RedisError> {
        self.cmd_args(&[&"SET", &key, &value]).await
    }

    /// `SET key value EX seconds`.
    ///
    /// # Errors
    /// As for [`cmd`](Self::cmd).
    pub async fn set_ex(&self, key: &str, value: impl Arg, seconds: u64) -> Result<(), RedisError> {
        self.cmd_args(&[&"SET", &key, &value, &"EX", &seconds])
            .await
    }

    /// `DEL key`: whether it existed.
    ///
    /// # Errors
    /// As for [`cmd`](Self::cmd).
    pub async fn del(&self, key: &str) -> Result<bool, RedisError> {
        self.cmd_args(&[&"DEL", &key]).await
    }

    /// `INCRBY key by`: the new value.
    ///
    /// # Errors
    /// As for [`cmd`](Self::cmd).
    pub async fn incr(&self, key: &str, by: i64) -> Result<i64, RedisError> {
        self.cmd_args(&[&"INCRBY", &key, &by]).await
    }

    /// Runs `commands` as one write and returns their replies in order
    /// (a server error is that command's `Value::Error`).
    ///
    /// # Errors
    /// The connection's error.
    pub async fn pipeline(&self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, RedisError> {
        let link = self.link().await?;
        let mut encoded = Vec::new();
        for command in commands {
            let slices: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            encode(&slices, &mut encoded);
        }
        // All queued before any reply can arrive: one write, in order.
        let mut replies = Vec::with_capacity(commands.len());
        link.outbox.borrow_mut().extend_from_slice(&encoded);
        for _ in commands {
            let (tx, rx) = oneshot::channel();
            link.pending.borrow_mut().push_back(tx);
            replies.push(rx);
        }
        let _ = link.bell.borrow_mut().try_send(());
        let mut values = Vec::with_capacity(replies.len());
        for reply in replies {
            values.push(match self.wait(reply).await {
                Ok(value) => value,
                Err(e) if e.kind() == RedisErrorKind::Server => Value::Error(e.to_string()),
                Err(e) => return Err(e),
            });
        }
        Ok(values)
    }

    /// Runs `script` with `keys` and `args`: `EVALSHA` of its digest, and
    /// `EVAL` once when the server does not know it yet.
    ///
    /// # Errors
    /// As for [`cmd`](Self::cmd).
    pub async fn eval<T: FromRedis>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&dyn Arg],
    ) -> Result<T, RedisError> {
        let count = keys.len();
        let mut tail: Vec<&dyn Arg> = vec![&count];
        tail.extend(keys.iter().map(|k| k as &dyn Arg));
        tail.extend_from_slice(args);
        let mut by_digest: Vec<&dyn Arg> = vec![&"EVALSHA", &script.sha];
        by_digest.extend_from_slice(&tail);
        match self.cmd_args::<Value>(&by_digest).await {
            Err(e)
                if e.server_message()
                    .is_some_and(|m| m.starts_with("NOSCRIPT")) =>
            {
                let mut by_source: Vec<&dyn Arg> = vec![&"EVAL", &script.source];
                by_source.extend_from_slice(&tail);
                T::from_redis(self.cmd_args::<Value>(&by_source).await?)
            }
            other => T::from_redis(other?),
        }
    }

    /// Subscribes to `channels` on a connection of its own.
    ///
    /// # Errors
    /// No connection.
    pub async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, RedisError> {
        let (tx, rx) = mpsc::unbounded();
        let link = self.open_link(Some(tx)).await?;
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(channels.iter().map(|c| c.as_bytes()));
        let mut encoded = Vec::new();
        encode(&args, &mut encoded);
        link.send(&encoded, false);
        let mut subscription = Subscription { link, messages: rx };
        // Each channel's confirmation, so messages published from now on arrive.
        let mut confirmed = 0;
        while confirmed < channels.len() {
            match subscription.messages.next().await {
                Some(Value::Array(items) | Value::Push(items))
                    if items.first().and_then(Value::as_bytes) == Some(b"subscribe") =>
                {
                    confirmed += 1;
                }
                Some(_) => {}
                None => {
                    return Err(RedisError::new(
                        RedisErrorKind::Closed,
                        "closed while subscribing",
                    ));
                }
            }
        }
        Ok(subscription)
    }
}

/// A Lua script with its SHA-1 digest, for [`Redis::eval`].
#[derive(Clone, Debug)]
pub struct Script {
    source: String,
    sha: String,
}

impl Script {
    /// The script `source`.
    pub fn new(source: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            source.as_bytes(),
        );
        let sha = digest
            .as_ref()
            .iter()
            .fold(String::with_capacity(40), |mut hex, b| {
                use std::fmt::Write;
                let _ = write!(hex, "{b:02x}");
                hex
            });
        Self {
            source: source.to_owned(),
            sha,
        }
    }
}

/// A message published to a subscribed channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The channel.
    pub channel: String,
    /// What was published.
    pub payload: bytes::Bytes,
}

/// Channels subscribed to on a connection of their own; dropped, it
/// closes.
pub struct Subscription {
    link: Rc<Link>,
    messages: mpsc::UnboundedReceiver<Value>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next message; `None` once the connection ends.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            let (Value::Array(items) | Value::Push(items)) = self.messages.next().await? else {
                continue;
            };
            if let [kind, channel, payload] = items.as_slice()
                && kind.as_bytes() == Some(b"message")
                && let (Some(channel), Value::Bulk(payload)) = (channel.as_bytes(), payload)
            {
                return Some(Message {
                    channel: String::from_utf8_lossy(channel).into_owned(),
                    payload: payload.clone(),
                });
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.link.fail("the subscription was dropped");
    }
}
