//! Configuration: a serde tree with defaults, read from a TOML file, then
//! `PERCORE_*` environment variables, then command-line flags (each layer
//! overrides the one before). [`Config::validate`] returns every problem with
//! its key path; unknown keys are problems too.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::http::parse::{Limits, MAX_HEADERS_CEILING};
use crate::runtime::cpus::CpuList;

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Listeners and shards.
    pub server: ServerConfig,
    /// Request size limits and connection caps.
    pub limits: LimitsConfig,
    /// Timeouts.
    pub timeouts: TimeoutsConfig,
    /// Security headers added to every response.
    pub headers: HeadersConfig,
    /// Health routes.
    pub health: HealthConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`: where to listen and on which CPUs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Addresses to listen on (`IP:PORT`, IPv6 as `[::1]:8080`); port 0
    /// picks a free port, shared by all shards.
    pub listen: Vec<SocketAddr>,
    /// Number of shards; default one per usable CPU.
    pub shards: Option<usize>,
    /// CPUs to run shards on, such as `"1"` or `"0,2-3"`; default all usable.
    pub cpus: Option<CpuList>,
    /// Listen backlog of each shard's socket.
    pub backlog: u32,
    /// Socket I/O path: the shard's own `io_uring` (`uring`, default) or
    /// glommio's streams (`glommio`, for kernels before 6.1).
    pub io: IoPath,
    /// On the `uring` path, how long (µs) an idle shard keeps checking its
    /// ring before it sleeps. Longer trades idle CPU for latency; a very
    /// large value is a poll mode.
    pub idle_poll_us: u64,
    /// On SIGTERM/SIGINT, how long (s) open connections may take to finish
    /// before they are closed.
    pub graceful_timeout_secs: u64,
}

/// How shards do socket I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoPath {
    /// The shard's own ring: multishot accept and receive, provided buffers,
    /// batched sends, deferred task work.
    #[default]
    Uring,
    /// glommio's `TcpStream`.
    Glommio,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            shards: None,
            cpus: None,
            backlog: 1024,
            io: IoPath::default(),
            idle_poll_us: 50,
            graceful_timeout_secs: 30,
        }
    }
}

/// `[limits]`: how large a request may be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Longest request line, bytes; 414 beyond.
    pub max_request_line_bytes: usize,
    /// Largest request head (request line and header fields), bytes; 431 beyond.
    pub max_head_bytes: usize,
    /// Most header fields in one request; 431 beyond.
    pub max_headers: usize,
    /// Largest request body, bytes; 413 beyond.
    pub max_body_bytes: u64,
    /// Longest chunk extension on one chunk-size line, bytes; 400 beyond.
    pub max_chunk_extension_bytes: usize,
    /// Requests served on one connection before it is closed (0: no cap).
    pub keepalive_requests: u32,
    /// Open connections per shard; further ones are closed at once.
    pub max_connections: usize,
    /// Open connections per client IP per shard (0: no cap).
    pub max_connections_per_ip: u32,
}

/// `[timeouts]`: how long each wait may last, in seconds (0: no limit).
/// They are checked by one sweep per shard per second, so each fires within
/// about a second of its setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeoutsConfig {
    /// From a request's first byte to its complete head; then 408.
    pub header_secs: u64,
    /// From a complete head to a complete body; then 408.
    pub body_secs: u64,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_secs: u64,
    /// A handler still running after this gets a 504 in its place.
    pub request_secs: u64,
    /// A client that has not taken its response after this is dropped.
    pub send_secs: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            header_secs: 10,
            body_secs: 30,
            keepalive_secs: 60,
            request_secs: 30,
            send_secs: 30,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_request_line_bytes: limits.max_request_line_bytes,
            max_head_bytes: limits.max_head_bytes,
            max_headers: limits.max_headers,
            max_body_bytes: limits.max_body_bytes,
            max_chunk_extension_bytes: limits.max_chunk_extension_bytes,
            keepalive_requests: 10_000,
            max_connections: 16_384,
            max_connections_per_ip: 0,
        }
    }
}

/// `[health]`: the built-in health routes, answered before the app's
/// routes (empty: not served).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Liveness: 200 `{"status":"ok"}` while the shard runs.
    pub liveness_path: String,
    /// Readiness: 200 `{"status":"ready"}`, or 503 while draining or when a
    /// readiness check fails.
    pub readiness_path: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            liveness_path: "/health".into(),
            readiness_path: "/health/ready".into(),
        }
    }
}

/// `[headers]`: security headers on every response (empty: not sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeadersConfig {
    /// `X-Content-Type-Options` (browsers must not guess content types).
    pub content_type_options: String,
    /// `X-Frame-Options` (who may frame the pages).
    pub frame_options: String,
    /// `Referrer-Policy`.
    pub referrer_policy: String,
}

impl Default for HeadersConfig {
    fn default() -> Self {
        Self {
            content_type_options: "nosniff".into(),
            frame_options: "DENY".into(),
            referrer_policy: "strict-origin-when-cross-origin".into(),
        }
    }
}

impl HeadersConfig {
    /// The header lines to add, rendered once (`Name: value\r\n` each).
    #[must_use]
    pub fn render(&self) -> Vec<u8> {
        let mut lines = Vec::new();
        for (name, value) in [
            ("X-Content-Type-Options", &self.content_type_options),
            ("X-Frame-Options", &self.frame_options),
            ("Referrer-Policy", &self.referrer_policy),
        ] {
            if !value.is_empty() {
                lines.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        lines
    }
}

/// `[log]`: what to log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `percore=debug,warn`…
    /// (`RUST_LOG` overrides it unless `--log-level` is given).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Timeouts and caps every connection of a shard follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionRules {
    /// See [`TimeoutsConfig::header_secs`].
    pub header: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::body_secs`].
    pub body: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::keepalive_secs`].
    pub keepalive: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::request_secs`].
    pub request: Option<std::time::Duration>,
    /// See [`TimeoutsConfig::send_secs`].
    pub send: Option<std::time::Duration>,
    /// See [`LimitsConfig::keepalive_requests`].
    pub keepalive_requests: u32,
    /// See [`LimitsConfig::max_connections`].
    pub max_connections: usize,
    /// See [`LimitsConfig::max_connections_per_ip`].
    pub max_connections_per_ip: u32,
}

impl Default for ConnectionRules {
    fn default() -> Self {
        Config::default().connection_rules()
    }
}

/// One configuration problem: the key it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, such as `server.listen[0]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// How an environment variable's text becomes a TOML value.
#[derive(Clone, Copy)]
enum EnvKind {
    Text,
    Integer,
    List,
}

/// The environment variables read, and the key each sets.
const ENV_KEYS: &[(&str, &str, EnvKind)] = &[
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
    ("PERCORE_LOG_LEVEL", "log.level", EnvKind::Text),
];

/// Variables with the `PERCORE_` prefix that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["PERCORE_CONFIG"];

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
        let (config, mut found) = from_table(table);
        problems.append(&mut found);
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

    /// Every problem with the values, each with its key path.
    #[must_use]
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem::new(key, message));
            }
        };
        let server = &self.server;
        check(
            !server.listen.is_empty(),
            "server.listen",
            "needs at least one address",
        );
        check(
            server.shards != Some(0),
            "server.shards",
            "must be at least 1",
        );
        check(
            (1..=65535).contains(&server.backlog),
            "server.backlog",
            "must be 1 to 65535",
        );
        let limits = &self.limits;
        check(
            (1024..=1 << 20).contains(&limits.max_head_bytes),
            "limits.max_head_bytes",
            "must be 1024 to 1048576",
        );
        check(
            (256..=limits.max_head_bytes).contains(&limits.max_request_line_bytes),
            "limits.max_request_line_bytes",
            "must be 256 to limits.max_head_bytes",
        );
        check(
            (1..=MAX_HEADERS_CEILING).contains(&limits.max_headers),
            "limits.max_headers",
            "must be 1 to 256",
        );
        check(
            limits.max_body_bytes <= 1 << 30,
            "limits.max_body_bytes",
            "must be at most 1073741824 (bodies are held in memory)",
        );
        check(
            (16..=65_536).contains(&limits.max_chunk_extension_bytes),
            "limits.max_chunk_extension_bytes",
            "must be 16 to 65536",
        );
        check(
            limits.max_connections >= 1,
            "limits.max_connections",
            "must be at least 1",
        );
        for (key, value) in [
            ("timeouts.header_secs", self.timeouts.header_secs),
            ("timeouts.body_secs", self.timeouts.body_secs),
            ("timeouts.keepalive_secs", self.timeouts.keepalive_secs),
            ("timeouts.request_secs", self.timeouts.request_secs),
            ("timeouts.send_secs", self.timeouts.send_secs),
        ] {
            check(value <= 86_400, key, "must be at most 86400 (a day)");
        }
        for (key, path) in [
            ("health.liveness_path", &self.health.liveness_path),
            ("health.readiness_path", &self.health.readiness_path),
        ] {
            check(
                path.is_empty() || path.starts_with('/'),
                key,
                "must start with '/' (or be empty)",
            );
        }
        for (key, value) in [
            (
                "headers.content_type_options",
                &self.headers.content_type_options,
            ),
            ("headers.frame_options", &self.headers.frame_options),
            ("headers.referrer_policy", &self.headers.referrer_policy),
        ] {
            check(
                value
                    .bytes()
                    .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()),
                key,
                "must be visible ASCII (no line breaks)",
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(Problem::new("log.level", format!("not a log filter: {e}")));
        }
        problems
    }

    /// The per-connection rules these settings describe.
    #[must_use]
    pub fn connection_rules(&self) -> ConnectionRules {
        let secs = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s));
        ConnectionRules {
            header: secs(self.timeouts.header_secs),
            body: secs(self.timeouts.body_secs),
            keepalive: secs(self.timeouts.keepalive_secs),
            request: secs(self.timeouts.request_secs),
            send: secs(self.timeouts.send_secs),
            keepalive_requests: self.limits.keepalive_requests,
            max_connections: self.limits.max_connections,
            max_connections_per_ip: self.limits.max_connections_per_ip,
        }
    }

    /// The codec limits these settings describe.
    #[must_use]
    pub fn codec_limits(&self) -> Limits {
        Limits {
            max_request_line_bytes: self.limits.max_request_line_bytes,
            max_head_bytes: self.limits.max_head_bytes,
            max_headers: self.limits.max_headers,
            max_body_bytes: self.limits.max_body_bytes,
            max_chunk_extension_bytes: self.limits.max_chunk_extension_bytes,
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

#[cfg(test)]
mod tests {
    use super::{Config, Problem};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.listen[0].to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn file_values_and_unknown_keys() {
        let config =
            Config::from_toml("[server]\nlisten = [\"[::1]:9000\"]\nshards = 2\ncpus = \"0-1\"\n")
                .unwrap();
        assert_eq!(config.server.shards, Some(2));
        assert_eq!(config.server.cpus.unwrap().0, vec![0, 1]);
        let problems = Config::from_toml("[server]\nlisten_on = 1\n[extra]\nx = 1\n").unwrap_err();
        assert_eq!(keys(&problems), ["extra", "server.listen_on"]);
    }

    #[test]
    fn type_errors_name_the_key() {
        let problems = Config::from_toml("[server]\nlisten = [\"nonsense\"]\n").unwrap_err();
        assert_eq!(keys(&problems), ["server.listen[0]"]);
        let problems = Config::from_toml("[limits]\nmax_headers = \"many\"\nmax_body_bytes = -1\n")
            .unwrap_err();
        assert_eq!(
            keys(&problems),
            ["limits.max_body_bytes", "limits.max_headers"]
        );
        assert_eq!(
            problems[1].message,
            "invalid type: string \"many\", expected usize"
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut config = Config::default();
        config.server.listen.clear();
        config.server.shards = Some(0);
        config.limits.max_headers = 1000;
        config.log.level = "loud=[".into();
        assert_eq!(
            keys(&config.validate()),
            [
                "server.listen",
                "server.shards",
                "limits.max_headers",
                "log.level"
            ]
        );
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("percore.toml");
        std::fs::write(&path, "[server]\nshards = 1\nbacklog = 10\n").unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("PERCORE_SHARDS", "2"),
                ("PERCORE_LISTEN", "127.0.0.1:1, [::1]:2"),
                ("HOME", "/"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.shards, Some(2));
        assert_eq!(config.server.backlog, 10);
        assert_eq!(config.server.listen.len(), 2);
    }

    #[test]
    fn every_documented_variable_is_read_and_every_read_one_documented() {
        let readme = include_str!("../README.md");
        let documented: std::collections::BTreeSet<&str> = readme
            .match_indices("PERCORE_")
            .map(|(at, _)| {
                let rest = &readme[at..];
                &rest[..rest
                    .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .unwrap_or(rest.len())]
            })
            .filter(|name| !name.ends_with('_'))
            .collect();
        let known: std::collections::BTreeSet<&str> = super::ENV_KEYS
            .iter()
            .map(|(name, _, _)| *name)
            .chain(super::ENV_NOT_KEYS.iter().copied())
            .collect();
        assert_eq!(documented, known);
        // Each key an environment variable names exists in the config tree.
        for (name, key, _) in super::ENV_KEYS {
            let (section, field) = key.split_once('.').unwrap();
            let text = format!("[{section}]\n{field} = 1\n");
            let problems = Config::from_toml(&text).err().unwrap_or_default();
            assert!(
                !problems.iter().any(|p| p.message == "unknown key"),
                "{name} -> {key}"
            );
        }
    }

    #[test]
    fn bad_environment_is_reported() {
        let problems = Config::load(
            None,
            env(&[("PERCORE_SHARD", "2"), ("PERCORE_BACKLOG", "x")]),
        )
        .unwrap_err();
        assert_eq!(keys(&problems), ["PERCORE_SHARD", "server.backlog"]);
    }
}
