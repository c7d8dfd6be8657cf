//! What handlers return: anything that implements [`IntoResponse`].
//!
//! Plain values (`&'static str`, `String`, `Vec<u8>`, `()`), a status with a
//! value, [`HttpError`], `Result`s of those, and the [`Response`] builder for
//! full control. Each writes itself straight into the [`ResponseWriter`].

use std::borrow::Cow;

use super::describe::Operation;
use super::status::Status;
use super::write::{BodyStream, ResponseWriter};

/// A value a handler can return.
pub trait IntoResponse {
    /// Writes this value as one response.
    fn write_response(self, writer: &mut ResponseWriter<'_>);

    /// Adds the responses this type gives to a route's OpenAPI operation
    /// (once, when the app is frozen). Nothing by default: the route is
    /// documented as answering some success.
    fn describe(operation: &mut Operation)
    where
        Self: Sized,
    {
        let _ = operation;
    }
}

fn text(operation: &mut Operation) {
    operation.response(
        "200",
        Some("text/plain"),
        serde_json::json!({"type": "string"}),
    );
}

fn octets(operation: &mut Operation) {
    operation.response(
        "200",
        Some("application/octet-stream"),
        serde_json::json!({}),
    );
}

const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";

impl IntoResponse for &'static str {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send(Status::OK, Some(TEXT), [], self.as_bytes());
    }

    fn describe(operation: &mut Operation) {
        text(operation);
    }
}

/// Never built: the rejection of extractors that cannot fail.
impl IntoResponse for std::convert::Infallible {
    fn write_response(self, _: &mut ResponseWriter<'_>) {}
}

impl IntoResponse for String {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send(Status::OK, Some(TEXT), [], self.as_bytes());
    }

    fn describe(operation: &mut Operation) {
        text(operation);
    }
}

impl IntoResponse for Cow<'static, str> {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send(Status::OK, Some(TEXT), [], self.as_bytes());
    }

    fn describe(operation: &mut Operation) {
        text(operation);
    }
}

impl IntoResponse for &'static [u8] {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send(Status::OK, Some(OCTETS), [], self);
    }

    fn describe(operation: &mut Operation) {
        octets(operation);
    }
}

impl IntoResponse for Vec<u8> {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send(Status::OK, Some(OCTETS), [], &self);
    }

    fn describe(operation: &mut Operation) {
        octets(operation);
    }
}

/// `()` is `204 No Content`.
impl IntoResponse for () {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send(Status::NO_CONTENT, None, [], b"");
    }

    fn describe(operation: &mut Operation) {
        operation.response("204", None, serde_json::json!({}));
    }
}

/// A bare status is that status with an empty body.
impl IntoResponse for Status {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send(self, None, [], b"");
    }

    fn describe(operation: &mut Operation) {
        operation.response("2XX", None, serde_json::json!({}));
    }
}

/// `(status, value)`: the value's response with another status.
impl<T: IntoResponse> IntoResponse for (Status, T) {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.set_status(self.0);
        self.1.write_response(writer);
    }

    fn describe(operation: &mut Operation) {
        T::describe(operation);
        operation.any_success_status();
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        match self {
            Ok(value) => value.write_response(writer),
            Err(error) => error.write_response(writer),
        }
    }

    fn describe(operation: &mut Operation) {
        T::describe(operation);
        E::describe(operation);
    }
}

/// An error answered with its status, its header fields, and
/// `{"detail": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// The status.
    pub status: Status,
    /// The sentence for the client.
    pub detail: Cow<'static, str>,
    /// Header fields sent with it (`WWW-Authenticate` on a 401).
    pub headers: Vec<(Cow<'static, str>, Cow<'static, [u8]>)>,
}

impl HttpError {
    /// An error with `status` and `detail`.
    pub fn new(status: Status, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header field to the error's response.
    #[must_use]
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl IntoBytes,
    ) -> Self {
        self.headers.push((name.into(), value.into_bytes()));
        self
    }

    /// `400 Bad Request` with `detail`.
    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Status::BAD_REQUEST, detail)
    }

    /// `404 Not Found`.
    #[must_use]
    pub fn not_found() -> Self {
        Self::new(Status::NOT_FOUND, "Not Found")
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        for (name, value) in &self.headers {
            writer.insert_header(name, value);
        }
        writer.send_error(self.status, &self.detail);
    }
}

/// Bytes for a header value or body: static data is kept without a copy.
pub trait IntoBytes {
    /// The bytes.
    fn into_bytes(self) -> Cow<'static, [u8]>;
}

impl IntoBytes for &'static str {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl IntoBytes for &'static [u8] {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Borrowed(self)
    }
}

impl IntoBytes for String {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Owned(self.into_bytes())
    }
}

impl IntoBytes for Vec<u8> {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        Cow::Owned(self)
    }
}

impl IntoBytes for Cow<'static, [u8]> {
    fn into_bytes(self) -> Cow<'static, [u8]> {
        self
    }
}

/// The body of a [`Response`].
#[derive(Default)]
pub(crate) enum Body {
    /// No body.
    #[default]
    Empty,
    /// Bytes known up front.
    Bytes(Cow<'static, [u8]>),
    /// Bytes produced later, sent with chunked framing.
    Stream(BodyStream),
    /// Bytes produced later, this many (`Content-Length`).
    Sized(u64, BodyStream),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Self::Stream(_) => f.write_str("Stream"),
            Self::Sized(length, _) => write!(f, "Stream({length} bytes)"),
        }
    }
}

/// A response built field by field.
///
/// ```
/// use percore::{Response, Status};
/// let created = Response::new(Status::CREATED)
///     .header("Location", "/users/7")
///     .content_type("application/json")
///     .body(r#"{"id":7}"#);
/// # let _ = created;
/// ```
#[derive(Debug)]
pub struct Response {
    status: Status,
    content_type: Option<Cow<'static, str>>,
    headers: Vec<(Cow<'static, str>, Cow<'static, [u8]>)>,
    body: Body,
}

impl Response {
    /// An empty response with `status`.
    #[must_use]
    pub fn new(status: Status) -> Self {
        Self {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// Sets the `Content-Type`.
    #[must_use]
    pub fn content_type(mut self, value: impl Into<Cow<'static, str>>) -> Self {
        self.content_type = Some(value.into());
        self
    }

    /// Adds a header field. Fields whose name or value could break the
    /// framing (CR, LF, NUL) are dropped when written, with a warning.
    #[must_use]
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl IntoBytes) -> Self {
        self.headers.push((name.into(), value.into_bytes()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl IntoBytes) -> Self {
        self.body = Body::Bytes(body.into_bytes());
        self
    }

    /// Sets a body produced by `stream`, sent with chunked framing.
    #[must_use]
    pub fn stream(mut self, stream: impl futures_lite::Stream<Item = Vec<u8>> + 'static) -> Self {
        self.body = Body::Stream(Box::pin(stream));
        self
    }

    /// Sets a body produced by `stream` that is `length` bytes long, sent
    /// with `Content-Length` (a download whose size is known: a client
    /// shows progress, and the connection stays open after it). A stream
    /// that ends short closes the connection, so the client sees the body
    /// cut off; bytes past `length` are dropped.
    #[must_use]
    pub fn stream_sized(
        mut self,
        length: u64,
        stream: impl futures_lite::Stream<Item = Vec<u8>> + 'static,
    ) -> Self {
        self.body = Body::Sized(length, Box::pin(stream));
        self
    }

    /// The status.
    #[must_use]
    pub fn status(&self) -> Status {
        self.status
    }
}

impl IntoResponse for Response {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        let headers = self.headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref()));
        let content_type = self.content_type.as_deref();
        match self.body {
            Body::Empty => writer.send(self.status, content_type, headers, b""),
            Body::Bytes(bytes) => writer.send(self.status, content_type, headers, &bytes),
            Body::Stream(stream) => writer.send_stream(self.status, content_type, headers, stream),
            Body::Sized(length, stream) => {
                writer.send_stream_sized(self.status, content_type, headers, length, stream);
            }
        }
    }

    fn describe(operation: &mut Operation) {
        // Its status and body are chosen at run time.
        operation.response("2XX", None, serde_json::json!({}));
    }
}
