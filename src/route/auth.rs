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

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        const REALM: &str = r#"Basic realm="percore", charset="UTF-8""#;
        let encoded = credentials(request, "Basic").ok_or_else(|| {
            challenge(
                REALM,
                "a user and password are required (Authorization: Basic ...)",
            )
        })?;
        let decoded = decode_base64(encoded)
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

/// Standard base64 with padding (RFC 4648 §4); `None` when malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - padding] {
            n = (n << 6) | value(c)?;
        }
        for _ in 0..padding {
            n <<= 6;
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding_and_refuses_junk() {
        assert_eq!(
            decode_base64("QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(),
            b"Aladdin:open sesame"
        );
        assert_eq!(decode_base64("YTpi").unwrap(), b"a:b");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("").unwrap(), b"");
        for junk in ["YQ=", "Y===", "YQ==YQ==", "Y!Q=", "YQ"] {
            assert_eq!(decode_base64(junk), None, "{junk}");
        }
    }
}
