//! Sweeping the runtime directory of names whose servers died.
//!
//! `bind_unique` names are never reused, so the socket file or FIFO
//! directory of a server killed with SIGKILL would stay in the runtime
//! directory for ever. Each `bind_unique` removes the entries of that
//! directory that are ipcall's and whose server is gone — and nothing else:
//!
//! - `<32 hex>.sock` / `<32 hex>.shm`: a socket file (not a link, owned by
//!   us) that no socket of this system is bound to. Liveness comes from
//!   `/proc/net/unix`, never from connecting (a probe connection would be
//!   a one-shot server's one client). A socket is listed there from its
//!   `bind`, before its file can be seen, so a server that is still
//!   starting up is never taken for dead.
//! - `<32 hex>.pipe`: a directory whose `lock` holds a pid (so its server
//!   finished binding) and that no process holds locked (so it is gone). It
//!   is then taken over and removed by the `pipe:` layer itself, which
//!   refuses any directory holding files that are not its own.
//!
//! Limits: sockets bound in another network namespace are not listed in
//! ours, so a runtime directory shared with a container in another
//! namespace is not swept (we never sweep when `/proc/net/unix` cannot
//! be read, but we cannot tell that a namespace differs).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sys;
use crate::transport::pipe::fifo::FifoListener;

/// Removes the entries of `dir` (a runtime directory) whose servers are
/// gone; returns how many. Errors are ignored: sweeping is best effort and
/// never makes a bind fail.
pub(crate) fn sweep(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let uid = sys::uid();
    let mut sockets = Vec::new();
    let mut pipes = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        match unique_suffix(&path) {
            Some("sock" | "shm") => sockets.push(path),
            Some("pipe") => pipes.push(path),
            _ => {}
        }
    }
    let mut removed = 0;
    if !sockets.is_empty() {
        // Read after listing the directory: a socket whose file we saw was
        // bound before we read the table.
        if let Some(bound) = bound_socket_paths() {
            for path in sockets {
                let ours = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket() && m.uid() == uid);
                if ours && !bound.contains(path.as_os_str().as_encoded_bytes()) && fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    for path in pipes {
        if pipe_server_gone(&path, uid) {
            // Binding takes the directory over only if it is stale and all
            // ipcall's; dropping the listener removes it.
            if let Ok(listener) = FifoListener::bind(&path) {
                drop(listener);
                removed += 1;
            }
        }
    }
    removed
}

/// `Some("sock")` etc. if the file name is `<32 lowercase hex>.<suffix>`,
/// the form of generated names (see `Name::unique`).
fn unique_suffix(path: &Path) -> Option<&str> {
    let name = path.file_name().and_then(OsStr::to_str)?;
    let (token, suffix) = name.split_once('.')?;
    let hex = token.len() == 32 && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then_some(suffix)
}

/// The paths every Unix socket of this network namespace is bound to (from
/// `/proc/net/unix`); `None` if the table cannot be read.
fn bound_socket_paths() -> Option<HashSet<Vec<u8>>> {
    let table = fs::read("/proc/net/unix").ok()?;
    let mut paths = HashSet::new();
    // "Num RefCount Protocol Flags Type St Inode Path": the path is what
    // follows the seventh field (it may contain spaces; absent if unbound).
    for line in table.split(|&b| b == b'\n').skip(1) {
        let mut rest = line;
        for _ in 0..7 {
            let start = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len());
            rest = &rest[start..];
            let end = rest.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(rest.len());
            rest = &rest[end..];
        }
        let path = rest.strip_prefix(b" ").unwrap_or(rest);
        if path.first() == Some(&b'/') {
            paths.insert(path.to_vec());
        }
    }
    Some(paths)
}

/// True if `dir` looks like a `pipe:` directory whose server finished
/// binding (its `lock` names a pid) and has since gone (nobody holds the lock).
fn pipe_server_gone(dir: &Path, uid: u32) -> bool {
    let dir_ours = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid);
    if !dir_ours {
        return false;
    }
    let lock_path: PathBuf = dir.join("lock");
    let Ok(lock) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&lock_path)
    else {
        return false;
    };
    let named_pid = lock.metadata().is_ok_and(|m| m.is_file() && m.uid() == uid && m.len() > 0);
    if !named_pid {
        return false;
    }
    // A live server holds LOCK_EX for its whole life; the kernel drops it
    // when the process dies, however it dies.
    crate::sys::fifo::try_lock_shared(lock.as_fd()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_names_are_candidates() {
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(unique_suffix(Path::new(&format!("/x/{token}.sock"))), Some("sock"));
        assert_eq!(unique_suffix(Path::new(&format!("/x/{token}.pipe"))), Some("pipe"));
        assert_eq!(unique_suffix(Path::new("/x/0123456789ABCDEF0123456789abcdef.sock")), None);
        assert_eq!(unique_suffix(Path::new("/x/app.sock")), None);
        assert_eq!(unique_suffix(Path::new("/x/notes")), None);
    }

    #[test]
    fn a_bound_socket_is_listed_and_a_closed_one_is_not() {
        let dir = std::env::temp_dir().join(format!("ipcall-sweep-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let listed = bound_socket_paths().expect("/proc/net/unix");
        assert!(listed.contains(path.as_os_str().as_encoded_bytes()), "{path:?} not listed");
        drop(listener);
        let listed = bound_socket_paths().expect("/proc/net/unix");
        assert!(!listed.contains(path.as_os_str().as_encoded_bytes()), "{path:?} listed after close");
        fs::remove_dir_all(&dir).unwrap();
    }
}
