//! Cross-origin requests (the Fetch standard's CORS protocol), answered
//! before routing so a preflight needs no route of its own.

use crate::config::CorsConfig;
use crate::http::status::Status;
use crate::http::write::ResponseWriter;

/// A shard's CORS policy, rendered from `[cors]` once per (re)load.
#[derive(Clone, Debug)]
pub(crate) struct Cors {
    /// `None`: any origin.
    origins: Option<Vec<Box<[u8]>>>,
    credentials: bool,
    methods: Box<[u8]>,
    /// `None`: whatever the preflight asks for.
    headers: Option<Box<[u8]>>,
    max_age: Box<[u8]>,
    /// The lines a response to an allowed origin carries after
    /// `Access-Control-Allow-Origin`, pre-rendered.
    allowed_lines: Box<[u8]>,
}

/// What the policy says of a request carrying `Origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// From an origin not allowed: nothing to add.
    None,
    /// A preflight, answered here.
    Preflight,
    /// A request from an allowed origin: decorate its response.
    Allowed,
}

impl Cors {
    /// The policy of `config`; `None` when CORS is off.
    pub(crate) fn of(config: &CorsConfig) -> Option<Self> {
        if config.allow_origins.is_empty() {
            return None;
        }
        let any = config.allow_origins.iter().any(|o| o == "*");
        let list = |items: &[String]| items.join(", ").into_bytes().into_boxed_slice();
        let mut allowed_lines = String::new();
        if !any || config.allow_credentials {
            allowed_lines.push_str("Vary: Origin\r\n");
        }
        if config.allow_credentials {
            allowed_lines.push_str("Access-Control-Allow-Credentials: true\r\n");
        }
        if !config.expose_headers.is_empty() {
            allowed_lines.push_str("Access-Control-Expose-Headers: ");
            allowed_lines.push_str(&config.expose_headers.join(", "));
            allowed_lines.push_str("\r\n");
        }
        Some(Self {
            origins: (!any).then(|| {
                config
                    .allow_origins
                    .iter()
                    .map(|o| o.as_bytes().into())
                    .collect()
            }),
            credentials: config.allow_credentials,
            methods: list(&config.allow_methods),
            headers: (!config.allow_headers.iter().any(|h| h == "*") || config.allow_credentials)
                .then(|| list(&config.allow_headers)),
            max_age: config.max_age_secs.to_string().into_bytes().into(),
            allowed_lines: allowed_lines.into_bytes().into(),
        })
    }

    fn allows(&self, origin: &[u8]) -> bool {
        self.origins
            .as_ref()
            .is_none_or(|origins| origins.iter().any(|o| **o == *origin))
    }

    /// What to do with a request from `origin`.
    pub(crate) fn verdict(&self, origin: &[u8], preflight: bool) -> Verdict {
        if preflight {
            Verdict::Preflight
        } else if self.allows(origin) {
            Verdict::Allowed
        } else {
            Verdict::None
        }
    }

    /// The `Access-Control-Allow-Origin` value for an allowed `origin`.
    fn allow_origin<'o>(&self, origin: &'o [u8]) -> &'o [u8] {
        if self.origins.is_none() && !self.credentials {
            b"*"
        } else {
            origin
        }
    }

    /// Answers a preflight from `origin` asking for `requested` headers:
    /// 204 with what is allowed, or 403 for an origin that is not.
    pub(crate) fn answer_preflight(
        &self,
        origin: &[u8],
        requested: Option<&[u8]>,
        writer: &mut ResponseWriter<'_>,
    ) {
        if !self.allows(origin) {
            writer.send_error(
                Status::FORBIDDEN,
                "this origin may not make cross-origin requests (cors.allow_origins)",
            );
            return;
        }
        let headers = self.headers.as_deref().or(requested).unwrap_or_default();
        let credentials: &[u8] = if self.credentials { b"true" } else { b"" };
        let fields = [
            ("Access-Control-Allow-Origin", self.allow_origin(origin)),
            ("Access-Control-Allow-Methods", &*self.methods),
            ("Access-Control-Allow-Headers", headers),
            ("Access-Control-Allow-Credentials", credentials),
            ("Access-Control-Max-Age", &*self.max_age),
            (
                "Vary",
                b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        ];
        writer.send(
            Status::NO_CONTENT,
            None,
            fields.into_iter().filter(|(_, value)| !value.is_empty()),
            b"",
        );
    }

    /// What a response to an allowed `origin` carries: the
    /// `Access-Control-Allow-Origin` value and the pre-rendered lines after
    /// it (for `ResponseWriter::with_cross_origin`).
    pub(crate) fn allowed_fields<'o>(&'o self, origin: &'o [u8]) -> (&'o [u8], &'o [u8]) {
        (self.allow_origin(origin), &self.allowed_lines)
    }
}
