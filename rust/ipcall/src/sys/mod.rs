//! Every system call ipcall makes, each wrapped once. `rustix` carries most
//! of them safely; what it lacks stays on `libc` here with its reason:
//! signal masks for SIGPIPE-safe FIFO writes ([`sigpipe`]), and `msghdr`
//! control data is built by rustix too, so only those remain raw.
//!
//! - [`epoll`]: one epoll instance, its registrations and waits.
//! - [`eventfd`]: `EventFd`, a level-triggered "something may be ready" flag.
//! - [`poll`]: waiting on one descriptor with a deadline; bytes readable.
//! - [`fifo`]: directory-relative file operations of the `pipe:` set-up.
//! - [`sigpipe`]: writes that report `EPIPE` instead of raising `SIGPIPE`.
//! - [`shm`]: memfds and seals, mappings, futexes, descriptor passing.
//! - here: uid/gid, random names, private directories.
//!
//! Nothing here knows a transport: these are plain system calls with Rust
//! types. Deadlines come in as `Option<Instant>` (`None` = forever).

pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod fifo;
pub(crate) mod poll;
pub(crate) mod shm;
pub(crate) mod sigpipe;

pub(crate) use eventfd::EventFd;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// The real uid of this process.
pub(crate) fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The real gid of this process.
pub(crate) fn gid() -> u32 {
    rustix::process::getgid().as_raw()
}

/// 128 random bits from the kernel, as 32 lowercase hex digits.
pub(crate) fn random_hex_128() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
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
