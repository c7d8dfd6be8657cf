//! What can go wrong talking to PostgreSQL.

/// Which step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgErrorKind {
    /// The URL or settings are unusable.
    Config,
    /// No connection could be made.
    Connect,
    /// The server refused the login (role, password, database).
    Auth,
    /// A connection or query took longer than allowed.
    Timeout,
    /// Every connection stayed busy for the acquire timeout.
    PoolTimeout,
    /// The server answered the query with an error.
    Query,
    /// The query returned no row where one was expected.
    NotFound,
    /// The connection broke, or the pool was closed.
    Closed,
}

/// A PostgreSQL failure: its kind, what happened, and the server's
/// SQLSTATE code when it answered with one.
#[derive(Clone, Debug)]
pub struct PgError {
    kind: PgErrorKind,
    detail: String,
    code: Option<String>,
}

impl PgError {
    pub(crate) fn new(kind: PgErrorKind, detail: impl std::fmt::Display) -> Self {
        Self {
            kind,
            detail: detail.to_string(),
            code: None,
        }
    }

    /// Classifies an error of the protocol driver.
    pub(crate) fn from_driver(error: tokio_postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            let code = db.code().code().to_owned();
            // Class 28: invalid authorization; 3D000: no such database.
            let kind = if code.starts_with("28") || code == "3D000" {
                PgErrorKind::Auth
            } else if code.starts_with("57P") || code.starts_with("08") {
                // The server ended the session (shutdown, a terminated
                // backend) or the connection failed: it is gone.
                PgErrorKind::Closed
            } else {
                PgErrorKind::Query
            };
            return Self {
                kind,
                detail: format!("{}: {}", db.severity(), db.message()),
                code: Some(code),
            };
        }
        let kind = if error.is_closed() {
            PgErrorKind::Closed
        } else {
            PgErrorKind::Connect
        };
        Self::new(kind, error)
    }

    /// Which step failed.
    #[must_use]
    pub fn kind(&self) -> PgErrorKind {
        self.kind
    }

    /// The server's SQLSTATE (`23505` for a unique violation), when it
    /// gave one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres: {}", self.detail)?;
        if let Some(code) = &self.code {
            write!(f, " (SQLSTATE {code})")?;
        }
        Ok(())
    }
}

impl std::error::Error for PgError {}

impl crate::IntoResponse for PgError {
    /// 503 when the database is unreachable, busy or slow (the client may
    /// retry), 404 for a missing row, else 500; the detail is generic so
    /// that no SQL or server message reaches clients (it is logged).
    fn write_response(self, writer: &mut crate::ResponseWriter<'_>) {
        use crate::Status;
        let (status, detail) = match self.kind {
            PgErrorKind::NotFound => (Status::NOT_FOUND, "not found"),
            PgErrorKind::PoolTimeout
            | PgErrorKind::Timeout
            | PgErrorKind::Connect
            | PgErrorKind::Closed => (Status::SERVICE_UNAVAILABLE, "the database is unavailable"),
            _ => (Status::INTERNAL_SERVER_ERROR, "a database error"),
        };
        if status != Status::NOT_FOUND {
            tracing::error!(error = %self, "database call failed");
        }
        crate::HttpError::new(status, detail).write_response(writer);
    }
}
