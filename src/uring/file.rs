//! File operations on the ring: open beneath a directory (`openat2` with
//! `RESOLVE_BENEATH`, so no path, `..` or symlink can leave it), stat, and
//! positioned reads into a buffer the record holds.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use io_uring::{opcode, types};

use super::Ring;
use super::oneshot::{io_result, with_bytes};
use super::op::Held;

/// What a stat says of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStat {
    /// Size in bytes.
    pub(crate) size: u64,
    /// Last modification.
    pub(crate) modified: SystemTime,
    /// A regular file (not a directory, device, socket or pipe).
    pub(crate) regular: bool,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
}

/// Opens `path` read-only beneath the directory `dir`: absolute paths,
/// `..` above `dir`, and symlinks that lead out of it fail with `EXDEV`;
/// magic links (`/proc/self/fd/N`) fail with `ELOOP`.
pub(crate) async fn open_beneath(ring: &Rc<Ring>, dir: RawFd, path: &Path) -> io::Result<OwnedFd> {
    let how = types::OpenHow::new()
        .flags((libc::O_RDONLY | libc::O_CLOEXEC) as u64)
        .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS);
    let request = Box::new((c_path(path)?, how));
    // SAFETY: the entry points at the held, boxed path and `open_how`.
    let op = unsafe {
        ring.start(Held::Open(request), true, |held| {
            let Held::Open(request) = held else {
                unreachable!("held above")
            };
            opcode::OpenAt2::new(types::Fd(dir), request.0.as_ptr(), &raw const request.1).build()
        })
    };
    let (result, _) = op.await;
    let fd = io_result(result)?;
    let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: a successful open is a new descriptor that only we hold.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Stats the open file `fd`.
pub(crate) async fn stat(ring: &Rc<Ring>, fd: RawFd) -> io::Result<FileStat> {
    // SAFETY: `statx` is plain data; all zeroes is a valid value.
    let buffer: libc::statx = unsafe { std::mem::zeroed() };
    let request = Box::new((CString::default(), buffer));
    // SAFETY: the entry points at the held, boxed empty path and buffer.
    let op = unsafe {
        ring.start(Held::Stat(request), false, |held| {
            let Held::Stat(request) = held else {
                unreachable!("held above")
            };
            opcode::Statx::new(
                types::Fd(fd),
                request.0.as_ptr(),
                (&raw mut request.1).cast::<types::statx>(),
            )
            .flags(libc::AT_EMPTY_PATH)
            .mask(libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_MTIME)
            .build()
        })
    };
    let (result, held) = op.await;
    io_result(result)?;
    let Held::Stat(request) = held else {
        return Err(io::ErrorKind::Interrupted.into());
    };
    let stat = request.1;
    let modified = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(stat.stx_mtime.tv_sec).unwrap_or(0),
            stat.stx_mtime.tv_nsec,
        );
    Ok(FileStat {
        size: stat.stx_size,
        modified,
        regular: u32::from(stat.stx_mode) & libc::S_IFMT == libc::S_IFREG,
    })
}

/// Reads up to `buffer.len()` bytes of `fd` at `offset` into `buffer`;
/// returns how many, and the buffer.
pub(crate) async fn read_at(
    ring: &Rc<Ring>,
    fd: RawFd,
    buffer: Vec<u8>,
    offset: u64,
) -> (io::Result<usize>, Vec<u8>) {
    // SAFETY: the entry points into the held buffer's heap memory.
    unsafe {
        with_bytes(ring, buffer, |buffer| {
            opcode::Read::new(
                types::Fd(fd),
                buffer.as_mut_ptr(),
                u32::try_from(buffer.len()).unwrap_or(u32::MAX),
            )
            .offset(offset)
            .build()
        })
    }
    .await
}
