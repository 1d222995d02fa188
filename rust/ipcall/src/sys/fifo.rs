//! The system calls the FIFO layer makes, each wrapped once: every path is
//! resolved relative to a directory descriptor, never followed through a
//! symbolic link, and every descriptor is close-on-exec. `set_nonblocking`
//! is also for the stream layer (one end blocking, the other not).
//!
//! All on `rustix` but [`replace_fd`] (see there). Open flags are `open(2)`
//! `O_*` bits and modes raw permission bits, as the callers spell them.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

pub(crate) use crate::sys::poll::{poll_until, pollfd};
/// What `fstat` reports.
pub(crate) use rustix::fs::Stat;

/// `path` as a C string; a NUL byte inside is `InvalidInput`.
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path contains a NUL byte"))
}

/// The effective uid: the owner of every file this process creates.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `open(2)` flag bits as rustix's type (same values on Linux).
fn oflags(flags: libc::c_int) -> OFlags {
    OFlags::from_bits_retain(flags as _)
}

/// `mkdir(path, mode)`: fails with `AlreadyExists` if anything is there
/// (a symbolic link included: mkdir never follows the last component).
pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    Ok(rustix::fs::mkdir(path, Mode::from_raw_mode(mode))?)
}

/// Opens `path` (absolute, or relative to `dir` if given) with `flags`
/// plus `O_CLOEXEC | O_NOFOLLOW`; mode 0600 applies with `O_CREAT`.
pub(crate) fn open_at(dir: Option<BorrowedFd<'_>>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = oflags(flags) | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    loop {
        match rustix::fs::openat(dir.unwrap_or(CWD), path, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok(fd),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `mkfifoat(dir, name, 0600)`, then the mode forced to exactly 0600
/// whatever the umask removed. The umask can only remove bits, and the
/// directory is 0700, so no other uid can open the FIFO in between.
pub(crate) fn make_fifo(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    rustix::fs::mkfifoat(dir, name, Mode::from_raw_mode(0o600))?;
    // Flags empty: a FIFO we just made, nothing unusual to follow.
    Ok(rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o600), AtFlags::empty())?)
}

/// `unlinkat(dir, name, 0)`; a missing name is not an error.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `rmdir(path)`: removes the directory only if it is empty.
pub(crate) fn remove_dir(path: &CStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(CWD, path, AtFlags::REMOVEDIR)?)
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` (or `lstat(name)` without `dir`).
pub(crate) fn stat_at(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir.unwrap_or(CWD), name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// True if `stat` is a FIFO.
pub(crate) fn is_fifo(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode as _) == FileType::Fifo
}

/// True if `stat` is a regular file.
pub(crate) fn is_regular(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode as _) == FileType::RegularFile
}

/// True if both describe the same file.
pub(crate) fn same_file(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(false)` if another open file holds it.
pub(crate) fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `flock(LOCK_SH | LOCK_NB)`: true if a shared lock was taken (so nobody
/// holds an exclusive one), false if somebody does.
pub(crate) fn try_lock_shared(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets or clears `O_NONBLOCK` on `fd`'s open file description.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let mut wanted = flags;
    wanted.set(OFlags::NONBLOCK, nonblocking);
    if wanted != flags {
        rustix::fs::fcntl_setfl(fd, wanted)?;
    }
    Ok(())
}

/// `fcntl(F_SETPIPE_SZ)`: the pipe's capacity becomes at least `bytes`;
/// returns the capacity granted.
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    libc::c_int::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::pipe::fcntl_setpipe_size(fd, bytes)?)
}

/// `fcntl(F_GETPIPE_SZ)`: the pipe's capacity in bytes.
pub(crate) fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(rustix::pipe::fcntl_getpipe_size(fd)?)
}

/// A new open file description of the FIFO behind `fd`, opened through
/// `/proc/self/fd` with `flags` (works for an unlinked FIFO too).
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // Not `open_at`: its O_NOFOLLOW would refuse the magic link itself.
    Ok(rustix::fs::open(path.as_str(), oflags(flags) | OFlags::CLOEXEC, Mode::empty())?)
}

/// A fresh anonymous pipe (read end, write end), close-on-exec, non-blocking.
pub(crate) fn pipe_ends() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

/// Atomically makes the descriptor number of `target` refer to what
/// `source` refers to (`dup3`, close-on-exec); `target` stays owned by its
/// owner, which will close the new file in its place.
///
/// Stays on `libc`: rustix's `dup3` takes the target as `&mut OwnedFd`,
/// its exclusive owner, while here the target is shared on purpose (other
/// threads may be blocked on it: swapping the file under them is the point),
/// and conjuring a second `OwnedFd` for it would break that type's rule.
pub(crate) fn replace_fd(source: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: (1) both are live descriptors; dup3 closes what `target`
        // referred to and reuses its number, so no other owner is affected.
        if unsafe { libc::dup3(source.as_raw_fd(), target.as_raw_fd(), libc::O_CLOEXEC) } >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `read(fd, buf)`, retried on `EINTR`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// One `read(fd, buf)` into possibly uninitialised bytes; `EINTR` is the
/// caller's (it may have a reason to stop). A bare system call
/// ([`super::nocancel`]): every `pipe:` message is read with it.
pub(crate) fn read_once(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    super::nocancel::read(fd, buf)
}

/// Replaces the contents of the regular file `fd` with `bytes`
/// (`ftruncate` to 0, then `pwrite` at offset 0). A failed truncation is
/// not reported: the write that follows still puts `bytes` first.
pub(crate) fn rewrite(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<()> {
    let _ = rustix::fs::ftruncate(fd, 0);
    rustix::io::pwrite(fd, bytes, 0)?;
    Ok(())
}
