//! Thin wrappers over the few system calls the core needs directly.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// The real uid of this process.
pub(crate) fn uid() -> u32 {
    // SAFETY: (1) getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The real gid of this process.
pub(crate) fn gid() -> u32 {
    // SAFETY: (1) getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

/// 128 random bits from the kernel, as 32 lowercase hex digits.
pub(crate) fn random_hex_128() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: (1) the pointer and length describe the unfilled tail of
        // `bytes`, which is live and writable for the whole call.
        let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates `dir` with mode 0700 if missing; accepts an existing one only if it
/// is a real directory owned by `uid` with no group/other permission bits.
pub(crate) fn ensure_private_dir(dir: &Path, uid: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} exists and is not a directory", dir.display()),
        ));
    }
    if meta.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is owned by uid {}, not by us ({uid})", dir.display(), meta.uid()),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} has mode {:o}; a private directory must be 0700", dir.display(), meta.mode() & 0o777),
        ));
    }
    Ok(())
}

/// `mkdtemp(prefix + "XXXXXX")`: a new directory of mode 0700 with a
/// random suffix, which nobody else can have created or entered.
pub(crate) fn make_temp_dir(prefix: &Path) -> io::Result<std::path::PathBuf> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut template = prefix.as_os_str().as_bytes().to_vec();
    template.extend_from_slice(b"XXXXXX\0");
    // SAFETY: (1) `template` is a live, writable, NUL-terminated buffer that
    // mkdtemp rewrites in place; the result is checked.
    if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    template.pop();
    Ok(std::ffi::OsString::from_vec(template).into())
}

/// A non-blocking, close-on-exec eventfd used as a level-triggered
/// "something may be ready" flag: readable while its counter is non-zero.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: (1) eventfd takes no pointers; a negative result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: (1) `raw` is a fresh descriptor that nothing else owns.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(raw) } })
    }

    /// Makes the descriptor readable (adds 1 to the counter).
    pub(crate) fn set(&self) {
        let one: u64 = 1;
        // SAFETY: (1) writes 8 bytes from a live local u64. The only possible
        // failure, EAGAIN on counter overflow, still leaves it readable.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the descriptor unreadable (resets the counter to 0).
    pub(crate) fn clear(&self) {
        let mut value: u64 = 0;
        // SAFETY: (1) reads 8 bytes into a live local u64; EAGAIN (already
        // zero) is the expected failure and needs no handling.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
