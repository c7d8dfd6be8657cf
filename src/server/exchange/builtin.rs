//! The endpoints percore answers itself: liveness, readiness, metrics, and
//! the redirect to HTTPS of a redirect listener.

use super::header;
use crate::config::HealthConfig;
use crate::http::parse::{Head, HeaderSpan};
use crate::http::request::target_str;
use crate::http::status::Status;
use crate::http::write::ResponseWriter;
use crate::observe::metrics::{LIVENESS, READINESS};
use crate::server::shard::ShardContext;

/// Answers the built-in health routes; `None` for any other path, else
/// the route's metrics slot.
pub(super) fn health<S>(
    shard: &ShardContext<S>,
    health: &HealthConfig,
    path: &str,
    writer: &mut ResponseWriter<'_>,
) -> Option<usize> {
    const JSON: Option<&str> = Some("application/json");
    if !health.liveness_path.is_empty() && path == health.liveness_path {
        writer.send(Status::OK, JSON, [], br#"{"status":"ok"}"#);
        return Some(LIVENESS);
    }
    if health.readiness_path.is_empty() || path != health.readiness_path {
        return None;
    }
    if shard.draining.get() {
        writer.send(
            Status::SERVICE_UNAVAILABLE,
            JSON,
            [],
            br#"{"status":"draining"}"#,
        );
        return Some(READINESS);
    }
    let upstreams = crate::observe::upstream::unready();
    let mut failing: Vec<&str> = shard
        .app
        .readiness
        .iter()
        .filter(|(_, check)| !check(&shard.state))
        .map(|(name, _)| name.as_str())
        .collect();
    // Upstreams with `health.readiness` and no server in rotation.
    failing.extend(upstreams.iter().map(String::as_str));
    if failing.is_empty() {
        writer.send(Status::OK, JSON, [], br#"{"status":"ready"}"#);
    } else {
        writer.send_with(Status::SERVICE_UNAVAILABLE, JSON, [], |out| {
            simd_json::serde::to_writer(
                out,
                &Unready {
                    status: "unready",
                    failing,
                },
            )
        });
    }
    Some(READINESS)
}

/// Answers the metrics route: every shard's counts, collected by message
/// on a blocking thread while this shard goes on serving (it answers its
/// own part like any other shard).
pub(super) async fn metrics<S>(shard: &ShardContext<S>, writer: &mut ResponseWriter<'_>) {
    let text = match &shard.scrape {
        Some(scrape) => {
            let scrape = std::sync::Arc::clone(scrape);
            crate::server::blocking::blocking(move || scrape()).await
        }
        None => crate::observe::metrics::render(
            &shard.app.route_labels(),
            &[crate::observe::metrics::Scraped {
                snapshot: Some(shard.snapshot()),
                supervision: crate::observe::metrics::Supervision::default(),
            }],
        ),
    };
    writer.send(
        Status::OK,
        Some("text/plain; version=0.0.4; charset=utf-8"),
        [],
        text.as_bytes(),
    );
}

#[derive(serde::Serialize)]
struct Unready<'a> {
    status: &'static str,
    failing: Vec<&'a str>,
}

/// 301 to the same host and target over HTTPS.
pub(super) fn to_https(
    writer: &mut ResponseWriter<'_>,
    headers: &[HeaderSpan],
    head_bytes: &[u8],
    head: &Head,
    port: u16,
) {
    let host = header(headers, head_bytes, "host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("localhost");
    // The name without its port ("[::1]:80" → "[::1]", "a.example:80" → "a.example").
    let name = match host.rfind(':') {
        Some(at) if !host[at..].contains(']') => &host[..at],
        _ => host,
    };
    let target = target_str(head_bytes, head);
    let location = if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    };
    writer.send_with(
        Status::MOVED_PERMANENTLY,
        Some("application/json"),
        [("Location", location.as_bytes())],
        |out| {
            simd_json::serde::to_writer(
                out,
                &Redirected {
                    detail: "use HTTPS",
                    location: &location,
                },
            )
        },
    );
}

#[derive(serde::Serialize)]
struct Redirected<'a> {
    detail: &'static str,
    location: &'a str,
}

/// Serves the OpenAPI document or its page when `path` is theirs.
pub(super) fn openapi(
    document: Option<&crate::route::openapi::Document>,
    path: &str,
    writer: &mut ResponseWriter<'_>,
) -> bool {
    let Some(document) = document else {
        return false;
    };
    if path == document.path {
        writer.send(Status::OK, Some("application/json"), [], &document.json);
    } else if !document.docs_path.is_empty() && path == document.docs_path {
        writer.send(
            Status::OK,
            Some("text/html; charset=utf-8"),
            [],
            &document.html,
        );
    } else {
        return false;
    }
    true
}
