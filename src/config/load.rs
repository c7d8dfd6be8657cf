//! Loading: a TOML file, then `PERCORE_*` environment variables over it,
//! read into the config tree with every unknown key and mistyped value
//! reported by its key path.

use std::path::Path;

use super::{Config, Problem};

/// How an environment variable's text becomes a TOML value.
#[derive(Clone, Copy)]
pub(super) enum EnvKind {
    Text,
    Integer,
    List,
    Bool,
}

/// The environment variables read, and the key each sets.
pub(super) const ENV_KEYS: &[(&str, &str, EnvKind)] = &[
    ("PERCORE_LISTEN", "server.listen", EnvKind::List),
    ("PERCORE_SHARDS", "server.shards", EnvKind::Integer),
    ("PERCORE_CPUS", "server.cpus", EnvKind::Text),
    ("PERCORE_BACKLOG", "server.backlog", EnvKind::Integer),
    ("PERCORE_IO", "server.io", EnvKind::Text),
    (
        "PERCORE_IDLE_POLL_US",
        "server.idle_poll_us",
        EnvKind::Integer,
    ),
    (
        "PERCORE_GRACEFUL_TIMEOUT_SECS",
        "server.graceful_timeout_secs",
        EnvKind::Integer,
    ),
    (
        "PERCORE_BLOCKING_THREADS",
        "server.blocking_threads",
        EnvKind::Integer,
    ),
    (
        "PERCORE_STALL_THRESHOLD_MS",
        "server.stall_threshold_ms",
        EnvKind::Integer,
    ),
    (
        "PERCORE_MAX_REQUEST_LINE_BYTES",
        "limits.max_request_line_bytes",
        EnvKind::Integer,
    ),
    (
        "PERCORE_MAX_HEAD_BYTES",
        "limits.max_head_bytes",
        EnvKind::Integer,
    ),
    (
        "PERCORE_MAX_HEADERS",
        "limits.max_headers",
        EnvKind::Integer,
    ),
    (
        "PERCORE_MAX_BODY_BYTES",
        "limits.max_body_bytes",
        EnvKind::Integer,
    ),
    (
        "PERCORE_MAX_CHUNK_EXTENSION_BYTES",
        "limits.max_chunk_extension_bytes",
        EnvKind::Integer,
    ),
    (
        "PERCORE_KEEPALIVE_REQUESTS",
        "limits.keepalive_requests",
        EnvKind::Integer,
    ),
    (
        "PERCORE_MAX_CONNECTIONS",
        "limits.max_connections",
        EnvKind::Integer,
    ),
    (
        "PERCORE_MAX_CONNECTIONS_PER_IP",
        "limits.max_connections_per_ip",
        EnvKind::Integer,
    ),
    (
        "PERCORE_VALIDATION_STATUS",
        "limits.validation_status",
        EnvKind::Integer,
    ),
    (
        "PERCORE_HEADER_TIMEOUT_SECS",
        "timeouts.header_secs",
        EnvKind::Integer,
    ),
    (
        "PERCORE_BODY_TIMEOUT_SECS",
        "timeouts.body_secs",
        EnvKind::Integer,
    ),
    (
        "PERCORE_KEEPALIVE_TIMEOUT_SECS",
        "timeouts.keepalive_secs",
        EnvKind::Integer,
    ),
    (
        "PERCORE_REQUEST_TIMEOUT_SECS",
        "timeouts.request_secs",
        EnvKind::Integer,
    ),
    (
        "PERCORE_SEND_TIMEOUT_SECS",
        "timeouts.send_secs",
        EnvKind::Integer,
    ),
    (
        "PERCORE_LIVENESS_PATH",
        "health.liveness_path",
        EnvKind::Text,
    ),
    (
        "PERCORE_READINESS_PATH",
        "health.readiness_path",
        EnvKind::Text,
    ),
    (
        "PERCORE_CONTENT_TYPE_OPTIONS",
        "headers.content_type_options",
        EnvKind::Text,
    ),
    (
        "PERCORE_FRAME_OPTIONS",
        "headers.frame_options",
        EnvKind::Text,
    ),
    (
        "PERCORE_REFERRER_POLICY",
        "headers.referrer_policy",
        EnvKind::Text,
    ),
    ("PERCORE_STEERING", "server.steering", EnvKind::Text),
    ("PERCORE_TAKEOVER", "server.takeover", EnvKind::Bool),
    (
        "PERCORE_RATE_LIMIT_ENABLED",
        "rate_limit.enabled",
        EnvKind::Bool,
    ),
    (
        "PERCORE_RATE_LIMIT_DRY_RUN",
        "rate_limit.dry_run",
        EnvKind::Bool,
    ),
    ("PERCORE_RATE_LIMIT_KEY", "rate_limit.key", EnvKind::Text),
    (
        "PERCORE_RATE_LIMIT_TRUSTED_PROXIES",
        "rate_limit.trusted_proxies",
        EnvKind::List,
    ),
    (
        "PERCORE_RATE_LIMIT_IPV6_PREFIX",
        "rate_limit.ipv6_prefix",
        EnvKind::Integer,
    ),
    (
        "PERCORE_RATE_LIMIT_MAX_KEYS",
        "rate_limit.max_keys",
        EnvKind::Integer,
    ),
    (
        "PERCORE_RATE_LIMIT_HEADERS",
        "rate_limit.headers",
        EnvKind::Bool,
    ),
    (
        "PERCORE_RATE_LIMIT_REDIS_URL",
        "rate_limit.redis_url",
        EnvKind::Text,
    ),
    (
        "PERCORE_RATE_LIMIT_REDIS_TIMEOUT_MS",
        "rate_limit.redis_timeout_ms",
        EnvKind::Integer,
    ),
    ("PERCORE_TLS_LISTEN", "tls.listen", EnvKind::List),
    (
        "PERCORE_TLS_REDIRECT_LISTEN",
        "tls.redirect_listen",
        EnvKind::List,
    ),
    ("PERCORE_TLS_HSTS", "tls.hsts", EnvKind::Text),
    (
        "PERCORE_TLS_HANDSHAKE_TIMEOUT_SECS",
        "tls.handshake_timeout_secs",
        EnvKind::Integer,
    ),
    (
        "PERCORE_TLS_SESSION_CACHE",
        "tls.session_cache",
        EnvKind::Integer,
    ),
    ("PERCORE_METRICS_PATH", "metrics.path", EnvKind::Text),
    ("PERCORE_METRICS_LISTEN", "metrics.listen", EnvKind::Text),
    ("PERCORE_METRICS_ALLOW", "metrics.allow", EnvKind::List),
    (
        "PERCORE_CORS_ALLOW_ORIGINS",
        "cors.allow_origins",
        EnvKind::List,
    ),
    (
        "PERCORE_CORS_ALLOW_CREDENTIALS",
        "cors.allow_credentials",
        EnvKind::Bool,
    ),
    ("PERCORE_COOKIE_KEY", "cookies.key", EnvKind::Text),
    ("PERCORE_LOG_LEVEL", "log.level", EnvKind::Text),
    ("PERCORE_ACCESS_LOG", "log.access", EnvKind::Text),
    ("PERCORE_ACCESS_LOG_FILE", "log.access_file", EnvKind::Text),
    ("PERCORE_REQUEST_ID", "log.request_id", EnvKind::Bool),
];

/// Variables with the `PERCORE_` prefix that are not configuration keys.
pub(super) const ENV_NOT_KEYS: &[&str] = &["PERCORE_CONFIG"];

impl Config {
    /// Reads the file at `path` (if any), applies the `PERCORE_*` variables
    /// among `env`, and validates the result.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) with every problem found.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Problem>> {
        Self::load_with(path, env, |_| {})
    }

    /// Like [`load`](Self::load), with `adjust` (command-line flags) applied
    /// before the result is validated.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) with every problem found.
    pub fn load_with(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, Vec<Problem>> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    vec![Problem::new(
                        path.display().to_string(),
                        format!("cannot read: {e}"),
                    )]
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    let why = e.message().to_owned();
                    let line = e.span().map(|s| text[..s.start].lines().count().max(1));
                    let place = line.map_or_else(String::new, |l| format!(" (line {l})"));
                    vec![Problem::new(
                        path.display().to_string(),
                        format!("invalid TOML{place}: {why}"),
                    )]
                })?
            }
            None => toml::Table::new(),
        };
        let mut problems = apply_env(&mut table, env);
        let (mut config, mut found) = from_table(table);
        problems.append(&mut found);
        adjust(&mut config);
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Parses TOML text (no environment), reporting unknown keys and type
    /// errors with their key paths. Does not validate.
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
        let table = text.parse::<toml::Table>().map_err(|e| {
            vec![Problem::new(
                "(file)",
                format!("invalid TOML: {}", e.message()),
            )]
        })?;
        match from_table(table) {
            (config, problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(problems),
        }
    }
}

/// Deserializes a table into a config and every problem found: unknown keys,
/// and type errors. A key with a type error is dropped (its default stands)
/// and the rest is read again, so one bad value does not hide the others.
fn from_table(mut table: toml::Table) -> (Config, Vec<Problem>) {
    let mut problems = Vec::new();
    loop {
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| {
            unknown.push(Problem::new(path.to_string(), "unknown key"));
        };
        let deserializer =
            serde_ignored::Deserializer::new(toml::Value::Table(table.clone()), &mut record);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(deserializer);
        match parsed {
            Ok(config) => {
                problems.append(&mut unknown);
                return (config, problems);
            }
            Err(error) => {
                // toml appends "in `key`" on a second line; the path says it already.
                let message = error.inner().to_string();
                let first_line = message.lines().next().unwrap_or_default();
                problems.push(Problem::new(error.path().to_string(), first_line));
                if !remove_key(&mut table, error.path()) {
                    problems.append(&mut unknown);
                    return (Config::default(), problems);
                }
            }
        }
    }
}

/// Removes the deepest table key on `path`; false when there is none.
fn remove_key(table: &mut toml::Table, path: &serde_path_to_error::Path) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .map_while(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut current = table;
    for key in parents {
        match current.get_mut(*key) {
            Some(toml::Value::Table(inner)) => current = inner,
            _ => return false,
        }
    }
    current.remove(*last).is_some()
}

/// Writes each known `PERCORE_*` variable into `table`; unknown ones are
/// problems, so that a misspelt variable is not silently ignored.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, text) in env {
        if !name.starts_with("PERCORE_") || ENV_NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        let Some(&(_, key, kind)) = ENV_KEYS.iter().find(|(n, _, _)| *n == name) else {
            let known: Vec<&str> = ENV_KEYS.iter().map(|(n, _, _)| *n).collect();
            problems.push(Problem::new(
                name,
                format!("unknown variable; known: {}", known.join(", ")),
            ));
            continue;
        };
        let value = match kind {
            EnvKind::Text => toml::Value::String(text),
            EnvKind::List => toml::Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
            EnvKind::Bool => match text.trim() {
                "true" | "1" | "on" | "yes" => toml::Value::Boolean(true),
                "false" | "0" | "off" | "no" => toml::Value::Boolean(false),
                _ => {
                    problems.push(Problem::new(
                        key,
                        format!("{name}={text:?} is not true or false"),
                    ));
                    continue;
                }
            },
            EnvKind::Integer => {
                if let Ok(n) = text.trim().parse::<i64>() {
                    toml::Value::Integer(n)
                } else {
                    problems.push(Problem::new(
                        key,
                        format!("{name}={text:?} is not an integer"),
                    ));
                    continue;
                }
            }
        };
        let (section, field) = key.split_once('.').unwrap_or(("", key));
        let entry = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(section) => {
                section.insert(field.to_owned(), value);
            }
            _ => problems.push(Problem::new(section, "must be a table")),
        }
    }
    problems
}
