//! The connection loop: read into one reused buffer, answer every complete
//! (pipelined) request in it, send all the responses with one write.
//!
//! [`serve_buffered`] is the whole request path without a socket: decode,
//! route, call the handler, encode. The socket loop and [`LocalService`]
//! (tests, benches) both drive it.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use futures_lite::StreamExt;

use super::pool::READ_BUFFER;
use super::transport::Transport;
use crate::app::App;
use crate::http::date::DATE_LEN;
use crate::http::parse::{Decoded, Decoder, HeaderSpan, Limits, Message, Method, Version};
use crate::http::request::{Request, split_target, target_str};
use crate::http::status::Status;
use crate::http::write::{
    BodyStream, CONTINUE, LAST_CHUNK, ResponseContext, ResponseWriter, encode_chunk,
};
use crate::route::router::{Lookup, MAX_PARAMS};
use crate::runtime::shard::ShardContext;

/// What one pass over the buffer did.
pub(crate) struct Batch {
    /// Bytes of input fully answered.
    pub(crate) consumed: usize,
    /// The connection must close once the output is sent.
    pub(crate) close: bool,
    /// A streamed body to send after the output, and whether it is chunked.
    pub(crate) stream: Option<(BodyStream, bool)>,
}

/// Serves one connection until the peer closes, an error, or `Connection: close`.
///
/// The read buffer holds `buf[start..filled]` unanswered bytes. On the ring
/// transport both buffers go back to the shard's pool whenever no request
/// is half-read, so an idle connection holds neither.
pub(crate) async fn serve<S: 'static>(
    shard: &ShardContext<S>,
    mut transport: Transport,
    peer: Option<SocketAddr>,
) {
    let lends = transport.lends_buffers();
    let mut decoder = Decoder::new(shard.limits);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let (mut start, mut filled) = (0, 0);
    let max_buffer = buffer_ceiling(shard.limits);
    loop {
        let read = match transport
            .read_into(&mut buf, filled, max_buffer, &shard.pool)
            .await
        {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::OutOfMemory => {
                // Rare paths are boxed so they do not enlarge every connection's task.
                Box::pin(reject_oversized(&mut transport, shard, &mut out)).await;
                break;
            }
            Err(_) => break,
        };
        filled += read;
        if out.capacity() == 0 {
            out = shard.pool.take_write();
        }
        if decoder.header_capacity() == 0 {
            decoder.lend_header_table(shard.pool.take_headers());
        }
        // Placed in a pooled block: the work future is large, and inline it
        // would make every idle connection's task as large.
        let batch = shard
            .blocks
            .place(serve_buffered(
                shard,
                &mut decoder,
                &mut buf[start..filled],
                &mut out,
                peer,
            ))
            .await;
        start += batch.consumed;
        if !batch.close && decoder.take_continue() {
            out.extend_from_slice(CONTINUE);
        }
        if !out.is_empty() && transport.write_all(&mut out).await.is_err() {
            break;
        }
        if let Some((stream, chunked)) = batch.stream
            && (send_stream(&mut transport, &mut out, stream, chunked)
                .await
                .is_err()
                || !chunked)
        {
            break;
        }
        if batch.close {
            break;
        }
        if start == filled {
            (start, filled) = (0, 0);
            if lends {
                shard.pool.put_read(std::mem::take(&mut buf));
                shard.pool.put_write(std::mem::take(&mut out));
                shard.pool.put_headers(decoder.take_header_table());
            }
        } else if start > 0 {
            // Keep the partial request at the front, so the buffer only
            // grows for requests that need it.
            buf.copy_within(start..filled, 0);
            (start, filled) = (0, filled - start);
        }
    }
    shard.pool.put_read(buf);
    shard.pool.put_write(out);
}

/// Largest read buffer: a whole request at the limits, with room for chunked
/// framing around a body of the largest size.
fn buffer_ceiling(limits: Limits) -> usize {
    let body = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    limits
        .max_head_bytes
        .saturating_add(body.saturating_mul(2))
        .max(READ_BUFFER)
}

/// Answers a request that cannot fit the buffer ceiling (only chunked
/// framing far heavier than its data gets here).
async fn reject_oversized<S>(
    transport: &mut Transport,
    shard: &ShardContext<S>,
    out: &mut Vec<u8>,
) {
    out.clear();
    let context = error_context(shard);
    ResponseWriter::new(out, context).send_error(Status::PAYLOAD_TOO_LARGE, "request too large");
    let _ = transport.write_all(out).await;
}

fn error_context<S>(shard: &ShardContext<S>) -> ResponseContext {
    ResponseContext {
        date: shard.date.now(),
        head_request: false,
        keep_alive: false,
        http10: false,
    }
}

async fn send_stream(
    transport: &mut Transport,
    out: &mut Vec<u8>,
    mut stream: BodyStream,
    chunked: bool,
) -> std::io::Result<()> {
    while let Some(piece) = stream.next().await {
        if chunked {
            encode_chunk(out, &piece);
        } else {
            out.extend_from_slice(&piece);
        }
        transport.write_all(out).await?;
    }
    if chunked {
        out.extend_from_slice(LAST_CHUNK);
        transport.write_all(out).await?;
    }
    Ok(())
}

/// Answers every complete request at the start of `input`, appending the
/// responses to `out`. Stops early after a request that closes the
/// connection or streams its body.
pub(crate) async fn serve_buffered<S>(
    shard: &ShardContext<S>,
    decoder: &mut Decoder,
    input: &mut [u8],
    out: &mut Vec<u8>,
    peer: Option<SocketAddr>,
) -> Batch {
    let mut consumed = 0;
    let date = shard.date.now();
    loop {
        match decoder.decode(&mut input[consumed..]) {
            Ok(Decoded::Partial) => {
                return Batch {
                    consumed,
                    close: false,
                    stream: None,
                };
            }
            Err(error) => {
                ResponseWriter::new(out, error_context(shard))
                    .send_error(error.status(), error.detail());
                return Batch {
                    consumed,
                    close: true,
                    stream: None,
                };
            }
            Ok(Decoded::Complete(message)) => {
                let end = consumed + message.consumed;
                let message_bytes = &mut input[consumed..end];
                let (keep_alive, stream) = respond(
                    shard,
                    decoder.headers(),
                    message_bytes,
                    message,
                    out,
                    peer,
                    date,
                )
                .await;
                consumed = end;
                if !keep_alive || stream.is_some() {
                    return Batch {
                        consumed,
                        close: !keep_alive,
                        stream,
                    };
                }
            }
        }
    }
}

/// Routes one request and writes its response. Returns whether the
/// connection stays open, and a body stream if the response has one.
async fn respond<S>(
    shard: &ShardContext<S>,
    headers: &[HeaderSpan],
    message_bytes: &mut [u8],
    message: Message,
    out: &mut Vec<u8>,
    peer: Option<SocketAddr>,
    date: [u8; DATE_LEN],
) -> (bool, Option<(BodyStream, bool)>) {
    let head = message.head;
    let (head_bytes, rest) = message_bytes.split_at_mut(head.len);
    let head_bytes: &[u8] = head_bytes;
    let body = &mut rest[..message.body.1 - head.len];
    let (path, _) = split_target(target_str(head_bytes, &head));
    let context = ResponseContext {
        date,
        head_request: head.method == Method::Head,
        keep_alive: head.keep_alive,
        http10: head.version == Version::Http10,
    };
    let mut writer = ResponseWriter::new(out, context);
    let mut params = [("", ""); MAX_PARAMS];
    match shard.app.routes.lookup(head.method, path, &mut params) {
        Lookup::Found(handler, count) => {
            let mut request = Request::new(head_bytes, body, head, headers)
                .with_params(&params[..count])
                .with_origin(peer, shard.index);
            let completed = {
                let mut future =
                    std::pin::pin!(handler.call(&mut request, &shard.state, &mut writer));
                futures_lite::future::poll_fn(|cx| {
                    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                        Ok(Poll::Ready(())) => Poll::Ready(true),
                        Ok(Poll::Pending) => Poll::Pending,
                        Err(_) => Poll::Ready(false),
                    }
                })
                .await
            };
            if !completed {
                tracing::error!(shard = shard.index, path, "handler panicked; answered 500");
                writer.reset();
                writer.send_error(Status::INTERNAL_SERVER_ERROR, "Internal Server Error");
            } else if !writer.is_written() {
                writer.send_error(Status::INTERNAL_SERVER_ERROR, "handler wrote no response");
            }
        }
        Lookup::MethodNotAllowed(methods) => {
            let mut allow = String::new();
            for (method, _) in methods {
                if !allow.is_empty() {
                    allow.push_str(", ");
                }
                allow.push_str(method.as_str());
                if *method == Method::Get && !methods.iter().any(|(m, _)| *m == Method::Head) {
                    allow.push_str(", HEAD");
                }
            }
            writer.send_with(
                Status::METHOD_NOT_ALLOWED,
                Some("application/json"),
                [("Allow", allow.as_bytes())],
                |out| {
                    out.extend_from_slice(br#"{"detail":"Method Not Allowed"}"#);
                    Ok::<(), ()>(())
                },
            );
        }
        Lookup::NotFound => writer.send_error(Status::NOT_FOUND, "Not Found"),
    }
    (writer.keep_alive(), writer.take_stream())
}

/// The request path of an [`App`] without a socket: feed it request bytes,
/// get response bytes. For tests, benchmarks and fuzzing; a real server
/// runs the same code behind each connection.
///
/// ```
/// use percore::{App, LocalService};
/// let mut service = LocalService::new(App::new().get("/", async || "hi"));
/// let mut input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
/// let mut out = Vec::new();
/// let (consumed, close) = futures_lite::future::block_on(service.serve(&mut input, &mut out));
/// assert_eq!((consumed, close), (input.len(), false));
/// assert!(out.ends_with(b"\r\n\r\nhi"));
/// ```
pub struct LocalService<S> {
    shard: Rc<ShardContext<S>>,
    decoder: Decoder,
}

impl<S> std::fmt::Debug for LocalService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalService").finish_non_exhaustive()
    }
}

impl<S: 'static> LocalService<S> {
    /// A service for `app` with default limits, as shard 0.
    #[must_use]
    pub fn new(app: App<S>) -> Self {
        Self::with_limits(app, Limits::default())
    }

    /// A service for `app` with `limits`.
    #[must_use]
    pub fn with_limits(app: App<S>, limits: Limits) -> Self {
        Self {
            shard: Rc::new(ShardContext::new(0, Arc::new(app), limits)),
            decoder: Decoder::new(limits),
        }
    }

    /// Answers every complete request at the start of `input` (as one
    /// connection would), appending responses to `out`. Returns the bytes
    /// consumed and whether the connection would close. A streamed body is
    /// appended whole, with its framing.
    pub async fn serve(&mut self, input: &mut [u8], out: &mut Vec<u8>) -> (usize, bool) {
        let batch = serve_buffered(&self.shard, &mut self.decoder, input, out, None).await;
        if let Some((mut stream, chunked)) = batch.stream {
            while let Some(piece) = stream.next().await {
                if chunked {
                    encode_chunk(out, &piece);
                } else {
                    out.extend_from_slice(&piece);
                }
            }
            if chunked {
                out.extend_from_slice(LAST_CHUNK);
            }
        }
        (batch.consumed, batch.close)
    }
}
