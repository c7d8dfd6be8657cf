//! What can go wrong calling another service, said so a handler can choose
//! a status and an operator can act on the log line.

/// Which step of a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL is not one the client can call (scheme, host, syntax).
    Url,
    /// The host name did not resolve.
    Dns,
    /// No connection could be made (refused, unreachable).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// A step took longer than its timeout (connect, read, write, or the
    /// whole call).
    Timeout,
    /// The connection broke while the request was sent or the response
    /// read (reset, closed early).
    Io,
    /// The peer's response is not valid HTTP/1.1 (or exceeds a limit).
    Protocol,
    /// Every connection to the origin was busy for longer than the pool's
    /// wait.
    PoolTimeout,
    /// The origin's circuit breaker is open: recent calls failed, so this
    /// one was not sent.
    CircuitOpen,
    /// The response body is larger than the limit given.
    TooLarge,
    /// The response has an error status (from `error_for_status`).
    Status,
    /// A request or response body is not the JSON expected.
    Json,
    /// The client's own configuration is unusable (a CA or certificate
    /// file).
    Config,
}

/// An outbound call's failure: its kind, the origin called and what
/// happened.
#[derive(Clone, Debug)]
pub struct ClientError {
    kind: ErrorKind,
    origin: String,
    detail: String,
    status: Option<u16>,
}

impl ClientError {
    pub(crate) fn new(kind: ErrorKind, origin: &str, detail: impl std::fmt::Display) -> Self {
        Self {
            kind,
            origin: origin.to_owned(),
            detail: detail.to_string(),
            status: None,
        }
    }

    pub(crate) fn status(origin: &str, status: u16) -> Self {
        Self {
            kind: ErrorKind::Status,
            origin: origin.to_owned(),
            detail: format!("answered {status}"),
            status: Some(status),
        }
    }

    /// The error for an I/O failure at `step`: timeouts apart.
    pub(crate) fn io(origin: &str, step: &str, error: &std::io::Error) -> Self {
        let kind = if error.kind() == std::io::ErrorKind::TimedOut {
            ErrorKind::Timeout
        } else {
            ErrorKind::Io
        };
        Self::new(kind, origin, format_args!("{step}: {error}"))
    }

    /// Which step failed.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether a timeout ended the call.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// Whether no connection could be made (DNS, connect, TLS, breaker,
    /// pool): the request never reached the service.
    #[must_use]
    pub fn is_connect(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Dns
                | ErrorKind::Connect
                | ErrorKind::Tls
                | ErrorKind::CircuitOpen
                | ErrorKind::PoolTimeout
        )
    }

    /// The status, for an error made by `error_for_status`.
    #[must_use]
    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// The origin called (`https://api.example:443`, `unix:/run/app.sock`).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            ErrorKind::Url => "bad URL",
            ErrorKind::Dns => "name did not resolve",
            ErrorKind::Connect => "could not connect",
            ErrorKind::Tls => "TLS failed",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Io => "connection broke",
            ErrorKind::Protocol => "invalid response",
            ErrorKind::PoolTimeout => "no free connection in time",
            ErrorKind::CircuitOpen => "circuit open after repeated failures",
            ErrorKind::TooLarge => "response body too large",
            ErrorKind::Status => "error status",
            ErrorKind::Json => "JSON",
            ErrorKind::Config => "client configuration",
        };
        write!(f, "{} ({what}): {}", self.origin, self.detail)
    }
}

impl std::error::Error for ClientError {}

impl crate::IntoResponse for ClientError {
    /// A failed call answered to the handler's own client: 504 when it
    /// timed out, 503 when the circuit is open or no connection was free,
    /// else 502; the body names the origin and the step, never the
    /// request's content.
    fn write_response(self, writer: &mut crate::ResponseWriter<'_>) {
        use crate::Status;
        let status = match self.kind {
            ErrorKind::Timeout => Status::GATEWAY_TIMEOUT,
            ErrorKind::CircuitOpen | ErrorKind::PoolTimeout => Status::SERVICE_UNAVAILABLE,
            _ => Status::BAD_GATEWAY,
        };
        crate::HttpError::new(status, self.to_string()).write_response(writer);
    }
}
