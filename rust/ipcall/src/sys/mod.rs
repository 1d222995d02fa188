//! Every system call ipcall makes, each wrapped once; nothing above this
//! folder calls the kernel itself. `rustix` carries almost all of them
//! safely (no `unsafe` at the call site, errno as `io::Error`). What it
//! lacks stays on `libc`, each with its reason written where it is made:
//!
//! - signal masks for SIGPIPE-safe FIFO writes ([`sigpipe`]): rustix has
//!   no `pthread_sigmask`/`sigpending`/`sigtimedwait` outside its
//!   `runtime` module, which works on the kernel's mask behind libc's back;
//! - `poll` on raw `pollfd`s ([`poll::poll_until`]): rustix's `PollFd`
//!   borrows its descriptor, but a server polls a listener that another
//!   thread may close meanwhile (reported as `POLLNVAL`);
//! - `dup3` onto a shared descriptor ([`fifo::replace_fd`]): rustix's
//!   takes the target as `&mut OwnedFd`, its exclusive owner;
//! - `SO_PEERCRED` ([`socket::peer_credentials`]): rustix's `UCred` holds a
//!   non-zero `Pid`, but the kernel reports pid 0 for a peer outside our
//!   pid namespace;
//! - `sched_getcpu` ([`shm::current_cpu`]): rustix's parses the vDSO
//!   itself, which faults under valgrind (rustix issue 1559).
//!
//! Futexes ([`shm`]) go through rustix and are shared, not private:
//! rustix adds `FUTEX_PRIVATE_FLAG` only when asked (`Flags::PRIVATE`), and
//! the words live in memory shared with another process.
//!
//! - [`epoll`]: one epoll instance, its registrations and waits.
//! - [`eventfd`]: `EventFd`, a level-triggered "something may be ready" flag.
//! - [`poll`]: waiting on one descriptor with a deadline; bytes readable.
//! - [`fifo`]: directory-relative file operations of the `pipe:` set-up.
//! - [`sigpipe`]: writes that report `EPIPE` instead of raising `SIGPIPE`.
//! - [`shm`]: memfds and seals, mappings, futexes, descriptor passing.
//! - [`socket`]: Unix domain stream sockets, by path or abstract name.
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
pub(crate) mod socket;

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

/// `mkdtemp(prefix + "XXXXXX")`: a new directory of mode 0700 with a
/// random suffix, which nobody else can have created or entered. On libc:
/// rustix has no `mkdtemp`.
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
