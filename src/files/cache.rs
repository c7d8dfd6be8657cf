//! Each shard's open-file cache (nginx `open_file_cache`): a file looked
//! up once is kept open with its metadata, its validators, its content
//! type, its precompressed siblings and (when small) its bytes; after
//! `cache_valid_ms` it is opened and compared again, and a file replaced
//! under its name (another inode, size or modification time) is loaded
//! anew. Nothing is shared between shards: each keeps its own.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::http::compress::Encoding;
use crate::uring::FileStat;

/// File operations on the shard's ring, or as blocking calls on a thread
/// with none (an app served in-process).
#[derive(Clone)]
pub(crate) enum Io {
    Ring(Rc<crate::uring::Ring>),
    Blocking,
}

impl Io {
    /// This thread's.
    pub(crate) fn here() -> Self {
        crate::uring::current().map_or(Self::Blocking, Self::Ring)
    }

    async fn open(&self, dir: RawFd, path: &Path, symlinks: bool) -> io::Result<OwnedFd> {
        match self {
            Self::Ring(ring) => crate::uring::open_beneath(ring, dir, path, symlinks).await,
            Self::Blocking => crate::uring::blocking_file::open_beneath(dir, path, symlinks),
        }
    }

    async fn stat(&self, fd: RawFd) -> io::Result<FileStat> {
        match self {
            Self::Ring(ring) => crate::uring::stat(ring, fd).await,
            Self::Blocking => crate::uring::blocking_file::stat(fd),
        }
    }

    /// Reads up to `max` bytes at `offset` onto the end of `buffer`.
    pub(crate) async fn read(
        &self,
        fd: RawFd,
        mut buffer: Vec<u8>,
        offset: u64,
        max: usize,
    ) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Self::Ring(ring) => crate::uring::read_append(ring, fd, buffer, offset, max).await,
            Self::Blocking => {
                let read = crate::uring::blocking_file::read_append(fd, &mut buffer, offset, max);
                (read, buffer)
            }
        }
    }

    /// Reads all `size` bytes of `fd` (fewer if it shrank meanwhile).
    async fn read_all(&self, fd: RawFd, size: u64) -> io::Result<Vec<u8>> {
        let size = usize::try_from(size).map_err(io::Error::other)?;
        let mut bytes = Vec::with_capacity(size);
        // Each turn reads at least one byte or ends.
        while bytes.len() < size {
            let (at, left) = (bytes.len() as u64, size - bytes.len());
            let (read, back) = self.read(fd, bytes, at, left).await;
            bytes = back;
            if read? == 0 {
                break;
            }
        }
        Ok(bytes)
    }
}

/// One representation of a file: the file itself or a precompressed
/// sibling.
#[derive(Debug)]
pub(crate) struct Representation {
    pub(crate) file: Rc<OwnedFd>,
    pub(crate) size: u64,
    /// Its strong entity tag, quoted.
    pub(crate) etag: String,
    /// Its bytes, when small enough to keep.
    pub(crate) bytes: Option<Rc<[u8]>>,
    /// `None` for the file itself.
    pub(crate) encoding: Option<Encoding>,
}

/// A file (or directory) as the cache keeps it.
#[derive(Debug)]
pub(crate) struct Entry {
    stat: FileStat,
    pub(crate) directory: bool,
    pub(crate) plain: Representation,
    /// Precompressed siblings, in the default order of preference.
    pub(crate) variants: Vec<Representation>,
    /// The modification time in whole seconds, as HTTP dates say it.
    pub(crate) modified: SystemTime,
    pub(crate) last_modified: String,
    pub(crate) content_type: String,
    checked: Cell<Instant>,
    used: Cell<u64>,
}

/// What a static route's cache is told to do.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) entries: usize,
    pub(crate) valid: Duration,
    pub(crate) file_bytes: u64,
    pub(crate) budget: u64,
    pub(crate) symlinks: bool,
    pub(crate) precompressed: bool,
}

/// One shard's cache of one static route.
#[derive(Default)]
struct Cache {
    entries: HashMap<Box<str>, Rc<Entry>>,
    tick: u64,
    bytes: u64,
}

thread_local! {
    /// This shard's caches, by static route.
    static CACHES: RefCell<HashMap<usize, Cache>> = RefCell::new(HashMap::new());
}

/// The entry of `relative` beneath `dir` for route `route`: from the cache
/// while it is valid, else opened (and kept).
pub(crate) async fn lookup(
    io: &Io,
    route: usize,
    dir: RawFd,
    relative: &str,
    policy: &Policy,
    content_type: impl Fn(&str) -> String,
) -> io::Result<Rc<Entry>> {
    let now = Instant::now();
    let cached = CACHES.with(|caches| {
        let mut caches = caches.borrow_mut();
        let cache = caches.entry(route).or_default();
        cache.tick += 1;
        let tick = cache.tick;
        cache.entries.get(relative).map(|entry| {
            entry.used.set(tick);
            Rc::clone(entry)
        })
    });
    let path = Path::new(if relative.is_empty() { "." } else { relative });
    if let Some(entry) = &cached
        && now.duration_since(entry.checked.get()) < policy.valid
    {
        return Ok(Rc::clone(entry));
    }
    let opened = io.open(dir, path, policy.symlinks).await;
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            forget(route, relative);
            return Err(error);
        }
    };
    let stat = io.stat(file.as_raw_fd()).await?;
    if let Some(entry) = cached
        && same_file(&entry.stat, &stat)
    {
        entry.checked.set(now);
        return Ok(entry);
    }
    if !stat.regular && !stat.directory {
        forget(route, relative);
        return Err(io::ErrorKind::NotFound.into());
    }
    let budget_left = CACHES.with(|caches| {
        caches
            .borrow()
            .get(&route)
            .map_or(policy.budget, |c| policy.budget.saturating_sub(c.bytes))
    });
    let keep_bytes =
        |size: u64| policy.entries > 0 && size <= policy.file_bytes && size <= budget_left;
    let plain = represent(io, file, &stat, None, keep_bytes(stat.size)).await?;
    let mut variants = Vec::new();
    if policy.precompressed && stat.regular {
        for encoding in Encoding::ALL {
            let name = format!("{}{}", path.display(), encoding.suffix());
            let Ok(sibling) = io.open(dir, Path::new(&name), policy.symlinks).await else {
                continue;
            };
            let Ok(sibling_stat) = io.stat(sibling.as_raw_fd()).await else {
                continue;
            };
            if sibling_stat.regular {
                let keep = keep_bytes(sibling_stat.size);
                if let Ok(variant) =
                    represent(io, sibling, &sibling_stat, Some(encoding), keep).await
                {
                    variants.push(variant);
                }
            }
        }
    }
    let modified = whole_seconds(stat.modified);
    let entry = Rc::new(Entry {
        directory: stat.directory,
        stat,
        plain,
        variants,
        modified,
        last_modified: httpdate::fmt_http_date(modified),
        content_type: content_type(relative),
        checked: Cell::new(now),
        used: Cell::new(0),
    });
    keep(route, relative, &entry, policy);
    Ok(entry)
}

/// Whether two stats are of the same, unchanged file.
fn same_file(a: &FileStat, b: &FileStat) -> bool {
    (a.inode, a.device, a.size, a.modified) == (b.inode, b.device, b.size, b.modified)
}

fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

async fn represent(
    io: &Io,
    file: OwnedFd,
    stat: &FileStat,
    encoding: Option<Encoding>,
    keep_bytes: bool,
) -> io::Result<Representation> {
    let bytes = if keep_bytes && stat.regular {
        Some(Rc::from(io.read_all(file.as_raw_fd(), stat.size).await?))
    } else {
        None
    };
    let since = stat
        .modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let etag = format!(
        "\"{:x}.{:x}-{:x}{}\"",
        since.as_secs(),
        since.subsec_nanos(),
        stat.size,
        encoding.map_or("", Encoding::token)
    );
    Ok(Representation {
        file: Rc::new(file),
        size: bytes
            .as_ref()
            .map_or(stat.size, |b: &Rc<[u8]>| b.len() as u64),
        etag,
        bytes,
        encoding,
    })
}

fn forget(route: usize, relative: &str) {
    CACHES.with(|caches| {
        if let Some(cache) = caches.borrow_mut().get_mut(&route)
            && let Some(entry) = cache.entries.remove(relative)
        {
            cache.bytes -= entry_bytes(&entry);
        }
    });
}

fn entry_bytes(entry: &Entry) -> u64 {
    std::iter::once(&entry.plain)
        .chain(&entry.variants)
        .filter_map(|r| r.bytes.as_ref())
        .map(|b| b.len() as u64)
        .sum()
}

/// Keeps `entry`, making room by dropping the least recently used.
fn keep(route: usize, relative: &str, entry: &Rc<Entry>, policy: &Policy) {
    if policy.entries == 0 {
        return;
    }
    CACHES.with(|caches| {
        let mut caches = caches.borrow_mut();
        let cache = caches.entry(route).or_default();
        if let Some(old) = cache.entries.remove(relative) {
            cache.bytes -= entry_bytes(&old);
        }
        while cache.entries.len() >= policy.entries {
            let Some(oldest) = cache
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used.get())
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = cache.entries.remove(&oldest) {
                cache.bytes -= entry_bytes(&old);
            }
        }
        entry.used.set(cache.tick);
        cache.bytes += entry_bytes(entry);
        cache.entries.insert(relative.into(), Rc::clone(entry));
    });
}
