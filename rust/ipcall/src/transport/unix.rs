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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::{ClientOptions, ServerOptions};
use crate::core::peer::Peer;
use crate::core::wait::Deadline;
use crate::sys::poll::wait_fd;
use crate::sys::socket::{self, UnixAddr};
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

/// Messages from this size on enlarge the socket's send buffer.
const LARGE_MESSAGE: usize = 256 << 10;
/// The send buffer asked for then (the kernel caps it at `wmem_max`).
const LARGE_SEND_BUFFER: usize = 4 << 20;

impl SocketWire {
    pub(crate) fn new(fd: OwnedFd) -> SocketWire {
        SocketWire { fd, big_buffer: AtomicBool::new(false), receive_timeout_us: AtomicU64::new(0) }
    }

    /// Sets SO_RCVTIMEO (0 = wait forever) if it differs from the current one.
    fn set_receive_timeout(&self, micros: u64) -> io::Result<()> {
        if self.receive_timeout_us.load(Ordering::Relaxed) == micros {
            return Ok(());
        }
        socket::set_receive_timeout(self.fd.as_fd(), Some(Duration::from_micros(micros)))?;
        self.receive_timeout_us.store(micros, Ordering::Relaxed);
        Ok(())
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
        socket::recv(self.fd.as_fd(), buf, true)
    }
    fn read_blocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        // `poll` first, then a read that cannot block: a thread blocked in
        // `recv` on a Unix stream socket is woken each time the peer reads
        // what it sent (`unix_write_space` wakes every waiter, and a
        // blocking read's wait does not look at why), so a client blocked
        // for its reply ran, for nothing, whenever its server read the
        // request; `poll` waits for `POLLIN` alone. Against a Node `for
        // await` server on one CPU: 7.6 -> 5.4 µs a call; against a Rust
        // server no slower on one CPU or across two (docs/DECISIONS.md).
        loop {
            wait_fd(self.fd.as_fd(), libc::POLLIN, Deadline::Never)?;
            match socket::recv(self.fd.as_fd(), buf, true) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }
    fn read_timeout(&self, buf: &mut [MaybeUninit<u8>], timeout: std::time::Duration) -> io::Result<usize> {
        // A blocking read with SO_RCVTIMEO, not poll-then-read: waking from a
        // poll costs a cross-CPU round trip measurably more (see DECISIONS).
        // Whole milliseconds (rounded up), so that a loop of similar
        // timeouts does not change the socket option on every read.
        let micros = (timeout.as_micros() as u64).div_ceil(1000).clamp(1, i32::MAX as u64 / 1000) * 1000;
        self.set_receive_timeout(micros)?;
        socket::recv(self.fd.as_fd(), buf, false)
    }
    fn timed_read_is_cheaper(&self) -> bool {
        true
    }
    fn stop_reading(&self) {
        socket::shutdown_read(self.fd.as_fd());
    }
    fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket::send(self.fd.as_fd(), bufs, true)
    }
    fn write_blocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket::send(self.fd.as_fd(), bufs, false)
    }
    fn shutdown(&self) {
        socket::shutdown(self.fd.as_fd());
    }
    fn before_write(&self, len: usize) {
        // A stream socket's sender-side buffer bounds how much of a message
        // is in flight per wake-up of the reader; the default (~200 KiB)
        // halves large-message throughput. Memory is only used when filled.
        if len >= LARGE_MESSAGE && !self.big_buffer.swap(true, Ordering::Relaxed) {
            socket::set_send_buffer(self.fd.as_fd(), LARGE_SEND_BUFFER);
        }
    }
}

/// The socket address of `name`: a path, or after `@` an abstract name.
fn address(name: &Name) -> io::Result<UnixAddr> {
    // Name::parse bounds the address to 107 bytes, so it always fits.
    match name.address().strip_prefix('@') {
        Some(abstract_name) => UnixAddr::abstract_name(abstract_name.as_bytes()),
        None => UnixAddr::path(Path::new(name.address())),
    }
}

pub(crate) fn connect_fd(fd: &OwnedFd, name: &Name) -> io::Result<()> {
    socket::connect(fd.as_fd(), &address(name)?)
}

/// The peer's credentials (`SO_PEERCRED`); unknown if the call fails.
pub(crate) fn peer_credentials(fd: &OwnedFd) -> Peer {
    match socket::peer_credentials(fd.as_fd()) {
        Ok(cred) => Peer { pid: Some(cred.pid), uid: Some(cred.uid), gid: Some(cred.gid), nats_client_id: None },
        Err(_) => Peer::default(),
    }
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
        Ok(socket::accept(self.fd.as_fd())?.map(|fd| {
            let peer = peer_credentials(&fd);
            (fd, peer)
        }))
    }

    /// Removes the name (and refuses new connections). Idempotent.
    pub(crate) fn unbind_name(&self) {
        if self.unbound.swap(true, Ordering::AcqRel) {
            return;
        }
        // Refuse new connections at once: the socket itself may outlive this
        // call for a moment (a poll in progress holds a reference), and an
        // abstract name lives exactly as long as its socket.
        socket::shutdown(self.fd.as_fd());
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
    socket::bind(fd.as_fd(), &address(name)?)
}

/// Binds a listening socket to `name`, replacing a stale socket file.
pub(crate) fn listen(name: &Name, options: &ServerOptions) -> Result<Listener> {
    let shared = name.shared();
    let io_err = |e: io::Error| Error::from_bind_io(shared, e);
    let fd = socket::stream_socket(true).map_err(io_err)?;
    // Private by default. When the options let other users in, the file
    // must let them connect; SO_PEERCRED then enforces exactly who.
    let others_allowed = options.allow_any_uid || !options.allowed_uids.is_empty() || !options.allowed_gids.is_empty();
    let mode: u32 = if others_allowed { 0o666 } else { 0o600 };
    if name.path().is_some() {
        // Before bind, this sets the mode the socket file will be created
        // with (see the module docs).
        socket::set_mode(fd.as_fd(), mode).map_err(io_err)?;
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
                let probe = socket::stream_socket(false).map_err(io_err)?;
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
    socket::listen(listener.fd.as_fd()).map_err(io_err)?;
    Ok(listener)
}

/// Binds a `unix:` server.
pub(crate) fn bind(
    name: &Name,
    options: &ServerOptions,
    counters: Arc<crate::core::stats::Counters>,
) -> Result<Box<dyn ServerTransport>> {
    let listener = listen(name, options)?;
    let server = StreamServer::new(name.shared().clone(), Box::new(listener), options, counters)
        .map_err(|e| Error::Io { name: name.shared().clone(), source: e })?;
    Ok(Box::new(server))
}

/// Connects to a `unix:` server and performs the handshake.
pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    let shared = name.shared();
    let fd = socket::stream_socket(false).map_err(|e| Error::from_io(shared, e))?;
    connect_fd(&fd, name).map_err(|e| Error::from_io(shared, e))?;
    let conn = StreamClient::handshake(shared.clone(), Box::new(SocketWire::new(fd)), options)?;
    Ok(conn)
}
