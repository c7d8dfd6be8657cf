//! Request bodies read while they arrive: uploads larger than
//! `limits.max_body_bytes` streamed to a file, chunked or with
//! `Content-Length` and `Expect: 100-continue` (curl, a real client),
//! multipart forms part by part, and per-route body limits both ways.

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

use percore::{App, Body, BodyError, Bytes, Multipart, MultipartError, Path, Scope, State};
use support::{Client, addr, start};

/// The bytes of a `len`-byte upload: a pattern that catches reordering.
fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251).to_le_bytes()[0] ^ (i / 251).to_le_bytes()[0])
        .collect()
}

fn app(dir: PathBuf) -> App<PathBuf> {
    let files = Scope::new()
        .put(
            "/{name}",
            async |Path(name): Path<String>,
                   State(dir): State<PathBuf>,
                   body: Body|
                   -> Result<String, BodyError> {
                let stored = body.to_file(dir.join(name)).await?;
                Ok(stored.to_string())
            },
        )
        .max_body_bytes(64 << 20);
    let small = Scope::new()
        .post("/note", async |Bytes(body): Bytes| body.len().to_string())
        .put("/early", async |_: Body| {
            (percore::Status::UNAUTHORIZED, "no")
        })
        .put("/stream", async |body: Body| -> Result<String, BodyError> {
            Ok(body.to_vec(u64::MAX).await?.len().to_string())
        })
        .max_body_bytes(10);
    let forms = Scope::new()
        .post(
            "",
            async |mut form: Multipart| -> Result<String, MultipartError> {
                let mut seen = Vec::new();
                while let Some(mut part) = form.next_part().await? {
                    let name = part.name().unwrap_or("?").to_owned();
                    let file = part.file_name().map(str::to_owned);
                    let mut size = 0;
                    while let Some(piece) = part.chunk().await? {
                        size += piece.len();
                    }
                    seen.push(match file {
                        Some(file) => format!("{name}:{file}:{size}"),
                        None => format!("{name}:{size}"),
                    });
                }
                Ok(seen.join(","))
            },
        )
        .max_body_bytes(8 << 20);
    App::with_state(move || dir.clone())
        .post("/echo-size", async |Bytes(body): Bytes| {
            body.len().to_string()
        })
        .nest("/files", files)
        .nest("/small", small)
        .nest("/form", forms)
}

fn curl(args: &[&str]) -> (String, String) {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl runs (.ci/run installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_owned(), code.to_owned())
}

#[test]
fn an_upload_larger_than_max_body_bytes_streams_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(app(dir.path().to_owned()), 1);
    let url = format!("http://{}/files/", addr(&server));
    let data = payload(40 << 20);
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &data).unwrap();

    // curl sends Content-Length and Expect: 100-continue.
    let (body, code) = curl(&["-T", source.to_str().unwrap(), &format!("{url}big.bin")]);
    assert_eq!((code.as_str(), body.as_str()), ("200", "41943040"));
    assert!(std::fs::read(dir.path().join("big.bin")).unwrap() == data);

    // Chunked, from a pipe.
    let (body, code) = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "-T",
        "-",
        &format!("{url}chunked.bin"),
    ]);
    // `-T -` with no stdin sends an empty chunked body.
    assert_eq!((code.as_str(), body.as_str()), ("200", "0"));
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "-H",
            "Transfer-Encoding: chunked",
            "-T",
            "-",
        ])
        .arg(format!("{url}piped.bin"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let piped = payload(3 << 20);
    child.stdin.take().unwrap().write_all(&piped).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), (3 << 20).to_string());
    assert!(std::fs::read(dir.path().join("piped.bin")).unwrap() == piped);

    // The global limit still holds for routes without their own.
    let (_, code) = curl(&[
        "--data-binary",
        &format!("@{}", source.display()),
        &format!("http://{}/echo-size", addr(&server)),
    ]);
    assert_eq!(code, "413");
    server.stop().unwrap();
}

#[test]
fn past_the_route_limit_is_413_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(app(dir.path().to_owned()), 1);
    let mut client = Client::connect(addr(&server));
    // Announced too large: refused from the head alone.
    let reply = client.request(
        b"PUT /files/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(reply.status, 413);
    assert!(!dir.path().join("x").exists());

    // Chunked past the limit of a streaming route: 413, from the handler's
    // read (after 100 Continue) or, when the chunks came with the head,
    // before the handler runs.
    for early in [false, true] {
        let mut client = Client::connect(addr(&server));
        let head = b"PUT /small/stream HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
        let chunks = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let reply = if early {
            client.request(&[&head[..], &chunks[..]].concat())
        } else {
            client.send(head);
            assert_eq!(client.read_reply(false).status, 100);
            let reply = client.request(chunks);
            assert!(reply.text().contains("10 bytes"), "{}", reply.text());
            reply
        };
        assert_eq!(reply.status, 413);
    }

    // A buffered route with a limit below the global one.
    let mut client = Client::connect(addr(&server));
    let reply = client
        .request(b"POST /small/note HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_eq!((reply.status, reply.text()), (200, "10"));
    let reply = client
        .request(b"POST /small/note HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n0123456789a");
    assert_eq!(reply.status, 413);
    let mut client = Client::connect(addr(&server));
    let reply = client.request(b"POST /small/note HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n0123456789a\r\n0\r\n\r\n");
    assert_eq!(reply.status, 413);
    server.stop().unwrap();
}

#[test]
fn a_streamed_body_keeps_the_connection_when_read_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(app(dir.path().to_owned()), 1);
    let mut client = Client::connect(addr(&server));
    // The head alone: the server asks for the body with 100 Continue
    // once the handler reads it.
    client.send(
        b"PUT /files/kept HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = client.read_reply(false);
    assert_eq!(interim.status, 100);
    let reply = client.request(b"hello");
    assert_eq!((reply.status, reply.text()), (200, "5"));
    assert_eq!(reply.header("connection"), None);
    assert_eq!(std::fs::read(dir.path().join("kept")).unwrap(), b"hello");
    let reply =
        client.request(b"POST /small/note HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!((reply.status, reply.text()), (200, "2"));

    // A handler that answers without reading: no 100 Continue, and the
    // connection closes after the answer (the body is unread).
    let mut stream = std::net::TcpStream::connect(addr(&server)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"PUT /small/early HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("Connection: close"), "{answer}");
    server.stop().unwrap();
}

#[test]
fn multipart_forms_are_read_part_by_part() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(app(dir.path().to_owned()), 1);
    let file = dir.path().join("photo.jpg");
    std::fs::write(&file, payload(2 << 20)).unwrap();
    let (body, code) = curl(&[
        "-F",
        "title=hello",
        "-F",
        &format!("photo=@{}", file.display()),
        &format!("http://{}/form", addr(&server)),
    ]);
    assert_eq!(code, "200", "{body}");
    assert_eq!(body, format!("title:5,photo:photo.jpg:{}", 2 << 20));

    // Not multipart: 415.
    let (_, code) = curl(&["-d", "a=b", &format!("http://{}/form", addr(&server))]);
    assert_eq!(code, "415");
    server.stop().unwrap();
}

#[test]
fn an_upload_streams_over_https_too() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki::Pki::new("uploads");
    let mut config = support::config();
    config.tls.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls.certificate = vec![pki.leaf("default", &["localhost", "127.0.0.1"])];
    let server = app(dir.path().to_owned()).start(&config).unwrap();
    let data = payload(20 << 20);
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &data).unwrap();
    let port = server.tls_addrs()[0].port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca = pki.ca_file();
    // Both protocols stream the body to the handler as it arrives.
    for (version, name) in [("--http1.1", "tls.bin"), ("--http2", "h2.bin")] {
        let url = format!("https://localhost:{port}/files/{name}");
        let (body, code) = curl(&[
            version,
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-T",
            source.to_str().unwrap(),
            &url,
        ]);
        assert_eq!(
            (code.as_str(), body.as_str()),
            ("200", "20971520"),
            "{version}"
        );
        assert!(
            std::fs::read(dir.path().join(name)).unwrap() == data,
            "{version}"
        );
    }
    server.stop().unwrap();
}
