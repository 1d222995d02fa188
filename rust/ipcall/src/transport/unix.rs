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
//! **The reply socket** (`FLAG_REPLY_SOCKET`, PROTOCOL.md). A reader
//! blocked on a Unix stream socket is woken whenever its peer reads what
//! that socket sent (the kernel's write-space wake-up does not look at why a
//! thread waits). With one socket per connection, the server's read of each
//! request woke the client waiting for its reply, and the client's read of
//! each reply woke the server waiting for the next request. So the server
//! makes a socket pair at accept and passes the client its end with its
//! hello: once both hellos carry the bit, the server writes everything else
//! to that pair and the connection's socket carries requests alone. Each
//! side then blocks in a plain `recv`, woken only by what it waits for.
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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::frame::FLAG_REPLY_SOCKET;
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

/// A connected stream socket, and the reply socket once the hellos agreed
/// on one (see the module's docs).
pub(crate) struct SocketWire {
    /// The connection's socket: requests, and with no reply socket everything.
    fd: OwnedFd,
    /// Which end of the connection this is.
    side: Side,
    /// Our end of the reply socket pair until the hellos settle it: made at
    /// accept (server), or passed with the server's hello (client).
    offered: Mutex<Option<OwnedFd>>,
    /// The server's hello takes the client's end of the pair (then empty).
    to_pass: Mutex<Option<OwnedFd>>,
    /// Set once, when both hellos carry `FLAG_REPLY_SOCKET`: the server
    /// writes to it, the client reads from it. Before that (and for ever on
    /// a connection with an older peer) `fd` carries both directions.
    replies: OnceLock<OwnedFd>,
    /// The hellos settled the reply socket (set up or not); until then a
    /// client reads with `recvmsg`, to take what the server's hello passes.
    settled: AtomicBool,
    /// Client: the reply socket ended, and reads went back to `fd`, where a
    /// server that closed before it read our hello left its close frame.
    replies_ended: AtomicBool,
    /// The send buffer was enlarged for large messages (done once).
    big_buffer: AtomicBool,
    /// The SO_RCVTIMEO in force on the socket read now, in microseconds (0
    /// = none; `u64::MAX` = unknown, after a change of socket), so that it
    /// is only changed when a different timeout is wanted.
    receive_timeout_us: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Messages from this size on enlarge the socket's send buffer.
const LARGE_MESSAGE: usize = 256 << 10;
/// The send buffer asked for then (the kernel caps it at `wmem_max`).
const LARGE_SEND_BUFFER: usize = 4 << 20;

impl SocketWire {
    fn with(fd: OwnedFd, side: Side, offered: Option<OwnedFd>, to_pass: Option<OwnedFd>) -> SocketWire {
        SocketWire {
            fd,
            side,
            offered: Mutex::new(offered),
            to_pass: Mutex::new(to_pass),
            replies: OnceLock::new(),
            settled: AtomicBool::new(false),
            replies_ended: AtomicBool::new(false),
            big_buffer: AtomicBool::new(false),
            receive_timeout_us: AtomicU64::new(0),
        }
    }

    /// A client's end of a new connection.
    pub(crate) fn client(fd: OwnedFd) -> SocketWire {
        SocketWire::with(fd, Side::Client, None, None)
    }

    /// A server's end of a new connection, offering a reply socket if the
    /// pair can be made (else the connection works on its one socket).
    pub(crate) fn server(fd: OwnedFd) -> SocketWire {
        match socket::stream_pair() {
            Ok((ours, theirs)) => SocketWire::with(fd, Side::Server, Some(ours), Some(theirs)),
            Err(_) => SocketWire::with(fd, Side::Server, None, None),
        }
    }

    /// The socket reads come from now.
    fn reading(&self) -> BorrowedFd<'_> {
        match (self.side, self.replies.get()) {
            (Side::Client, Some(replies)) if !self.replies_ended.load(Ordering::Relaxed) => replies.as_fd(),
            _ => self.fd.as_fd(),
        }
    }

    /// A read of `buf` from the socket read now (`nonblocking`: `DONTWAIT`).
    /// During a client's handshake it also takes a descriptor passed with
    /// the server's hello; at the end of a client's reply socket it goes
    /// on reading the connection's socket (see `replies_ended`).
    fn recv(&self, buf: &mut [MaybeUninit<u8>], nonblocking: bool) -> io::Result<usize> {
        if self.side == Side::Client && !self.settled.load(Ordering::Relaxed) {
            return self.recv_passing(buf, nonblocking);
        }
        let n = socket::recv(self.reading(), buf, nonblocking)?;
        if n == 0 && self.side == Side::Client && !self.replies_ended.swap(true, Ordering::Relaxed) {
            // The server ends a connection by closing both sockets, after
            // anything it wrote: what it left here is already here.
            self.receive_timeout_us.store(u64::MAX, Ordering::Relaxed);
            return match socket::recv(self.fd.as_fd(), buf, true) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                other => other,
            };
        }
        Ok(n)
    }

    /// A client's read before the hellos settled: `recvmsg`, keeping a
    /// descriptor the server's hello passed (at most one is kept; any other
    /// is closed).
    fn recv_passing(&self, buf: &mut [MaybeUninit<u8>], nonblocking: bool) -> io::Result<usize> {
        let mut bytes = [0u8; 64];
        let want = buf.len().min(bytes.len());
        let received = if nonblocking {
            socket::recv_with_fds_now(self.fd.as_fd(), &mut bytes[..want])
        } else {
            socket::recv_with_fds(self.fd.as_fd(), &mut bytes[..want])
        };
        let (n, mut fds) = received?;
        for (slot, byte) in buf.iter_mut().zip(&bytes[..n]) {
            slot.write(*byte);
        }
        if let Some(passed) = fds.pop() {
            let mut offered = lock_ignoring_poison(&self.offered);
            if offered.is_none() {
                *offered = Some(passed);
            }
        }
        Ok(n)
    }

    /// Sets SO_RCVTIMEO (0 = wait forever) if it differs from the current one.
    fn set_receive_timeout(&self, micros: u64) -> io::Result<()> {
        if self.receive_timeout_us.load(Ordering::Relaxed) == micros {
            return Ok(());
        }
        socket::set_receive_timeout(self.reading(), Some(Duration::from_micros(micros)))?;
        self.receive_timeout_us.store(micros, Ordering::Relaxed);
        Ok(())
    }
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section is one move of an `Option`: poisoning leaves it whole.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Wire for SocketWire {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.reading()
    }
    fn write_fd(&self) -> BorrowedFd<'_> {
        match (self.side, self.replies.get()) {
            (Side::Server, Some(replies)) => replies.as_fd(),
            _ => self.fd.as_fd(),
        }
    }
    fn read_now(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        self.recv(buf, true)
    }
    fn read_blocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if self.side == Side::Client && self.replies.get().is_some() {
            // Woken only by replies: a plain blocking read (see the module's docs).
            self.set_receive_timeout(0)?;
            return self.recv(buf, false);
        }
        // On the one socket (a server of an earlier build):
        // `poll` first, then a read that cannot block: a thread blocked in
        // `recv` on a Unix stream socket is woken each time the peer reads
        // what it sent (`unix_write_space` wakes every waiter, and a
        // blocking read's wait does not look at why), so a client blocked
        // for its reply ran, for nothing, whenever its server read the
        // request; `poll` waits for `POLLIN` alone. Against a Node `for
        // await` server on one CPU: 7.6 -> 5.4 µs a call; against a Rust
        // server no slower on one CPU or across two (docs/DECISIONS.md).
        loop {
            wait_fd(self.reading(), libc::POLLIN, Deadline::Never)?;
            match self.recv(buf, true) {
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
        self.recv(buf, false)
    }
    fn timed_read_is_cheaper(&self) -> bool {
        true
    }
    fn stop_reading(&self) {
        socket::shutdown_read(self.reading());
    }
    fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket::send(self.write_fd(), bufs, true)
    }
    fn write_blocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket::send(self.write_fd(), bufs, false)
    }
    fn shutdown(&self) {
        socket::shutdown(self.fd.as_fd());
        if let Some(replies) = self.replies.get() {
            socket::shutdown(replies.as_fd());
        }
    }
    fn before_write(&self, len: usize) {
        // A stream socket's sender-side buffer bounds how much of a message
        // is in flight per wake-up of the reader; the default (~200 KiB)
        // halves large-message throughput. Memory is only used when filled.
        if len >= LARGE_MESSAGE && !self.big_buffer.swap(true, Ordering::Relaxed) {
            socket::set_send_buffer(self.write_fd(), LARGE_SEND_BUFFER);
        }
    }
    fn hello_flags(&self) -> u32 {
        match self.side {
            // A client can always take the reply socket a server offers.
            Side::Client => FLAG_REPLY_SOCKET,
            Side::Server if lock_ignoring_poison(&self.offered).is_some() => FLAG_REPLY_SOCKET,
            Side::Server => 0,
        }
    }
    fn send_hello(&self, hello: &[u8]) -> io::Result<()> {
        // A fresh socket's buffer takes a hello at once; the client's end
        // is ours to close once sent (the client holds its own).
        let theirs = lock_ignoring_poison(&self.to_pass).take();
        socket::send_with_fds(self.fd.as_fd(), hello, theirs.as_ref().map(|fd| fd.as_fd()).as_slice())
    }
    fn settle_hellos(&self, negotiated: u32) -> std::result::Result<(), &'static str> {
        let offered = lock_ignoring_poison(&self.offered).take();
        self.settled.store(true, Ordering::Relaxed);
        if negotiated & FLAG_REPLY_SOCKET == 0 {
            // An older peer: one socket both ways (a passed end is closed).
            return Ok(());
        }
        let Some(replies) = offered else {
            return Err("the server's hello announced a reply socket but passed none");
        };
        if self.side == Side::Client && !socket::is_unix_stream(replies.as_fd()) {
            return Err("the descriptor passed as the reply socket is not a Unix stream socket");
        }
        // Reads now come from another socket, whose receive timeout is unset.
        self.receive_timeout_us.store(0, Ordering::Relaxed);
        let _ = self.replies.set(replies);
        Ok(())
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
        Ok(self.accept_fd()?.map(|(fd, peer)| Accepted { wire: Box::new(SocketWire::server(fd)), peer }))
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
    let conn = StreamClient::handshake(shared.clone(), Box::new(SocketWire::client(fd)), options)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(wire: &SocketWire, blocking: bool) -> Vec<u8> {
        let mut buf = [MaybeUninit::uninit(); 64];
        let n = if blocking { wire.read_blocking(&mut buf) } else { wire.read_now(&mut buf) }.unwrap();
        // SAFETY: (1) the read initialised the first `n` bytes.
        buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect()
    }

    fn write(to: &OwnedFd, bytes: &[u8]) {
        assert_eq!(socket::send(to.as_fd(), &[IoSlice::new(bytes)], true).unwrap(), bytes.len());
    }

    /// A client wire that was passed a reply socket with a hello and
    /// settled the hellos as `negotiated`; then the server's ends of the
    /// connection and of the pair.
    fn client_passed_a_reply_socket(negotiated: u32) -> (SocketWire, OwnedFd, OwnedFd) {
        let (conn_client, conn_server) = socket::stream_pair().unwrap();
        let (replies_client, replies_server) = socket::stream_pair().unwrap();
        let wire = SocketWire::client(conn_client);
        socket::send_with_fds(conn_server.as_fd(), b"a hello 16 bytes", &[replies_client.as_fd()]).unwrap();
        drop(replies_client);
        assert_eq!(read(&wire, true), b"a hello 16 bytes");
        wire.settle_hellos(negotiated).unwrap();
        (wire, conn_server, replies_server)
    }

    #[test]
    fn a_client_reads_its_replies_from_the_reply_socket() {
        let (wire, conn_server, replies_server) = client_passed_a_reply_socket(FLAG_REPLY_SOCKET);
        write(&replies_server, b"reply");
        assert_eq!(read(&wire, true), b"reply");
        // Requests leave on the connection's socket.
        assert_eq!(wire.write_now(&[IoSlice::new(b"request")]).unwrap(), 7);
        let mut buf = [MaybeUninit::uninit(); 16];
        assert_eq!(socket::recv(conn_server.as_fd(), &mut buf, true).unwrap(), 7);
    }

    #[test]
    fn a_close_frame_left_on_the_connection_socket_is_read_once_the_reply_socket_ends() {
        let (wire, conn_server, replies_server) = client_passed_a_reply_socket(FLAG_REPLY_SOCKET);
        // A server that closed before it read our hello wrote its close
        // frame on the connection's socket, then closed both.
        write(&conn_server, b"close frame");
        drop(replies_server);
        drop(conn_server);
        assert_eq!(read(&wire, true), b"close frame");
        assert!(read(&wire, true).is_empty(), "then the end of the stream");
    }

    #[test]
    fn without_the_bit_a_passed_socket_is_dropped_and_the_one_socket_serves() {
        let (wire, conn_server, replies_server) = client_passed_a_reply_socket(0);
        write(&conn_server, b"reply");
        assert_eq!(read(&wire, true), b"reply");
        // Our end of the offered pair was closed: its peer reads the end.
        let mut buf = [MaybeUninit::uninit(); 16];
        assert_eq!(socket::recv(replies_server.as_fd(), &mut buf, true).unwrap(), 0);
    }
}
