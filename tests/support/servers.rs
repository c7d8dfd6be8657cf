//! Real servers for the outbound tests: a PostgreSQL cluster made with
//! `initdb` in a temporary directory, and a `redis-server`; each on a
//! loopback port, stopped when dropped. `.ci/run` installs both (Debian's
//! `postgresql` and `redis-server`).

use std::io::BufRead;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A port that was free a moment ago (the servers cannot be told to pick
/// one and report it, so the caller retries if it is taken meanwhile).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The uid and gid of `user` from /etc/passwd, when running as root (a
/// PostgreSQL server refuses to run as root).
fn unprivileged(user: &str) -> Option<(u32, u32)> {
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if !root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<_> = line.split(':').collect();
        if fields.first() != Some(&user) || fields.len() < 4 {
            return None;
        }
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    })
}

/// Waits for `child`'s standard error to print a line containing `ready`;
/// returns the lines before it. Panics with them if it exits first.
fn wait_for_line(child: &mut Child, ready: &str) -> Result<(), String> {
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        if line.contains(ready) {
            // The rest is drained until the server exits, so its writes never block.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(());
        }
        seen.push(line);
    }
    Err(seen.join("\n"))
}

/// The directory of PostgreSQL's server programs.
fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (.ci/run: apt-get install postgresql)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// A PostgreSQL server of its own: superuser `test`, database `postgres`, trust
/// authentication on loopback and its Unix socket.
pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    /// Holds the cluster and the socket; removed at drop.
    pub dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let user = unprivileged("postgres");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "test",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..5 {
            let port = free_port();
            let mut command = Command::new(bin.join("postgres"));
            command
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if let Some((uid, gid)) = user {
                command.uid(uid).gid(gid);
            }
            let mut child = command.spawn().expect("postgres starts");
            match wait_for_line(&mut child, "ready to accept connections") {
                Ok(()) => {
                    return Self {
                        child: Some(child),
                        port,
                        dir,
                    };
                }
                Err(log) if log.contains("could not bind") => {
                    let _ = child.wait();
                }
                Err(log) => panic!("postgres did not start:\n{log}"),
            }
        }
        panic!("postgres found no free port in five tries");
    }

    /// `postgres://test@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://test@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of its Unix socket.
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=test dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    /// Stops it at once, as a crash would (SIGKILL on the postmaster; its
    /// backends end with it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // SIGINT: the fast shutdown, which ends the backends too.
            super::signal(child, libc::SIGINT);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// A `redis-server` of its own, without persistence.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
                // DEBUG SLEEP makes a slow reply for the timeout tests.
                .args(["--enable-debug-command", "local"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (.ci/run: apt-get install redis-server)");
            // redis-server logs to standard output.
            let stdout = child.stdout.take().unwrap();
            let mut lines = std::io::BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            let mut ready = false;
            while let Some(Ok(line)) = lines.next() {
                if line.contains("Ready to accept connections") {
                    ready = true;
                    std::thread::spawn(move || lines.for_each(drop));
                    break;
                }
                seen.push(line);
            }
            if ready {
                return Self {
                    child: Some(child),
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = seen.join("\n");
            assert!(
                log.contains("Address already in use"),
                "redis-server did not start:\n{log}"
            );
        }
        panic!("redis-server found no free port in five tries");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
