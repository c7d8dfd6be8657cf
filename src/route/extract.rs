//! Extractors: typed arguments a handler takes from the request.
//!
//! Each implements [`FromRequest`]; a rejection is an [`HttpError`] the
//! client receives as `{"detail": ...}`. Extractors produce owned values, so
//! handler futures never borrow the connection's buffer.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;

use super::path;
use crate::http::parse::Method;
use crate::http::request::Request;
use crate::http::response::HttpError;
use crate::http::status::Status;

/// A value built from a request (and the shard's state) before the handler
/// runs.
pub trait FromRequest<S>: Sized {
    /// Builds the value, or rejects the request.
    ///
    /// # Errors
    /// The [`HttpError`] sent to the client instead of calling the handler.
    fn from_request(request: &mut Request<'_>, state: &S) -> Result<Self, HttpError>;
}

/// Path parameters, deserialized: `Path<u64>` for one, a tuple for several in
/// order, or a struct by name. Values are percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Path<T> {
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        path::deserialize(request.params())
            .map(Path)
            .map_err(|e| HttpError::bad_request(format!("invalid path parameter: {e}")))
    }
}

/// The query string, deserialized (`application/x-www-form-urlencoded`).
/// A missing query is the empty query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Query<T> {
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        serde_urlencoded::from_str(request.query().unwrap_or(""))
            .map(Query)
            .map_err(|e| HttpError::bad_request(format!("invalid query string: {e}")))
    }
}

/// A form body (`application/x-www-form-urlencoded`), deserialized: what
/// an HTML `<form method="post">` sends. `415` without that
/// `Content-Type`, `400` naming the field when a value does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Form<T> {
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
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
            ));
        }
        serde_urlencoded::from_bytes(request.body())
            .map(Form)
            .map_err(|e| HttpError::bad_request(format!("invalid form: {e}")))
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
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
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
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
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
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(Bytes(request.body().to_vec()))
    }
}

/// The request body as UTF-8 text.
impl<S> FromRequest<S> for String {
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        String::from_utf8(request.body().to_vec())
            .map_err(|e| HttpError::bad_request(format!("body is not UTF-8: {e}")))
    }
}

/// The shard's state (cloned: make it an `Rc` when it is large).
#[derive(Clone, Debug)]
pub struct State<S>(pub S);

impl<S: Clone> FromRequest<S> for State<S> {
    fn from_request(_: &mut Request<'_>, state: &S) -> Result<Self, HttpError> {
        Ok(State(state.clone()))
    }
}

impl<S> FromRequest<S> for Method {
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(request.method())
    }
}

/// The client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl<S> FromRequest<S> for Peer {
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
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
    fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(ShardId(request.shard()))
    }
}
