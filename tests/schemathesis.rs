//! schemathesis (a property-based OpenAPI tester, from PyPI) against the
//! reference app and the notes example: no server error, and no status,
//! content type, header or body that the document does not allow.
//!
//! `.ci/run` installs it and sets `SCHEMATHESIS`; elsewhere put
//! `schemathesis` on the `PATH` (`pip install schemathesis`).

mod support;

use std::process::Command;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn schemathesis() -> String {
    std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned())
}

/// Runs schemathesis against the document at `base`; panics with its
/// report unless it found nothing.
fn run_against(base: std::net::SocketAddr, extra: &[&str]) {
    let output = Command::new(schemathesis())
        .arg("run")
        .arg(format!("http://{base}/openapi.json"))
        .args(["--checks", CHECKS, "--max-examples", "30", "--no-color"])
        .args(["--workers", "2"])
        .args(extra)
        .output()
        .expect("schemathesis runs (.ci/run installs it; or pip install schemathesis)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && report.contains("passed"),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_reference_app_matches_its_document() {
    let server = percore::reference::app().start(&support::config()).unwrap();
    run_against(support::addr(&server), &[]);
    server.stop().unwrap();
}

#[test]
fn the_notes_example_matches_its_document() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_percore"))
        .parent()
        .unwrap()
        .join("examples")
        .join("notes");
    assert!(
        binary.exists(),
        "{} not built (cargo build --examples)",
        binary.display()
    );
    let uploads = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .env("NOTES_TOKEN", "secret")
        .env("NOTES_UPLOAD_DIR", uploads.path());
    let spawned = support::spawn_ready(command);
    let mut child = support::KillOnDrop(spawned.child);
    // The live feed never ends by itself (each case would wait out the
    // request timeout); its document entry is checked by the test of the
    // document (tests/openapi.rs covers the media type).
    run_against(
        spawned.addrs[0],
        &[
            "-H",
            "Authorization: Bearer secret",
            "--exclude-path",
            "/events",
        ],
    );
    support::sigterm(&child.0);
    assert!(child.0.wait().unwrap().success());
}
