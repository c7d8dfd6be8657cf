//! A request body read while its handler runs: the pump reads the socket,
//! removes the framing, and hands the handler one piece at a time; it reads
//! the next piece only once the handler has taken the last, so a slow
//! handler (a disk, an upstream) slows the client down instead of filling
//! memory.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use crate::http::body::{ChunkLimits, ChunkedDecoder};
use crate::http::incoming::{BodyError, FeedSender, send};
use crate::http::parse::{self, Limits, ParseError};
use crate::http::write::CONTINUE;
use crate::server::connection::Wire;
use crate::server::deadline::{Expired, Timer};

/// Most bytes one read of a streamed body asks for.
const PIECE: usize = 64 * 1024;

/// How the body is framed and held.
pub(super) struct Shape {
    pub(super) framing: parse::Framing,
    /// The route's body limit.
    pub(super) limit: u64,
    /// The client waits for `100 Continue` before it sends the body.
    pub(super) expects_continue: bool,
    /// The codec limits (trailers, chunk extensions).
    pub(super) limits: Limits,
}

/// Reads the body after `arrived` (what came with the head) into `sender`
/// until its end, a limit, a timeout or the handler dropping it. `open`
/// is cleared once the body has been read to its end with nothing after
/// it, so the connection may carry another request.
///
/// While it reads, the request timeout is off (an upload may take longer
/// than a handler may) and each read has `timeouts.body_secs`; once the
/// body is in, the request timeout starts again for the handler.
pub(super) async fn pump(
    wire: Wire<'_, '_>,
    mut sender: FeedSender,
    mut buf: Vec<u8>,
    framing: Shape,
    (body_timeout, request_timeout): (Option<Duration>, Option<Duration>),
    open: &Cell<bool>,
) {
    let Wire { io, watch, pool } = wire;
    watch.disarm(Timer::Working);
    let mut filled = buf.len();
    let mut chunked =
        (framing.framing == parse::Framing::Chunked).then(|| Box::new(ChunkedDecoder::new(0)));
    let mut left = match framing.framing {
        parse::Framing::Length(len) => len,
        _ => 0,
    };
    let chunk_limits = ChunkLimits {
        max_body: framing.limit,
        max_trailer: framing.limits.max_head_bytes,
        max_trailer_fields: framing.limits.max_headers,
        max_extension: framing.limits.max_chunk_extension_bytes,
    };
    let mut continued = !framing.expects_continue || filled > 0;
    let ended = loop {
        // Hand over what the window holds.
        let (data, used, done) = match &mut chunked {
            None => {
                let take = usize::try_from(left).map_or(filled, |left| left.min(filled));
                left -= take as u64;
                (take, take, left == 0)
            }
            Some(decoder) => match decoder.decode(&mut buf[..filled], chunk_limits) {
                Ok(done) => (decoder.body_end(), decoder.consumed(), done),
                Err(ParseError::BodyTooLarge) => {
                    send(
                        &mut sender,
                        Err(BodyError::TooLarge {
                            limit: framing.limit,
                        }),
                    )
                    .await;
                    break false;
                }
                Err(error) => {
                    send(&mut sender, Err(BodyError::Broken(error.detail()))).await;
                    break false;
                }
            },
        };
        if data > 0 && !send(&mut sender, Ok(Bytes::copy_from_slice(&buf[..data]))).await {
            // The handler is done with the body.
            break false;
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        if let Some(decoder) = &mut chunked {
            decoder.rebase();
        }
        if done {
            // Bytes after the body (a pipelined request) are not kept:
            // the connection closes after this response.
            break filled == 0;
        }
        if !continued {
            continued = true;
            let mut interim = CONTINUE.to_vec();
            if io.write_now(&mut interim, pool).await.is_err() {
                send(&mut sender, Err(BodyError::Broken("the connection failed"))).await;
                break false;
            }
        }
        watch.arm(Timer::Reading, body_timeout);
        let read = io.read_more(&mut buf, filled, filled + PIECE, pool);
        match watch.guard(Timer::Reading, read).await {
            Ok(Ok(0)) => {
                send(
                    &mut sender,
                    Err(BodyError::Broken("the client closed the connection")),
                )
                .await;
                break false;
            }
            Ok(Ok(read)) => filled += read,
            Ok(Err(_)) => {
                send(&mut sender, Err(BodyError::Broken("the connection failed"))).await;
                break false;
            }
            Err(Expired) => {
                send(&mut sender, Err(BodyError::TimedOut)).await;
                break false;
            }
        }
    };
    watch.disarm(Timer::Reading);
    watch.arm(Timer::Working, request_timeout);
    if ended {
        open.set(false);
    }
}

/// Runs `respond` with `pump` beside it, and returns what `respond` does;
/// the pump stops where it is once the response is done (its body, if not
/// read to the end, closes the connection). `respond` goes first, so a
/// request its extractors or handler refuse at once is answered before
/// the pump sends `100 Continue` or reads any of the body.
pub(super) async fn alongside<T>(
    respond: impl Future<Output = T>,
    pump: impl Future<Output = ()>,
) -> T {
    let mut respond = pin!(respond);
    let mut pump = pin!(pump);
    let mut pumping = true;
    futures_lite::future::poll_fn(|cx| {
        if let Poll::Ready(answer) = respond.as_mut().poll(cx) {
            return Poll::Ready(answer);
        }
        if pumping && pump.as_mut().poll(cx).is_ready() {
            pumping = false;
            // The body's end may be what the handler waits for.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}
