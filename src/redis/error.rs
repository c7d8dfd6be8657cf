//! What can go wrong talking to Redis.

/// Which step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisErrorKind {
    /// The URL is unusable.
    Config,
    /// No connection could be made.
    Connect,
    /// A reply took longer than the command timeout.
    Timeout,
    /// The connection broke (the server went away mid-command).
    Closed,
    /// The server's reply could not be decoded.
    Protocol,
    /// The server answered with an error (`ERR`, `WRONGTYPE`, `NOSCRIPT`…).
    Server,
    /// The reply is not of the type asked for.
    Type,
}

/// A Redis failure: its kind and what happened.
#[derive(Clone, Debug)]
pub struct RedisError {
    kind: RedisErrorKind,
    detail: String,
}

impl RedisError {
    pub(crate) fn new(kind: RedisErrorKind, detail: impl std::fmt::Display) -> Self {
        Self {
            kind,
            detail: detail.to_string(),
        }
    }

    /// Which step failed.
    #[must_use]
    pub fn kind(&self) -> RedisErrorKind {
        self.kind
    }

    /// The server's error line, for kind `Server` (`WRONGTYPE Operation…`).
    #[must_use]
    pub fn server_message(&self) -> Option<&str> {
        (self.kind == RedisErrorKind::Server).then_some(self.detail.as_str())
    }
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis: {}", self.detail)
    }
}

impl std::error::Error for RedisError {}

impl crate::IntoResponse for RedisError {
    /// 503 when Redis is unreachable, slow or gone; else 500. The detail
    /// is generic (the error is logged).
    fn write_response(self, writer: &mut crate::ResponseWriter<'_>) {
        use crate::Status;
        tracing::error!(error = %self, "redis call failed");
        let (status, detail) = match self.kind {
            RedisErrorKind::Connect | RedisErrorKind::Timeout | RedisErrorKind::Closed => {
                (Status::SERVICE_UNAVAILABLE, "the cache is unavailable")
            }
            _ => (Status::INTERNAL_SERVER_ERROR, "a cache error"),
        };
        crate::HttpError::new(status, detail).write_response(writer);
    }
}
