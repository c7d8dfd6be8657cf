//! `tuning/` stays true to the server: the script only looks unless told
//! to apply, and the deployment files match the defaults they depend on
//! (health paths, drain time, non-root, notify, limits).

use percore::Config;

fn read(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `key = value` lines of the sysctl file.
fn sysctls() -> Vec<(String, String)> {
    read("tuning/90-percore.conf")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l.split_once('=').expect("key = value");
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

fn current(key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/"))).ok()
}

#[test]
fn apply_tuning_without_apply_reports_every_sysctl_and_changes_nothing() {
    let before: Vec<_> = sysctls().iter().map(|(k, _)| current(k)).collect();
    let output = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/apply-tuning.sh"
        ))
        .output()
        .expect("bash runs the script");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (key, want) in sysctls() {
        let line = text
            .lines()
            .find(|l| {
                l.split_whitespace().nth(1).map(|k| k.trim_end_matches(':')) == Some(key.as_str())
            })
            .unwrap_or_else(|| panic!("{key} not reported:\n{text}"));
        assert!(
            line.starts_with("ok ") || line.starts_with("would ") || line.starts_with("skip "),
            "{line}"
        );
        if line.starts_with("would ") {
            assert!(line.ends_with(&format!("-> {want}")), "{line}");
        }
    }
    let after: Vec<_> = sysctls().iter().map(|(k, _)| current(k)).collect();
    assert_eq!(before, after, "a dry run changed a sysctl");
    assert_eq!(
        std::process::Command::new("bash")
            .args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/apply-tuning.sh"),
                "--bogus"
            ])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn deployment_files_match_the_defaults() {
    let defaults = Config::default();
    let sysctl = sysctls();
    assert!(sysctl.contains(&("net.ipv4.tcp_migrate_req".into(), "1".into())));

    let unit = read("tuning/percore.service");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitMEMLOCK=",
        "LimitNOFILE=",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "CPUAffinity=",
        "io_uring_setup",
    ] {
        assert!(unit.contains(line), "percore.service lacks {line}");
    }
    let stop: u64 = unit
        .lines()
        .find_map(|l| {
            l.strip_prefix("TimeoutStopSec=")?
                .strip_suffix('s')?
                .parse()
                .ok()
        })
        .expect("TimeoutStopSec=");
    assert!(stop > defaults.server.graceful_timeout_secs);

    let limits = read("tuning/limits.conf");
    assert!(limits.contains("nofile") && limits.contains("memlock"));

    let docker = read("tuning/Dockerfile");
    assert!(docker.matches("FROM ").count() >= 2, "multi-stage");
    assert!(docker.contains("USER percore"));
    assert!(docker.contains("HEALTHCHECK"));
    assert!(docker.contains(&format!("GET {} HTTP/1.1", defaults.health.liveness_path)));
    assert!(docker.contains("--cpuset-cpus") && docker.contains("memlock"));
    assert!(docker.contains("seccomp"));

    // Your own app's image and unit say the same, for a binary of its own.
    let app_docker = read("tuning/app.Dockerfile");
    assert!(app_docker.matches("FROM ").count() >= 2, "multi-stage");
    assert!(app_docker.contains("ARG APP") && app_docker.contains("--\"$KIND\" \"$APP\""));
    assert!(app_docker.contains(&format!("GET {} HTTP/1.1", defaults.health.liveness_path)));
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
    let app_unit = read("tuning/app.service");
    assert!(app_unit.contains("Type=notify") && app_unit.contains("ExecReload=/bin/kill -HUP"));
    assert!(app_unit.contains("EnvironmentFile="));
    // The example the unit names exists and reads its secrets from NOTES_*.
    assert!(read("examples/notes.rs").contains(".settings::<NotesSettings>(\"NOTES\")"));

    let k8s = read("tuning/k8s.yaml");
    assert!(k8s.contains(&format!(
        "path: {}, port: http",
        defaults.health.liveness_path
    )));
    assert!(k8s.contains(&format!(
        "path: {}, port: http",
        defaults.health.readiness_path
    )));
    let grace: u64 = k8s
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("terminationGracePeriodSeconds:")?
                .trim()
                .parse()
                .ok()
        })
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > defaults.server.graceful_timeout_secs + 5,
        "drain plus preStop"
    );
    // Guaranteed QoS: whole CPUs, requests equal to limits.
    assert!(k8s.contains(r#"requests: {cpu: "2", memory: 512Mi}"#));
    assert!(k8s.contains(r#"limits: {cpu: "2", memory: 512Mi}"#));
}
