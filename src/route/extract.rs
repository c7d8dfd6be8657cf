//! Extractors: typed arguments a handler takes from the request.
//!
//! Each implements [`FromRequest`], which may await (look a token up,
//! read a cookie's session from a store); its rejection is any
//! [`IntoResponse`], so it can carry a status, headers and a body. The
//! built-in ones reject with an [`HttpError`] (`{"detail": "..."}`) or, for
//! a value that does not fit its type, a [`ValidationError`] listing every
//! failing field (`422`). Extractors produce owned values, so handler
//! futures never borrow the connection's buffer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;

use super::path;
use super::validate::{Loc, Tracked, ValidationError, every_error};
use crate::http::describe::Operation;
use crate::http::parse::Method;
use crate::http::request::Request;
use crate::http::response::{HttpError, IntoResponse};
use crate::http::status::Status;
use crate::http::write::ResponseWriter;

/// A value built from a request (and the shard's state) before the handler
/// runs. Implement it with an `async fn`:
///
/// ```
/// use percore::{FromRequest, HttpError, Request, Status};
///
/// struct User(String);
///
/// impl<S> FromRequest<S> for User {
///     type Rejection = HttpError;
///
///     async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
///         // A real extractor might await a session store here.
///         match request.header_str("x-user") {
///             Some(name) => Ok(User(name.to_owned())),
///             None => Err(HttpError::new(Status::UNAUTHORIZED, "who are you?")),
///         }
///     }
/// }
/// ```
pub trait FromRequest<S>: Sized {
    /// What the client receives instead of the handler's response when the
    /// value cannot be built.
    type Rejection: IntoResponse;

    /// Whether the extractor reads the body while it arrives
    /// ([`Body`](crate::Body), [`Multipart`](crate::Multipart)): a route
    /// whose handler takes one is called as soon as the head is complete.
    const STREAMS_BODY: bool = false;

    /// Adds what the extractor reads (a parameter, the body, credentials)
    /// to its route's OpenAPI operation, once, when the app is frozen.
    /// Nothing by default.
    fn describe(operation: &mut Operation) {
        let _ = operation;
    }

    /// Builds the value, or rejects the request.
    fn from_request(
        request: &mut Request<'_>,
        state: &S,
    ) -> impl Future<Output = Result<Self, Self::Rejection>>;
}

/// An optional extractor: `None` where `T` would reject the request.
impl<S, T: FromRequest<S>> FromRequest<S> for Option<T> {
    type Rejection = Infallible;
    const STREAMS_BODY: bool = T::STREAMS_BODY;

    fn describe(operation: &mut Operation) {
        operation.optional(T::describe);
    }

    async fn from_request(request: &mut Request<'_>, state: &S) -> Result<Self, Infallible> {
        Ok(T::from_request(request, state).await.ok())
    }
}

/// `T` or its rejection, for a handler that answers the rejection itself.
impl<S, T: FromRequest<S>> FromRequest<S> for Result<T, T::Rejection> {
    type Rejection = Infallible;
    const STREAMS_BODY: bool = T::STREAMS_BODY;

    fn describe(operation: &mut Operation) {
        T::describe(operation);
    }

    async fn from_request(request: &mut Request<'_>, state: &S) -> Result<Self, Infallible> {
        Ok(T::from_request(request, state).await)
    }
}

/// The rejection of the extractors that parse input ([`Json`](crate::Json),
/// [`Query`], [`Form`], [`Path`]): an [`HttpError`] for a request they
/// cannot read at all (`415` for the wrong `Content-Type`, `400` for
/// malformed syntax), a [`ValidationError`] for values that do not fit.
#[derive(Debug)]
pub enum InputError {
    /// The input cannot be read.
    Http(HttpError),
    /// The input was read; these fields do not fit their types.
    Invalid(ValidationError),
}

impl From<HttpError> for InputError {
    fn from(error: HttpError) -> Self {
        InputError::Http(error)
    }
}

impl From<ValidationError> for InputError {
    fn from(error: ValidationError) -> Self {
        InputError::Invalid(error)
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Http(error) => error.fmt(f),
            InputError::Invalid(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for InputError {}

impl IntoResponse for InputError {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        match self {
            InputError::Http(error) => error.write_response(writer),
            InputError::Invalid(error) => error.write_response(writer),
        }
    }
}

/// Deserializes urlencoded `input` into `T`, or lists every field of it
/// that does not fit, under `source`.
fn urlencoded<T: DeserializeOwned>(input: &[u8], source: &str) -> Result<T, ValidationError> {
    serde_urlencoded::from_bytes(input).map_err(|_| {
        every_error(source, |tracker| {
            let inner = serde_urlencoded::Deserializer::new(form_urlencoded::parse(input));
            T::deserialize(Tracked::new(inner, tracker)).map(drop)
        })
    })
}

/// Path parameters, deserialized: `Path<u64>` for one, a tuple for several in
/// order, or a struct by name. Values are percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Path<T> {
    type Rejection = ValidationError;

    fn describe(operation: &mut Operation) {
        operation.path_params(super::schema::of::<T>());
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, ValidationError> {
        let params = request.params();
        path::deserialize(params).map(Path).map_err(|_| {
            let mut invalid = every_error("path", |tracker| {
                path::deserialize_tracked::<T>(params, tracker)
            });
            // Name the parameter: a tuple's position, or the only one.
            for error in &mut invalid.errors {
                match error.loc.get(1) {
                    Some(Loc::Index(i)) => {
                        if let Some((name, _)) = params.get(*i) {
                            error.loc[1] = Loc::Key((*name).to_owned());
                        }
                    }
                    None if params.len() == 1 => error.loc.push(Loc::Key(params[0].0.to_owned())),
                    _ => {}
                }
            }
            invalid
        })
    }
}

/// The query string, deserialized (`application/x-www-form-urlencoded`).
/// A missing query is the empty query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Query<T> {
    type Rejection = ValidationError;

    fn describe(operation: &mut Operation) {
        operation.query_object(&super::schema::of::<T>());
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, ValidationError> {
        urlencoded(request.query().unwrap_or("").as_bytes(), "query").map(Query)
    }
}

/// A form body (`application/x-www-form-urlencoded`), deserialized: what
/// an HTML `<form method="post">` sends. `415` without that
/// `Content-Type`, `422` naming every field that does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = InputError;

    fn describe(operation: &mut Operation) {
        operation.body(
            "application/x-www-form-urlencoded",
            super::schema::of::<T>(),
            true,
        );
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, InputError> {
        let is_form = request.header("content-type").is_some_and(|value| {
            value.split(|&b| b == b';').next().is_some_and(|mime| {
                mime.trim_ascii()
                    .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
            })
        });
        if !is_form {
            return Err(HttpError::new(
                Status::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/x-www-form-urlencoded",
            )
            .into());
        }
        Ok(Form(urlencoded(request.body(), "body")?))
    }
}

/// The request's ID: the client's `X-Request-ID` (short visible ASCII) or
/// a generated one, the same the response echoes, the access log records
/// and the request's tracing span carries. Needs `log.request_id = true`
/// (or the access log on); without it the request is answered 500 naming
/// the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S> FromRequest<S> for RequestId {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        request.request_id().map(|id| RequestId(id.to_owned())).ok_or_else(|| {
            HttpError::new(
                Status::INTERNAL_SERVER_ERROR,
                "this handler reads the request ID, but request IDs are off (set log.request_id = true)",
            )
        })
    }
}

/// A copy of the request's header fields, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name` (case-insensitive), if it is UTF-8.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

impl<S> FromRequest<S> for Headers {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(Headers(
            request
                .headers()
                .map(|(n, v)| (n.to_owned(), v.to_vec()))
                .collect(),
        ))
    }
}

/// The raw request body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl<S> FromRequest<S> for Bytes {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(Bytes(request.body().to_vec()))
    }
}

/// The request body as UTF-8 text.
impl<S> FromRequest<S> for String {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        String::from_utf8(request.body().to_vec())
            .map_err(|e| HttpError::bad_request(format!("body is not UTF-8: {e}")))
    }
}

/// The shard's state (cloned: make it an `Rc` when it is large).
#[derive(Clone, Debug)]
pub struct State<S>(pub S);

impl<S: Clone> FromRequest<S> for State<S> {
    type Rejection = Infallible;

    async fn from_request(_: &mut Request<'_>, state: &S) -> Result<Self, Infallible> {
        Ok(State(state.clone()))
    }
}

impl<S> FromRequest<S> for Method {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(request.method())
    }
}

/// The client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl<S> FromRequest<S> for Peer {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        request
            .peer_addr()
            .map(Peer)
            .ok_or_else(|| HttpError::new(Status::INTERNAL_SERVER_ERROR, "no peer address"))
    }
}

/// The index of the shard serving the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardId(pub usize);

impl<S> FromRequest<S> for ShardId {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(ShardId(request.shard()))
    }
}

/// The app's own settings in force (see [`App::settings`](crate::App::settings)),
/// reloaded with the configuration. Without `App::settings::<T>` the
/// request is answered 500 naming the call.
#[derive(Debug)]
pub struct Settings<T>(pub std::sync::Arc<T>);

impl<T> Clone for Settings<T> {
    fn clone(&self) -> Self {
        Settings(std::sync::Arc::clone(&self.0))
    }
}

impl<S, T: Send + Sync + 'static> FromRequest<S> for Settings<T> {
    type Rejection = HttpError;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        request
            .app_settings()
            .and_then(|parsed| std::sync::Arc::clone(parsed).downcast::<T>().ok())
            .map(Settings)
            .ok_or_else(|| {
                HttpError::new(
                    Status::INTERNAL_SERVER_ERROR,
                    format!(
                        "this handler reads Settings<{}>, but the app reads no settings of that type (App::settings)",
                        std::any::type_name::<T>()
                    ),
                )
            })
    }
}
