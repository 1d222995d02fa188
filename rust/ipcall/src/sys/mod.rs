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
//! - `getrusage` ([`thread_voluntary_switches`]): rustix has none;
//! - `sched_getcpu` ([`shm::current_cpu`]): rustix's parses the vDSO
//!   itself, which faults under valgrind (rustix issue 1559);
//! - the per-message reads and writes of `unix:` and `pipe:`
//!   ([`nocancel`]): bare `syscall`s, without glibc's cancellation-point
//!   bracketing (rustix on its libc backend calls those wrappers).
//!
//! Futexes ([`shm`]) go through rustix and are shared, not private:
//! rustix adds `FUTEX_PRIVATE_FLAG` only when asked (`Flags::PRIVATE`), and
//! the words live in memory shared with another process.
//!
//! - [`epoll`]: one epoll instance, its registrations and waits.
//! - [`eventfd`]: `EventFd`, a level-triggered "something may be ready" flag.
//! - [`poll`]: waiting on one descriptor with a deadline; bytes readable.
//! - [`fifo`]: directory-relative file operations of the `pipe:` set-up.
//! - [`nocancel`]: `recv`, `send`, `read`, `pwritev2` as bare system calls.
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
pub(crate) mod nocancel;
pub(crate) mod poll;
pub(crate) mod shm;
pub(crate) mod sigpipe;
pub(crate) mod socket;

pub(crate) use eventfd::EventFd;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// The calling thread's voluntary context switches so far
/// (`getrusage(RUSAGE_THREAD)`: rustix has no `getrusage`); 0 if the call
/// fails, which it does only for a bad argument.
pub(crate) fn thread_voluntary_switches() -> u64 {
    // SAFETY: (1) an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: (1) a live, writable rusage for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_nvcsw as u64
}

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

/// What `/proc/<pid>/stat` tells of a process, for telling a live server's
/// registry entry from one left by a dead process (or by one whose pid was
/// reused since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessState {
    /// Running (or sleeping, stopped...): its start time, in clock ticks
    /// since boot (field 22, `starttime`), which a reused pid does not share.
    Alive {
        /// `starttime` of `/proc/<pid>/stat`.
        start_ticks: u64,
    },
    /// No such process, or a zombie (dead, not yet reaped by its parent).
    Gone,
    /// `/proc` did not say (not mounted, unreadable, a format we do not
    /// know): nothing may be concluded.
    Unknown,
}

/// The state of process `pid` from `/proc/<pid>/stat`.
pub(crate) fn process_state(pid: u32) -> ProcessState {
    match fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_proc_stat(&stat),
        Err(e) if e.kind() == io::ErrorKind::NotFound => ProcessState::Gone,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => ProcessState::Gone,
        Err(_) => ProcessState::Unknown,
    }
}

/// This process's `starttime` (read once: it never changes).
pub(crate) fn own_start_ticks() -> Option<u64> {
    static TICKS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| match fs::read("/proc/self/stat").map(|s| parse_proc_stat(&s)) {
        Ok(ProcessState::Alive { start_ticks }) => Some(start_ticks),
        _ => None,
    })
}

/// `pid (comm) state ppid ... starttime ...`: `comm` may hold spaces and
/// parentheses, so the fields are counted from the last `)`; `state` is
/// field 3 and `starttime` field 22.
fn parse_proc_stat(stat: &[u8]) -> ProcessState {
    let Some(close) = stat.iter().rposition(|&b| b == b')') else { return ProcessState::Unknown };
    let Ok(rest) = std::str::from_utf8(&stat[close + 1..]) else { return ProcessState::Unknown };
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    match (fields.first(), fields.get(22 - 3).and_then(|t| t.parse::<u64>().ok())) {
        (Some(&("Z" | "X" | "x")), _) => ProcessState::Gone,
        (Some(_), Some(start_ticks)) => ProcessState::Alive { start_ticks },
        _ => ProcessState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_read_from_its_last_parenthesis() {
        let line = b"42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n";
        assert_eq!(parse_proc_stat(line), ProcessState::Alive { start_ticks: 987654 });
        assert_eq!(parse_proc_stat(b"42 (x) Z 1 2 3"), ProcessState::Gone);
        assert_eq!(parse_proc_stat(b"42 (x) S 1 2"), ProcessState::Unknown);
        assert_eq!(parse_proc_stat(b"garbage"), ProcessState::Unknown);
        assert!(matches!(process_state(std::process::id()), ProcessState::Alive { .. }));
        assert_eq!(
            process_state(std::process::id()),
            ProcessState::Alive { start_ticks: own_start_ticks().expect("/proc/self/stat") }
        );
    }
}
