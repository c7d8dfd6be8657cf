//! File operations on the ring: open beneath a directory (`openat2` with
//! `RESOLVE_BENEATH`, so no path, `..` or symlink can leave it), stat, and
//! positioned reads into a buffer the record holds.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    /// A directory.
    pub(crate) directory: bool,
    /// The inode and the device it is on: which file this is, so a file
    /// replaced under the same name (a deploy's rename) is told apart.
    pub(crate) inode: u64,
    pub(crate) device: u64,
}

impl FileStat {
    fn of(stat: &libc::statx) -> Self {
        let modified = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(stat.stx_mtime.tv_sec).unwrap_or(0),
                stat.stx_mtime.tv_nsec,
            );
        let kind = u32::from(stat.stx_mode) & libc::S_IFMT;
        Self {
            size: stat.stx_size,
            modified,
            regular: kind == libc::S_IFREG,
            directory: kind == libc::S_IFDIR,
            inode: stat.stx_ino,
            device: (u64::from(stat.stx_dev_major) << 32) | u64::from(stat.stx_dev_minor),
        }
    }
}

/// What a stat asks for.
const STAT_MASK: u32 = libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_MTIME | libc::STATX_INO;

/// How an open beneath a directory resolves: never above it, never
/// through a magic link, and (unless `symlinks`) through no symlink.
/// Non-blocking, so opening a FIFO never waits for a writer.
fn open_how(symlinks: bool) -> types::OpenHow {
    let mut resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    if !symlinks {
        resolve |= libc::RESOLVE_NO_SYMLINKS;
    }
    types::OpenHow::new()
        .flags((libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64)
        .resolve(resolve)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
}

/// Opens `path` read-only beneath the directory `dir`: absolute paths,
/// `..` above `dir`, and symlinks that lead out of it fail with `EXDEV`;
/// magic links (`/proc/self/fd/N`) fail with `ELOOP`.
/// With `symlinks` false, any symlink fails with `ELOOP`.
pub(crate) async fn open_beneath(
    ring: &Rc<Ring>,
    dir: RawFd,
    path: &Path,
    symlinks: bool,
) -> io::Result<OwnedFd> {
    let request = Box::new((c_path(path)?, open_how(symlinks)));
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
            .mask(STAT_MASK)
            .build()
        })
    };
    let (result, held) = op.await;
    io_result(result)?;
    let Held::Stat(request) = held else {
        return Err(io::ErrorKind::Interrupted.into());
    };
    Ok(FileStat::of(&request.1))
}

/// Reads up to `buffer.len()` bytes of `fd` at `offset` into `buffer`;
/// returns how many, and the buffer.
#[cfg(test)]
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

/// Reads up to `max` bytes of `fd` at `offset` onto the end of `buffer`
/// (into its spare capacity, grown as needed: a pooled buffer is never
/// zeroed again); returns how many, and the buffer.
pub(crate) async fn read_append(
    ring: &Rc<Ring>,
    fd: RawFd,
    mut buffer: Vec<u8>,
    offset: u64,
    max: usize,
) -> (io::Result<usize>, Vec<u8>) {
    buffer.reserve(max);
    let start = buffer.len();
    // SAFETY: the entry points into the held buffer's spare capacity,
    // which stays put while the record holds it.
    let (result, mut buffer) = unsafe {
        with_bytes(ring, buffer, |buffer| {
            let spare = buffer.spare_capacity_mut();
            let len = spare.len().min(max);
            opcode::Read::new(
                types::Fd(fd),
                spare.as_mut_ptr().cast::<u8>(),
                u32::try_from(len).unwrap_or(u32::MAX),
            )
            .offset(offset)
            .build()
        })
    }
    .await;
    if let Ok(read) = result {
        let room = buffer.capacity() - start;
        let read = read.min(room).min(max);
        // SAFETY: the kernel wrote `read` bytes there, within the capacity.
        unsafe { buffer.set_len(start + read) };
        return (Ok(read), buffer);
    }
    (result, buffer)
}

/// Bytes a pipe holds: what one splice from a file moves.
const PIPE_BYTES: usize = 64 << 10;

/// A pipe (read end, write end), for splicing a file to a socket.
pub(crate) fn pipe() -> io::Result<[Rc<OwnedFd>; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `pipe2` writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new descriptors that only we hold.
    let ends = unsafe { [OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])] };
    Ok(ends.map(Rc::new))
}

/// One `IORING_OP_SPLICE` of up to `len` bytes from `from` (at `offset`,
/// or its position when `None`) into `to`; `keep` (the descriptors the
/// caller does not otherwise keep open) is held until it ends.
async fn splice(
    ring: &Rc<Ring>,
    (from, offset): (RawFd, Option<u64>),
    to: RawFd,
    len: usize,
    keep: Box<[Rc<OwnedFd>]>,
) -> io::Result<usize> {
    let offset = offset.map_or(-1, |o| i64::try_from(o).unwrap_or(i64::MAX));
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    // SAFETY: the entry carries descriptors only, held open by the record
    // (or, for a socket, by its connection, which closes it through the
    // ring after the operations on it).
    let op = unsafe {
        ring.start(Held::Descriptors(keep), false, |_| {
            opcode::Splice::new(types::Fd(from), offset, types::Fd(to), -1, len).build()
        })
    };
    let (result, _) = op.await;
    io_result(result)
}

/// Moves up to `len` bytes of `file` from `offset` to the socket `socket`
/// through `pipe`, leaving the pipe empty; returns how many (0: the file
/// ended). An error may leave bytes in the pipe.
pub(crate) async fn splice_to(
    ring: &Rc<Ring>,
    file: &Rc<OwnedFd>,
    offset: u64,
    pipe: &[Rc<OwnedFd>; 2],
    socket: RawFd,
    len: usize,
) -> io::Result<usize> {
    let keep = Box::new([Rc::clone(file), Rc::clone(&pipe[1])]);
    let from = (file.as_raw_fd(), Some(offset));
    let moved = splice(ring, from, pipe[1].as_raw_fd(), len.min(PIPE_BYTES), keep).await?;
    let mut left = moved;
    // Each turn moves at least one byte or ends.
    while left > 0 {
        let keep = Box::new([Rc::clone(&pipe[0])]);
        match splice(ring, (pipe[0].as_raw_fd(), None), socket, left, keep).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            sent => left -= sent.min(left),
        }
    }
    Ok(moved)
}

/// cachestat(2)'s number: the same on every architecture, as for all
/// system calls from 424 on (`libc` has no constant for x86-64 yet).
const SYS_CACHESTAT: libc::c_long = 451;

/// The kernel's `struct cachestat_range` and `struct cachestat`
/// (cachestat(2), Linux 6.5), with the kernel's field names.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
#[allow(clippy::struct_field_names, reason = "the kernel's names")]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Whether every page of `len` bytes of `file` from `offset` is in the
/// page cache, so copying them never waits for the disk. False when the
/// kernel cannot tell (before Linux 6.5, or a seccomp filter refuses
/// `cachestat`).
pub(crate) fn resident(file: RawFd, offset: u64, len: usize) -> bool {
    const PAGE: u64 = 4096;
    if len == 0 {
        return true;
    }
    let range = CachestatRange {
        off: offset,
        len: len as u64,
    };
    let mut stat = Cachestat::default();
    // SAFETY: both structs are the kernel's layout, passed by pointer; the
    // kernel writes only into `stat`.
    let result =
        unsafe { libc::syscall(SYS_CACHESTAT, file, &raw const range, &raw mut stat, 0u32) };
    let pages = (offset + len as u64).div_ceil(PAGE) - offset / PAGE;
    // Pages are counted in the kernel's page size; on a kernel with larger
    // pages the count is smaller and the file is taken as not resident.
    result == 0 && stat.nr_cache >= pages
}

/// One `send(2)` of `bytes` on `socket` without waiting, telling the
/// kernel more follows (`MSG_MORE`: it holds a short piece back for the
/// next send's bytes). `WouldBlock` when the socket has no room.
pub(crate) fn send_more_now(socket: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads `bytes.len()` bytes from the slice.
    let sent = unsafe {
        libc::send(
            socket,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent.unsigned_abs())
}

/// The file status flags of `fd` (`F_GETFL`).
pub(crate) fn status_flags(fd: RawFd) -> io::Result<i32> {
    // SAFETY: a plain `fcntl` on a descriptor the caller holds open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags)
}

/// One `sendfile(2)` of up to `len` bytes of `file` from `offset` to
/// `socket`, whose status flags are `flags`, made on the calling thread
/// without waiting: the socket is non-blocking for the call only (the
/// ring's operations on it expect a blocking one). `WouldBlock` when the
/// socket has no room.
pub(crate) fn sendfile_now(
    socket: RawFd,
    flags: i32,
    file: RawFd,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: a plain `fcntl` on a descriptor the caller holds open.
    if unsafe { libc::fcntl(socket, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut position = libc::off_t::try_from(offset).unwrap_or(libc::off_t::MAX);
    // SAFETY: both descriptors are open; the kernel writes the new offset
    // into `position`.
    let sent = unsafe { libc::sendfile(socket, file, &raw mut position, len) };
    let error = io::Error::last_os_error();
    // SAFETY: as above: the flags the socket had.
    unsafe { libc::fcntl(socket, libc::F_SETFL, flags) };
    if sent < 0 {
        return Err(error);
    }
    Ok(sent.unsigned_abs())
}

/// The same operations as blocking system calls, for a thread with no
/// ring (an app served in-process by `LocalService` or the test client).
pub(crate) mod blocking {
    use super::{FileStat, OwnedFd, RawFd, STAT_MASK, c_path, io, open_how};
    use std::os::fd::FromRawFd;
    use std::path::Path;

    /// As [`open_beneath`](super::open_beneath).
    pub(crate) fn open_beneath(dir: RawFd, path: &Path, symlinks: bool) -> io::Result<OwnedFd> {
        let path = c_path(path)?;
        let how = open_how(symlinks);
        // SAFETY: `open_how` is the kernel's `struct open_how`, passed with
        // its size; the path is NUL-terminated.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &raw const how,
                size_of::<io_uring::types::OpenHow>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
        // SAFETY: a successful open is a new descriptor that only we hold.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// As [`stat`](super::stat).
    pub(crate) fn stat(fd: RawFd) -> io::Result<FileStat> {
        // SAFETY: `statx` is plain data; all zeroes is a valid value.
        let mut buffer: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH stats
        // `fd`; the buffer is ours.
        let result = unsafe {
            libc::statx(
                fd,
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                STAT_MASK,
                &raw mut buffer,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileStat::of(&buffer))
    }

    /// As [`read_append`](super::read_append).
    pub(crate) fn read_append(
        fd: RawFd,
        buffer: &mut Vec<u8>,
        offset: u64,
        max: usize,
    ) -> io::Result<usize> {
        buffer.reserve(max);
        let start = buffer.len();
        let spare = buffer.spare_capacity_mut();
        let len = spare.len().min(max);
        let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: `pread` writes at most `len` bytes into the spare capacity.
        let read = unsafe { libc::pread(fd, spare.as_mut_ptr().cast(), len, offset) };
        let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: the kernel wrote `read` bytes there.
        unsafe { buffer.set_len(start + read) };
        Ok(read)
    }
}
