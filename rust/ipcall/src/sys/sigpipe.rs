//! Writes that fail with `EPIPE` instead of killing the process with
//! `SIGPIPE`, without touching the process's signal disposition (a library
//! must not). FIFOs have no `MSG_NOSIGNAL`, so the signal is blocked in the
//! calling thread for the duration of the write and, if the write raised
//! it, consumed before the mask comes back.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Writes `buf` to `fd` like `write(2)` (retrying `EINTR`), but a reader
/// that has gone away yields `BrokenPipe` instead of killing the process
/// with `SIGPIPE`, without touching the process's signal disposition.
pub(crate) fn write_no_sigpipe(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: (1) the pointer and length describe `buf`, live and readable.
    without_sigpipe(|| unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// `writev(2)` form of [`write_no_sigpipe`] (at most `IOV_MAX` slices are
/// written per call; the count written says how far it got).
pub(crate) fn writev_no_sigpipe(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(1024) as libc::c_int;
    // SAFETY: (1) `IoSlice` is ABI-compatible with `iovec` on Unix; (2) the
    // pointer and count describe live slices borrowed for the whole call.
    without_sigpipe(|| unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast(), count) })
}

/// Runs `syscall` (a write) with `SIGPIPE` blocked in this thread. If it
/// fails with `EPIPE`, the `SIGPIPE` the kernel sent this thread is taken
/// off the pending set with `sigtimedwait` before the old mask comes back,
/// unless one was already pending before (then ours merged with it, and
/// what was pending stays pending). The disposition is never changed, and
/// the thread's mask is back as it was on return.
fn without_sigpipe(mut syscall: impl FnMut() -> isize) -> io::Result<usize> {
    // SAFETY: (1) every sigset_t here is initialised by sigemptyset or
    // filled by the kernel before it is read; (2) pthread_sigmask,
    // sigpending, sigtimedwait get valid pointers to live locals; (3) the
    // mask change is undone before return, on every path.
    unsafe {
        let mut sigpipe = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut sigpipe);
        libc::sigaddset(&mut sigpipe, libc::SIGPIPE);
        let mut previous = std::mem::zeroed::<libc::sigset_t>();
        libc::pthread_sigmask(libc::SIG_BLOCK, &sigpipe, &mut previous);
        let was_blocked = libc::sigismember(&previous, libc::SIGPIPE) == 1;
        // Unblocked, a SIGPIPE for this thread would have been delivered
        // already: only a blocked one can be pending.
        let was_pending = was_blocked && {
            let mut pending = std::mem::zeroed::<libc::sigset_t>();
            libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1
        };
        let result = loop {
            let n = syscall();
            if n >= 0 {
                break Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                break Err(err);
            }
        };
        if !was_pending && matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) {
            let no_wait = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            while libc::sigtimedwait(&sigpipe, std::ptr::null_mut(), &no_wait) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
        if !was_blocked {
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        }
        result
    }
}
