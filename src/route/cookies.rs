//! Cookies: the request's, and the ones a response sets, with signed
//! (tamper-evident) and private (encrypted and authenticated) cookies from
//! the configured key (`cookies.key`), on the `cookie` crate.

use std::convert::Infallible;

use cookie::{Cookie, CookieJar, Key};

use super::extract::FromRequest;
use crate::http::request::Request;
use crate::http::response::{HttpError, IntoResponse};
use crate::http::status::Status;
use crate::http::write::ResponseWriter;

/// The request's cookies, and the changes a handler makes to them.
/// Return it with the response, `(cookies, body)`, to send a `Set-Cookie`
/// field for each cookie added or removed:
///
/// ```
/// use percore::{App, Cookies, cookie::Cookie};
///
/// let app = App::new().get("/visit", async |mut cookies: Cookies| {
///     let visits: u32 = cookies.get("visits").and_then(|c| c.value().parse().ok()).unwrap_or(0);
///     cookies.add(Cookie::build(("visits", (visits + 1).to_string())).path("/").http_only(true));
///     (cookies, format!("visit {}", visits + 1))
/// });
/// ```
///
/// Signed and private cookies need `cookies.key` (base64 of at least 32
/// random bytes); without it they read as absent and adding one is a 500
/// naming the key.
#[derive(Clone)]
pub struct Cookies {
    jar: CookieJar,
    key: Option<Key>,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key; cookie values may be secrets too.
        f.debug_struct("Cookies")
            .field(
                "names",
                &self.jar.iter().map(Cookie::name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Cookies {
    /// The cookie `name` as the client sent it (or as added since).
    pub fn get(&self, name: &str) -> Option<&Cookie<'static>> {
        self.jar.get(name)
    }

    /// Sets `cookie` in the response.
    pub fn add(&mut self, cookie: impl Into<Cookie<'static>>) {
        self.jar.add(cookie);
    }

    /// Tells the client to drop `cookie` (give the path and domain it was
    /// set with).
    pub fn remove(&mut self, cookie: impl Into<Cookie<'static>>) {
        self.jar.remove(cookie);
    }

    /// The cookie `name` if its signature verifies (the value without the
    /// signature); `None` when it is absent, tampered with, or no key is
    /// configured.
    pub fn get_signed(&self, name: &str) -> Option<Cookie<'static>> {
        self.jar.signed(self.key.as_ref()?).get(name)
    }

    /// Sets `cookie` signed: the client can read it but not change it.
    ///
    /// # Errors
    /// A 500 naming `cookies.key` when no key is configured.
    pub fn add_signed(&mut self, cookie: impl Into<Cookie<'static>>) -> Result<(), HttpError> {
        let key = self.key.as_ref().ok_or_else(no_key)?;
        self.jar.signed_mut(key).add(cookie);
        Ok(())
    }

    /// The cookie `name` decrypted, if it was sealed with this key; `None`
    /// when it is absent, tampered with, or no key is configured.
    pub fn get_private(&self, name: &str) -> Option<Cookie<'static>> {
        self.jar.private(self.key.as_ref()?).get(name)
    }

    /// Sets `cookie` encrypted and authenticated: the client can neither
    /// read nor change it.
    ///
    /// # Errors
    /// A 500 naming `cookies.key` when no key is configured.
    pub fn add_private(&mut self, cookie: impl Into<Cookie<'static>>) -> Result<(), HttpError> {
        let key = self.key.as_ref().ok_or_else(no_key)?;
        self.jar.private_mut(key).add(cookie);
        Ok(())
    }

    /// The jar, for what the methods above do not cover.
    pub fn jar(&self) -> &CookieJar {
        &self.jar
    }
}

fn no_key() -> HttpError {
    HttpError::new(
        Status::INTERNAL_SERVER_ERROR,
        "this handler sets a signed or private cookie, but no key is configured (set cookies.key)",
    )
}

impl<S> FromRequest<S> for Cookies {
    type Rejection = Infallible;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, Infallible> {
        let mut jar = CookieJar::new();
        // HTTP/1.1 sends one `Cookie` field; HTTP/2 may split it.
        for (name, value) in request.headers() {
            if !name.eq_ignore_ascii_case("cookie") {
                continue;
            }
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            for pair in value.split(';') {
                // A malformed pair is skipped; the others still count.
                if let Ok(cookie) = Cookie::parse_encoded(pair.trim().to_owned()) {
                    jar.add_original(cookie);
                }
            }
        }
        Ok(Cookies {
            jar,
            key: request.cookie_key().cloned(),
        })
    }
}

/// The response `T` with a `Set-Cookie` field for each cookie added or
/// removed.
impl<T: IntoResponse> IntoResponse for (Cookies, T) {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        for cookie in self.0.jar.delta() {
            writer.insert_header("Set-Cookie", cookie.encoded().to_string().as_bytes());
        }
        self.1.write_response(writer);
    }

    fn describe(operation: &mut crate::http::describe::Operation) {
        T::describe(operation);
    }
}
