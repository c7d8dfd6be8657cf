//! Response compression, black box: handler, streamed, static and proxied
//! responses encoded by the client's `Accept-Encoding`, decoded by real
//! decoders (curl, and Python's `gzip`, `brotli` and `zstandard` from the
//! virtualenv `.ci/run` makes), and every response that must stay as it
//! is: short, not a compressible type, HEAD, 204, 206, already encoded,
//! HTTP/1.0 streams, routes that turn it off, and the default (off).

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Mutex;

use futures_channel::mpsc::UnboundedSender;
use percore::config::{RouteConfig, ServerEntry, UpstreamConfig};
use percore::{App, Config, Json, Response, StaticConfig, Status};
use support::{Client, Reply};

/// About 20 KiB of JSON, as the issue's benchmark has it.
fn document() -> serde_json::Value {
    let items: Vec<_> = (0..300)
        .map(|i| serde_json::json!({"id": i, "name": format!("item {i}"), "tags": ["a", "b"], "price": i * 3}))
        .collect();
    serde_json::json!({ "items": items })
}

fn document_bytes() -> Vec<u8> {
    simd_json::to_vec(&document()).unwrap()
}

/// The sender of the `/events` stream being served.
static EVENTS: Mutex<Option<UnboundedSender<Vec<u8>>>> = Mutex::new(None);

fn app() -> App {
    App::new()
        .get("/json", async || Json(document()))
        .get("/raw/json", async || Json(document()))
        .get("/small", async || "short")
        .get("/png", async || {
            Response::new(Status::OK)
                .content_type("image/png")
                .body(vec![7u8; 5000])
        })
        .get("/encoded", async || {
            Response::new(Status::OK)
                .content_type("text/plain")
                .header("Content-Encoding", "gzip")
                .body(gzip(&[b'z'; 5000]))
        })
        .get("/partial", async || {
            Response::new(Status::PARTIAL_CONTENT)
                .content_type("text/plain")
                .header("Content-Range", "bytes 0-4999/10000")
                .body(vec![b'p'; 5000])
        })
        .get("/nothing", async || ())
        .get("/sized", async || {
            let pieces = (0..50).map(|i| format!("{i:04}").repeat(250).into_bytes());
            Response::new(Status::OK)
                .content_type("text/plain")
                .stream_sized(50_000, futures_lite::stream::iter(pieces))
        })
        .get("/events", async || {
            let (sender, receiver) = futures_channel::mpsc::unbounded();
            *EVENTS.lock().unwrap() = Some(sender);
            Response::new(Status::OK)
                .content_type("text/event-stream")
                .stream(receiver)
        })
}

fn compressing() -> Config {
    let mut config = support::config();
    config.compression.enabled = true;
    config
        .compression
        .types
        .push("text/event-stream".to_owned());
    config.route.push(RouteConfig {
        prefix: "/raw/".into(),
        compress: Some(false),
        ..RouteConfig::default()
    });
    config
}

fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    if let Some(accept) = accept {
        raw.push_str("Accept-Encoding: ");
        raw.push_str(accept);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    Client::connect(addr).request(raw.as_bytes())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

/// `body` decoded by Python's own decoder of `encoding`.
fn python_decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let module = match encoding {
        "gzip" => "import gzip; out = gzip.decompress(data)",
        "br" => "import brotli; out = brotli.decompress(data)",
        _ => {
            "import zstandard; out = zstandard.ZstdDecompressor().decompressobj().decompress(data)"
        }
    };
    let script = format!(
        "import sys; data = sys.stdin.buffer.read(); {module}; sys.stdout.buffer.write(out)"
    );
    let mut child = std::process::Command::new(support::python())
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python could not decode {encoding}"
    );
    output.stdout
}

#[test]
fn json_is_compressed_in_the_coding_the_client_prefers() {
    let server = app().start(&compressing()).unwrap();
    let addr = support::addr(&server);
    let original = document_bytes();
    assert!(original.len() > 15_000, "{}", original.len());
    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=1, br;q=0.1", "gzip"),
        ("*", "br"),
    ] {
        let reply = get(addr, "/json", Some(accept));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), Some(expected), "{accept}");
        assert_eq!(reply.header("vary"), Some("Accept-Encoding"));
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        assert!(reply.body.len() < original.len() / 3, "{accept}");
        assert_eq!(decode(expected, &reply.body), original, "{accept}");
        assert_eq!(python_decode(expected, &reply.body), original, "{accept}");
    }
    // curl decodes each coding it is offered.
    for coding in ["gzip", "br", "zstd"] {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--compressed", "-H"])
            .arg(format!("Accept-Encoding: {coding}"))
            .arg("-D")
            .arg("/dev/stderr")
            .arg(format!("http://{addr}/json"))
            .output()
            .unwrap();
        assert!(output.status.success());
        let head = String::from_utf8_lossy(&output.stderr).to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-encoding: {coding}")),
            "{head}"
        );
        assert_eq!(output.stdout, original, "curl --compressed, {coding}");
    }
    server.stop().unwrap();
}

#[test]
fn what_must_stay_as_it_is_is_not_compressed() {
    let server = app().start(&compressing()).unwrap();
    let addr = support::addr(&server);
    let all = Some("gzip, br, zstd");
    // No Accept-Encoding (or identity only): as is, and says it varies.
    for accept in [None, Some("identity"), Some("gzip;q=0")] {
        let plain = get(addr, "/json", accept);
        assert_eq!(plain.header("content-encoding"), None, "{accept:?}");
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        assert_eq!(plain.body, document_bytes());
    }
    // Shorter than min_length, or not a compressible type.
    assert_eq!(get(addr, "/small", all).header("content-encoding"), None);
    let png = get(addr, "/png", all);
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
    assert_eq!(png.body.len(), 5000);
    // Already encoded: untouched, encoded once.
    let encoded = get(addr, "/encoded", all);
    assert_eq!(encoded.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &encoded.body), vec![b'z'; 5000]);
    // A partial response, and one with no body.
    let partial = get(addr, "/partial", all);
    assert_eq!(partial.status, 206);
    assert_eq!(partial.header("content-encoding"), None);
    assert_eq!(partial.body.len(), 5000);
    let nothing = get(addr, "/nothing", all);
    assert_eq!(nothing.status, 204);
    assert_eq!(nothing.header("content-encoding"), None);
    // HEAD: the uncompressed head.
    let mut client = Client::connect(addr);
    client.send(b"HEAD /json HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let head = client.read_reply(true);
    assert_eq!(head.header("content-encoding"), None);
    assert_eq!(
        head.header("content-length"),
        Some(document_bytes().len().to_string().as_str())
    );
    // A route that turns it off.
    let raw = get(addr, "/raw/json", all);
    assert_eq!(raw.header("content-encoding"), None);
    assert_eq!(raw.header("vary"), None);
    server.stop().unwrap();
    // Off unless configured.
    let server = app().start(&support::config()).unwrap();
    let off = get(support::addr(&server), "/json", all);
    assert_eq!(off.header("content-encoding"), None);
    assert_eq!(off.header("vary"), None);
    server.stop().unwrap();
}

#[test]
fn a_sized_stream_is_compressed_as_chunks_and_http10_gets_it_as_is() {
    let server = app().start(&compressing()).unwrap();
    let addr = support::addr(&server);
    let original: Vec<u8> = (0..50)
        .flat_map(|i| format!("{i:04}").repeat(250).into_bytes())
        .collect();
    for coding in ["gzip", "br", "zstd"] {
        let reply = get(addr, "/sized", Some(coding));
        assert_eq!(reply.header("content-encoding"), Some(coding));
        assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
        assert_eq!(reply.header("content-length"), None);
        assert_eq!(decode(coding, &reply.body), original);
        assert_eq!(python_decode(coding, &reply.body), original);
    }
    let mut client = Client::connect(addr);
    client.send(b"GET /sized HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n");
    let old = client.read_reply(false);
    assert_eq!(old.header("content-encoding"), None);
    assert_eq!(old.body, original);
    server.stop().unwrap();
}

/// Reads chunks of a chunked body until `decoder` has produced `wanted`.
fn read_until_decoded(
    stream: &mut std::net::TcpStream,
    pending: &mut Vec<u8>,
    decoder: &mut flate2::write::GzDecoder<Vec<u8>>,
    wanted: &[u8],
) {
    // Bounded: each turn reads or fails within the socket's read timeout.
    for _ in 0..1000 {
        while let Some(line_end) = pending.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&pending[..line_end]).unwrap(), 16)
                    .unwrap();
            if pending.len() < line_end + 2 + size + 2 {
                break;
            }
            decoder
                .write_all(&pending[line_end + 2..line_end + 2 + size])
                .unwrap();
            decoder.flush().unwrap();
            pending.drain(..line_end + 2 + size + 2);
            if decoder.get_ref().ends_with(wanted) {
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        let read =
            support::read_some(stream, &mut chunk).expect("the next piece within the timeout");
        assert!(read > 0, "the stream ended before {wanted:?} decoded");
        pending.extend_from_slice(&chunk[..read]);
    }
    panic!("{wanted:?} never decoded");
}

#[test]
fn a_stream_is_flushed_piece_by_piece() {
    let server = app().start(&compressing()).unwrap();
    let addr = support::addr(&server);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let read = support::read_some(&mut stream, &mut chunk).unwrap();
        assert!(read > 0);
        pending.extend_from_slice(&chunk[..read]);
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    pending.drain(..head_end + 4);
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    // The first event decodes while the stream is still open: it was
    // flushed, not held for the next.
    let sender = EVENTS.lock().unwrap().clone().expect("the stream started");
    sender.unbounded_send(b"data: one\n\n".to_vec()).unwrap();
    read_until_decoded(&mut stream, &mut pending, &mut decoder, b"data: one\n\n");
    sender.unbounded_send(b"data: two\n\n".to_vec()).unwrap();
    read_until_decoded(&mut stream, &mut pending, &mut decoder, b"data: two\n\n");
    drop(sender);
    EVENTS.lock().unwrap().take();
    // The end: the gzip trailer, then the last chunk.
    let mut rest = Vec::new();
    for _ in 0..100 {
        if pending.ends_with(b"0\r\n\r\n") {
            break;
        }
        let mut chunk = [0u8; 4096];
        let read = support::read_some(&mut stream, &mut chunk).unwrap();
        assert!(read > 0, "the stream was cut");
        pending.extend_from_slice(&chunk[..read]);
    }
    rest.extend_from_slice(&pending);
    assert!(rest.ends_with(b"0\r\n\r\n"), "no last chunk");
    server.stop().unwrap();
}

#[test]
fn proxied_and_static_responses_are_compressed_once() {
    // The upstream compresses only /json's twin under /pre/.
    let upstream = App::new()
        .get("/api/json", async || Json(document()))
        .get("/api/pre", async || {
            Response::new(Status::OK)
                .content_type("application/json")
                .header("Content-Encoding", "gzip")
                .body(gzip(&document_bytes()))
        })
        .start(&support::config())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let css = "a { color: blue; }\n".repeat(200);
    std::fs::write(dir.path().join("site.css"), &css).unwrap();
    let mut config = support::config();
    config.compression.enabled = true;
    config.upstream.push(UpstreamConfig {
        name: "app".into(),
        servers: vec![ServerEntry::Address(support::addr(&upstream).to_string())],
        ..UpstreamConfig::default()
    });
    config.route.push(RouteConfig {
        prefix: "/api/".into(),
        proxy: "app".into(),
        ..RouteConfig::default()
    });
    config.route.push(RouteConfig {
        prefix: "/s/".into(),
        files: Some(StaticConfig {
            alias: dir.path().to_str().unwrap().into(),
            ..StaticConfig::default()
        }),
        ..RouteConfig::default()
    });
    let front = App::new().start(&config).unwrap();
    let addr = support::addr(&front);
    let proxied = get(addr, "/api/json", Some("zstd"));
    assert_eq!(proxied.header("content-encoding"), Some("zstd"));
    assert_eq!(decode("zstd", &proxied.body), document_bytes());
    let pre = get(addr, "/api/pre", Some("br, gzip"));
    assert_eq!(pre.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &pre.body), document_bytes());
    // A static file with no precompressed sibling is compressed here, and
    // its tag becomes weak (another representation of the same file).
    let plain = get(addr, "/s/site.css", None);
    let strong = plain.header("etag").unwrap().to_owned();
    let packed = get(addr, "/s/site.css", Some("gzip"));
    assert_eq!(packed.header("content-encoding"), Some("gzip"));
    assert_eq!(packed.header("etag"), Some(format!("W/{strong}").as_str()));
    assert_eq!(decode("gzip", &packed.body), css.as_bytes());
    // A range of it is sent as is.
    let mut client = Client::connect(addr);
    client.send(
        b"GET /s/site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nRange: bytes=0-9\r\n\r\n",
    );
    let part = client.read_reply(false);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-encoding"), None);
    assert_eq!(part.body, &css.as_bytes()[..10]);
    front.stop().unwrap();
    upstream.stop().unwrap();
}
