//! Static files, black box: the RFC 9110 conditional-request and range
//! table (each rule and its valid neighbour, for a file kept in memory and
//! one streamed from disk), a hostile corpus of paths that must never leave
//! the root, index files and redirects, precompressed siblings chosen by
//! q-value, the open-file cache seeing a replaced file, the configuration's
//! errors, and a 1 GiB file through curl over HTTP and HTTPS.

mod support;

use std::io::Write;
use std::net::SocketAddr;

use percore::config::RouteConfig;
use percore::{App, Config, Server, StaticConfig};
use support::{Client, Reply};

/// A root with a small file, a large one, a directory with an index, a
/// dotfile, precompressed siblings, symlinks in and out, and a FIFO; a
/// secret beside the root.
struct Tree {
    dir: tempfile::TempDir,
}

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join("noindex")).unwrap();
        std::fs::write(root.join("small.txt"), "0123456789abcdefghij").unwrap();
        std::fs::write(root.join("large.bin"), pattern(300_000)).unwrap();
        std::fs::write(root.join("sub/index.html"), "<h1>sub</h1>").unwrap();
        std::fs::write(root.join("sub/deeper/x.json"), "{\"deep\":true}").unwrap();
        std::fs::write(root.join(".env"), SECRET).unwrap();
        std::fs::write(root.join("caf\u{e9}.txt"), "accented").unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.txt"), SECRET).unwrap();
        let css = "body { color: red; }\n".repeat(100);
        std::fs::write(root.join("app.css"), &css).unwrap();
        std::fs::write(root.join("app.css.gz"), gzip(css.as_bytes())).unwrap();
        std::fs::write(root.join("app.css.br"), brotli(css.as_bytes())).unwrap();
        std::fs::write(
            root.join("app.css.zst"),
            zstd::encode_all(css.as_bytes(), 3).unwrap(),
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", root.join("leak-relative")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("leak-dir")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
        std::os::unix::fs::symlink("small.txt", root.join("alias.txt")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        Self { dir }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }
}

/// Deterministic bytes that do not compress to nothing.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 20);
        writer.write_all(bytes).unwrap();
    }
    out
}

fn static_route(prefix: &str, files: StaticConfig) -> RouteConfig {
    RouteConfig {
        prefix: prefix.to_owned(),
        files: Some(files),
        ..RouteConfig::default()
    }
}

fn alias(tree: &Tree) -> StaticConfig {
    StaticConfig {
        alias: tree.root().to_str().unwrap().to_owned(),
        ..StaticConfig::default()
    }
}

fn serve(config: &Config) -> Server {
    App::new()
        .get("/app", async || "app route")
        .start(config)
        .expect("starts")
}

fn with_route(route: RouteConfig) -> Config {
    let mut config = support::config();
    config.route.push(route);
    config
}

fn request(addr: SocketAddr, method: &str, path: &str, fields: &[(&str, &str)]) -> Reply {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n");
    for (name, value) in fields {
        raw.push_str(name);
        raw.push_str(": ");
        raw.push_str(value);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    let mut client = Client::connect(addr);
    client.send(raw.as_bytes());
    client.read_reply(method == "HEAD")
}

fn get(addr: SocketAddr, path: &str, fields: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, fields)
}

/// The parts of a `multipart/byteranges` body: each part's
/// `Content-Range` and bytes.
fn byteranges(reply: &Reply) -> Vec<(String, Vec<u8>)> {
    let content_type = reply.header("content-type").unwrap();
    let boundary = content_type
        .split_once("boundary=")
        .expect("a boundary")
        .1
        .to_owned();
    let delimiter = format!("--{boundary}");
    let body = &reply.body;
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0).expect("a first delimiter");
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            break;
        }
        let head_end = find(body, b"\r\n\r\n", at).unwrap();
        let head = std::str::from_utf8(&body[at..head_end]).unwrap();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_owned();
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), head_end).unwrap();
        parts.push((range, body[head_end + 4..next].to_vec()));
        at = next + 2;
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[test]
#[allow(clippy::too_many_lines, reason = "one table, read top to bottom")]
fn conditional_requests_and_ranges_follow_rfc_9110() {
    let tree = Tree::new();
    // The large file is above cache_file_bytes: it goes from disk, spliced
    // (sendfile) or read in chunks, so every path (kept bytes, splices,
    // chunks) meets the same table.
    for sendfile in [true, false] {
        let files = StaticConfig {
            sendfile,
            ..alias(&tree)
        };
        let server = serve(&with_route(static_route("/s/", files)));
        the_table(support::addr(&server));
        server.stop().unwrap();
    }
}

#[allow(clippy::too_many_lines, reason = "one table, read top to bottom")]
fn the_table(addr: SocketAddr) {
    let large = pattern(300_000);
    for (path, content) in [
        ("/s/small.txt", b"0123456789abcdefghij".to_vec()),
        ("/s/large.bin", large.clone()),
    ] {
        let len = content.len();
        let whole = get(addr, path, &[]);
        assert_eq!(whole.status, 200, "{path}");
        assert_eq!(whole.body, content, "{path}");
        assert_eq!(whole.header("accept-ranges"), Some("bytes"));
        let etag = whole.header("etag").expect("an ETag").to_owned();
        assert!(etag.starts_with('"'), "a strong tag: {etag}");
        let modified = whole.header("last-modified").unwrap().to_owned();
        let before = "Sat, 01 Jan 2000 00:00:00 GMT";
        let weak = format!("W/{etag}");
        let status = |fields: &[(&str, &str)]| get(addr, path, fields).status;
        // If-Match: strong comparison.
        assert_eq!(status(&[("If-Match", &etag)]), 200);
        assert_eq!(status(&[("If-Match", &format!("\"x\", {etag}"))]), 200);
        assert_eq!(status(&[("If-Match", "*")]), 200);
        assert_eq!(status(&[("If-Match", "\"other\"")]), 412);
        assert_eq!(status(&[("If-Match", &weak)]), 412);
        // If-Unmodified-Since, only without If-Match.
        assert_eq!(status(&[("If-Unmodified-Since", &modified)]), 200);
        assert_eq!(status(&[("If-Unmodified-Since", before)]), 412);
        assert_eq!(status(&[("If-Unmodified-Since", "garbage")]), 200);
        assert_eq!(
            status(&[("If-Match", &etag), ("If-Unmodified-Since", before)]),
            200
        );
        // If-None-Match: weak comparison; 304 with the validators, no body.
        let not_modified = get(addr, path, &[("If-None-Match", &etag)]);
        assert_eq!(not_modified.status, 304);
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
        assert!(not_modified.header("content-length").is_none());
        assert_eq!(status(&[("If-None-Match", &weak)]), 304);
        assert_eq!(status(&[("If-None-Match", "*")]), 304);
        assert_eq!(status(&[("If-None-Match", "\"other\"")]), 200);
        // If-Modified-Since, only without If-None-Match.
        assert_eq!(status(&[("If-Modified-Since", &modified)]), 304);
        assert_eq!(status(&[("If-Modified-Since", before)]), 200);
        assert_eq!(
            status(&[
                ("If-None-Match", "\"other\""),
                ("If-Modified-Since", &modified)
            ]),
            200
        );
        // If-Match fails first, whatever If-None-Match says.
        assert_eq!(
            status(&[("If-Match", "\"other\""), ("If-None-Match", &etag)]),
            412
        );
        // One range.
        let first = get(addr, path, &[("Range", "bytes=0-4")]);
        assert_eq!(first.status, 206);
        assert_eq!(first.body, &content[..5]);
        assert_eq!(
            first.header("content-range"),
            Some(format!("bytes 0-4/{len}").as_str())
        );
        let suffix = get(addr, path, &[("Range", "bytes=-3")]);
        assert_eq!(suffix.body, &content[len - 3..]);
        let open = get(addr, path, &[("Range", "bytes=10-")]);
        assert_eq!(open.body, &content[10..]);
        let clipped = get(addr, path, &[("Range", "bytes=15-999999999")]);
        assert_eq!(clipped.body, &content[15..]);
        // Several: multipart/byteranges, each part with its range.
        let several = get(addr, path, &[("Range", "bytes=0-1, 5-7, -2")]);
        assert_eq!(several.status, 206);
        assert!(
            several
                .header("content-type")
                .unwrap()
                .starts_with("multipart/byteranges; boundary=")
        );
        let parts = byteranges(&several);
        assert_eq!(
            parts,
            vec![
                (format!("bytes 0-1/{len}"), content[0..2].to_vec()),
                (format!("bytes 5-7/{len}"), content[5..8].to_vec()),
                (
                    format!("bytes {}-{}/{len}", len - 2, len - 1),
                    content[len - 2..].to_vec()
                ),
            ]
        );
        // Overlapping ranges are merged: no byte twice.
        let merged = get(addr, path, &[("Range", "bytes=0-5,3-9")]);
        assert_eq!(merged.status, 206);
        assert_eq!(merged.body, &content[..10]);
        // Unsatisfiable: 416 with the length.
        let beyond = get(addr, path, &[("Range", &format!("bytes={len}-"))]);
        assert_eq!(beyond.status, 416);
        assert_eq!(
            beyond.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
        // Malformed, or another unit: the whole file.
        assert_eq!(status(&[("Range", "bytes=9-2")]), 200);
        assert_eq!(status(&[("Range", "lines=1-2")]), 200);
        // If-Range: the range only while the validator is current.
        assert_eq!(status(&[("Range", "bytes=0-1"), ("If-Range", &etag)]), 206);
        assert_eq!(
            status(&[("Range", "bytes=0-1"), ("If-Range", "\"old\"")]),
            200
        );
        assert_eq!(status(&[("Range", "bytes=0-1"), ("If-Range", &weak)]), 200);
        assert_eq!(
            status(&[("Range", "bytes=0-1"), ("If-Range", &modified)]),
            206
        );
        assert_eq!(status(&[("Range", "bytes=0-1"), ("If-Range", before)]), 200);
        // A range of a file that is not modified is still a 304.
        assert_eq!(
            status(&[("Range", "bytes=0-1"), ("If-None-Match", &etag)]),
            304
        );
        // HEAD: the same head, no body.
        let head = request(addr, "HEAD", path, &[]);
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(len.to_string().as_str())
        );
        assert_eq!(head.header("etag"), Some(etag.as_str()));
        // After all of that, the connection still frames correctly.
        let mut client = Client::connect(addr);
        for _ in 0..3 {
            client.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            assert_eq!(client.read_reply(false).body, content);
        }
    }
}

#[test]
fn a_file_truncated_while_sent_reaches_the_client_cut_off() {
    for sendfile in [true, false] {
        let tree = Tree::new();
        let path = tree.root().join("shrinking.bin");
        std::fs::write(&path, pattern(32 << 20)).unwrap();
        let files = StaticConfig {
            sendfile,
            ..alias(&tree)
        };
        let server = serve(&with_route(static_route("/s/", files)));
        let mut stream = std::net::TcpStream::connect(support::addr(&server)).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /s/shrinking.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 4096];
        let read = support::read_some(&mut stream, &mut first).unwrap();
        assert!(first[..read].starts_with(b"HTTP/1.1 200"));
        // Cut to 1 MiB while most of it is unsent (socket buffers hold a
        // few MiB at most).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let mut total = read;
        let mut chunk = vec![0u8; 1 << 16];
        // Bounded: the body is 32 MiB at most, and each read takes bytes
        // or ends (a timeout fails the test).
        loop {
            let read =
                support::read_some(&mut stream, &mut chunk).expect("the end within the timeout");
            if read == 0 {
                break;
            }
            total += read;
            assert!(total < 40 << 20);
        }
        assert!(
            total < (32 << 20),
            "sendfile {sendfile}: {total} bytes arrived, a complete-looking body"
        );
        server.stop().unwrap();
    }
}

/// Bytes of `path` in the page cache, as `fincore` (util-linux) counts.
fn resident_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore runs");
    assert!(out.status.success(), "fincore: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_file_out_of_the_page_cache_is_sent_intact_and_then_from_the_cache() {
    // Pages in the page cache are sent by `sendfile` on the shard's
    // thread; pages that are not are spliced through the ring (its worker
    // threads wait for the disk, never the shard). Both, and a range of
    // each, give the file's own bytes.
    // Beside the build, not in /tmp: a tmpfs keeps every page resident.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("cold.bin");
    let bytes = pattern(3 << 20);
    std::fs::write(&path, &bytes).unwrap();
    // Written back, so the pages can be dropped.
    std::fs::File::open(&path).unwrap().sync_all().unwrap();
    let files = StaticConfig {
        alias: dir.path().to_str().unwrap().to_owned(),
        ..StaticConfig::default()
    };
    let server = serve(&with_route(static_route("/s/", files)));
    let addr = support::addr(&server);
    let range = (1 << 20) + 7..(2 << 20) + 11;
    let range_field = format!("bytes={}-{}", range.start, range.end - 1);
    for cold in [true, false] {
        if cold {
            // GNU dd's `nocache` with no blocks: POSIX_FADV_DONTNEED over
            // the whole file.
            let dropped = std::process::Command::new("dd")
                .arg(format!("if={}", path.display()))
                .args(["iflag=nocache", "count=0", "status=none"])
                .status()
                .unwrap();
            assert!(dropped.success());
            assert_eq!(resident_bytes(&path), 0, "the file left the page cache");
        }
        let whole = get(addr, "/s/cold.bin", &[]);
        assert_eq!(whole.status, 200);
        assert!(whole.body == bytes, "cold {cold}: the whole file differs");
        let part = get(addr, "/s/cold.bin", &[("Range", &range_field)]);
        assert_eq!(part.status, 206);
        assert!(
            part.body == bytes[range.clone()],
            "cold {cold}: the range differs"
        );
    }
    assert_eq!(
        resident_bytes(&path),
        3 << 20,
        "sending read the file into the cache"
    );
    server.stop().unwrap();
}

#[test]
fn methods_other_than_get_and_head_are_refused() {
    let tree = Tree::new();
    let server = serve(&with_route(static_route("/s/", alias(&tree))));
    let addr = support::addr(&server);
    let refused = request(addr, "POST", "/s/small.txt", &[("Content-Length", "0")]);
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    assert_eq!(request(addr, "GET", "/app", &[]).text(), "app route");
    server.stop().unwrap();
}

#[test]
fn hostile_paths_never_leave_the_root() {
    let tree = Tree::new();
    let server = serve(&with_route(static_route("/s/", alias(&tree))));
    let addr = support::addr(&server);
    let ups = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "..%2f",
        "..%5c",
        "%2e%2e%2f",
        "%2e%2e%5c",
        "..\\",
        "%c0%ae%c0%ae",
        "%c0%2e%c0%2e",
        "%e0%80%ae%e0%80%ae",
        "%252e%252e",
        "..%00",
        "..%01",
        "....",
        ".",
        "%2e",
    ];
    let targets = ["secret.txt", "outside/secret.txt", "etc/passwd"];
    let mut corpus: Vec<String> = Vec::new();
    for up in ups {
        for target in targets {
            corpus.push(format!("/s/{up}/{target}"));
            corpus.push(format!("/s/sub/{up}/{up}/{target}"));
        }
    }
    corpus.extend(
        [
            "/s/leak",
            "/s/leak-relative",
            "/s/leak-dir/secret.txt",
            "/s/passwd",
            "/s/magic",
            "/s/zero",
            "/s/fifo",
            "/s/.env",
            "/s/%2eenv",
            "/s/sub/../.env",
            "/s//etc/passwd",
            "/s/%2fetc%2fpasswd",
            "/s/%5cetc%5cpasswd",
            "/s/..%2f..%2f..%2fetc%2fpasswd",
            "/s/small.txt%00.html",
            "/s/small.txt%2500",
            "/s/small.txt/..",
            "/s/sub%2f..%2f..%2fsecret.txt",
            "/s/%ff%fe",
            "/s/bad%zz",
            "/s/bad%",
            "/s/\u{7f}",
        ]
        .map(String::from),
    );
    assert!(corpus.len() >= 100, "the corpus has {}", corpus.len());
    for path in &corpus {
        let mut client = Client::connect(addr);
        client.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let reply = client.read_reply(false);
        assert!(
            [400, 403, 404].contains(&reply.status),
            "{path}: {}",
            reply.status
        );
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains(SECRET) && !body.contains("root:"),
            "{path} leaked: {body}"
        );
    }
    // The neighbours that stay inside are served.
    assert_eq!(get(addr, "/s/alias.txt", &[]).status, 200);
    assert_eq!(get(addr, "/s/caf%C3%A9.txt", &[]).text(), "accented");
    assert_eq!(get(addr, "/s/sub//deeper/x.json", &[]).status, 200);
    server.stop().unwrap();
}

#[test]
fn directories_redirect_to_their_slash_and_serve_their_index() {
    let tree = Tree::new();
    let server = serve(&with_route(static_route("/s/", alias(&tree))));
    let addr = support::addr(&server);
    let redirect = get(addr, "/s/sub?x=1", &[]);
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/s/sub/?x=1"));
    let index = get(addr, "/s/sub/", &[]);
    assert_eq!(index.text(), "<h1>sub</h1>");
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    // No index, no listing.
    assert_eq!(get(addr, "/s/noindex/", &[]).status, 403);
    assert_eq!(
        get(addr, "/s/sub/deeper/x.json", &[]).header("content-type"),
        Some("application/json; charset=utf-8")
    );
    server.stop().unwrap();
}

#[test]
fn root_keeps_the_prefix_and_cache_headers_follow_the_route() {
    let tree = Tree::new();
    std::fs::create_dir_all(tree.dir.path().join("site/assets")).unwrap();
    std::fs::write(tree.dir.path().join("site/assets/a.js"), "let a = 1;").unwrap();
    let files = StaticConfig {
        root: tree.dir.path().join("site").to_str().unwrap().to_owned(),
        cache_control: "public, immutable".into(),
        expires_secs: Some(31_536_000),
        ..StaticConfig::default()
    };
    let server = serve(&with_route(static_route("/assets/", files)));
    let addr = support::addr(&server);
    let reply = get(addr, "/assets/a.js", &[]);
    assert_eq!(reply.text(), "let a = 1;");
    assert_eq!(
        reply.header("cache-control"),
        Some("max-age=31536000, public, immutable")
    );
    let expires = httpdate::parse_http_date(reply.header("expires").unwrap()).unwrap();
    let ahead = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((31_536_000 - 60..=31_536_000).contains(&ahead), "{ahead}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    server.stop().unwrap();
}

#[test]
fn precompressed_siblings_are_chosen_by_q_value() {
    let tree = Tree::new();
    let server = serve(&with_route(static_route("/s/", alias(&tree))));
    let addr = support::addr(&server);
    let css = "body { color: red; }\n".repeat(100);
    let cases: [(&str, Option<&str>); 8] = [
        ("", None),
        ("gzip", Some("gzip")),
        ("gzip, br", Some("br")),
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("zstd, gzip;q=0.9", Some("zstd")),
        ("br;q=0, *;q=0.1", Some("zstd")),
        ("identity", None),
        ("*;q=0", None),
    ];
    let mut tags = std::collections::HashSet::new();
    for (accept, expected) in cases {
        let fields: Vec<(&str, &str)> = if accept.is_empty() {
            vec![]
        } else {
            vec![("Accept-Encoding", accept)]
        };
        let reply = get(addr, "/s/app.css", &fields);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), expected, "{accept}");
        assert_eq!(reply.header("vary"), Some("Accept-Encoding"));
        assert_eq!(
            reply.header("content-type"),
            Some("text/css; charset=utf-8")
        );
        let decoded = match expected {
            None => reply.body.clone(),
            Some("gzip") => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&reply.body[..]),
                    &mut out,
                )
                .unwrap();
                out
            }
            Some("br") => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut brotli::Decompressor::new(&reply.body[..], 4096),
                    &mut out,
                )
                .unwrap();
                out
            }
            Some(_) => zstd::decode_all(&reply.body[..]).unwrap(),
        };
        assert_eq!(decoded, css.as_bytes(), "{accept}");
        tags.insert(reply.header("etag").unwrap().to_owned());
    }
    // Each representation has its own tag.
    assert_eq!(tags.len(), 4);
    // A range of a precompressed representation is a range of its bytes.
    let part = get(
        addr,
        "/s/app.css",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-1")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, [0x1f, 0x8b]);
    server.stop().unwrap();
}

#[test]
fn a_replaced_file_is_served_once_the_cache_checks_it_again() {
    let tree = Tree::new();
    let files = StaticConfig {
        cache_valid_ms: 0,
        ..alias(&tree)
    };
    let server = serve(&with_route(static_route("/s/", files)));
    let addr = support::addr(&server);
    assert_eq!(
        get(addr, "/s/small.txt", &[]).text(),
        "0123456789abcdefghij"
    );
    // A deploy's atomic rename: another inode under the same name.
    let fresh = tree.dir.path().join("fresh.txt");
    std::fs::write(&fresh, "replaced").unwrap();
    std::fs::rename(&fresh, tree.root().join("small.txt")).unwrap();
    assert_eq!(get(addr, "/s/small.txt", &[]).text(), "replaced");
    std::fs::remove_file(tree.root().join("small.txt")).unwrap();
    assert_eq!(get(addr, "/s/small.txt", &[]).status, 404);
    server.stop().unwrap();
}

#[test]
fn files_from_code_serve_the_same() {
    let tree = Tree::new();
    let server = App::new()
        .files("/files", alias(&tree))
        .start(&support::config())
        .unwrap();
    let addr = support::addr(&server);
    assert_eq!(get(addr, "/files/small.txt", &[]).status, 200);
    assert_eq!(get(addr, "/files/.env", &[]).status, 404);
    server.stop().unwrap();
}

#[test]
fn bad_static_settings_are_refused_with_their_key() {
    let tree = Tree::new();
    let cases = [
        (
            StaticConfig {
                root: "/nonexistent/dir".into(),
                ..StaticConfig::default()
            },
            "route[0].static.root",
        ),
        (
            StaticConfig {
                root: tree.root().to_str().unwrap().into(),
                ..alias(&tree)
            },
            "route[0].static",
        ),
        (
            StaticConfig {
                chunk_bytes: 10,
                ..alias(&tree)
            },
            "route[0].static.chunk_bytes",
        ),
    ];
    for (files, key) in cases {
        let config = with_route(static_route("/s/", files));
        let problems = config.validate();
        assert!(
            problems.iter().any(|p| p.key == key),
            "{key} not in {problems:?}"
        );
    }
}

/// A TLS listener beside the plain one, serving `route`.
fn tls_config(pki: &support::pki::Pki, route: RouteConfig) -> Config {
    let mut config = with_route(route);
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![pki.leaf("static", &["localhost", "127.0.0.1"])];
    config
}

fn sha256_of(command: &mut std::process::Command) -> String {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_gibibyte_downloads_intact_over_http_and_https() {
    let tree = Tree::new();
    let big = tree.root().join("gibibyte.bin");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let block = pattern(1 << 20);
        for i in 0..1024u32 {
            // Each mebibyte differs, so a misplaced chunk changes the sum.
            file.write_all(&i.to_le_bytes()).unwrap();
            file.write_all(&block[4..]).unwrap();
        }
        file.flush().unwrap();
    }
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 1 << 30);
    let expected = sha256_of(std::process::Command::new("sha256sum").arg(&big));
    let pki = support::pki::Pki::new("static-files");
    let server = serve(&tls_config(&pki, static_route("/s/", alias(&tree))));
    let addrs = server.local_addrs();
    let shell = |url: String| {
        let ca = pki.ca_file();
        let script = format!(
            "set -o pipefail; curl -sS --fail --cacert '{}' '{url}' | sha256sum",
            ca.display()
        );
        sha256_of(std::process::Command::new("bash").args(["-c", &script]))
    };
    assert_eq!(
        shell(format!("http://{}/s/gibibyte.bin", addrs[0])),
        expected
    );
    assert_eq!(
        shell(format!("https://{}/s/gibibyte.bin", server.tls_addrs()[0])),
        expected
    );
    server.stop().unwrap();
}

/// Reads one response with a `Content-Length` body from `stream`, the
/// body 64 KiB at a time with a pause between: a slow client, whose
/// socket fills on the server's side.
fn read_sized(stream: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    for piece in body.chunks_mut(64 << 10) {
        stream.read_exact(piece).expect("the whole body");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    (head, body)
}

#[test]
fn a_file_read_from_disk_follows_one_sent_from_the_page_cache_intact() {
    // The first response goes out with `sendfile` (its pages are cached);
    // the second file is not in the page cache, so it is spliced through
    // the ring, to a slow reader whose socket fills on the server's side.
    // Both paths on one connection, each body whole and in order.
    let tree = Tree::new();
    let cold = tree.root().join("cold.bin");
    std::fs::write(&cold, pattern(16 << 20)).unwrap();
    let dropped = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); \
             os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)",
        ])
        .arg(&cold)
        .status()
        .expect("python3 runs");
    assert!(dropped.success());
    let server = serve(&with_route(static_route("/s/", alias(&tree))));
    let mut stream = std::net::TcpStream::connect(support::addr(&server)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    for (path, expected) in [
        ("/s/large.bin", pattern(300_000)),
        ("/s/cold.bin", pattern(16 << 20)),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let (head, body) = read_sized(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body == expected, "{path}: the body differs");
    }
    server.stop().unwrap();
}
