//! Waiting on one descriptor with a deadline, and how much it has to read.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};

/// The time left until `deadline` as a poll timeout, rounded up to whole
/// milliseconds so that a wait never ends before its deadline; `None`
/// (wait forever) for no deadline.
pub(crate) fn timeout_until(deadline: Option<Instant>) -> Option<Timespec> {
    deadline.map(|at| {
        let left = at.saturating_duration_since(Instant::now());
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
        Timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 }
    })
}

/// Waits until `fd` reports `events` (or an error/hang-up) or `deadline`
/// passes. Returns the reported events as poll(2) bits, 0 on timeout.
pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    deadline: impl Into<Option<Instant>>,
) -> io::Result<libc::c_short> {
    let deadline = deadline.into();
    let flags = PollFlags::from_bits_retain(events as _);
    loop {
        let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
        match rustix::event::poll(&mut fds, timeout_until(deadline).as_ref()) {
            Ok(0) => return Ok(0),
            Ok(_) => return Ok(fds[0].revents().bits() as libc::c_short),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// How many bytes are waiting to be read on `fd` (`FIONREAD`; sockets and FIFOs).
pub(crate) fn readable_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(rustix::io::ioctl_fionread(fd)? as usize)
}

/// `poll(fds)` until something is reported or `deadline` passes; returns
/// false on timeout. Retries `EINTR`, and rounds the timeout up so that a
/// wait never ends early.
///
/// Raw `pollfd`s on purpose (rustix's `PollFd` borrows its descriptor): a
/// caller may poll a descriptor that another thread closes meanwhile, which
/// poll reports as `POLLNVAL`, never as undefined behaviour.
pub(crate) fn poll_until(fds: &mut [libc::pollfd], deadline: impl Into<Option<Instant>>) -> io::Result<bool> {
    let deadline = deadline.into();
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: (1) the pointer and length describe `fds`, live and
        // writable; (2) a closed or negative descriptor in it is reported
        // (POLLNVAL) or ignored by the kernel, never dereferenced.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n > 0 {
            return Ok(true);
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        if deadline.is_some_and(|at| Instant::now() >= at) {
            return Ok(false);
        }
    }
}

/// A `pollfd` for `fd` asking for `events` (`POLLERR`/`POLLHUP` always come).
pub(crate) fn pollfd(fd: BorrowedFd<'_>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&fd), events, revents: 0 }
}
