//! The system calls the FIFO layer makes, each wrapped once: every path is
//! resolved relative to a directory descriptor, never followed through a
//! symbolic link, and every descriptor is close-on-exec. `set_nonblocking`
//! is also for the stream layer (one end blocking, the other not).

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) use crate::sys::poll::{poll_until, pollfd};

/// `path` as a C string; a NUL byte inside is `InvalidInput`.
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path contains a NUL byte"))
}

/// The effective uid: the owner of every file this process creates.
pub(crate) fn euid() -> u32 {
    // SAFETY: (1) geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// `mkdir(path, mode)`: fails with `AlreadyExists` if anything is there
/// (a symbolic link included: mkdir never follows the last component).
pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: (1) `path` is a live NUL-terminated string.
    check(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

/// Opens `path` (absolute, or relative to `dir` if given) with `flags`
/// plus `O_CLOEXEC | O_NOFOLLOW`; `mode` applies with `O_CREAT`.
pub(crate) fn open_at(dir: Option<BorrowedFd<'_>>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let dir_fd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    loop {
        // SAFETY: (1) `path` is a live NUL-terminated string; (2) the mode
        // argument is read only with O_CREAT and is passed as the c_uint
        // that the variadic ABI expects.
        let fd = unsafe { libc::openat(dir_fd, path.as_ptr(), flags, 0o600 as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: (1) `fd` is a fresh descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `mkfifoat(dir, name, 0600)`, then the mode forced to exactly 0600
/// whatever the umask removed. The umask can only remove bits, and the
/// directory is 0700, so no other uid can open the FIFO in between.
pub(crate) fn make_fifo(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: (1) `name` is a live NUL-terminated string; `dir` a live descriptor.
    check(unsafe { libc::mkfifoat(dir.as_raw_fd(), name.as_ptr(), 0o600) })?;
    // SAFETY: (1) as above; flag 0 = follow nothing unusual (a FIFO we just made).
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), 0o600, 0) }).map(drop)
}

/// `unlinkat(dir, name, 0)`; a missing name is not an error.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: (1) `name` is a live NUL-terminated string; `dir` a live descriptor.
    match check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map(drop),
    }
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: (1) `stat` is writable storage of the right type; (2) on
    // success the kernel has filled it completely.
    unsafe {
        check(libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()))?;
        Ok(stat.assume_init())
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` (or `lstat(name)` without `dir`).
pub(crate) fn stat_at(dir: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<libc::stat> {
    let dir_fd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: (1) `name` is a live NUL-terminated string and `stat` writable
    // storage of the right type; (2) on success it is completely filled.
    unsafe {
        check(libc::fstatat(dir_fd, name.as_ptr(), stat.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW))?;
        Ok(stat.assume_init())
    }
}

/// True if `stat` is a FIFO.
pub(crate) fn is_fifo(stat: &libc::stat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFIFO
}

/// True if both describe the same file.
pub(crate) fn same_file(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: (1) `fd` is a live descriptor; no pointers.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(false)` if another open file holds it.
pub(crate) fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        // SAFETY: (1) `fd` is a live descriptor; no pointers.
        match check(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sets or clears `O_NONBLOCK` on `fd`'s open file description.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: (1) `fd` is a live descriptor; F_GETFL takes no argument.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let wanted = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    if wanted != flags {
        // SAFETY: (1) `fd` is a live descriptor; F_SETFL takes an int.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, wanted) })?;
    }
    Ok(())
}

/// `fcntl(F_SETPIPE_SZ)`: the pipe's capacity becomes at least `bytes`;
/// returns the capacity granted.
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let bytes = libc::c_int::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: (1) `fd` is a live descriptor; F_SETPIPE_SZ takes an int.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) }).map(|granted| granted as usize)
}

/// A new open file description of the FIFO behind `fd`, opened through
/// `/proc/self/fd` with `flags` (works for an unlinked FIFO too).
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number");
    // Not `open_at`: its O_NOFOLLOW would refuse the magic link itself.
    // SAFETY: (1) `path` is a live NUL-terminated string.
    let raw = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: (1) `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A fresh anonymous pipe (read end, write end), close-on-exec, non-blocking.
pub(crate) fn pipe_ends() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: (1) `fds` is a live array of two ints for the kernel to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: (1) both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Atomically makes the descriptor number of `target` refer to what
/// `source` refers to (`dup3`, close-on-exec); `target` stays owned by its
/// owner, which will close the new file in its place.
pub(crate) fn replace_fd(source: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: (1) both are live descriptors; dup3 closes what `target`
        // referred to and reuses its number, so no other owner is affected.
        match check(unsafe { libc::dup3(source.as_raw_fd(), target.as_raw_fd(), libc::O_CLOEXEC) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// `read(fd, buf)`, retried on `EINTR`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: (1) the pointer and length describe `buf`, live and writable.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
