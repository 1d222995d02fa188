//! One epoll instance: the waiting point of a server for all its
//! connections, and the server's pollable descriptor.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};

use crate::sys::poll::timeout_until;

/// An epoll instance whose registrations carry a `u64` token.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// At most this many events are reported per wait: a wait that reports
/// as many may have left more behind.
pub(crate) const EPOLL_BATCH: usize = 64;

/// Readable (`EPOLLIN`).
pub(crate) const READABLE: u32 = EventFlags::IN.bits();

/// Writable (`EPOLLOUT`).
pub(crate) const WRITABLE: u32 = EventFlags::OUT.bits();

impl Epoll {
    /// A new close-on-exec epoll instance.
    pub(crate) fn new() -> io::Result<Epoll> {
        Ok(Epoll { fd: epoll::create(CreateFlags::CLOEXEC)? })
    }

    /// Watches `fd` for `events` (`READABLE`, or 0 to keep it registered
    /// but silent), reporting `token`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        Ok(epoll::add(&self.fd, fd, EventData::new_u64(token), EventFlags::from_bits_retain(events))?)
    }

    /// Changes what `fd` is watched for.
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        Ok(epoll::modify(&self.fd, fd, EventData::new_u64(token), EventFlags::from_bits_retain(events))?)
    }

    /// Stops watching `fd`.
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(epoll::delete(&self.fd, fd)?)
    }

    /// Waits until something is ready or `deadline` passes, then calls
    /// `ready` with each ready token (at most [`EPOLL_BATCH`] per wait). An interrupted
    /// wait reports nothing.
    pub(crate) fn wait(&self, deadline: impl Into<Option<Instant>>, mut ready: impl FnMut(u64)) -> io::Result<()> {
        let mut events = [epoll::Event { flags: EventFlags::empty(), data: EventData::new_u64(0) }; EPOLL_BATCH];
        match epoll::wait(&self.fd, &mut events[..], timeout_until(deadline.into()).as_ref()) {
            Ok(n) => {
                for event in &events[..n] {
                    ready(event.data.u64());
                }
                Ok(())
            }
            Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
