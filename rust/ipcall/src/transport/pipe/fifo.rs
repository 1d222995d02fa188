//! `pipe:` connection set-up over named pipes (FIFOs).
//!
//! This layer only makes connections: it owns the server's directory, takes
//! connectors through an accept FIFO, and hands each side of a connection a
//! read descriptor and a write descriptor ([`FifoConn`]). What flows over
//! them (the handshake and frames of `docs/PROTOCOL.md`) is the stream
//! layer's business; writes must go through [`sigpipe::write_no_sigpipe`]
//! (or [`sigpipe::writev_no_sigpipe`]) so that a vanished reader is an `EPIPE` error and
//! never kills the process.
//!
//! # Layout
//!
//! `pipe:/some/dir` names a directory that the server creates, mode 0700:
//!
//! | entry           | type         | mode | made by   | what for |
//! |-----------------|--------------|------|-----------|----------|
//! | `lock`          | regular file | 0600 | server    | `flock(LOCK_EX)` held while the server lives; holds its pid as text (informational only) |
//! | `accept`        | FIFO         | 0600 | server    | each connector writes one record into it |
//! | `<token>.req`   | FIFO         | 0600 | connector | requests, client → server |
//! | `<token>.rep`   | FIFO         | 0600 | connector | replies, server → client |
//!
//! `<token>` is 32 lowercase hex digits: 128 random bits from `getrandom`.
//! The per-connection names live only during set-up: both are unlinked as
//! soon as both ends are open, so a running connection has no name at all.
//!
//! # Records (ASCII, fixed length, `\n`-terminated; pids zero-padded)
//!
//! - connect record, client → `accept`, [`record::RECORD_LEN`] = 58 bytes:
//!   `ipcall-fifo 1 <pid:10 digits> <token:32 hex>\n`
//!   e.g. `ipcall-fifo 1 0000004242 00112233445566778899aabbccddeeff\n`.
//! - answer, server → `<token>.rep`, [`record::ANSWER_LEN`] = 28 bytes:
//!   `ipcall-fifo 1 ok <pid:10 digits>\n` (accepted; the server's pid), or
//!   `ipcall-fifo 1 no <pid:10 digits>\n` (refused: the FIFOs failed the
//!   server's checks). Nothing else is ever written by this layer, so the
//!   stream layer's first byte on `<token>.rep` follows the answer.
//!
//! # Set-up, step by step
//!
//! Client ([`fifo_connect`]):
//! 1. open the directory (`O_DIRECTORY|O_NOFOLLOW`); it must be owned by our
//!    effective uid with no group/other bits, else `PermissionDenied`.
//! 2. open `accept` for writing with `O_NONBLOCK`: `ENXIO` means no process
//!    has it open for reading — no live server — and connecting fails at once
//!    with `ConnectionRefused`, before anything is created.
//! 3. `mkfifoat` `<token>.req` and `<token>.rep`, mode 0600.
//! 4. open `<token>.rep` for reading (`O_NONBLOCK`: returns at once).
//! 5. open `<token>.req` for reading (`O_NONBLOCK`, a short-lived placeholder),
//!    then for writing (succeeds because a reader now exists), then close
//!    the placeholder. The client is now the one writer of `.req`.
//! 6. write the record into `accept` in one `write` (58 ≤ `PIPE_BUF`).
//! 7. poll `.rep` for input and `accept` for `POLLERR` (= the server's read
//!    end is gone: it died) until the deadline; then read the answer. (Never
//!    read before poll says so: `read` on a FIFO that has had no writer yet
//!    returns 0 at once.)
//! 8. clear `O_NONBLOCK` on both ends, unlink both names, done.
//!
//! Server ([`FifoListener::try_accept`], never blocks):
//! 1. read one record from `accept` (non-blocking); malformed ones are
//!    skipped up to the next `\n`.
//! 2. open `<token>.req` for reading (`O_NONBLOCK|O_NOFOLLOW`): a FIFO owned by
//!    our uid, mode 0600, else refused. A non-blocking `read` must say
//!    `EAGAIN` (the client is still its writer); `0` means the client is gone.
//! 3. open `<token>.rep` for writing (`O_NONBLOCK`): `ENXIO` means the client
//!    closed its read end (gone). Same checks.
//! 4. write the 28-byte answer; `EPIPE` means the client is gone.
//! 5. unlink both names, clear `O_NONBLOCK`, hand out the connection.
//!
//! # Why each step is race-free
//!
//! - **Who can touch the directory.** It is created 0700 (and `fchmod`ed to
//!   exactly 0700, whatever the umask), so only our uid and root can create,
//!   open, rename or unlink anything inside; the FIFOs are 0600 as well, so a
//!   FIFO is never reachable by another uid at any moment of its life (never
//!   chmod-after-create on a reachable file). Every name inside is resolved
//!   with `openat`/`mkfifoat`/`unlinkat` against the directory descriptor
//!   opened and checked once, with `O_NOFOLLOW`: renaming or replacing the
//!   directory path afterwards cannot redirect us.
//! - **Creating names.** `mkfifo` fails with `EEXIST` if anything, even a
//!   dangling symlink, already has the name (it has `O_EXCL` semantics), and
//!   128 random bits make a collision between connectors impossible in
//!   practice; a collision is an error, never a shared FIFO.
//! - **Records never interleave.** A record is 58 bytes and written by one
//!   `write`; POSIX makes writes of at most `PIPE_BUF` (4096) bytes to a pipe
//!   atomic, so concurrent connectors' records arrive whole and in some
//!   order. In non-blocking mode a full pipe refuses the whole record
//!   (`EAGAIN`), never part of it; the client then waits for room.
//! - **No open can deadlock.** Every FIFO open is `O_NONBLOCK`: a read open
//!   returns at once, and a write open returns at once or fails with `ENXIO`
//!   when there is no reader. The only waits are `poll` calls bounded by the
//!   caller's deadline, so a peer that never opens its end makes the other
//!   side time out, not hang. The server never waits for a client at all.
//! - **No false end-of-file.** The client becomes the writer of `.req` *before*
//!   it sends its record (step 5), so when the server opens the read end a
//!   writer already exists: a `read` returns 0 only once the client has
//!   really closed it, and Linux reports `POLLHUP` on the server's read end
//!   when it does (for a read end opened while a writer exists, HUP is not
//!   suppressed). The client's `.rep` read end is opened before any writer, so
//!   its HUP is suppressed until the server has opened the write end: poll
//!   wakes for the answer, not for an empty pipe.
//! - **Liveness.** The server holds `flock(LOCK_EX)` on `lock` for its whole
//!   life; the kernel drops it when the process dies, however it dies. A
//!   binder that cannot take the lock gets `AddrInUse` (never steals a live
//!   server); one that can, after re-checking that `lock` still names the
//!   inode it locked (else a dying server unlinked it: start over), owns the
//!   directory and replaces the stale contents. The server also keeps a write
//!   end of its own `accept` open, so its read end never sees EOF between
//!   connectors, and clients see `POLLERR` on theirs exactly when the
//!   server's read end closes.
//! - **Removal.** On `unbind` (or drop) the server unlinks `accept` and any per-connection
//!   leftovers, then `lock`, then removes the directory, and releases the
//!   lock only after that, when it closes it. A new binder can only win the lock
//!   after `lock` was unlinked, so the old server never deletes the new
//!   one's files (`rmdir` of a non-empty directory fails harmlessly). A
//!   connector that made its FIFOs just before the server's last scan keeps
//!   that `rmdir` from succeeding; its set-up then fails (the server went
//!   away), and after unlinking its FIFOs it removes the directory itself
//!   if `lock` is gone and the path still names it (an empty directory
//!   only; a binder that just made a new one at the path starts over).
//! - **Only ipcall's directories are replaced.** A stale directory is emptied
//!   only if every entry in it is one this layer makes (`lock`, `accept`,
//!   `<token>.req`/`.rep` of the right types); anything else gives
//!   `AddrInUse` and nothing is touched.
//!
//! # Peer identity (what is and isn't verified)
//!
//! FIFOs carry no credentials. The server takes the client's uid and gid from
//! `fstat` of `<token>.req` (the kernel sets a file's owner to its creator's
//! fsuid/fsgid, so these are as trustworthy as `SO_PEERCRED`), and refuses
//! FIFOs not owned by its own effective uid. The client takes the server's
//! from `fstat` of `accept`, after checking that the directory is its own.
//! So `pipe:` connects processes of one effective uid only: the 0700
//! directory is the access control, and a root client is refused a user's
//! directory at once rather than left to time out. The **pid is claimed,
//! not verified**: it is the number written in the record/answer. Any
//! process of the same uid could lie about it — but such a process could
//! also ptrace either side, so within one uid it is as good as any check.
//!
//! # Ending a connection
//!
//! FIFOs have no `shutdown(2)`. [`FifoConn::shutdown`] emulates
//! `SHUT_RDWR`: it swaps dead anonymous pipes in under both descriptor
//! numbers (`dup3`), wakes threads polling the old FIFOs, and so leaves
//! the peer with EOF and `EPIPE` at once. [`FifoConn::shutdown_write`] is
//! `SHUT_WR` (the peer reads what was written, then EOF), and
//! [`FifoConn::wake_reader`] wakes a thread polling the read end (for a
//! `SHUT_RD`-like stop, or an end an epoll still watches).
//!
//! # Caveats
//!
//! Descriptors are `O_CLOEXEC`, so exec'd children inherit nothing. A child
//! made by `fork` without `exec` does inherit the listener's descriptors
//! (and its `flock`), and keeps the directory looking live while it runs.

#[cfg(test)]
#[path = "process_tests.rs"]
mod process_tests;
#[cfg(test)]
#[path = "fifo_shutdown_tests.rs"]
mod shutdown_tests;
#[cfg(test)]
#[path = "fifo_tests.rs"]
mod tests;

use super::record::{format_answer, format_record, parse_answer, parse_record, RecordBuffer, ANSWER_LEN};
use crate::sys::fifo as os;
use crate::sys::sigpipe::write_no_sigpipe;

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::core::peer::Peer;
use crate::core::wait::Deadline;
use crate::sys;

pub(crate) use super::conn::FifoConn;

/// Name of the lock file inside a server directory.
const LOCK_NAME: &CStr = c"lock";
/// Name of the accept FIFO inside a server directory.
const ACCEPT_NAME: &CStr = c"accept";
/// How often `bind` starts over when the directory changes under it.
const BIND_ATTEMPTS: usize = 8;

/// A server directory and its accept FIFO. Dropping it removes the
/// directory (established connections are unaffected: their FIFOs have no
/// names any more).
#[derive(Debug)]
pub(crate) struct FifoListener {
    /// The directory's path as given to `bind`, for the final `rmdir`.
    path: PathBuf,
    /// The directory, opened and checked once (ours, 0700); every name
    /// inside is resolved against it.
    dir: OwnedFd,
    /// The lock file, `flock(LOCK_EX)`ed for the listener's whole life;
    /// closed last (see `Drop`); only ever held, never read.
    _lock: OwnedFd,
    /// Read end of `accept`, always `O_NONBLOCK` (what `as_fd` exposes).
    accept_read: OwnedFd,
    /// A write end of `accept` that the listener keeps itself, so that its
    /// read end never reports end-of-file or `POLLHUP` between connectors.
    _accept_keepalive: OwnedFd,
    /// Bytes read from `accept` that do not yet form a record. Empty after
    /// every whole record unless a writer broke the format.
    pending: Mutex<RecordBuffer>,
    /// Our effective uid: every FIFO a connector makes must be owned by it.
    uid: u32,
    /// Set once by `unbind` (or drop): the directory is gone, or going.
    unbound: AtomicBool,
}

impl FifoListener {
    /// Creates (or takes over a stale) server directory at `dir` and its
    /// accept FIFO. `AddrInUse` if a live server holds it or it is not an
    /// ipcall directory; `PermissionDenied` if it belongs to another uid or
    /// has group/other permissions; `NotFound` if the parent is missing.
    pub(crate) fn bind(dir: &Path) -> io::Result<FifoListener> {
        let c_dir = os::c_path(dir)?;
        let uid = os::euid();
        for _ in 0..BIND_ATTEMPTS {
            let created = match os::mkdir(&c_dir, 0o700) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            };
            let dir_fd = match os::open_at(None, &c_dir, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // removed under us
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                    return Err(in_use(dir, "exists and is not a directory"));
                }
                Err(e) => return Err(e),
            };
            if created {
                // The umask may have removed bits from 0700; nobody else can
                // have entered a directory that never had more than 0700.
                os::fchmod(dir_fd.as_fd(), 0o700)?;
            }
            let dir_stat = os::fstat(dir_fd.as_fd())?;
            check_private_dir(dir, &dir_stat, uid)?;
            // Refuse a directory that is not ours before creating anything in it.
            our_entries(dir, dir_fd.as_fd())?;

            let lock = match os::open_at(Some(dir_fd.as_fd()), LOCK_NAME, libc::O_RDWR | libc::O_CREAT) {
                Ok(fd) => fd,
                // A connector that left the old server's empty directory
                // removed it (`remove_if_abandoned`): start over.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let lock_stat = os::fstat(lock.as_fd())?;
            if !os::is_regular(&lock_stat) || lock_stat.st_uid != uid {
                return Err(in_use(dir, "has a `lock` that is not our regular file"));
            }
            if !os::try_lock_exclusive(lock.as_fd())? {
                return Err(in_use(dir, "is held by a live server"));
            }
            // A dying server unlinks `lock` and then the directory while it
            // still holds the lock: make sure what we locked is still what
            // the path names, or start over.
            let still_named = os::stat_at(Some(dir_fd.as_fd()), LOCK_NAME).is_ok_and(|s| os::same_file(&s, &lock_stat))
                && os::stat_at(None, &c_dir).is_ok_and(|s| os::same_file(&s, &dir_stat));
            if !still_named {
                continue;
            }
            // We own the directory now; anything left in it is stale.
            for name in our_entries(dir, dir_fd.as_fd())? {
                os::unlink_at(dir_fd.as_fd(), &name)?;
            }
            write_pid(lock.as_fd())?;
            os::make_fifo(dir_fd.as_fd(), ACCEPT_NAME)?;
            let accept_read = os::open_at(Some(dir_fd.as_fd()), ACCEPT_NAME, libc::O_RDONLY | libc::O_NONBLOCK)?;
            let keepalive = os::open_at(Some(dir_fd.as_fd()), ACCEPT_NAME, libc::O_WRONLY | libc::O_NONBLOCK)?;
            return Ok(FifoListener {
                path: dir.to_path_buf(),
                dir: dir_fd,
                _lock: lock,
                accept_read,
                _accept_keepalive: keepalive,
                pending: Mutex::new(RecordBuffer::default()),
                uid,
                unbound: AtomicBool::new(false),
            });
        }
        Err(in_use(dir, "kept changing while binding"))
    }

    #[cfg(test)] // the transport uses try_accept / shutdown_write; tests use these
    /// The directory this listener owns.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)] // the transport uses try_accept / shutdown_write; tests use these
    /// Waits until a connector arrives and sets its connection up; `TimedOut`
    /// at the deadline. Connectors that vanish or break the format mid-way
    /// are skipped, not reported.
    pub(crate) fn accept(&self, deadline: Deadline) -> io::Result<FifoConn> {
        loop {
            if let Some(conn) = self.try_accept()? {
                return Ok(conn);
            }
            let mut fds = [os::pollfd(self.accept_read.as_fd(), libc::POLLIN)];
            if !os::poll_until(&mut fds, deadline)? {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no client connected before the deadline"));
            }
        }
    }

    /// Sets up the next waiting connector's connection, or `Ok(None)` if none
    /// is waiting. Never blocks. For an event loop: when [`as_fd`](AsFd::as_fd)
    /// becomes readable, call this until it returns `Ok(None)`. An error is
    /// a local failure (e.g. out of descriptors); that connector times out.
    pub(crate) fn try_accept(&self) -> io::Result<Option<FifoConn>> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(record) = pending.next_record(self.accept_read.as_fd())? {
            let Some((pid, token)) = parse_record(&record) else { continue };
            if let Some(conn) = self.establish(pid, &token)? {
                return Ok(Some(conn));
            }
        }
        Ok(None)
    }

    /// Server steps 2–5 for one record. `Ok(None)`: that connector is gone or
    /// its FIFOs failed the checks (skipped); `Err`: a local failure.
    fn establish(&self, pid: u32, token: &str) -> io::Result<Option<FifoConn>> {
        let names = ConnNames::new(self.dir.as_fd(), token);
        // Whatever happens below, the names are unlinked when `names` drops:
        // once both ends are open they are no longer needed.
        let request = match os::open_at(Some(self.dir.as_fd()), &names.request, libc::O_RDONLY | libc::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if connector_gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let request_stat = os::fstat(request.as_fd())?;
        let request_ok = self.is_our_fifo(&request_stat);
        if request_ok {
            // The client opened `.req` for writing before sending its record
            // and writes nothing before our answer: an empty pipe with a writer.
            match os::read(request.as_fd(), &mut [0u8; 1]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => return Ok(None), // 0 = the client is gone; data = a broken client
            }
        }
        let reply = match os::open_at(Some(self.dir.as_fd()), &names.reply, libc::O_WRONLY | libc::O_NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if connector_gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let reply_stat = os::fstat(reply.as_fd())?;
        if !os::is_fifo(&reply_stat) {
            return Ok(None); // nothing to answer through
        }
        // A connector whose FIFOs fail the checks is told so ("no") rather
        // than left to time out.
        let accepted = request_ok && self.is_our_fifo(&reply_stat);
        let answer = format_answer(accepted, std::process::id());
        match write_no_sigpipe(reply.as_fd(), &answer) {
            Ok(n) if n == answer.len() => {}
            Ok(_) => return Ok(None), // impossible for an empty pipe; never half a connection
            Err(e) if connector_gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        if !accepted {
            return Ok(None);
        }
        os::set_nonblocking(request.as_fd(), false)?;
        os::set_nonblocking(reply.as_fd(), false)?;
        let peer = Peer {
            pid: Some(pid),
            uid: Some(request_stat.st_uid),
            gid: Some(request_stat.st_gid),
            nats_client_id: None,
        };
        Ok(Some(FifoConn { read: request, write: reply, peer }))
    }

    /// A per-connection FIFO must be a FIFO of our uid with mode 0600, alone.
    fn is_our_fifo(&self, stat: &os::Stat) -> bool {
        os::is_fifo(stat) && stat.st_uid == self.uid && stat.st_mode & 0o777 == 0o600 && stat.st_nlink == 1
    }
}

impl AsFd for FifoListener {
    /// The accept FIFO's read end (non-blocking): readable when a connector
    /// may be waiting. Register it with epoll/poll and call `try_accept`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.accept_read.as_fd()
    }
}

impl FifoListener {
    /// Removes the directory now (idempotent; drop does it too) and retires
    /// the accept FIFO: its descriptors are swapped (`dup3`) for a pipe that
    /// never becomes readable, so connectors still waiting for an answer see
    /// `POLLERR` and fail with `ConnectionRefused` at once, and `try_accept`
    /// returns `Ok(None)` from now on. Established connections are not
    /// affected. For a one-shot server: call it right after the accept.
    pub(crate) fn unbind(&self) {
        if self.unbound.swap(true, Ordering::SeqCst) {
            return;
        }
        // A pipe whose writer we keep (as the keepalive's number): never
        // readable, never HUP, so an event loop holding `as_fd` stays quiet.
        if let Ok((quiet_read, quiet_write)) = os::pipe_ends() {
            let _ = os::replace_fd(quiet_read.as_fd(), self.accept_read.as_fd());
            let _ = os::replace_fd(quiet_write.as_fd(), self._accept_keepalive.as_fd());
        }
        // Order matters (see the module docs): everything but `lock`, then
        // `lock`, then the directory; the flock goes when `self._lock`
        // closes, at drop. Failures leave a directory the next bind
        // recognises as stale. Names are resolved in *our* directory (by
        // its descriptor), so a successor at the same path is never touched.
        let (ours, _) = scan_entries(&self.path, self.dir.as_fd()).unwrap_or_default();
        for name in ours {
            let _ = os::unlink_at(self.dir.as_fd(), &name);
        }
        let _ = os::unlink_at(self.dir.as_fd(), LOCK_NAME);
        if let Ok(c_dir) = os::c_path(&self.path) {
            // rmdir only removes an empty directory, so it cannot destroy a
            // successor's files (and ours is the one at the path: we still
            // hold its lock).
            let _ = os::remove_dir(&c_dir);
        }
    }
}

impl Drop for FifoListener {
    fn drop(&mut self) {
        self.unbind();
    }
}

/// The two per-connection FIFO names for `token`, unlinked on drop.
struct ConnNames<'a> {
    dir: BorrowedFd<'a>,
    request: CString,
    reply: CString,
    /// The connector's side: the directory's path, for
    /// [`remove_if_abandoned`] when the set-up failed. `None` on the server's
    /// side (it owns the directory and removes it when it unbinds).
    connector_path: Option<&'a Path>,
    /// The set-up succeeded: the directory is a live server's.
    established: bool,
}

impl<'a> ConnNames<'a> {
    fn new(dir: BorrowedFd<'a>, token: &str) -> ConnNames<'a> {
        // A token is 32 hex digits (checked by `parse_record` or made by us):
        // no NUL byte, so these cannot fail.
        let request = CString::new(format!("{token}.req")).expect("hex token");
        let reply = CString::new(format!("{token}.rep")).expect("hex token");
        ConnNames { dir, request, reply, connector_path: None, established: false }
    }
}

impl Drop for ConnNames<'_> {
    fn drop(&mut self) {
        let _ = os::unlink_at(self.dir, &self.request);
        let _ = os::unlink_at(self.dir, &self.reply);
        if let (Some(path), false) = (self.connector_path, self.established) {
            remove_if_abandoned(self.dir, path);
        }
    }
}

/// Removes the server directory `dir` (open, at `path`) if its server has
/// unbound: `lock` is gone and the directory is empty. A server that
/// unbinds while a connector is between making its FIFOs and learning that
/// the server went away finds the directory not empty, and its `rmdir`
/// fails; the connector is then the last to leave, so it removes what is
/// left. `rmdir` removes only an empty directory, so a live or stale
/// server's (which holds `accept` and `lock`) is never touched; a binder
/// that has just made a new directory at the path starts over if this
/// removes it before its `lock` exists (see `FifoListener::bind`).
fn remove_if_abandoned(dir: BorrowedFd<'_>, path: &Path) {
    let unbound = matches!(os::stat_at(Some(dir), LOCK_NAME), Err(e) if e.kind() == io::ErrorKind::NotFound);
    let Ok(c_path) = os::c_path(path) else { return };
    let still_named = match (os::fstat(dir), os::stat_at(None, &c_path)) {
        (Ok(ours), Ok(named)) => os::same_file(&ours, &named),
        _ => false,
    };
    if unbound && still_named {
        let _ = os::remove_dir(&c_path);
    }
}

/// Connects to the server directory `dir`: `NotFound` if there is no such
/// directory or accept FIFO, `ConnectionRefused` if no server is listening
/// (a stale directory) or it went away during set-up, `PermissionDenied` if
/// the directory is not private to our uid or the server refused us,
/// `TimedOut` if the server did not take the connection before `deadline`.
pub(crate) fn fifo_connect(dir: &Path, deadline: Deadline) -> io::Result<FifoConn> {
    let uid = os::euid();
    // Step 1: the directory, ours and private.
    let dir_fd = match os::open_at(None, &os::c_path(dir)?, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a pipe: server directory", dir.display()),
            ));
        }
        Err(e) => return Err(e),
    };
    check_private_dir(dir, &os::fstat(dir_fd.as_fd())?, uid)?;

    // Step 2: a live server has `accept` open for reading.
    let accept = match os::open_at(Some(dir_fd.as_fd()), ACCEPT_NAME, libc::O_WRONLY | libc::O_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(refused(dir, "no server is listening")),
        Err(e) => return Err(e),
    };
    let accept_stat = os::fstat(accept.as_fd())?;
    if !os::is_fifo(&accept_stat) {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: `accept` is not a FIFO", dir.display())));
    }
    if accept_stat.st_uid != uid {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "the accept FIFO belongs to another uid"));
    }

    // Steps 3–5: our FIFO pair, with us as the reader of `.rep` and the
    // writer of `.req`.
    let token = sys::random_hex_128()?;
    let mut names = ConnNames::new(dir_fd.as_fd(), &token);
    names.connector_path = Some(dir);
    os::make_fifo(dir_fd.as_fd(), &names.request)?;
    os::make_fifo(dir_fd.as_fd(), &names.reply)?;
    let reply = os::open_at(Some(dir_fd.as_fd()), &names.reply, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let request = {
        let _placeholder = os::open_at(Some(dir_fd.as_fd()), &names.request, libc::O_RDONLY | libc::O_NONBLOCK)?;
        os::open_at(Some(dir_fd.as_fd()), &names.request, libc::O_WRONLY | libc::O_NONBLOCK)?
    };

    // Step 6: the record, in one atomic write.
    let record = format_record(std::process::id(), &token);
    loop {
        match write_no_sigpipe(accept.as_fd(), &record) {
            Ok(n) if n == record.len() => break,
            Ok(_) => return Err(io::Error::other("a record under PIPE_BUF was written in part")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The server is behind: wait for room (or its death).
                let mut fds = [os::pollfd(accept.as_fd(), libc::POLLOUT)];
                if !os::poll_until(&mut fds, deadline)? {
                    return Err(timed_out());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(refused(dir, "the server went away")),
            Err(e) => return Err(e),
        }
    }

    // Step 7: the answer, or the server's death, or the deadline. Poll
    // before every read: with no writer yet, `read` on `.rep` returns 0 at
    // once, while poll waits (its HUP is suppressed until a writer came).
    let mut answer = [0u8; ANSWER_LEN];
    let mut filled = 0;
    while filled < ANSWER_LEN {
        let mut fds = [os::pollfd(reply.as_fd(), libc::POLLIN), os::pollfd(accept.as_fd(), 0)];
        if !os::poll_until(&mut fds, deadline)? {
            return Err(timed_out());
        }
        if fds[0].revents == 0 {
            // Only `accept` reported: POLLERR, the server's read end is gone.
            return Err(refused(dir, "the server went away before answering"));
        }
        match os::read(reply.as_fd(), &mut answer[filled..]) {
            Ok(0) => return Err(refused(dir, "the server closed the connection during set-up")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let server_pid = match parse_answer(&answer) {
        Some((true, pid)) => pid,
        Some((false, _)) => {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "the server refused the connection"));
        }
        None => return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed answer from the server")),
    };

    // Step 8: blocking mode for the stream layer; `names` unlinks on drop.
    os::set_nonblocking(request.as_fd(), false)?;
    os::set_nonblocking(reply.as_fd(), false)?;
    names.established = true;
    let peer = Peer {
        pid: Some(server_pid),
        uid: Some(accept_stat.st_uid),
        gid: Some(accept_stat.st_gid),
        nats_client_id: None,
    };
    Ok(FifoConn { read: reply, write: request, peer })
}

/// The directory must be ours with no group or other permission bits.
fn check_private_dir(dir: &Path, stat: &os::Stat, uid: u32) -> io::Result<()> {
    if stat.st_uid != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is owned by uid {}, not by us ({uid})", dir.display(), stat.st_uid),
        ));
    }
    if stat.st_mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} has mode {:o}; a pipe: directory must be 0700", dir.display(), stat.st_mode & 0o777),
        ));
    }
    Ok(())
}

/// The entries this layer makes in a server directory, all but `lock` (the
/// ones to remove), and whether anything else is there too.
fn scan_entries(path: &Path, dir: BorrowedFd<'_>) -> io::Result<(Vec<CString>, bool)> {
    let mut ours = Vec::new();
    let mut foreign = false;
    for entry in std::fs::read_dir(path)? {
        let name = CString::new(entry?.file_name().as_bytes()).expect("a file name has no NUL byte");
        let stat = match os::stat_at(Some(dir), &name) {
            Ok(stat) => stat,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // a connector cleaned up
            Err(e) => return Err(e),
        };
        let bytes = name.as_bytes();
        let is_lock = bytes == LOCK_NAME.to_bytes() && os::is_regular(&stat);
        let is_fifo_of_ours = os::is_fifo(&stat) && (bytes == ACCEPT_NAME.to_bytes() || is_conn_fifo_name(bytes));
        if is_fifo_of_ours {
            ours.push(name);
        } else if !is_lock {
            foreign = true;
        }
    }
    Ok((ours, foreign))
}

/// [`scan_entries`] for a directory about to be taken over: `AddrInUse`
/// if it holds anything this layer does not make — it is then not an
/// ipcall directory, and nothing in it may be touched.
fn our_entries(path: &Path, dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    match scan_entries(path, dir)? {
        (_, true) => Err(in_use(path, "is not an ipcall pipe: directory (it holds other files)")),
        (ours, false) => Ok(ours),
    }
}

/// `<32 hex>.req` or `<32 hex>.rep`.
fn is_conn_fifo_name(name: &[u8]) -> bool {
    name.len() == 36
        && (name.ends_with(b".req") || name.ends_with(b".rep"))
        && name[..32].iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Writes our pid into the lock file (for people reading the directory).
fn write_pid(lock: BorrowedFd<'_>) -> io::Result<()> {
    os::rewrite(lock, format!("{}\n", std::process::id()).as_bytes())
}

/// Errors that mean the connector went away (or never was): skip it.
fn connector_gone(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENXIO | libc::EPIPE | libc::ELOOP | libc::EACCES))
}

fn in_use(dir: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, format!("{} {why}", dir.display()))
}

fn refused(dir: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, format!("{}: {why}", dir.display()))
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the server did not take the connection before the deadline")
}
