//! `unix:` — Unix domain stream sockets: a path (`unix:/run/app.sock`) or
//! the Linux abstract namespace (`unix:@app`). The connection layer is
//! [`stream`](super::stream); this module only makes sockets.
//!
//! **Mode 0600 before anyone can connect.** The listening socket is
//! `fchmod`ed to 0600 *before* `bind`: Linux creates the socket file with the
//! socket inode's mode (minus the umask), so the file never exists with
//! wider permissions. This avoids the race of "bind, then chmod the path",
//! where a peer could connect (or a rename could swap the file) in between,
//! and it does not touch the process-wide umask, which other threads may be
//! using. `listen` comes last, so no connection is possible before the mode
//! is in place anyway; the bound file's mode is checked before listening.
//!
//! **Abstract sockets** have no file permissions: every connection's
//! `SO_PEERCRED` is checked against the server's access rules (by default
//! only its own uid), which also applies to path sockets.
//!
//! **Stale files.** Binding over an existing socket file probes it with a
//! connect: refused means nobody listens (a crashed server's leftover), so it
//! is replaced; accepted means a live server holds it: `AddrInUse`. A
//! non-socket file is never removed. The server removes its file on
//! close/drop — only if the path still names the socket it created.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::{ClientOptions, ServerOptions};
use crate::core::peer::Peer;
use crate::transport::stream::client::StreamClient;
use crate::transport::stream::server::StreamServer;
use crate::transport::stream::{Accepted, Acceptor, Wire};
use crate::transport::{ClientConn, ServerTransport};

/// A connected stream socket: one descriptor for both directions.
pub(crate) struct SocketWire {
    fd: OwnedFd,
    /// The send buffer was enlarged for large messages (done once).
    big_buffer: AtomicBool,
    /// The SO_RCVTIMEO in force, in microseconds (0 = none), so that it is
    /// only changed when a different timeout is wanted.
    receive_timeout_us: AtomicU64,
}

/// Frames up to this size (header included) are copied into one buffer and
/// sent with `send` rather than `sendmsg` with two iovecs: here `sendmsg`
/// costs ~0.3–0.5 µs more per call, more than copying 4 KiB.
const SMALL_FRAME: usize = 4096 + 64;
/// Messages from this size on enlarge the socket's send buffer.
const LARGE_MESSAGE: usize = 256 << 10;
/// The send buffer asked for then (the kernel caps it at `wmem_max`).
const LARGE_SEND_BUFFER: libc::c_int = 4 << 20;

impl SocketWire {
    pub(crate) fn new(fd: OwnedFd) -> SocketWire {
        SocketWire { fd, big_buffer: AtomicBool::new(false), receive_timeout_us: AtomicU64::new(0) }
    }

    /// Sets SO_RCVTIMEO (0 = wait forever) if it differs from the current one.
    fn set_receive_timeout(&self, micros: u64) -> io::Result<()> {
        if self.receive_timeout_us.load(Ordering::Relaxed) == micros {
            return Ok(());
        }
        let tv = libc::timeval { tv_sec: (micros / 1_000_000) as _, tv_usec: (micros % 1_000_000) as _ };
        // SAFETY: (1) `tv` is a live timeval and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.receive_timeout_us.store(micros, Ordering::Relaxed);
        Ok(())
    }
}

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl SocketWire {
    fn recv(&self, buf: &mut [MaybeUninit<u8>], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: (1) the pointer and length describe `buf`, live and
        // writable for the call; recv writes only initialised bytes into it.
        cvt(unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) })
    }

    fn send(&self, bufs: &[IoSlice<'_>], flags: libc::c_int) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if bufs.len() > 1 && total <= SMALL_FRAME {
            // A small frame: one contiguous `send` is cheaper than `sendmsg`
            // with an iovec (measured), and the copy is a few cache lines.
            // Not zeroed: only the first `total` bytes are written and sent.
            let mut frame = [MaybeUninit::<u8>::uninit(); SMALL_FRAME];
            let mut at = 0;
            for b in bufs {
                for (dst, src) in frame[at..at + b.len()].iter_mut().zip(b.iter()) {
                    dst.write(*src);
                }
                at += b.len();
            }
            // SAFETY: (1) the pointer and length describe the first `total`
            // bytes of `frame`, live for the call; (2) MSG_NOSIGNAL as below.
            return cvt(unsafe {
                libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), total, flags | libc::MSG_NOSIGNAL)
            });
        }
        // SAFETY: (1) an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec; sendmsg only reads through it.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: (1) `msg` points at `bufs.len()` live iovecs, which stay
        // borrowed for the call; (2) MSG_NOSIGNAL: a vanished peer is EPIPE,
        // never SIGPIPE, so the process's signal disposition is untouched.
        cvt(unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL) })
    }
}

impl Wire for SocketWire {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn write_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn read_now(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        self.recv(buf, libc::MSG_DONTWAIT)
    }
    fn read_blocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        // The descriptor is blocking: one system call, as a raw read would.
        self.set_receive_timeout(0)?;
        self.recv(buf, 0)
    }
    fn read_timeout(&self, buf: &mut [MaybeUninit<u8>], timeout: std::time::Duration) -> io::Result<usize> {
        // A blocking read with SO_RCVTIMEO, not poll-then-read: waking from a
        // poll costs a cross-CPU round trip measurably more (see DECISIONS).
        // Whole milliseconds (rounded up), so that a loop of similar
        // timeouts does not change the socket option on every read.
        let micros = (timeout.as_micros() as u64).div_ceil(1000).clamp(1, i32::MAX as u64 / 1000) * 1000;
        self.set_receive_timeout(micros)?;
        self.recv(buf, 0)
    }
    fn stop_reading(&self) {
        // SAFETY: (1) shutdown takes no pointers; failure needs no handling.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RD) };
    }
    fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.send(bufs, libc::MSG_DONTWAIT)
    }
    fn write_blocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.send(bufs, 0)
    }
    fn shutdown(&self) {
        // SAFETY: (1) shutdown takes no pointers; failure (already shut
        // down, peer gone) needs no handling.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
    fn before_write(&self, len: usize) {
        // A stream socket's sender-side buffer bounds how much of a message
        // is in flight per wake-up of the reader; the default (~200 KiB)
        // halves large-message throughput. Memory is only used when filled.
        if len >= LARGE_MESSAGE && !self.big_buffer.swap(true, Ordering::Relaxed) {
            let size = LARGE_SEND_BUFFER;
            // SAFETY: (1) `size` is a live c_int and its size is passed.
            unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
}

/// A new AF_UNIX stream socket (close-on-exec).
pub(crate) fn socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: (1) socket takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_UNIX, flags, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: (1) `raw` is a fresh descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The socket address of `name` and its length.
fn address(name: &Name) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: (1) an all-zero sockaddr_un is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (bytes, offset) = match name.address().strip_prefix('@') {
        // Abstract: a leading NUL, then the name; the length bounds it.
        Some(abstract_name) => (abstract_name.as_bytes(), 1),
        None => (name.address().as_bytes(), 0),
    };
    // Name::parse bounds the address to 107 bytes, so it always fits.
    for (dst, src) in addr.sun_path[offset..].iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let len = if offset == 1 { base + 1 + bytes.len() } else { base + bytes.len() + 1 };
    (addr, len as libc::socklen_t)
}

pub(crate) fn connect_fd(fd: &OwnedFd, name: &Name) -> io::Result<()> {
    let (addr, len) = address(name);
    loop {
        // SAFETY: (1) `addr` is a live sockaddr_un and `len` within its size.
        let rc = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The peer's credentials (`SO_PEERCRED`).
pub(crate) fn peer_credentials(fd: &OwnedFd) -> Peer {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: (1) `cred` is a live ucred and `len` its size; the kernel
    // writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Peer::default();
    }
    Peer { pid: Some(cred.pid as u32), uid: Some(cred.uid), gid: Some(cred.gid) }
}

/// A listening socket and the file it may own (also `shm:`'s rendezvous).
pub(crate) struct Listener {
    fd: OwnedFd,
    /// The socket file, with its device and inode, for a path socket.
    file: Option<(PathBuf, u64, u64)>,
    unbound: AtomicBool,
}

impl Acceptor for Listener {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn accept(&self) -> io::Result<Option<Accepted>> {
        Ok(self.accept_fd()?.map(|(fd, peer)| Accepted { wire: Box::new(SocketWire::new(fd)), peer }))
    }

    fn unbind(&self) {
        self.unbind_name();
    }
}

impl Listener {
    /// Takes one waiting connection without blocking (close-on-exec), with
    /// its peer's credentials; `Ok(None)` if none is waiting.
    pub(crate) fn accept_fd(&self) -> io::Result<Option<(OwnedFd, Peer)>> {
        loop {
            // SAFETY: (1) null address pointers are allowed (we do not want
            // the peer's address); the result is checked.
            let raw = unsafe {
                libc::accept4(self.fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
            };
            if raw >= 0 {
                // SAFETY: (1) `raw` is a fresh descriptor owned by nothing else.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                let peer = peer_credentials(&fd);
                return Ok(Some((fd, peer)));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // A client that gave up before we accepted it: try the next.
                Some(libc::ECONNABORTED) | Some(libc::EPROTO) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(err),
            }
        }
    }

    /// Removes the name (and refuses new connections). Idempotent.
    pub(crate) fn unbind_name(&self) {
        if self.unbound.swap(true, Ordering::AcqRel) {
            return;
        }
        // Refuse new connections at once: the socket itself may outlive this
        // call for a moment (a poll in progress holds a reference), and an
        // abstract name lives exactly as long as its socket.
        // SAFETY: (1) shutdown takes no pointers; the descriptor is open.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some((path, dev, ino)) = &self.file {
            // Only remove the file if it is still ours (not a successor's).
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.unbind_name();
    }
}

fn bind_fd(fd: &OwnedFd, name: &Name) -> io::Result<()> {
    let (addr, len) = address(name);
    // SAFETY: (1) `addr` is a live sockaddr_un and `len` within its size.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds a listening socket to `name`, replacing a stale socket file.
pub(crate) fn listen(name: &Name, options: &ServerOptions) -> Result<Listener> {
    let shared = name.shared();
    let io_err = |e: io::Error| Error::from_bind_io(shared, e);
    let fd = socket(true).map_err(io_err)?;
    // Private by default. When the options let other users in, the file
    // must let them connect; SO_PEERCRED then enforces exactly who.
    let others_allowed = options.allow_any_uid || !options.allowed_uids.is_empty() || !options.allowed_gids.is_empty();
    let mode: libc::mode_t = if others_allowed { 0o666 } else { 0o600 };
    if name.path().is_some() {
        // SAFETY: (1) fchmod takes no pointers. Before bind, it sets the mode
        // the socket file will be created with (see the module docs).
        if unsafe { libc::fchmod(fd.as_raw_fd(), mode) } < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
    }
    let mut attempts = 0;
    loop {
        match bind_fd(&fd, name) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts < 3 => {
                attempts += 1;
                let Some(path) = name.path() else {
                    // An abstract name vanishes with its socket: it is live.
                    return Err(Error::AddrInUse { name: shared.clone() });
                };
                let probe = socket(false).map_err(io_err)?;
                match connect_fd(&probe, name) {
                    Ok(()) => return Err(Error::AddrInUse { name: shared.clone() }),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        // Nobody listens: a stale socket file. Never remove
                        // anything that is not a socket.
                        let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
                        if !is_socket {
                            return Err(Error::AddrInUse { name: shared.clone() });
                        }
                        match std::fs::remove_file(path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io_err(e)),
                        }
                    }
                    // Vanished meanwhile: just bind again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    let file = match name.path() {
        Some(path) => {
            if others_allowed {
                // The umask may have narrowed 0666 at bind. Widening by path is
                // safe here: nobody can connect before `listen` below.
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).map_err(io_err)?;
            }
            let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
            if meta.mode() & 0o777 & !mode != 0 {
                let _ = std::fs::remove_file(path);
                return Err(Error::Io {
                    name: shared.clone(),
                    source: io::Error::other("the socket file was not created with the intended mode"),
                });
            }
            Some((path.to_path_buf(), meta.dev(), meta.ino()))
        }
        None => None,
    };
    let listener = Listener { fd, file, unbound: AtomicBool::new(false) };
    // SAFETY: (1) listen takes no pointers; the result is checked.
    if unsafe { libc::listen(listener.fd.as_raw_fd(), libc::SOMAXCONN) } < 0 {
        return Err(io_err(io::Error::last_os_error()));
    }
    Ok(listener)
}

/// Binds a `unix:` server.
pub(crate) fn bind(name: &Name, options: &ServerOptions) -> Result<Box<dyn ServerTransport>> {
    let listener = listen(name, options)?;
    let server = StreamServer::new(name.shared().clone(), Box::new(listener), options)
        .map_err(|e| Error::Io { name: name.shared().clone(), source: e })?;
    Ok(Box::new(server))
}

/// Connects to a `unix:` server and performs the handshake.
pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    let shared = name.shared();
    let fd = socket(false).map_err(|e| Error::from_io(shared, e))?;
    connect_fd(&fd, name).map_err(|e| Error::from_io(shared, e))?;
    let conn = StreamClient::handshake(shared.clone(), Box::new(SocketWire::new(fd)), options)?;
    Ok(conn)
}
