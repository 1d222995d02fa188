//! Unix domain stream sockets: creating, naming (a path or a Linux abstract
//! name), listening, accepting, connecting, peer credentials, sending and
//! receiving with per-call flags, passing descriptors (`SCM_RIGHTS`),
//! socket pairs, receive timeouts and shutdown.
//!
//! Every call goes through `rustix` except `SO_PEERCRED` (see
//! [`peer_credentials`]) and the per-message `recv` and `send`
//! ([`super::nocancel`]). Errors come back as `io::Error` with the raw
//! errno, so callers match on `io::ErrorKind` exactly as before.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::net::sockopt::{self, Timeout};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, Shutdown, SocketAddrUnix, SocketFlags, SocketType,
};

/// The address of a Unix socket: a filesystem path or an abstract name.
pub(crate) struct UnixAddr(SocketAddrUnix);

impl UnixAddr {
    /// A path socket (`sun_path` holds the path and its NUL).
    pub(crate) fn path(path: &Path) -> io::Result<UnixAddr> {
        Ok(UnixAddr(SocketAddrUnix::new(path)?))
    }

    /// An abstract socket: a leading NUL, then `name`; the address length
    /// bounds it (no trailing NUL).
    pub(crate) fn abstract_name(name: &[u8]) -> io::Result<UnixAddr> {
        Ok(UnixAddr(SocketAddrUnix::new_abstract_name(name)?))
    }
}

/// A new `AF_UNIX` stream socket, close-on-exec, non-blocking if asked.
pub(crate) fn stream_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let flags = if nonblocking { SocketFlags::CLOEXEC | SocketFlags::NONBLOCK } else { SocketFlags::CLOEXEC };
    Ok(rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?)
}

/// A connected pair of `AF_UNIX` stream sockets, close-on-exec.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// Whether `fd` is an `AF_UNIX` stream socket.
pub(crate) fn is_unix_stream(fd: BorrowedFd<'_>) -> bool {
    rustix::net::sockopt::socket_type(fd).is_ok_and(|t| t == SocketType::STREAM)
        && rustix::net::sockopt::socket_domain(fd).is_ok_and(|d| d == AddressFamily::UNIX)
}

/// Sets the mode of the socket's inode. Before `bind`, this is the mode the
/// socket file is created with (minus the umask): the file never exists
/// with wider permissions.
pub(crate) fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// `bind(fd, addr)`.
pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &UnixAddr) -> io::Result<()> {
    Ok(rustix::net::bind(fd, &addr.0)?)
}

/// `listen(fd, SOMAXCONN)`.
pub(crate) fn listen(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::listen(fd, libc::SOMAXCONN)?)
}

/// `connect(fd, addr)`, retried on `EINTR`.
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &UnixAddr) -> io::Result<()> {
    loop {
        match rustix::net::connect(fd, &addr.0) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes one waiting connection (close-on-exec) without asking for its
/// address; `Ok(None)` if none is waiting on a non-blocking socket. A
/// client that gave up before it was accepted is skipped.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        match rustix::net::accept_with(fd, SocketFlags::CLOEXEC) {
            Ok(conn) => return Ok(Some(conn)),
            Err(Errno::INTR | Errno::CONNABORTED | Errno::PROTO) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A connected peer's process, user and group (`SO_PEERCRED`), as the
/// kernel reports them in our namespaces.
pub(crate) struct Credentials {
    /// 0 if the peer's process is not visible in our pid namespace.
    pub(crate) pid: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The peer's credentials (`SO_PEERCRED`).
///
/// Stays on `libc`: rustix's `socket_peercred` returns the pid as a
/// `Pid` (a non-zero integer), but the kernel reports pid 0 for a peer
/// outside our pid namespace (a client in a container, say), which would
/// be an invalid value rather than an error. A raw `ucred` takes any pid.
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<Credentials> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: (1) `cred` is a live ucred and `len` its size; the kernel
    // writes at most `len` bytes; (2) every bit pattern is a valid ucred.
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
        return Err(io::Error::last_os_error());
    }
    Ok(Credentials { pid: cred.pid as u32, uid: cred.uid, gid: cred.gid })
}

/// One `recv` into `buf`; `nonblocking` adds `MSG_DONTWAIT`. Not retried
/// on `EINTR`: the caller decides. A bare system call ([`super::nocancel`]).
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>], nonblocking: bool) -> io::Result<usize> {
    super::nocancel::recv(fd, buf, if nonblocking { libc::MSG_DONTWAIT } else { 0 })
}

/// Frames up to this size are copied into one buffer and sent with `send`
/// rather than `sendmsg` with several iovecs: here `sendmsg` costs ~0.3–0.5
/// µs more per call, more than copying 4 KiB.
const SMALL_FRAME: usize = 4096 + 64;

/// One `send` of `bufs` as if they were contiguous; `nonblocking` adds
/// `MSG_DONTWAIT`. Always `MSG_NOSIGNAL`: a vanished peer is `EPIPE`, never
/// `SIGPIPE`, so the process's signal disposition is untouched. Returns the
/// bytes sent (possibly fewer than asked). Not retried on `EINTR`.
pub(crate) fn send(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], nonblocking: bool) -> io::Result<usize> {
    let flags = if nonblocking { SendFlags::NOSIGNAL | SendFlags::DONTWAIT } else { SendFlags::NOSIGNAL };
    let raw_flags = if nonblocking { libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT } else { libc::MSG_NOSIGNAL };
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if bufs.len() > 1 && total <= SMALL_FRAME {
        // A small frame: one contiguous `send` is cheaper than `sendmsg`
        // with an iovec (measured), and the copy is a few cache lines.
        // Not zeroed: only the first `total` bytes are written and sent.
        let mut frame = [MaybeUninit::<u8>::uninit(); SMALL_FRAME];
        let mut at = 0;
        for b in bufs {
            // SAFETY: (1) `at + b.len() <= total <= SMALL_FRAME`, so the
            // destination range lies inside `frame`; (2) `frame` is a local
            // array, so it cannot overlap `b`. One `memcpy` per piece: the
            // byte loop it replaces cost ~1.5 instructions a byte.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), frame.as_mut_ptr().add(at).cast::<u8>(), b.len()) };
            at += b.len();
        }
        // SAFETY: (1) the first `total` bytes of `frame` were written just
        // above (`at == total`), so they are initialised.
        let bytes = unsafe { std::slice::from_raw_parts(frame.as_ptr().cast::<u8>(), total) };
        return super::nocancel::send(fd, bytes, raw_flags);
    }
    if let [one] = bufs {
        return super::nocancel::send(fd, one, raw_flags);
    }
    Ok(rustix::net::sendmsg(fd, bufs, &mut SendAncillaryBuffer::default(), flags)?)
}

/// Sets `SO_RCVTIMEO`: a blocking `recv` fails with `WouldBlock` after
/// `timeout` (`None` = wait forever).
pub(crate) fn set_receive_timeout(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    Ok(sockopt::set_socket_timeout(fd, Timeout::Recv, timeout.filter(|t| !t.is_zero()))?)
}

/// Asks for a send buffer of `bytes` (`SO_SNDBUF`; the kernel caps it at
/// `wmem_max`). Best effort: a refusal leaves the default, which works.
pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) {
    let _ = sockopt::set_socket_send_buffer_size(fd, bytes);
}

/// `shutdown(fd, SHUT_RD)`: a blocked or later `recv` returns end of stream.
/// Failure (not connected, already shut) needs no handling.
pub(crate) fn shutdown_read(fd: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(fd, Shutdown::Read);
}

/// `shutdown(fd, SHUT_RDWR)`: the peer sees a hang-up, a listening socket
/// refuses new connections. Failure (already shut down, peer gone) needs no
/// handling.
pub(crate) fn shutdown(fd: BorrowedFd<'_>) {
    let _ = rustix::net::shutdown(fd, Shutdown::Both);
}

/// Sends `bytes` with descriptors `fds` (SCM_RIGHTS) in one message, without
/// blocking and without `SIGPIPE` (a vanished peer is `EPIPE`).
pub(crate) fn send_with_fds(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives up to `buf.len()` bytes and any descriptors that came with them
/// (close-on-exec). Extra or unexpected descriptors are returned too, so the
/// caller closes them by dropping.
pub(crate) fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    recv_fds(socket, buf, RecvFlags::CMSG_CLOEXEC)
}

/// Like [`recv_with_fds`], but never blocks (`WouldBlock` if nothing waits).
pub(crate) fn recv_with_fds_now(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    recv_fds(socket, buf, RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT)
}

fn recv_fds(socket: BorrowedFd<'_>, buf: &mut [u8], flags: RecvFlags) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match rustix::net::recvmsg(socket, &mut [IoSliceMut::new(buf)], &mut control, flags) {
            Ok(received) => break received,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if received.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::other("descriptors were truncated"));
    }
    Ok((received.bytes, fds))
}
