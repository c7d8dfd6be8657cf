//! `[[route]] static = { ... }` and `[compression]`: files served from a
//! directory (nginx `root`/`alias`, `expires`, `open_file_cache`,
//! `gzip_static`) and responses compressed on the way out (nginx `gzip`).

use crate::http::compress::{Compressor, Encoding};
use serde::{Deserialize, Serialize};

/// A `[[route]]`'s `static` table: the files it serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a switch of its own, as nginx's are"
)]
pub struct StaticConfig {
    /// The directory the whole request path is looked up in (nginx
    /// `root`: `/static/app.css` under `root = "/srv"` is
    /// `/srv/static/app.css`).
    pub root: String,
    /// Or the directory the path after the prefix is looked up in (nginx
    /// `alias`: `/static/app.css` under `alias = "/srv/assets"` is
    /// `/srv/assets/app.css`).
    pub alias: String,
    /// Files answered for a directory's path (which ends with `/`; one
    /// without is redirected there).
    pub index: Vec<String>,
    /// Serve names that begin with `.` (else they are not found).
    pub dotfiles: bool,
    /// Follow symlinks that stay beneath the directory (never one that
    /// leaves it).
    pub follow_symlinks: bool,
    /// The `Content-Type` of a file whose extension says nothing.
    pub default_type: String,
    /// Added to text types (`text/*`, JavaScript, JSON, XML, SVG) as
    /// `; charset=...`; empty: none.
    pub charset: String,
    /// `Cache-Control` sent with each file (`"public, immutable"`).
    pub cache_control: String,
    /// Sends `Expires` this far ahead and `max-age` in `Cache-Control`
    /// (nginx `expires`; 31536000 is `expires 1y`).
    pub expires_secs: Option<u64>,
    /// Serve `file.br`, `file.zst` or `file.gz` beside a file to a client
    /// that accepts that encoding (nginx `gzip_static`, `brotli_static`).
    pub precompressed: bool,
    /// Send `ETag` (size and modification time) and answer `If-Match`
    /// and `If-None-Match` by it.
    pub etag: bool,
    /// Send `Last-Modified` and answer `If-Modified-Since` and
    /// `If-Unmodified-Since` by it.
    pub last_modified: bool,
    /// Files each shard keeps open, with their metadata (nginx
    /// `open_file_cache max`); 0: none.
    pub open_file_cache: usize,
    /// A kept file is checked again (opened and compared) after this many
    /// milliseconds (nginx `open_file_cache_valid`); a replaced file is
    /// served from then on.
    pub cache_valid_ms: u64,
    /// Kept files of at most this many bytes keep their bytes too, so a
    /// hit answers with no file read (larger ones are spliced, which
    /// measured cheaper from about 16 KiB up).
    pub cache_file_bytes: u64,
    /// The bytes of kept files, per shard, at most.
    pub cache_bytes: u64,
    /// Files not kept in memory go from the page cache to the socket with
    /// no copy (`sendfile` when the pages are cached, else spliced on the
    /// ring) on plain HTTP;
    /// over TLS, and with this off, they are read and sent in chunks.
    pub sendfile: bool,
    /// Files read and sent in chunks go this many bytes at a time, so a
    /// slow download holds at most about this much.
    pub chunk_bytes: usize,
}

impl Default for StaticConfig {
    fn default() -> Self {
        Self {
            root: String::new(),
            alias: String::new(),
            index: vec!["index.html".into()],
            dotfiles: false,
            follow_symlinks: true,
            default_type: "application/octet-stream".into(),
            charset: "utf-8".into(),
            cache_control: String::new(),
            expires_secs: None,
            precompressed: true,
            etag: true,
            last_modified: true,
            open_file_cache: 1000,
            cache_valid_ms: 1000,
            cache_file_bytes: 16 << 10,
            cache_bytes: 16 << 20,
            sendfile: true,
            chunk_bytes: 16 << 10,
        }
    }
}

impl StaticConfig {
    /// Serves `root` (nginx `root`).
    #[must_use]
    pub fn root(directory: &str) -> Self {
        Self {
            root: directory.to_owned(),
            ..Self::default()
        }
    }

    /// The directory, and whether the route's prefix is taken off the path
    /// (`alias`).
    #[must_use]
    pub fn directory(&self) -> (&str, bool) {
        if self.alias.is_empty() {
            (&self.root, false)
        } else {
            (&self.alias, true)
        }
    }

    /// Every problem of these settings, under `key`.
    pub(crate) fn problems(&self, key: &str, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            self.root.is_empty() != self.alias.is_empty(),
            key,
            "needs exactly one of root (the whole path is looked up in it) and alias \
             (the path after the prefix is)",
        );
        let (directory, _) = self.directory();
        check(
            directory.is_empty() || std::path::Path::new(directory).is_dir(),
            &format!(
                "{key}.{}",
                if self.alias.is_empty() {
                    "root"
                } else {
                    "alias"
                }
            ),
            "must be a directory percore can read",
        );
        check(
            self.index
                .iter()
                .all(|name| !name.is_empty() && !name.contains('/') && name != ".."),
            &format!("{key}.index"),
            "must be file names (no '/')",
        );
        for (name, value) in [
            ("default_type", &self.default_type),
            ("cache_control", &self.cache_control),
        ] {
            check(
                crate::http::write::valid_field("X", value.as_bytes()),
                &format!("{key}.{name}"),
                "must be a header value on one line",
            );
        }
        check(
            self.charset
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            &format!("{key}.charset"),
            "must be a charset name such as utf-8",
        );
        check(
            (4096..=16 << 20).contains(&self.chunk_bytes),
            &format!("{key}.chunk_bytes"),
            "must be 4096 to 16777216",
        );
        check(
            self.cache_file_bytes <= self.cache_bytes,
            &format!("{key}.cache_file_bytes"),
            "must be at most cache_bytes",
        );
        check(
            self.expires_secs.is_none_or(|s| s <= 10 * 365 * 86_400),
            &format!("{key}.expires_secs"),
            "must be at most ten years",
        );
    }
}

/// `[compression]`: handler, proxied and static responses compressed for
/// clients that accept it (nginx `gzip`, plus brotli and zstd).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompressionConfig {
    /// Compress responses (a `[[route]]`'s `compress` overrides it for the
    /// paths it takes).
    pub enabled: bool,
    /// The encodings offered, the server's preferred first, among `br`,
    /// `zstd` and `gzip`: a client's q-values decide, and this order
    /// breaks their ties.
    pub encodings: Vec<String>,
    /// The media types compressed (nginx `gzip_types`; parameters such as
    /// `charset` are ignored when matching). `text/html` is one only when
    /// listed.
    pub types: Vec<String>,
    /// Bodies shorter than this are sent as they are (nginx
    /// `gzip_min_length`); streamed bodies of unknown length are
    /// compressed.
    pub min_length: u64,
    /// gzip level, 1 (fastest) to 9 (smallest) (nginx `gzip_comp_level`).
    pub gzip_level: u32,
    /// brotli quality, 0 to 11.
    pub brotli_level: u32,
    /// zstd level, 1 to 19.
    pub zstd_level: i32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            encodings: vec!["br".into(), "zstd".into(), "gzip".into()],
            // The seeds' gzip_types, and HTML (which nginx always compresses).
            types: [
                "text/html",
                "text/plain",
                "text/css",
                "text/xml",
                "text/javascript",
                "application/json",
                "application/javascript",
                "application/xml",
                "application/rss+xml",
                "application/atom+xml",
                "image/svg+xml",
            ]
            .map(String::from)
            .to_vec(),
            min_length: 1000,
            gzip_level: 6,
            brotli_level: 4,
            zstd_level: 3,
        }
    }
}

impl CompressionConfig {
    /// The compressor these settings describe.
    pub(crate) fn compressor(&self) -> Compressor {
        let offered = self.encodings.iter().filter_map(|e| Encoding::of(e));
        let levels = (self.gzip_level, self.brotli_level, self.zstd_level);
        Compressor::new(offered.collect(), &self.types, self.min_length, levels)
    }

    /// Every problem of these settings.
    pub(crate) fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            !self.encodings.is_empty()
                && self
                    .encodings
                    .iter()
                    .all(|e| ["br", "zstd", "gzip"].contains(&e.as_str())),
            "compression.encodings",
            "must list some of \"br\", \"zstd\" and \"gzip\"",
        );
        check(
            self.types
                .iter()
                .all(|t| t.contains('/') && !t.contains(';')),
            "compression.types",
            "must be media types such as text/css (no parameters)",
        );
        check(
            (1..=9).contains(&self.gzip_level),
            "compression.gzip_level",
            "must be 1 to 9",
        );
        check(
            self.brotli_level <= 11,
            "compression.brotli_level",
            "must be 0 to 11",
        );
        check(
            (1..=19).contains(&self.zstd_level),
            "compression.zstd_level",
            "must be 1 to 19",
        );
    }
}
