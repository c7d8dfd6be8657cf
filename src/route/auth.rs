//! Credentials from the `Authorization` header: [`Bearer`] tokens and
//! [`Basic`] user and password. A request without them is refused with
//! 401 and the `WWW-Authenticate` challenge that tells the client how to
//! authenticate (RFC 9110 §11.6.1); checking the credentials is the
//! handler's (or a layer's) job.

use super::extract::FromRequest;
use crate::http::request::Request;
use crate::http::response::HttpError;
use crate::http::status::Status;

/// A bearer token (`Authorization: Bearer TOKEN`, RFC 6750).
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(pub String);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.write_str("Bearer(..)")
    }
}

/// A user and password (`Authorization: Basic base64(user:password)`,
/// RFC 7617).
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    /// The user id.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The credentials of `scheme` in the request's `Authorization` header.
fn credentials<'a>(request: &Request<'a>, scheme: &str) -> Option<&'a str> {
    let value = request.header_str("authorization")?.trim();
    let (given, rest) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|rest| !rest.is_empty())
}

/// 401 with the challenge for `scheme`.
fn challenge(scheme: &'static str, detail: &'static str) -> HttpError {
    HttpError::new(Status::UNAUTHORIZED, detail).with_header("WWW-Authenticate", scheme)
}

impl<S> FromRequest<S> for Bearer {
    type Rejection = HttpError;

    fn describe(operation: &mut crate::http::describe::Operation) {
        operation.security("bearer");
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        let token = credentials(request, "Bearer").ok_or_else(|| {
            challenge(
                "Bearer",
                "a bearer token is required (Authorization: Bearer ...)",
            )
        })?;
        let b68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
        if !token.bytes().all(b68) {
            return Err(
                HttpError::new(Status::UNAUTHORIZED, "the bearer token is malformed")
                    .with_header("WWW-Authenticate", r#"Bearer error="invalid_request""#),
            );
        }
        Ok(Bearer(token.to_owned()))
    }
}

impl<S> FromRequest<S> for Basic {
    type Rejection = HttpError;

    fn describe(operation: &mut crate::http::describe::Operation) {
        operation.security("basic");
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        const REALM: &str = r#"Basic realm="percore", charset="UTF-8""#;
        let encoded = credentials(request, "Basic").ok_or_else(|| {
            challenge(
                REALM,
                "a user and password are required (Authorization: Basic ...)",
            )
        })?;
        let decoded = crate::http::base64::decode(encoded)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                challenge(
                    REALM,
                    "the Basic credentials are not base64 of UTF-8 user:password",
                )
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            challenge(
                REALM,
                "the Basic credentials have no ':' between user and password",
            )
        })?;
        Ok(Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }
}
