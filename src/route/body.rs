//! Streamed request bodies: [`Body`] hands a handler the body piece by
//! piece while it arrives, with backpressure (the connection reads the
//! next piece only once the handler has taken the last), so an upload
//! larger than memory can go to a file; [`Multipart`] reads a
//! `multipart/form-data` body part by part on the same stream.
//!
//! A route whose handler takes either is called as soon as the request
//! head is complete. Its limit is the route's own
//! ([`Scope::max_body_bytes`](crate::Scope::max_body_bytes)) or
//! `limits.max_body_bytes`; past it the next read fails with `413`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::{Stream, StreamExt};

use super::extract::FromRequest;
use crate::http::incoming::{BodyError, Feed};
use crate::http::request::Request;
use crate::http::response::IntoResponse;
use crate::http::status::Status;
use crate::http::write::ResponseWriter;

/// The request body as a stream of pieces, read while it arrives.
///
/// ```no_run
/// use percore::{App, Body, BodyError, Scope};
///
/// let uploads = Scope::new()
///     .put("/{name}", async |body: Body| -> Result<String, BodyError> {
///         let stored = body.to_file("/tmp/upload.bin").await?;
///         Ok(format!("{stored} bytes"))
///     })
///     .max_body_bytes(10 << 30);
/// let app = App::new().nest("/files", uploads);
/// ```
#[derive(Debug)]
pub struct Body {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// Read from the connection while the handler runs.
    Feed(Feed),
    /// The whole body had arrived with the head.
    Whole(Option<Bytes>),
}

impl Body {
    /// The next piece, `None` at the end of the body.
    ///
    /// # Errors
    /// Why the body ended early (too large, timed out, cut off); the error
    /// is the response to give.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        self.next().await.transpose()
    }

    /// The whole body in memory, refused past `limit` bytes.
    ///
    /// # Errors
    /// As [`chunk`](Self::chunk), or [`BodyError::TooLarge`] past `limit`.
    pub async fn to_vec(mut self, limit: u64) -> Result<Vec<u8>, BodyError> {
        let mut all = Vec::new();
        while let Some(piece) = self.chunk().await? {
            if (all.len() + piece.len()) as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            all.extend_from_slice(&piece);
        }
        Ok(all)
    }

    /// Writes the body to a new file at `path` (through the shard's ring),
    /// piece by piece, and returns its length. A body that ends early
    /// removes the partial file.
    ///
    /// # Errors
    /// As [`chunk`](Self::chunk), or [`BodyError::Storage`] when the file
    /// cannot be created or written.
    pub async fn to_file(mut self, path: impl AsRef<std::path::Path>) -> Result<u64, BodyError> {
        let path = path.as_ref();
        let storage = |e: glommio::GlommioError<()>| BodyError::Storage(e.to_string());
        let file = glommio::io::BufferedFile::create(path)
            .await
            .map_err(storage)?;
        let mut written = 0u64;
        let outcome = loop {
            match self.chunk().await {
                Ok(Some(piece)) => {
                    let len = piece.len() as u64;
                    if let Err(error) = file.write_at(piece.into(), written).await {
                        break Err(storage(error));
                    }
                    written += len;
                }
                Ok(None) => break Ok(written),
                Err(error) => break Err(error),
            }
        };
        let closed = file.close().await.map_err(storage);
        match (outcome, closed) {
            (Ok(written), Ok(())) => Ok(written),
            (Err(error), _) | (Ok(_), Err(error)) => {
                let _ = std::fs::remove_file(path);
                Err(error)
            }
        }
    }
}

impl Body {
    /// The body of `request`, and whether it had all arrived with the head.
    pub(crate) fn of_request(request: &mut Request<'_>) -> (Self, bool) {
        if let Some(feed) = request.take_feed() {
            return (
                Body {
                    source: Source::Feed(feed),
                },
                false,
            );
        }
        let body = request.body();
        let whole = (!body.is_empty()).then(|| Bytes::copy_from_slice(body));
        (
            Body {
                source: Source::Whole(whole),
            },
            true,
        )
    }

    /// A body that had all arrived: its bytes.
    pub(crate) fn whole(self) -> Option<Bytes> {
        match self.source {
            Source::Whole(whole) => whole,
            Source::Feed(_) => None,
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.source {
            Source::Feed(feed) => Pin::new(feed).poll_next(cx),
            Source::Whole(whole) => Poll::Ready(whole.take().map(Ok)),
        }
    }
}

impl<S> FromRequest<S> for Body {
    type Rejection = Infallible;
    const STREAMS_BODY: bool = true;

    fn describe(operation: &mut crate::http::describe::Operation) {
        operation.body("application/octet-stream", serde_json::json!({}), false);
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, Infallible> {
        Ok(Body::of_request(request).0)
    }
}

/// Limits on a `multipart/form-data` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultipartLimits {
    /// Largest part (field or file), bytes.
    pub per_part: u64,
    /// Most parts.
    pub parts: usize,
}

impl Default for MultipartLimits {
    fn default() -> Self {
        Self {
            per_part: u64::MAX,
            parts: 1000,
        }
    }
}

/// A `multipart/form-data` body (HTML file uploads), read part by part
/// while it arrives, on the `multer` parser. The whole body is held to the
/// route's limit; [`Multipart::with_limits`] adds a per-part limit.
///
/// ```no_run
/// use percore::{App, Multipart, MultipartError, Scope};
///
/// let app = App::new().nest("/upload", Scope::new().post("", async |mut form: Multipart| {
///     let mut names = Vec::new();
///     while let Some(mut part) = form.next_part().await? {
///         let name = part.name().unwrap_or("").to_owned();
///         let mut size = 0;
///         while let Some(piece) = part.chunk().await? {
///             size += piece.len();
///         }
///         names.push(format!("{name}={size}"));
///     }
///     Ok::<_, MultipartError>(names.join(","))
/// }).max_body_bytes(1 << 30));
/// ```
pub struct Multipart {
    inner: multer::Multipart<'static>,
    limits: MultipartLimits,
    parts: usize,
}

impl std::fmt::Debug for Multipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multipart")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

/// One part of a [`Multipart`] body: a form field or a file.
pub type Part = multer::Field<'static>;

/// Why a multipart body could not be read: `413` for a limit, `400` for
/// broken syntax, `415` for a body that is not multipart, or the body's
/// own error.
#[derive(Debug)]
pub enum MultipartError {
    /// The parser's verdict.
    Parse(multer::Error),
    /// More parts than [`MultipartLimits::parts`].
    TooManyParts(usize),
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipartError::Parse(error) => error.fmt(f),
            MultipartError::TooManyParts(limit) => write!(f, "more than {limit} parts"),
        }
    }
}

impl std::error::Error for MultipartError {}

impl From<multer::Error> for MultipartError {
    fn from(error: multer::Error) -> Self {
        MultipartError::Parse(error)
    }
}

impl IntoResponse for MultipartError {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        use multer::Error as E;
        let body_error = |error: &(dyn std::error::Error + Send + Sync + 'static)| {
            error.downcast_ref::<BodyError>().cloned()
        };
        let error = match self {
            MultipartError::TooManyParts(_) => {
                return writer.send_error(Status::PAYLOAD_TOO_LARGE, &self.to_string());
            }
            MultipartError::Parse(error) => error,
        };
        let status = match &error {
            E::FieldSizeExceeded { .. } | E::StreamSizeExceeded { .. } => Status::PAYLOAD_TOO_LARGE,
            E::StreamReadFailed(error) => {
                if let Some(error) = body_error(error.as_ref()) {
                    return error.write_response(writer);
                }
                Status::BAD_REQUEST
            }
            E::NoBoundary | E::NoMultipart => Status::UNSUPPORTED_MEDIA_TYPE,
            _ => Status::BAD_REQUEST,
        };
        writer.send_error(status, &format!("invalid multipart body: {error}"));
    }
}

impl Multipart {
    /// Reads `body` (whose `Content-Type` is `content_type`) under `limits`.
    ///
    /// # Errors
    /// `415` when the type is not `multipart/form-data` with a boundary.
    pub fn with_limits(
        body: Body,
        content_type: &str,
        limits: MultipartLimits,
    ) -> Result<Self, MultipartError> {
        let boundary = multer::parse_boundary(content_type)?;
        let constraints = multer::Constraints::new()
            .size_limit(multer::SizeLimit::new().per_field(limits.per_part));
        Ok(Self {
            inner: multer::Multipart::with_constraints(body, boundary, constraints),
            limits,
            parts: 0,
        })
    }

    /// The next part, `None` after the last.
    ///
    /// # Errors
    /// Broken syntax, a limit exceeded, or the body ending early.
    pub async fn next_part(&mut self) -> Result<Option<Part>, MultipartError> {
        let part = self.inner.next_field().await?;
        if part.is_some() {
            self.parts += 1;
            if self.parts > self.limits.parts {
                return Err(MultipartError::TooManyParts(self.limits.parts));
            }
        }
        Ok(part)
    }
}

impl<S> FromRequest<S> for Multipart {
    type Rejection = MultipartError;
    const STREAMS_BODY: bool = true;

    fn describe(operation: &mut crate::http::describe::Operation) {
        operation.body(
            "multipart/form-data",
            serde_json::json!({"type": "object"}),
            true,
        );
    }

    async fn from_request(request: &mut Request<'_>, state: &S) -> Result<Self, MultipartError> {
        let content_type = request.header_str("content-type").unwrap_or("").to_owned();
        let Ok(body) = Body::from_request(request, state).await;
        Multipart::with_limits(body, &content_type, MultipartLimits::default())
    }
}
