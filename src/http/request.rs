//! The request a handler sees: a borrowed view of one decoded message.
//!
//! Nothing is copied out of the read buffer: the method, target, header
//! fields and path parameters are slices of it, and the body is the decoded
//! bytes in place (mutable, so JSON can be parsed where it lies).

use std::net::SocketAddr;

use super::parse::{Head, HeaderSpan, Method, Version};

/// One request, borrowed from the connection's read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    head_bytes: &'a [u8],
    body: &'a mut [u8],
    head: Head,
    headers: &'a [HeaderSpan],
    params: &'a [(&'a str, &'a str)],
    peer: Option<SocketAddr>,
    shard: usize,
    /// Empty when request IDs are off.
    id: &'a str,
    /// Signs and seals cookies, when `cookies.key` is set.
    cookie_key: Option<&'a cookie::Key>,
    /// The body while it arrives, for a route that streams it.
    feed: Option<super::incoming::Feed>,
    /// The app's `[app]` settings in force.
    app_settings: Option<&'a std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    /// What proxied routes read of the configuration in force.
    proxy: Option<&'a std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    /// It came over TLS.
    https: bool,
}

impl<'a> Request<'a> {
    /// A view over a decoded message: `head_bytes` is the head, `body` the
    /// decoded body, `headers` the decoder's header spans.
    #[must_use]
    pub fn new(
        head_bytes: &'a [u8],
        body: &'a mut [u8],
        head: Head,
        headers: &'a [HeaderSpan],
    ) -> Self {
        Self {
            head_bytes,
            body,
            head,
            headers,
            params: &[],
            peer: None,
            shard: 0,
            id: "",
            cookie_key: None,
            feed: None,
            app_settings: None,
            proxy: None,
            https: false,
        }
    }

    /// Sets what proxied routes read of the configuration, and whether the
    /// request came over TLS.
    #[must_use]
    pub(crate) fn with_proxy(
        mut self,
        proxy: Option<&'a std::sync::Arc<dyn std::any::Any + Send + Sync>>,
        https: bool,
    ) -> Self {
        self.proxy = proxy;
        self.https = https;
        self
    }

    /// What proxied routes read of the configuration in force.
    pub(crate) fn proxy_table(&self) -> Option<&'a (dyn std::any::Any + Send + Sync)> {
        self.proxy.map(|p| &**p)
    }

    /// Whether the request came over TLS.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Sets the app's settings in force.
    #[must_use]
    pub(crate) fn with_app_settings(
        mut self,
        settings: Option<&'a std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    ) -> Self {
        self.app_settings = settings;
        self
    }

    /// The app's settings in force, if it reads any.
    pub(crate) fn app_settings(
        &self,
    ) -> Option<&'a std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        self.app_settings
    }

    /// Streams the body through `feed` (it had not arrived with the head).
    #[must_use]
    pub(crate) fn with_feed(mut self, feed: Option<super::incoming::Feed>) -> Self {
        self.feed = feed;
        self
    }

    /// The body's stream, once.
    pub(crate) fn take_feed(&mut self) -> Option<super::incoming::Feed> {
        self.feed.take()
    }

    /// Sets the key of signed and private cookies (`cookies.key`).
    #[must_use]
    pub(crate) fn with_cookie_key(mut self, key: Option<&'a cookie::Key>) -> Self {
        self.cookie_key = key;
        self
    }

    /// The key of signed and private cookies, when configured.
    pub(crate) fn cookie_key(&self) -> Option<&'a cookie::Key> {
        self.cookie_key
    }

    /// Sets the request's ID (`log.request_id`).
    #[must_use]
    pub fn with_request_id(mut self, id: &'a str) -> Self {
        self.id = id;
        self
    }

    /// The request's ID: the client's `X-Request-ID` or a generated one,
    /// echoed in the response; `None` unless `log.request_id` (or the
    /// access log) is on.
    #[must_use]
    pub fn request_id(&self) -> Option<&'a str> {
        (!self.id.is_empty()).then_some(self.id)
    }

    /// Sets the path parameters the router matched.
    #[must_use]
    pub fn with_params(mut self, params: &'a [(&'a str, &'a str)]) -> Self {
        self.params = params;
        self
    }

    /// Sets the connection's peer address and the shard serving it.
    #[must_use]
    pub fn with_origin(mut self, peer: Option<SocketAddr>, shard: usize) -> Self {
        self.peer = peer;
        self.shard = shard;
        self
    }

    /// The method.
    #[must_use]
    pub fn method(&self) -> Method {
        self.head.method
    }

    /// The method token as sent (useful for extension methods).
    #[must_use]
    pub fn method_str(&self) -> &'a str {
        std::str::from_utf8(self.head.method_token.get(self.head_bytes)).unwrap_or_default()
    }

    /// The protocol version.
    #[must_use]
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The request target as sent: origin-form (`/a?b`), absolute-form or `*`.
    #[must_use]
    pub fn target(&self) -> &'a str {
        target_str(self.head_bytes, &self.head)
    }

    /// The path of the target, without the query.
    #[must_use]
    pub fn path(&self) -> &'a str {
        split_target(self.target()).0
    }

    /// The query string after `?`, if any.
    #[must_use]
    pub fn query(&self) -> Option<&'a str> {
        split_target(self.target()).1
    }

    /// The value of the first header field named `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of the first header field named `name`, if it is UTF-8.
    #[must_use]
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header field in order: name and value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone + 'a {
        let bytes = self.head_bytes;
        self.headers.iter().map(move |h| {
            let name = std::str::from_utf8(h.name.get(bytes)).unwrap_or_default();
            (name, h.value.get(bytes))
        })
    }

    /// The decoded body.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        self.body
    }

    /// The decoded body, mutable (in-place parsers rewrite it).
    pub fn body_mut(&mut self) -> &mut [u8] {
        self.body
    }

    /// The path parameter called `name`, as it appears in the path.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Every path parameter in pattern order: name and raw value.
    #[must_use]
    pub fn params(&self) -> &'a [(&'a str, &'a str)] {
        self.params
    }

    /// Whether the connection stays open after this request.
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.head.keep_alive
    }

    /// The client's address, when served from a socket.
    #[must_use]
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The index of the shard serving this request.
    #[must_use]
    pub fn shard(&self) -> usize {
        self.shard
    }
}

/// The target of `head` as text; targets are ASCII by the request-line
/// grammar, anything else reads as empty and matches no route.
pub(crate) fn target_str<'a>(head_bytes: &'a [u8], head: &Head) -> &'a str {
    std::str::from_utf8(head.target.get(head_bytes)).unwrap_or_default()
}

/// Splits a target into path and query. An absolute-form target
/// (`http://host/p?q`) yields its path; `*` yields `*`.
pub(crate) fn split_target(target: &str) -> (&str, Option<&str>) {
    // Origin form (`/path`) first: no search for a scheme on every request.
    let scheme_end = if target.starts_with('/') {
        None
    } else {
        target.find("://")
    };
    let origin = match scheme_end {
        Some(scheme_end) => {
            let after = &target[scheme_end + 3..];
            after.find(['/', '?']).map_or("/", |i| &after[i..])
        }
        _ => target,
    };
    match origin.split_once('?') {
        Some((path, query)) => (if path.is_empty() { "/" } else { path }, Some(query)),
        None => (origin, None),
    }
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn target_forms() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b", Some("x=1")));
        assert_eq!(split_target("/a"), ("/a", None));
        assert_eq!(split_target("http://h:80/p?q"), ("/p", Some("q")));
        assert_eq!(split_target("http://h"), ("/", None));
        assert_eq!(split_target("http://h?q"), ("/", Some("q")));
        assert_eq!(split_target("*"), ("*", None));
    }
}
