//! A request body arriving while its handler runs: the channel the
//! connection puts its pieces into, one at a time, and why it may end
//! early.

use bytes::Bytes;
use futures_channel::mpsc;

use super::response::IntoResponse;
use super::status::Status;
use super::write::ResponseWriter;

/// Pieces of a body as the connection reads them.
pub(crate) type Feed = mpsc::Receiver<Result<Bytes, BodyError>>;

/// Where the connection puts them.
pub(crate) type FeedSender = mpsc::Sender<Result<Bytes, BodyError>>;

/// A channel that holds one piece: the connection reads the next only
/// once the handler has taken it.
pub(crate) fn feed() -> (FeedSender, Feed) {
    mpsc::channel(0)
}

/// Why a streamed body ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the route allows (`413`).
    TooLarge {
        /// The route's limit, bytes.
        limit: u64,
    },
    /// The client sent nothing for `timeouts.body_secs` (`408`).
    TimedOut,
    /// The client closed or reset the connection mid-body, or the framing
    /// was broken (`400`).
    Broken(&'static str),
    /// A file the body was written to failed (`500`).
    Storage(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(
                    f,
                    "the body is larger than this route allows ({limit} bytes)"
                )
            }
            BodyError::TimedOut => f.write_str("the body stopped arriving"),
            BodyError::Broken(why) => write!(f, "the body is incomplete: {why}"),
            BodyError::Storage(why) => write!(f, "the body could not be stored: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    fn status(&self) -> Status {
        match self {
            BodyError::TooLarge { .. } => Status::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => Status::REQUEST_TIMEOUT,
            BodyError::Broken(_) => Status::BAD_REQUEST,
            BodyError::Storage(_) => Status::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for BodyError {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        if let BodyError::Storage(why) = &self {
            tracing::error!(error = why.as_str(), "storing a request body failed");
            return writer.send_error(self.status(), "the body could not be stored");
        }
        writer.send_error(self.status(), &self.to_string());
    }
}

/// Sends `piece` into `sender` once the handler has taken the last one;
/// false when the handler dropped the body.
pub(crate) async fn send(sender: &mut FeedSender, piece: Result<Bytes, BodyError>) -> bool {
    let ready = futures_lite::future::poll_fn(|cx| sender.poll_ready(cx)).await;
    ready.is_ok() && sender.start_send(piece).is_ok()
}
