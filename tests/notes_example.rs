//! `examples/notes.rs` works as its comments say: run as a binary with its
//! own settings, auth, validation, uploads, the live feed and a reload.
//! (`cargo test` builds examples; alone, run `cargo build --examples` first.)

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::Duration;

use support::{Client, LogLines, get};

fn notes_example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_percore"))
        .parent()
        .unwrap()
        .join("examples")
        .join("notes")
}

fn post_note(token: Option<&str>, body: &str) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST /notes HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn the_notes_service_works_as_documented() {
    let binary = notes_example();
    assert!(binary.exists(), "{} not built", binary.display());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.toml");
    std::fs::write(&file, "[app]\ntitle = \"Notes\"\n").unwrap();
    let mut command = Command::new(&binary);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--config",
        ])
        .arg(&file)
        .env("NOTES_TOKEN", "secret")
        .env("NOTES_UPLOAD_DIR", dir.path());
    let spawned = support::spawn_ready(command);
    let server = spawned.addrs[0];
    let mut log = LogLines::new(spawned.lines);
    let mut client = Client::connect(server);
    assert!(client.request(&get("/")).text().starts_with("Notes: "));

    auth_and_validation(&mut client);
    feed_and_shards(server, &mut client, &mut log);
    attachment(server, &mut client, dir.path());
    reload(&spawned.child, server, &file, &mut log);
    let mut child = spawned.child;
    support::sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// Auth (401 with a challenge, 403), then validation: every failing field,
/// and the rules the type cannot say.
fn auth_and_validation(client: &mut Client) {
    let reply = client.request(&post_note(None, r#"{"title":"a","body":"b"}"#));
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        client
            .request(&post_note(Some("nope"), r#"{"title":"a","body":"b"}"#))
            .status,
        403
    );

    let reply = client.request(&post_note(Some("secret"), r#"{"title":5}"#));
    assert_eq!(reply.status, 422);
    let detail: serde_json::Value = serde_json::from_str(reply.text()).unwrap();
    let locs: Vec<_> = detail["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"].clone())
        .collect();
    assert_eq!(
        locs,
        [
            serde_json::json!(["body", "title"]),
            serde_json::json!(["body", "body"])
        ]
    );
    let reply = client.request(&post_note(Some("secret"), r#"{"title":" ","body":"b"}"#));
    assert_eq!(reply.status, 422);
    assert!(reply.text().contains("string_length"), "{}", reply.text());
}

/// The feed, opened before the note exists, gets it; whichever shard
/// answers sees it.
fn feed_and_shards(server: std::net::SocketAddr, client: &mut Client, log: &mut LogLines) {
    let mut feed = std::net::TcpStream::connect(server).unwrap();
    feed.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    feed.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();

    let reply = client.request(&post_note(
        Some("secret"),
        r#"{"title":"hi","body":"first","tags":["a"]}"#,
    ));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let note: serde_json::Value = serde_json::from_str(reply.text()).unwrap();
    assert_eq!(note["id"], 1);
    log.wait_for("audit: note created");

    let mut lines = BufReader::new(feed);
    let mut seen = Vec::new();
    for _ in 0..40 {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        let done = line.starts_with("id: 1");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.starts_with("event: note")),
        "{seen:?}"
    );
    assert!(seen.last().unwrap().starts_with("id: 1"), "{seen:?}");

    // Whichever shard answers sees the note.
    for _ in 0..16 {
        let reply = Client::connect(server).request(&get("/notes/1"));
        assert_eq!(reply.status, 200);
    }
    assert_eq!(
        client
            .request(&get("/notes?tag=a"))
            .text()
            .matches("\"id\":1")
            .count(),
        1
    );
    assert_eq!(client.request(&get("/notes?tag=b")).text(), "[]");
}

/// An attachment past `limits.max_body_bytes`, streamed to the upload dir.
fn attachment(server: std::net::SocketAddr, client: &mut Client, dir: &std::path::Path) {
    let upload = dir.join("upload.bin");
    std::fs::write(&upload, vec![7u8; 3 << 20]).unwrap();
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-H",
            "Authorization: Bearer secret",
            "-T",
        ])
        .arg(&upload)
        .arg(format!("http://{server}/notes/1/attachment"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "3145728 bytes\n");
    assert_eq!(
        std::fs::read(dir.join("note-1.attachment")).unwrap().len(),
        3 << 20
    );
    assert!(
        client
            .request(&get("/notes/1"))
            .text()
            .contains("\"attachment_bytes\":3145728")
    );
}

/// A reload puts new settings in force; settings that do not fit are refused.
fn reload(
    child: &std::process::Child,
    server: std::net::SocketAddr,
    file: &std::path::Path,
    log: &mut LogLines,
) {
    std::fs::write(file, "[app]\ntitle = \"Jots\"\n").unwrap();
    support::signal(child, libc::SIGHUP);
    log.wait_for("configuration reloaded");
    assert!(
        Client::connect(server)
            .request(&get("/"))
            .text()
            .starts_with("Jots: ")
    );
    std::fs::write(file, "[app]\nmax_notes = \"lots\"\n").unwrap();
    support::signal(child, libc::SIGHUP);
    let refused = log.wait_for("reload refused");
    assert!(refused.contains("app.max_notes"), "{refused}");
}

#[test]
fn without_its_token_the_service_does_not_start_and_says_why() {
    let output = Command::new(notes_example())
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .env_remove("NOTES_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("app") && err.contains("token"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
