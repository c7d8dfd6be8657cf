//! What the shard's proxied upstreams did, as `/metrics` and readiness read
//! it. The proxy (a layer above) registers each upstream it makes on this
//! shard with a closure that reports it; nothing here is shared between
//! shards.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::metrics::{Snapshot, escape, family};

/// What `/metrics` shows of one server, from one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServerSnapshot {
    pub(crate) server: String,
    /// Responses by status class, 1xx to 5xx.
    pub(crate) responses: [u64; 5],
    /// Failures by kind ([`FAILURE_KINDS`]).
    pub(crate) failures: [u64; 4],
    /// Time to the response head, by [`LATENCY_BUCKETS_US`] (+Inf last).
    pub(crate) latency: [u64; 11],
    pub(crate) latency_sum_us: u64,
    pub(crate) in_flight: u64,
    pub(crate) open: u64,
    pub(crate) idle: u64,
    /// In rotation.
    pub(crate) up: bool,
}

/// One upstream on one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UpstreamSnapshot {
    pub(crate) upstream: String,
    /// Its readiness follows its servers' health.
    pub(crate) readiness: bool,
    pub(crate) tunnels_open: u64,
    pub(crate) tunnels: u64,
    pub(crate) servers: Vec<ServerSnapshot>,
}

/// Kinds of upstream failure, as labelled.
pub(crate) const FAILURE_KINDS: [&str; 4] = ["connect", "timeout", "broken", "protocol"];

/// Latency buckets of the upstream response-time histogram, µs.
pub(crate) const LATENCY_BUCKETS_US: [u64; 10] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

type Report = Box<dyn Fn() -> Option<UpstreamSnapshot>>;

thread_local! {
    static UPSTREAMS: RefCell<BTreeMap<String, Report>> = RefCell::new(BTreeMap::new());
}

/// Registers (or replaces) how upstream `name` reports on this shard;
/// `report` answers `None` once the upstream is gone.
pub(crate) fn register(name: &str, report: impl Fn() -> Option<UpstreamSnapshot> + 'static) {
    UPSTREAMS.with(|all| all.borrow_mut().insert(name.to_owned(), Box::new(report)));
}

/// This shard's upstreams, by name.
pub(crate) fn snapshot() -> Vec<UpstreamSnapshot> {
    UPSTREAMS.with(|all| {
        all.borrow()
            .values()
            .filter_map(|report| report())
            .collect()
    })
}

/// The upstreams whose readiness follows their health and that have no
/// server in rotation on this shard.
pub(crate) fn unready() -> Vec<String> {
    snapshot()
        .into_iter()
        .filter(|u| u.readiness && !u.servers.iter().any(|s| s.up))
        .map(|u| u.upstream)
        .collect()
}

/// The upstream families of `/metrics`, for every shard that answered.
pub(super) fn render(out: &mut String, answered: &[(usize, &Snapshot)]) {
    if answered.iter().all(|(_, s)| s.upstreams.is_empty()) {
        return;
    }
    render_counts(out, answered);
    render_latency(out, answered);
    render_gauges(out, answered);
}

type Answered<'a> = [(usize, &'a Snapshot)];

/// Calls `f` with each server of each upstream of each shard.
fn each(
    out: &mut String,
    answered: &Answered<'_>,
    f: &dyn Fn(&mut String, usize, &str, &ServerSnapshot),
) {
    for &(shard, snap) in answered {
        for upstream in &snap.upstreams {
            for server in &upstream.servers {
                f(out, shard, &escape(&upstream.upstream), server);
            }
        }
    }
}

fn labels(shard: usize, upstream: &str, server: &ServerSnapshot) -> String {
    format!(
        "shard=\"{shard}\",upstream=\"{upstream}\",server=\"{}\"",
        escape(&server.server)
    )
}

fn render_counts(out: &mut String, answered: &Answered<'_>) {
    family(
        out,
        "percore_upstream_responses_total",
        "counter",
        "Responses from each upstream server, by status class.",
    );
    each(out, answered, &|out, shard, upstream, server| {
        for (class, &count) in server.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "percore_upstream_responses_total{{{},code=\"{}xx\"}} {count}",
                labels(shard, upstream, server),
                class + 1
            );
        }
    });
    family(
        out,
        "percore_upstream_failures_total",
        "counter",
        "Proxied requests to each upstream server that failed, by kind.",
    );
    each(out, answered, &|out, shard, upstream, server| {
        for (kind, &count) in FAILURE_KINDS.iter().zip(&server.failures) {
            let _ = writeln!(
                out,
                "percore_upstream_failures_total{{{},kind=\"{kind}\"}} {count}",
                labels(shard, upstream, server)
            );
        }
    });
}

fn render_latency(out: &mut String, answered: &Answered<'_>) {
    const LATENCY: &str = "percore_upstream_header_seconds";
    family(
        out,
        LATENCY,
        "histogram",
        "Time from sending a proxied request to its response head, per upstream server.",
    );
    each(out, answered, &|out, shard, upstream, server| {
        let labels = labels(shard, upstream, server);
        let mut cumulative = 0;
        for (i, &count) in server.latency.iter().enumerate() {
            cumulative += count;
            let bound = LATENCY_BUCKETS_US.get(i).map_or_else(
                || "+Inf".to_owned(),
                |&us| {
                    std::time::Duration::from_micros(us)
                        .as_secs_f64()
                        .to_string()
                },
            );
            let _ = writeln!(
                out,
                "{LATENCY}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        #[allow(clippy::cast_precision_loss, reason = "a sum of microseconds")]
        let sum = server.latency_sum_us as f64 / 1e6;
        let _ = writeln!(out, "{LATENCY}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{LATENCY}_count{{{labels}}} {cumulative}");
    });
}

fn render_gauges(out: &mut String, answered: &Answered<'_>) {
    for (name, help, value) in [
        (
            "percore_upstream_in_flight",
            "Proxied requests in flight to each upstream server.",
            (|s: &ServerSnapshot| s.in_flight) as fn(&ServerSnapshot) -> u64,
        ),
        (
            "percore_upstream_connections_open",
            "Connections open to each upstream server (busy or idle).",
            |s| s.open,
        ),
        (
            "percore_upstream_connections_idle",
            "Idle keep-alive connections to each upstream server.",
            |s| s.idle,
        ),
        (
            "percore_upstream_server_up",
            "Whether each upstream server is in rotation (1) or out after failures or health checks (0).",
            |s| u64::from(s.up),
        ),
    ] {
        family(out, name, "gauge", help);
        each(out, answered, &|out, shard, upstream, server| {
            let _ = writeln!(
                out,
                "{name}{{{}}} {}",
                labels(shard, upstream, server),
                value(server)
            );
        });
    }
    for (name, kind, help, value) in [
        (
            "percore_upstream_tunnels_open",
            "gauge",
            "Upgraded connections (WebSocket) tunnelled to each upstream now.",
            (|u: &UpstreamSnapshot| u.tunnels_open) as fn(&UpstreamSnapshot) -> u64,
        ),
        (
            "percore_upstream_tunnels_total",
            "counter",
            "Upgraded connections tunnelled to each upstream.",
            |u| u.tunnels,
        ),
    ] {
        family(out, name, kind, help);
        for &(shard, snap) in answered {
            for upstream in &snap.upstreams {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{shard}\",upstream=\"{}\"}} {}",
                    escape(&upstream.upstream),
                    value(upstream)
                );
            }
        }
    }
}
