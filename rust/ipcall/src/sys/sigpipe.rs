//! Writes that fail with `EPIPE` instead of killing the process with
//! `SIGPIPE`, without touching the process's signal disposition (a library
//! must not). FIFOs have no `MSG_NOSIGNAL`. Since Linux 6.18 `pwritev2`
//! takes `RWF_NOSIGNAL`, which is the same thing for any file: one system
//! call, as a plain `writev`. Older kernels refuse the flag with
//! `EOPNOTSUPP` before writing anything; from then on (remembered for the
//! process) the signal is blocked in the calling thread for the duration
//! of the write and, if the write raised it, consumed before the mask comes
//! back — two to four more system calls per write.
//!
//! The writes with `RWF_NOSIGNAL` are bare system calls
//! ([`super::nocancel`]), the others go through rustix; the signal calls
//! stay on `libc`: rustix
//! has `sigprocmask`, `sigpending` and `sigtimedwait` only in its
//! experimental `runtime` module, whose functions act on the kernel's mask
//! behind libc's back and are documented as not for a process with a libc.

use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

/// `RWF_NOSIGNAL` (Linux 6.18, `include/uapi/linux/fs.h`): a write to a
/// pipe or socket without a reader fails with `EPIPE` and raises no
/// `SIGPIPE`. Neither libc nor rustix names it yet.
const RWF_NOSIGNAL: u32 = 0x100;

/// The kernel refused `RWF_NOSIGNAL` once: use the signal mask from then on.
static NO_RWF_NOSIGNAL: AtomicBool = AtomicBool::new(false);

/// Writes `buf` to `fd` like `write(2)` (retrying `EINTR`), but a reader
/// that has gone away yields `BrokenPipe` instead of killing the process
/// with `SIGPIPE`, without touching the process's signal disposition.
pub(crate) fn write_no_sigpipe(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    writev_no_sigpipe(fd, &[IoSlice::new(buf)])
}

/// `writev(2)` form of [`write_no_sigpipe`] (at most `IOV_MAX` slices are
/// written per call; the count written says how far it got).
pub(crate) fn writev_no_sigpipe(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(1024)];
    if !NO_RWF_NOSIGNAL.load(Ordering::Relaxed) {
        // The offset `u64::MAX` (-1) writes at the file position, as
        // `writev` does: the only kind of offset a FIFO has.
        // A bare system call ([`super::nocancel`]): every `pipe:` message
        // is written with it.
        loop {
            match super::nocancel::writev_flags(fd, bufs, RWF_NOSIGNAL) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An unknown flag is refused before anything is written.
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    NO_RWF_NOSIGNAL.store(true, Ordering::Relaxed);
                    break;
                }
                other => return other,
            }
        }
    }
    writev_masked(fd, bufs)
}

/// [`writev_no_sigpipe`] for a kernel without `RWF_NOSIGNAL`: the write
/// runs with `SIGPIPE` blocked (see [`without_sigpipe`]).
pub(crate) fn writev_masked(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(1024)];
    without_sigpipe(|| rustix::io::writev(fd, bufs))
}

/// Runs `syscall` (a write) with `SIGPIPE` blocked in this thread. If it
/// fails with `EPIPE`, the `SIGPIPE` the kernel sent this thread is taken
/// off the pending set with `sigtimedwait` before the old mask comes back,
/// unless one was already pending before (then ours merged with it, and
/// what was pending stays pending). The disposition is never changed, and
/// the thread's mask is back as it was on return.
fn without_sigpipe(mut syscall: impl FnMut() -> rustix::io::Result<usize>) -> io::Result<usize> {
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
            match syscall() {
                Err(Errno::INTR) => {}
                other => break other,
            }
        };
        if !was_pending && result == Err(Errno::PIPE) {
            let no_wait = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            while libc::sigtimedwait(&sigpipe, std::ptr::null_mut(), &no_wait) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
        if !was_blocked {
            libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        }
        result.map_err(io::Error::from)
    }
}
