//! Metrics: each shard counts in plain cells on its own thread (no atomics
//! on the request path); a scrape asks every shard for a [`Snapshot`] by
//! message and renders them in the Prometheus text format, one series per
//! shard (`shard` label).

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::Duration;

use super::counters::{Counters, Rejection};
use crate::http::status::Status;

/// Upper bounds of the latency histogram's buckets, in microseconds.
const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Route slots before the app's own routes: requests no route matched
/// (404, 405) and the built-in routes.
pub(crate) const UNMATCHED: usize = 0;
/// The liveness route's slot.
pub(crate) const LIVENESS: usize = 1;
/// The readiness route's slot.
pub(crate) const READINESS: usize = 2;
/// The metrics route's slot.
pub(crate) const METRICS: usize = 3;
/// The first slot of the app's routes, in the order they were added.
pub(crate) const FIRST_APP_ROUTE: usize = 4;

/// How a route appears in the `method` and `route` labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteLabel {
    pub(crate) method: &'static str,
    pub(crate) route: String,
}

impl RouteLabel {
    /// The labels of the slots before the app's routes.
    pub(crate) fn built_in() -> Vec<Self> {
        let label = |method, route: &str| Self {
            method,
            route: route.to_owned(),
        };
        vec![
            label("", "(unmatched)"),
            label("GET", "(liveness)"),
            label("GET", "(readiness)"),
            label("GET", "(metrics)"),
        ]
    }
}

/// Status classes counted per protocol (1xx to 5xx).
const CLASSES: usize = 5;

/// One shard's request metrics.
#[derive(Debug)]
pub(crate) struct ShardMetrics {
    /// Per route slot, per protocol (HTTP/1.x, then HTTP/2) and status
    /// class (1xx to 5xx).
    requests: Box<[[Cell<u64>; 2 * CLASSES]]>,
    /// Per bucket (not cumulative), the last one past every bound.
    latency: [Cell<u64>; BUCKETS_US.len() + 1],
    latency_sum_ns: Cell<u64>,
    accepted: Cell<u64>,
    panics: Cell<u64>,
    tls_handshakes: Cell<u64>,
    http2_connections: Cell<u64>,
    http2_streams: Cell<u64>,
    http2_errors: Cell<u64>,
}

impl ShardMetrics {
    /// Metrics for `routes` route slots.
    pub(crate) fn new(routes: usize) -> Self {
        Self {
            requests: (0..routes).map(|_| Default::default()).collect(),
            latency: Default::default(),
            latency_sum_ns: Cell::new(0),
            accepted: Cell::new(0),
            panics: Cell::new(0),
            tls_handshakes: Cell::new(0),
            http2_connections: Cell::new(0),
            http2_streams: Cell::new(0),
            http2_errors: Cell::new(0),
        }
    }

    /// Counts a request to route `slot`, over HTTP/2 or not, answered
    /// with `status`.
    pub(crate) fn request(&self, slot: usize, http2: bool, status: Status) {
        let class =
            usize::from(http2) * CLASSES + usize::from(status.code() / 100).clamp(1, CLASSES) - 1;
        if let Some(classes) = self.requests.get(slot) {
            bump(&classes[class], 1);
        }
    }

    /// Records `requests` requests answered together in `elapsed` (the
    /// requests of one batch: their responses leave in one write).
    pub(crate) fn latency(&self, elapsed: Duration, requests: u64) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKETS_US.len());
        bump(&self.latency[bucket], requests);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        bump(&self.latency_sum_ns, nanos.saturating_mul(requests));
    }

    /// Counts an accepted connection.
    pub(crate) fn accepted(&self) {
        bump(&self.accepted, 1);
    }

    /// Counts a completed TLS handshake.
    pub(crate) fn tls_handshake(&self) {
        bump(&self.tls_handshakes, 1);
    }

    /// Counts a connection that speaks HTTP/2.
    pub(crate) fn http2_connection(&self) {
        bump(&self.http2_connections, 1);
    }

    /// Counts an HTTP/2 stream (a request).
    pub(crate) fn http2_request(&self) {
        bump(&self.http2_streams, 1);
    }

    /// Counts an HTTP/2 connection ended by a protocol error.
    pub(crate) fn http2_error(&self) {
        bump(&self.http2_errors, 1);
    }

    /// Counts a handler that panicked.
    pub(crate) fn panicked(&self) {
        bump(&self.panics, 1);
    }

    /// A copy of every count, with the shard's open connections and
    /// rejections.
    pub(crate) fn snapshot(&self, open: usize, rejections: &Counters) -> Snapshot {
        Snapshot {
            requests: self
                .requests
                .iter()
                .map(|classes| classes.each_ref().map(Cell::get))
                .collect(),
            latency: self.latency.iter().map(Cell::get).collect(),
            latency_sum_ns: self.latency_sum_ns.get(),
            accepted: self.accepted.get(),
            panics: self.panics.get(),
            tls_handshakes: self.tls_handshakes.get(),
            http2_connections: self.http2_connections.get(),
            http2_streams: self.http2_streams.get(),
            http2_errors: self.http2_errors.get(),
            open: open as u64,
            rejections: rejections.all(),
            ..Snapshot::default()
        }
    }
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

/// One shard's counts at one moment, sent to whoever scrapes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) requests: Vec<[u64; 2 * CLASSES]>,
    pub(crate) latency: Vec<u64>,
    pub(crate) latency_sum_ns: u64,
    pub(crate) accepted: u64,
    pub(crate) panics: u64,
    pub(crate) tls_handshakes: u64,
    pub(crate) http2_connections: u64,
    pub(crate) http2_streams: u64,
    pub(crate) http2_errors: u64,
    pub(crate) open: u64,
    pub(crate) rejections: Vec<u64>,
    pub(crate) rate_limited: u64,
    pub(crate) rate_limited_dry_run: u64,
    pub(crate) limit_backend_errors: u64,
    /// The shard's outbound HTTP counts (`observe::outbound::read`).
    pub(crate) outbound: [u64; 6],
    /// The shard's proxied upstreams.
    pub(crate) upstreams: Vec<super::upstream::UpstreamSnapshot>,
    pub(crate) limit_keys: u64,
    pub(crate) limit_evictions: u64,
    /// Bytes of spare buffers and blocks the shard's pools hold (about).
    pub(crate) pooled_bytes: u64,
}

/// What the process knows of a shard beyond its own counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Supervision {
    pub(crate) stalls: u64,
    pub(crate) restarts: u64,
}

/// One shard as a scrape saw it: its snapshot (`None` when it did not
/// answer in time) and its supervision counts.
pub(crate) struct Scraped {
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) supervision: Supervision,
}

/// A metric family with one sample per shard: name, type, help, value.
type PerShard<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// The families with one sample per answering shard.
const SHARD_SERIES: [PerShard<Snapshot>; 19] = [
    (
        "percore_client_calls_total",
        "counter",
        "Calls made by the shard's outbound HTTP clients (a retried call counts once).",
        |s| s.outbound[0],
    ),
    (
        "percore_client_retries_total",
        "counter",
        "Retries of outbound calls (connect failures; idempotent calls without an answer or with 502/503/504).",
        |s| s.outbound[1],
    ),
    (
        "percore_client_failures_total",
        "counter",
        "Outbound calls that ended in an error after their retries.",
        |s| s.outbound[2],
    ),
    (
        "percore_client_connects_total",
        "counter",
        "Connections the shard's outbound HTTP clients made.",
        |s| s.outbound[3],
    ),
    (
        "percore_client_connections_open",
        "gauge",
        "Outbound HTTP connections open now, busy or idle.",
        |s| s.outbound[4],
    ),
    (
        "percore_client_circuits_opened_total",
        "counter",
        "Times an origin's circuit breaker opened after repeated failures.",
        |s| s.outbound[5],
    ),
    (
        "percore_connections_open",
        "gauge",
        "Connections open now.",
        |s| s.open,
    ),
    (
        "percore_connections_accepted_total",
        "counter",
        "Connections accepted (including those then refused by a cap).",
        |s| s.accepted,
    ),
    (
        "percore_handler_panics_total",
        "counter",
        "Handlers that panicked (answered 500).",
        |s| s.panics,
    ),
    (
        "percore_tls_handshakes_total",
        "counter",
        "TLS handshakes completed.",
        |s| s.tls_handshakes,
    ),
    (
        "percore_http2_connections_total",
        "counter",
        "Connections that spoke HTTP/2 (ALPN h2, or h2c with prior knowledge).",
        |s| s.http2_connections,
    ),
    (
        "percore_http2_streams_total",
        "counter",
        "HTTP/2 streams (requests) accepted.",
        |s| s.http2_streams,
    ),
    (
        "percore_http2_protocol_errors_total",
        "counter",
        "HTTP/2 connections ended by a protocol error or an attack limit (GOAWAY sent).",
        |s| s.http2_errors,
    ),
    (
        "percore_rate_limited_total",
        "counter",
        "Requests refused with 429 by the rate limiter.",
        |s| s.rate_limited,
    ),
    (
        "percore_rate_limited_dry_run_total",
        "counter",
        "Requests the rate limiter would have refused (rate_limit.dry_run).",
        |s| s.rate_limited_dry_run,
    ),
    (
        "percore_rate_limit_backend_errors_total",
        "counter",
        "Checks of fleet-wide (backend = \"redis\") policies that Redis did not answer in time; each decided by the policy's on_redis_error.",
        |s| s.limit_backend_errors,
    ),
    (
        "percore_rate_limit_keys",
        "gauge",
        "Keys the shard's rate-limit tables hold now (at most rate_limit.max_keys per policy).",
        |s| s.limit_keys,
    ),
    (
        "percore_rate_limit_evictions_total",
        "counter",
        "Keys dropped to make room in a full rate-limit table.",
        |s| s.limit_evictions,
    ),
    (
        "percore_pooled_bytes",
        "gauge",
        "Bytes of spare connection buffers and work blocks the shard keeps for reuse (trimmed to the working set every few seconds).",
        |s| s.pooled_bytes,
    ),
];

/// The Prometheus text exposition (format 0.0.4) of every shard.
pub(crate) fn render(routes: &[RouteLabel], shards: &[Scraped]) -> String {
    let mut out = String::with_capacity(4096);
    let answered: Vec<(usize, &Snapshot)> = shards
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.snapshot.as_ref().map(|snap| (i, snap)))
        .collect();
    let every_shard = || shards.iter().enumerate();
    per_shard_family(
        &mut out,
        (
            "percore_shard_up",
            "gauge",
            "Whether the shard answered this scrape (1) or not (0).",
            |s: &Scraped| u64::from(s.snapshot.is_some()),
        ),
        every_shard(),
    );
    render_requests(&mut out, routes, &answered);
    render_latency(&mut out, &answered);
    let per_shard = SHARD_SERIES;
    for metric in per_shard {
        per_shard_family(&mut out, metric, answered.iter().copied());
    }
    render_rejections(&mut out, &answered);
    super::upstream::render(&mut out, &answered);
    let supervision: [PerShard<Scraped>; 2] = [
        (
            "percore_stalls_total",
            "counter",
            "Times the shard's event loop was blocked longer than server.stall_threshold_ms.",
            |s| s.supervision.stalls,
        ),
        (
            "percore_shard_restarts_total",
            "counter",
            "Times the shard's thread died and was started again.",
            |s| s.supervision.restarts,
        ),
    ];
    for metric in supervision {
        per_shard_family(&mut out, metric, every_shard());
    }
    out
}

fn render_requests(out: &mut String, routes: &[RouteLabel], answered: &[(usize, &Snapshot)]) {
    family(
        out,
        "percore_requests_total",
        "counter",
        "Requests answered, by route, protocol and status class.",
    );
    for &(shard, snap) in answered {
        for (label, classes) in routes.iter().zip(&snap.requests) {
            for (at, &count) in classes.iter().enumerate().filter(|(_, c)| **c > 0) {
                let protocol = if at < CLASSES { "HTTP/1.1" } else { "HTTP/2" };
                let _ = writeln!(
                    out,
                    "percore_requests_total{{shard=\"{shard}\",method=\"{}\",route=\"{}\",protocol=\"{protocol}\",code=\"{}xx\"}} {count}",
                    label.method,
                    escape(&label.route),
                    at % CLASSES + 1
                );
            }
        }
    }
}

fn render_latency(out: &mut String, answered: &[(usize, &Snapshot)]) {
    const NAME: &str = "percore_request_duration_seconds";
    family(
        out,
        NAME,
        "histogram",
        "Time from reading a request to its response being ready; pipelined requests share their batch's time.",
    );
    for &(shard, snap) in answered {
        let mut cumulative = 0;
        for (i, &count) in snap.latency.iter().enumerate() {
            cumulative += count;
            let bound = BUCKETS_US.get(i).map_or_else(
                || "+Inf".to_owned(),
                |&us| Duration::from_micros(us).as_secs_f64().to_string(),
            );
            let _ = writeln!(
                out,
                "{NAME}_bucket{{shard=\"{shard}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let sum = Duration::from_nanos(snap.latency_sum_ns).as_secs_f64();
        let _ = writeln!(out, "{NAME}_sum{{shard=\"{shard}\"}} {sum}");
        let _ = writeln!(out, "{NAME}_count{{shard=\"{shard}\"}} {cumulative}");
    }
}

/// Connection refusals by cap, and request rejections by reason.
fn render_rejections(out: &mut String, answered: &[(usize, &Snapshot)]) {
    let caps = [
        Rejection::ShardConnectionLimit,
        Rejection::ClientConnectionLimit,
    ];
    let groups: [(&str, &str, bool); 2] = [
        (
            "percore_connections_refused_total",
            "Connections closed at once by a connection cap, by reason.",
            true,
        ),
        (
            "percore_rejections_total",
            "Requests refused before reaching a handler, or cut off, by reason.",
            false,
        ),
    ];
    for (name, help, of_caps) in groups {
        family(out, name, "counter", help);
        for &(shard, snap) in answered {
            for &reason in Rejection::ALL
                .iter()
                .filter(|r| caps.contains(r) == of_caps)
            {
                let count = snap.rejections.get(reason as usize).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{shard}\",reason=\"{}\"}} {count}",
                    reason.name()
                );
            }
        }
    }
}

/// A family with one `shard`-labelled sample for each of `samples`.
fn per_shard_family<'a, T: 'a>(
    out: &mut String,
    (name, kind, help, value): PerShard<T>,
    samples: impl Iterator<Item = (usize, &'a T)>,
) {
    family(out, name, kind, help);
    for (shard, sample) in samples {
        let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(sample));
    }
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
pub(super) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_as_prometheus_series() {
        let metrics = ShardMetrics::new(FIRST_APP_ROUTE + 1);
        let mut routes = RouteLabel::built_in();
        routes.push(RouteLabel {
            method: "GET",
            route: "/a/\"{id}\"".into(),
        });
        metrics.request(FIRST_APP_ROUTE, false, Status::OK);
        metrics.request(FIRST_APP_ROUTE, true, Status::OK);
        metrics.request(FIRST_APP_ROUTE, false, Status::OK);
        metrics.request(UNMATCHED, false, Status::NOT_FOUND);
        metrics.latency(Duration::from_micros(300), 2);
        metrics.latency(Duration::from_secs(20), 1);
        metrics.accepted();
        let counters = Counters::default();
        counters.count(Rejection::HeadTooLarge);
        let scraped = [
            Scraped {
                snapshot: Some(metrics.snapshot(3, &counters)),
                supervision: Supervision {
                    stalls: 1,
                    restarts: 2,
                },
            },
            Scraped {
                snapshot: None,
                supervision: Supervision::default(),
            },
        ];
        let text = render(&routes, &scraped);
        for line in [
            r#"percore_requests_total{shard="0",method="GET",route="/a/\"{id}\"",protocol="HTTP/1.1",code="2xx"} 2"#,
            r#"percore_requests_total{shard="0",method="GET",route="/a/\"{id}\"",protocol="HTTP/2",code="2xx"} 1"#,
            r#"percore_requests_total{shard="0",method="",route="(unmatched)",protocol="HTTP/1.1",code="4xx"} 1"#,
            r#"percore_request_duration_seconds_bucket{shard="0",le="0.00025"} 0"#,
            r#"percore_request_duration_seconds_bucket{shard="0",le="0.0005"} 2"#,
            r#"percore_request_duration_seconds_bucket{shard="0",le="10"} 2"#,
            r#"percore_request_duration_seconds_bucket{shard="0",le="+Inf"} 3"#,
            r#"percore_request_duration_seconds_count{shard="0"} 3"#,
            r#"percore_request_duration_seconds_sum{shard="0"} 20.0006"#,
            r#"percore_connections_open{shard="0"} 3"#,
            r#"percore_connections_accepted_total{shard="0"} 1"#,
            r#"percore_rejections_total{shard="0",reason="head_too_large"} 1"#,
            r#"percore_shard_up{shard="0"} 1"#,
            r#"percore_shard_up{shard="1"} 0"#,
            r#"percore_stalls_total{shard="0"} 1"#,
            r#"percore_shard_restarts_total{shard="0"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"code="5xx""#));
        // Every sample line belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }
}
