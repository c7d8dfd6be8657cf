//! Static files, nginx's way, on the shard's ring: a `[[route]]` with
//! `static = { root = ... }` (or `alias`), or
//! [`App::files`](crate::App::files) in code.
//!
//! A request path is decoded and checked segment by segment ([`path`]),
//! then opened beneath the route's directory with `openat2(RESOLVE_BENEATH
//! | RESOLVE_NO_MAGICLINKS)` on the ring, so no `..`, absolute path or
//! symlink can leave it; only regular files are served. Each shard keeps
//! the files it served open ([`cache`]), small ones with their bytes.
//! `ETag`, `Last-Modified` and the four preconditions, `Range` (one or
//! several: `multipart/byteranges`) and `If-Range` follow RFC 9110
//! ([`conditional`]). A large file goes out in chunks of `chunk_bytes`,
//! each read only when the previous one was sent, so a slow client holds
//! one chunk. `file.br`, `file.zst` and `file.gz` beside a file are sent to
//! clients that accept them.
//!
//! ```no_run
//! use percore::{App, StaticConfig};
//!
//! let app = App::new().files("/static/", StaticConfig {
//!     alias: "./public".into(),
//!     cache_control: "public, immutable".into(),
//!     expires_secs: Some(365 * 86_400),
//!     ..StaticConfig::default()
//! });
//! # let _ = app;
//! ```

mod cache;
pub(crate) mod conditional;
pub(crate) mod path;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use smallbox::smallbox;

use crate::config::{RouteConfig, StaticConfig};
use crate::http::compress::Accepts;
use crate::http::describe::Operation;
use crate::http::parse::Method;
use crate::http::request::Request;
use crate::http::status::Status;
use crate::http::write::{Cut, FileSource, Pieces, ResponseWriter, push_decimal};
use crate::route::handler::{ErasedHandler, HandlerFuture};
use cache::{Entry, Io, Policy, Representation};
use conditional::{Outcome, Preconditions, Ranges, Validators};

/// Static routes made so far: each has its own cache on every shard.
static ROUTES: AtomicUsize = AtomicUsize::new(0);

/// A static route, ready to serve.
#[derive(Debug)]
pub(crate) struct StaticRoute {
    id: usize,
    directory: OwnedFd,
    /// The prefix taken off the path (`alias`).
    strip: Option<String>,
    config: StaticConfig,
    /// `Cache-Control`, `max-age` included.
    cache_control: String,
    policy: Policy,
}

impl StaticRoute {
    /// The files `route` serves.
    ///
    /// # Errors
    /// The settings are invalid or the directory cannot be opened.
    pub(crate) fn new(route: &RouteConfig) -> Result<Self, String> {
        let Some(config) = route.files.clone() else {
            return Err("the route serves no files (static)".into());
        };
        let mut problems = Vec::new();
        config.problems("static", &mut |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(format!("{key}: {message}"));
            }
        });
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let (directory, alias) = config.directory();
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(directory)
            .map_err(|e| format!("the directory {directory} cannot be opened: {e}"))?;
        let mut cache_control = String::new();
        if let Some(secs) = config.expires_secs {
            cache_control = format!("max-age={secs}");
        }
        if !config.cache_control.is_empty() {
            if !cache_control.is_empty() {
                cache_control.push_str(", ");
            }
            cache_control.push_str(&config.cache_control);
        }
        let prefix = if route.path.is_empty() {
            &route.prefix
        } else {
            &route.path
        };
        Ok(Self {
            id: ROUTES.fetch_add(1, Ordering::Relaxed),
            directory: opened.into(),
            strip: alias.then(|| prefix.trim_end_matches('/').to_owned()),
            cache_control,
            policy: Policy {
                entries: config.open_file_cache,
                valid: Duration::from_millis(config.cache_valid_ms),
                file_bytes: config.cache_file_bytes,
                budget: config.cache_bytes,
                symlinks: config.follow_symlinks,
                precompressed: config.precompressed,
            },
            config,
        })
    }

    /// The handler that serves it.
    pub(crate) fn handler(self) -> StaticHandler {
        StaticHandler(Arc::new(self))
    }

    /// The `Content-Type` of the file at `relative`.
    fn content_type(&self, relative: &str) -> String {
        let guessed = mime_guess::from_path(relative)
            .first_raw()
            .unwrap_or(&self.config.default_type);
        let texty = guessed.starts_with("text/")
            || [
                "application/javascript",
                "application/json",
                "application/xml",
                "image/svg+xml",
                "application/manifest+json",
            ]
            .contains(&guessed);
        if texty && !self.config.charset.is_empty() && !guessed.contains(';') {
            format!("{guessed}; charset={}", self.config.charset)
        } else {
            guessed.to_owned()
        }
    }

    async fn entry(&self, io: &Io, relative: &str) -> std::io::Result<Rc<Entry>> {
        cache::lookup(
            io,
            self.id,
            self.directory.as_raw_fd(),
            relative,
            &self.policy,
            |relative| self.content_type(relative),
        )
        .await
    }
}

/// The handler of a static route: `GET` and `HEAD`.
#[derive(Clone, Debug)]
pub(crate) struct StaticHandler(Arc<StaticRoute>);

impl<S: 'static> ErasedHandler<S> for StaticHandler {
    fn call<'a>(
        &'a self,
        request: &'a mut Request<'_>,
        _: &'a S,
        writer: &'a mut ResponseWriter<'_>,
    ) -> HandlerFuture<'a> {
        smallbox!(Box::pin(serve(&self.0, request, writer)))
    }

    fn streams_body(&self) -> bool {
        false
    }

    fn describe(&self, _: &mut Operation) {}
}

/// The methods a static route answers.
pub(crate) const METHODS: [Method; 2] = [Method::Get, Method::Head];

/// Answers `request` from the route's directory.
async fn serve(route: &StaticRoute, request: &Request<'_>, writer: &mut ResponseWriter<'_>) {
    let raw = request.path();
    let tail = match &route.strip {
        Some(prefix) => raw.strip_prefix(prefix.as_str()).unwrap_or(raw),
        None => raw,
    };
    let located = match path::beneath(tail, route.config.dotfiles) {
        Ok(located) => located,
        Err(path::Refused::Bad(why)) => return writer.send_error(Status::BAD_REQUEST, why),
        Err(path::Refused::Hidden) => return writer.send_error(Status::NOT_FOUND, "Not Found"),
    };
    let io = Io::here();
    let mut entry = match route.entry(&io, &located.relative).await {
        Ok(entry) => entry,
        Err(error) => return open_failed(writer, &error),
    };
    if entry.directory {
        if !located.slash {
            let mut location = format!("{raw}/");
            if let Some(query) = request.query() {
                location.push('?');
                location.push_str(query);
            }
            writer.insert_header("Location", location.as_bytes());
            return writer.send_error(Status::MOVED_PERMANENTLY, "Moved Permanently");
        }
        let mut index = None;
        for name in &route.config.index {
            let relative = if located.relative.is_empty() {
                name.clone()
            } else {
                format!("{}/{name}", located.relative)
            };
            if let Ok(found) = route.entry(&io, &relative).await
                && !found.directory
            {
                index = Some(found);
                break;
            }
        }
        let Some(found) = index else {
            return writer.send_error(
                Status::FORBIDDEN,
                "this is a directory with no index file, and directory listing is off",
            );
        };
        entry = found;
    }
    respond(route, &entry, request, writer, io);
}

/// The answer when a file cannot be opened.
fn open_failed(writer: &mut ResponseWriter<'_>, error: &std::io::Error) {
    match error.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => {
            writer.send_error(Status::NOT_FOUND, "Not Found");
        }
        // A path that would leave the directory (a symlink out of it, or
        // one not followed): not found, so nothing is told about it.
        Some(libc::EXDEV | libc::ELOOP) => writer.send_error(Status::NOT_FOUND, "Not Found"),
        Some(libc::EACCES | libc::EPERM) => writer.send_error(Status::FORBIDDEN, "Forbidden"),
        _ if error.kind() == std::io::ErrorKind::NotFound => {
            writer.send_error(Status::NOT_FOUND, "Not Found");
        }
        _ => {
            tracing::warn!(%error, "a static file could not be read; answered 500");
            writer.send_error(Status::INTERNAL_SERVER_ERROR, "the file could not be read");
        }
    }
}

/// Writes the response for the file `entry`.
fn respond(
    route: &StaticRoute,
    entry: &Entry,
    request: &Request<'_>,
    writer: &mut ResponseWriter<'_>,
    io: Io,
) {
    let config = &route.config;
    let representation = choose(entry, request.header("accept-encoding"));
    let validators = Validators {
        etag: config.etag.then_some(representation.etag.as_str()),
        modified: config.last_modified.then_some(entry.modified),
    };
    let mut fields: Vec<(&str, Vec<u8>)> = Vec::with_capacity(8);
    if let Some(etag) = validators.etag {
        fields.push(("ETag", etag.as_bytes().to_vec()));
    }
    if validators.modified.is_some() {
        fields.push(("Last-Modified", entry.last_modified.as_bytes().to_vec()));
    }
    if !route.cache_control.is_empty() {
        fields.push(("Cache-Control", route.cache_control.as_bytes().to_vec()));
    }
    if let Some(secs) = config.expires_secs {
        let at = SystemTime::now() + Duration::from_secs(secs);
        fields.push(("Expires", httpdate::fmt_http_date(at).into_bytes()));
    }
    if !entry.variants.is_empty() {
        fields.push(("Vary", b"Accept-Encoding".to_vec()));
    }
    let conditions = Preconditions {
        if_match: request.header("if-match"),
        if_unmodified_since: request.header("if-unmodified-since"),
        if_none_match: request.header("if-none-match"),
        if_modified_since: request.header("if-modified-since"),
    };
    match conditional::evaluate(&conditions, validators) {
        Outcome::Proceed => {}
        Outcome::NotModified => {
            let fields = fields.iter().map(|(n, v)| (*n, v.as_slice()));
            return writer.send(Status::NOT_MODIFIED, None, fields, b"");
        }
        Outcome::Failed => {
            return writer.send_error(
                Status::PRECONDITION_FAILED,
                "the file does not meet the request's preconditions",
            );
        }
    }
    fields.push(("Accept-Ranges", b"bytes".to_vec()));
    if let Some(encoding) = representation.encoding {
        fields.push(("Content-Encoding", encoding.token().as_bytes().to_vec()));
    }
    let size = representation.size;
    let ranges = match request.header("range") {
        Some(range)
            if request
                .header("if-range")
                .is_none_or(|field| conditional::if_range_holds(field, validators)) =>
        {
            conditional::ranges(range, size)
        }
        _ => Ranges::Whole,
    };
    let content_type = entry.content_type.as_str();
    let body = Body {
        representation,
        io,
        chunk: config.chunk_bytes,
        sendfile: config.sendfile,
    };
    match ranges {
        Ranges::Whole => {
            let fields = fields.iter().map(|(n, v)| (*n, v.as_slice()));
            body.send(writer, Status::OK, content_type, fields, 0, size);
        }
        Ranges::Unsatisfiable => {
            let mut value = b"bytes */".to_vec();
            push_decimal(&mut value, size);
            writer.insert_header("Content-Range", &value);
            writer.send_error(
                Status::RANGE_NOT_SATISFIABLE,
                "no range of the request is within the file",
            );
        }
        Ranges::Some(ranges) if ranges.len() == 1 => {
            let (first, last) = ranges[0];
            fields.push(("Content-Range", content_range(first, last, size)));
            let fields = fields.iter().map(|(n, v)| (*n, v.as_slice()));
            body.send(
                writer,
                Status::PARTIAL_CONTENT,
                content_type,
                fields,
                first,
                last - first + 1,
            );
        }
        Ranges::Some(ranges) => {
            let boundary = format!("{:016x}", fastrand::u64(..));
            let multipart = format!("multipart/byteranges; boundary={boundary}");
            let fields = fields.iter().map(|(n, v)| (*n, v.as_slice()));
            body.send_parts(writer, &multipart, fields, &boundary, content_type, &ranges);
        }
    }
}

/// The representation to send: the client's most wanted precompressed
/// sibling, else the file.
fn choose<'e>(entry: &'e Entry, accept_encoding: Option<&[u8]>) -> &'e Representation {
    if entry.variants.is_empty() {
        return &entry.plain;
    }
    let Some(field) = accept_encoding else {
        return &entry.plain;
    };
    let accepts = Accepts::parse(field);
    let offered = entry.variants.iter().filter_map(|v| v.encoding);
    match accepts.choose(offered) {
        Some(encoding) => entry
            .variants
            .iter()
            .find(|v| v.encoding == Some(encoding))
            .unwrap_or(&entry.plain),
        None => &entry.plain,
    }
}

fn content_range(first: u64, last: u64, size: u64) -> Vec<u8> {
    let mut value = b"bytes ".to_vec();
    push_decimal(&mut value, first);
    value.push(b'-');
    push_decimal(&mut value, last);
    value.push(b'/');
    push_decimal(&mut value, size);
    value
}

/// Where a response's body comes from.
struct Body<'e> {
    representation: &'e Representation,
    io: Io,
    chunk: usize,
    /// Send straight from the file where the connection can.
    sendfile: bool,
}

/// A piece of a streamed body.
enum Part {
    Bytes(Vec<u8>),
    /// `length` bytes of the file from `offset`.
    File {
        offset: u64,
        length: u64,
    },
}

impl Body<'_> {
    /// Sends `length` bytes from `offset`.
    fn send<'h>(
        self,
        writer: &mut ResponseWriter<'_>,
        status: Status,
        content_type: &str,
        fields: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        offset: u64,
        length: u64,
    ) {
        if let Some(bytes) = &self.representation.bytes {
            let (start, end) = span(offset, length);
            return writer.send(status, Some(content_type), fields, &bytes[start..end]);
        }
        let parts = VecDeque::from([Part::File { offset, length }]);
        let file = Rc::clone(&self.representation.file);
        let sendfile = self.sendfile;
        let stream = self.stream(parts);
        if sendfile {
            let source = FileSource { file, offset };
            writer.send_file_sized(status, Some(content_type), fields, length, source, stream);
        } else {
            writer.send_pieces_sized(status, Some(content_type), fields, length, stream);
        }
    }

    /// Sends `ranges` as `multipart/byteranges`.
    fn send_parts<'h>(
        self,
        writer: &mut ResponseWriter<'_>,
        multipart: &str,
        fields: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        boundary: &str,
        content_type: &str,
        ranges: &[(u64, u64)],
    ) {
        let size = self.representation.size;
        let mut parts = VecDeque::with_capacity(ranges.len() * 2 + 1);
        let mut total = 0u64;
        for (at, &(first, last)) in ranges.iter().enumerate() {
            let mut head = Vec::with_capacity(96);
            if at > 0 {
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"--");
            head.extend_from_slice(boundary.as_bytes());
            head.extend_from_slice(b"\r\nContent-Type: ");
            head.extend_from_slice(content_type.as_bytes());
            head.extend_from_slice(b"\r\nContent-Range: ");
            head.extend_from_slice(&content_range(first, last, size));
            head.extend_from_slice(b"\r\n\r\n");
            total += head.len() as u64 + (last - first + 1);
            parts.push_back(Part::Bytes(head));
            parts.push_back(Part::File {
                offset: first,
                length: last - first + 1,
            });
        }
        let end = format!("\r\n--{boundary}--\r\n").into_bytes();
        total += end.len() as u64;
        parts.push_back(Part::Bytes(end));
        if let Some(bytes) = &self.representation.bytes {
            let mut body = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            for part in parts {
                match part {
                    Part::Bytes(b) => body.extend_from_slice(&b),
                    Part::File { offset, length } => {
                        let (start, end) = span(offset, length);
                        body.extend_from_slice(&bytes[start..end]);
                    }
                }
            }
            return writer.send(Status::PARTIAL_CONTENT, Some(multipart), fields, &body);
        }
        let stream = self.stream(parts);
        writer.send_pieces_sized(
            Status::PARTIAL_CONTENT,
            Some(multipart),
            fields,
            total,
            stream,
        );
    }

    /// The parts as a stream: each file chunk is read when the one before
    /// it has been taken (sent), into a pooled buffer. A file that ends
    /// early (truncated while sent) cuts the body off.
    fn stream(self, parts: VecDeque<Part>) -> Pieces {
        let file = Rc::clone(&self.representation.file);
        let state = (self.io, file, parts, self.chunk);
        Box::pin(futures_lite::stream::unfold(
            state,
            |(io, file, mut parts, chunk)| async move {
                loop {
                    match parts.front_mut()? {
                        Part::Bytes(_) => {
                            let Some(Part::Bytes(bytes)) = parts.pop_front() else {
                                return None;
                            };
                            return Some((Ok(bytes), (io, file, parts, chunk)));
                        }
                        Part::File { length: 0, .. } => {
                            parts.pop_front();
                        }
                        Part::File { offset, length } => {
                            let want = usize::try_from(*length).unwrap_or(usize::MAX).min(chunk);
                            let buffer = crate::http::write::spare_chunk();
                            let (read, buffer) =
                                io.read(file.as_raw_fd(), buffer, *offset, want).await;
                            match read {
                                Ok(read) if read > 0 => {
                                    *offset += read as u64;
                                    *length -= read as u64;
                                    return Some((Ok(buffer), (io, file, parts, chunk)));
                                }
                                _ => {
                                    parts.clear();
                                    return Some((Err(Cut), (io, file, parts, chunk)));
                                }
                            }
                        }
                    }
                }
            },
        ))
    }
}

/// `offset` and `length` as a slice's bounds (within a cached file, which
/// fits in memory).
fn span(offset: u64, length: u64) -> (usize, usize) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    (
        start,
        start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX)),
    )
}

/// The files of `route` (its `static` table), for the app's builder.
///
/// # Errors
/// The settings are invalid or the directory cannot be opened.
pub(crate) fn handler_for(route: &RouteConfig) -> Result<StaticHandler, String> {
    StaticRoute::new(route).map(StaticRoute::handler)
}
