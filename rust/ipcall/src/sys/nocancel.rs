//! The per-message system calls of `unix:` and `pipe:`, made bare through
//! `syscall(2)` instead of through glibc's wrappers (or rustix on its libc
//! backend, which calls them). Each of those wrappers is a thread
//! cancellation point and brackets its call with
//! `__pthread_enable_asynccancel` and `…disable…`: with the wrapper itself
//! ~90 instructions per call, on every message of both sides (callgrind).
//! No ipcall thread is ever cancelled, and an application thread cancelled
//! inside ipcall would unwind through Rust frames, which is undefined, so
//! nothing is lost. Errors come back as `io::Error` with the raw errno;
//! `EINTR` is the caller's.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

// Every argument is passed to the variadic `syscall` as a full register
// (`c_long`): a 32-bit `int` leaves the upper half of its register
// undefined, which the kernel ignores but valgrind rightly reports.

/// A `syscall` result: the count, or the errno as `io::Error`.
fn count(n: libc::c_long) -> io::Result<usize> {
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `recvfrom(fd, buf, flags)` with no peer address.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: (1) `buf` is live and writable for `buf.len()` bytes during
    // the call, and the kernel writes at most that many; (2) null address
    // and length pointers ask for no peer address.
    count(unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            libc::c_long::from(fd.as_raw_fd()),
            buf.as_mut_ptr(),
            buf.len(),
            libc::c_long::from(flags),
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    })
}

/// `sendto(fd, bytes, flags)` on the connection (no address).
pub(crate) fn send(fd: BorrowedFd<'_>, bytes: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: (1) `bytes` is live and readable during the call; (2) a null
    // address of length 0 sends on the connected socket.
    count(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            libc::c_long::from(fd.as_raw_fd()),
            bytes.as_ptr(),
            bytes.len(),
            libc::c_long::from(flags),
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::c_long,
        )
    })
}

/// `read(fd, buf)`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: (1) `buf` is live and writable for `buf.len()` bytes during
    // the call, and the kernel writes at most that many.
    count(unsafe { libc::syscall(libc::SYS_read, libc::c_long::from(fd.as_raw_fd()), buf.as_mut_ptr(), buf.len()) })
}

/// `pwritev2(fd, bufs, -1, flags)`: a `writev` at the file position (the
/// only position a FIFO has) with `RWF_*` flags. At most `IOV_MAX` (1024)
/// slices, which the caller bounds.
pub(crate) fn writev_flags(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], flags: u32) -> io::Result<usize> {
    debug_assert!(bufs.len() <= 1024);
    // SAFETY: (1) `IoSlice` is ABI-compatible with `struct iovec` on Unix
    // (std guarantees it), and every slice is live and readable during the
    // call; (2) the kernel takes the offset as two longs, low then high: on
    // a 64-bit target the low one holds all of it, so -1 (the current
    // position) is `-1, 0`.
    count(unsafe {
        libc::syscall(
            libc::SYS_pwritev2,
            libc::c_long::from(fd.as_raw_fd()),
            bufs.as_ptr(),
            bufs.len() as libc::c_ulong,
            -1 as libc::c_long,
            0 as libc::c_long,
            libc::c_ulong::from(flags),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_fifo_round_trip_through_the_bare_calls_and_their_errors() {
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        let wrote = writev_flags(writer.as_fd(), &[IoSlice::new(b"ab"), IoSlice::new(b"cd")], 0).unwrap();
        assert_eq!(wrote, 4);
        let mut buf = [MaybeUninit::<u8>::uninit(); 8];
        assert_eq!(read(reader.as_fd(), &mut buf).unwrap(), 4);
        // SAFETY: (1) the read above initialised the first 4 bytes.
        assert_eq!(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), 4) }, b"abcd");
        // An unknown flag is refused before anything is written.
        let refused = writev_flags(writer.as_fd(), &[IoSlice::new(b"x")], 0x8000_0000).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EOPNOTSUPP));
        // A socket call on a FIFO: the errno comes back as it is.
        assert_eq!(recv(reader.as_fd(), &mut buf, 0).unwrap_err().raw_os_error(), Some(libc::ENOTSOCK));
        assert_eq!(send(writer.as_fd(), b"x", 0).unwrap_err().raw_os_error(), Some(libc::ENOTSOCK));
    }

    #[test]
    fn a_socket_pair_round_trip_through_the_bare_calls() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(send(a.as_fd(), b"hello", libc::MSG_NOSIGNAL).unwrap(), 5);
        let mut buf = [MaybeUninit::<u8>::uninit(); 8];
        assert_eq!(recv(b.as_fd(), &mut buf, 0).unwrap(), 5);
        // Nothing more: a non-blocking receive says so.
        let empty = recv(b.as_fd(), &mut buf, libc::MSG_DONTWAIT).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        assert_eq!(recv(b.as_fd(), &mut buf, 0).unwrap(), 0, "end of stream");
        assert_eq!(send(b.as_fd(), b"x", libc::MSG_NOSIGNAL).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
