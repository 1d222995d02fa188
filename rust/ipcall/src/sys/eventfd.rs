//! `EventFd`: a non-blocking, close-on-exec eventfd used as a
//! level-triggered "something may be ready" flag.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};

/// Readable while its counter is non-zero.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        Ok(EventFd { fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)? })
    }

    /// Makes the descriptor readable (adds 1 to the counter).
    pub(crate) fn set(&self) {
        signal(self.fd.as_fd());
    }

    /// Makes the descriptor unreadable (resets the counter to 0); true if
    /// it was readable.
    pub(crate) fn clear(&self) -> bool {
        let mut value = [0u8; 8];
        // EAGAIN (already zero) is the expected failure: nothing was there.
        rustix::io::read(&self.fd, &mut value).is_ok_and(|n| n == value.len())
    }
}

/// Adds 1 to the counter of the eventfd `fd` (which may belong to a peer).
/// The only possible failure, EAGAIN on counter overflow, still leaves it
/// readable, so it is ignored.
pub(crate) fn signal(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
