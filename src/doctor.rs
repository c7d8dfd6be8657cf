//! `percore doctor`: whether this host can run percore well, one line per
//! check — PASS, WARN or FAIL — each failing line naming the fix. Exits
//! non-zero when any check fails.

use std::fmt;
use std::path::Path;

use crate::config::{Config, IoPath};
use crate::runtime::cpus::{CpuList, Usable};
use crate::uring::{Ring, RingConfig};

/// Locked memory one shard needs: glommio's registered I/O memory (64 KiB)
/// and its rings, with room to spare.
const MEMLOCK_PER_SHARD: u64 = 1 << 20;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Fine.
    Pass,
    /// Works, but not as well as it could.
    Warn,
    /// percore will not run (or not as configured).
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        })
    }
}

/// One check's outcome.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    /// The verdict.
    pub verdict: Verdict,
    /// What was checked and what was found; for WARN and FAIL, the fix.
    pub text: String,
}

fn finding(verdict: Verdict, text: impl Into<String>) -> Finding {
    Finding {
        verdict,
        text: text.into(),
    }
}

/// Runs every check for `config` on this host.
#[must_use]
pub(crate) fn examine(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    let usable = Usable::of_this_process();
    let shards = match usable.choose(config.server.shards, config.server.cpus.as_ref()) {
        Ok(cpus) => {
            findings.push(cpu_finding(&usable, &cpus));
            cpus.len()
        }
        Err(why) => {
            findings.push(finding(Verdict::Fail, format!("CPUs: {why}")));
            1
        }
    };
    findings.push(io_uring_finding(config.server.io));
    findings.push(memlock_finding(shards));
    findings.push(nofile_finding(shards, config.limits.max_connections));
    findings.push(somaxconn_finding(config.server.backlog));
    findings.push(governor_finding());
    findings.extend(sysctl_findings());
    findings
}

fn cpu_finding(usable: &Usable, cpus: &[usize]) -> Finding {
    let list = CpuList(cpus.to_vec());
    match usable.quota {
        Some(quota) if quota < usable.cpus.len() => finding(
            Verdict::Warn,
            format!(
                "CPUs: {} shard(s) on {list}; the cgroup cpu.max quota ({quota} CPU(s)) is below the {} CPUs allowed — prefer a cpuset (docker --cpuset-cpus, Kubernetes static CPU manager) so each shard owns its core",
                cpus.len(),
                usable.cpus.len()
            ),
        ),
        _ => finding(
            Verdict::Pass,
            format!("CPUs: {} shard(s) on {list}", cpus.len()),
        ),
    }
}

fn io_uring_finding(io: IoPath) -> Finding {
    // Refused outright, both I/O paths fail (glommio uses io_uring too):
    // the same verdict and fix as `percore serve` gives.
    if let Err((call, error)) = crate::uring::probe() {
        let reason = crate::runtime::refusal_reason(&error);
        return finding(
            Verdict::Fail,
            format!("io_uring: refused ({call}: {error}): {}", reason.fix()),
        );
    }
    match Ring::new(RingConfig {
        entries: 8,
        buffers: 8,
        buffer_size: 64,
        ..RingConfig::default()
    }) {
        Ok(_) => finding(
            Verdict::Pass,
            "io_uring: a ring with SINGLE_ISSUER, multishot receive and provided buffers works",
        ),
        Err(error) if io == IoPath::Glommio => finding(
            Verdict::Warn,
            format!(
                "io_uring: the shard ring is refused ({error}); server.io = \"glommio\" is set, so percore runs on glommio's streams"
            ),
        ),
        Err(error) => {
            let why = match error.raw_os_error() {
                Some(libc::EINVAL) => {
                    "the kernel lacks SINGLE_ISSUER or provided buffer rings (Linux 6.0+): upgrade, or set server.io = \"glommio\"".to_owned()
                }
                _ => "set server.io = \"glommio\" or check the kernel's io_uring support".to_owned(),
            };
            finding(
                Verdict::Fail,
                format!("io_uring: the shard ring is refused ({error}): {why}"),
            )
        }
    }
}

fn memlock_finding(shards: usize) -> Finding {
    let need = MEMLOCK_PER_SHARD * shards as u64;
    match limit("Max locked memory") {
        Some(have) if have >= need => finding(
            Verdict::Pass,
            format!(
                "locked memory: {} bytes for {shards} shard(s) (need about {need})",
                shown(have)
            ),
        ),
        Some(have) => finding(
            Verdict::Fail,
            format!(
                "locked memory: {have} bytes, {shards} shard(s) need about {need}: raise it with `ulimit -l` or LimitMEMLOCK="
            ),
        ),
        None => finding(
            Verdict::Warn,
            "locked memory: limit unreadable from /proc/self/limits",
        ),
    }
}

fn nofile_finding(shards: usize, max_connections: usize) -> Finding {
    let want = (shards * max_connections + 1024) as u64;
    match limit("Max open files") {
        Some(have) if have < want => finding(
            Verdict::Warn,
            format!(
                "open files: limit {have}, but {shards} shard(s) × limits.max_connections {max_connections} need about {want}: raise `ulimit -n` / LimitNOFILE= or lower limits.max_connections"
            ),
        ),
        Some(have) => finding(
            Verdict::Pass,
            format!("open files: {} (need about {want})", shown(have)),
        ),
        None => finding(
            Verdict::Warn,
            "open files: limit unreadable from /proc/self/limits",
        ),
    }
}

fn somaxconn_finding(backlog: u32) -> Finding {
    match read_trimmed("/proc/sys/net/core/somaxconn").and_then(|v| v.parse::<u32>().ok()) {
        Some(max) if max < backlog => finding(
            Verdict::Warn,
            format!(
                "accept queue: net.core.somaxconn {max} caps server.backlog {backlog}: raise the sysctl (tuning/90-percore.conf)"
            ),
        ),
        Some(max) => finding(
            Verdict::Pass,
            format!("accept queue: somaxconn {max} ≥ backlog {backlog}"),
        ),
        None => finding(Verdict::Warn, "accept queue: net.core.somaxconn unreadable"),
    }
}

fn governor_finding() -> Finding {
    match read_trimmed("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") {
        None => finding(
            Verdict::Pass,
            "CPU frequency: no cpufreq governor exposed (virtual machine or fixed clock)",
        ),
        Some(governor) if governor == "performance" => {
            finding(Verdict::Pass, "CPU frequency: governor performance")
        }
        Some(governor) => finding(
            Verdict::Warn,
            format!(
                "CPU frequency: governor {governor}: set `performance` (cpupower frequency-set -g performance) for steady latency"
            ),
        ),
    }
}

/// The sysctls `tuning/90-percore.conf` sets, the value it wants, and
/// whether that value is a floor (a larger one is as good).
const SYSCTLS: &[(&str, &str, bool)] = &[
    ("net/core/somaxconn", "4096", true),
    ("net/ipv4/tcp_max_syn_backlog", "4096", true),
    ("net/ipv4/tcp_tw_reuse", "1", false),
    ("net/ipv4/tcp_migrate_req", "1", false),
];

fn sysctl_findings() -> Vec<Finding> {
    SYSCTLS
        .iter()
        .map(|&(path, want, floor)| {
            let name = path.replace('/', ".");
            let enough = |value: &str| {
                value == want
                    || (floor
                        && value.parse::<u64>().ok() >= want.parse::<u64>().ok())
            };
            match read_trimmed(Path::new("/proc/sys").join(path)) {
                Some(value) if enough(&value) => finding(Verdict::Pass, format!("sysctl {name} = {value}")),
                Some(value) => finding(
                    Verdict::Warn,
                    format!("sysctl {name} = {value}, tuning/90-percore.conf sets {want}: sysctl -w {name}={want} (or scripts/apply-tuning.sh)"),
                ),
                None => finding(Verdict::Warn, format!("sysctl {name} is not available on this kernel")),
            }
        })
        .collect()
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

/// A soft limit from `/proc/self/limits` (`u64::MAX` when unlimited).
fn limit(name: &str) -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

/// A limit for people: "unlimited" or the number.
fn shown(limit: u64) -> String {
    if limit == u64::MAX {
        "unlimited".into()
    } else {
        limit.to_string()
    }
}
