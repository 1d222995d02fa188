//! What lets an event loop drive a client without threads: the client's
//! pollable descriptor.
//!
//! A [`Notifier`] is an eventfd, made on the first `Client::fd()` and shared
//! by the clones of the client (it lives in the connection). From then on
//! every call sent on the connection carries the notifier's waker in its
//! [`Slot`]: whoever completes the call — the server's thread (`mem:`), the
//! NATS runtime, another thread holding the reading role, a connection's
//! death — makes the eventfd readable. `progress()` clears it *after* doing
//! its work, so a completion that raced with it is either seen by it or
//! sets the eventfd again: never a lost wake-up.
//!
//! Calls sent before the first `fd()` carry no waker, and calls later
//! `.await`ed replace it with their task's; those are not announced on the
//! descriptor. Transports that read a wire (`unix:`, `pipe:`, `shm:`) add
//! the wire itself to the descriptor ([`PollSet`]), so replies waiting to
//! be read make it readable too.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Wake, Waker};

use crate::core::slot::Slot;
use crate::core::wait::lock;
use crate::sys::epoll::{Epoll, READABLE, WRITABLE};
use crate::sys::EventFd;

/// The eventfd, woken as a `Waker`.
struct Bell(EventFd);

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !QUIET.get() {
            self.0.set();
        }
    }
}

thread_local! {
    /// This thread runs `progress`: what it completes is seen when
    /// `progress` returns, so it rings no bell (no wake-up for nothing).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a `progress` step) without ringing the notifier for what this
/// thread completes in it.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    struct Loud;
    impl Drop for Loud {
        fn drop(&mut self) {
            QUIET.set(false);
        }
    }
    QUIET.set(true);
    let _loud = Loud;
    f()
}

/// A connection's lazily made "some call may have completed" eventfd.
#[derive(Default)]
pub(crate) struct Notifier {
    bell: OnceLock<(Arc<Bell>, Waker)>,
}

impl Notifier {
    pub(crate) fn new() -> Notifier {
        Notifier::default()
    }

    /// The eventfd, made on first use.
    pub(crate) fn get_or_make(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some((bell, _)) = self.bell.get() {
            return Ok(bell.0.as_fd());
        }
        let bell = Arc::new(Bell(EventFd::new()?));
        let waker = Waker::from(bell.clone());
        // A racing first call may have set it meanwhile: either one is kept.
        let _ = self.bell.set((bell, waker));
        Ok(self.bell.get().expect("set above").0 .0.as_fd())
    }

    /// True once an event loop asked for the descriptor.
    pub(crate) fn is_armed(&self) -> bool {
        self.bell.get().is_some()
    }

    /// Makes a call's completion announce itself on the eventfd (if made).
    pub(crate) fn arm(&self, slot: &Slot) {
        if let Some((_, waker)) = self.bell.get() {
            slot.set_waker(waker);
        }
    }

    /// Makes the eventfd readable (if made; not inside [`quietly`]).
    pub(crate) fn ring(&self) {
        if let Some((bell, _)) = self.bell.get() {
            if !QUIET.get() {
                bell.0.set();
            }
        }
    }

    /// Makes the eventfd unreadable (if made). Call it after the work a
    /// readiness asked for is done.
    pub(crate) fn clear(&self) {
        if let Some((bell, _)) = self.bell.get() {
            bell.0.clear();
        }
    }
}

/// One descriptor that is readable when any of several is ready: an epoll
/// instance watching the notifier, a wire's read descriptor and — while
/// bytes wait to be flushed — its write descriptor for writability.
pub(crate) struct PollSet {
    epoll: Epoll,
    /// Whether writability is watched now.
    out: Mutex<bool>,
}

/// Tokens (unused by the readers of the set, which only ask "is it ready").
const TOKEN: u64 = 0;

impl PollSet {
    /// Watches `notifier` and `read` for readability; `write` (which may be
    /// the same descriptor) is watched for writability only while
    /// [`want_write`](Self::want_write) says so.
    pub(crate) fn new(notifier: BorrowedFd<'_>, read: BorrowedFd<'_>) -> io::Result<PollSet> {
        let epoll = Epoll::new()?;
        epoll.add(notifier, READABLE, TOKEN)?;
        epoll.add(read, READABLE, TOKEN)?;
        Ok(PollSet { epoll, out: Mutex::new(false) })
    }

    /// Starts or stops watching `write` for writability (a no-op if already so).
    pub(crate) fn want_write(&self, read: BorrowedFd<'_>, write: BorrowedFd<'_>, yes: bool) -> io::Result<()> {
        let mut out = lock(&self.out);
        if *out == yes {
            return Ok(());
        }
        if read.as_raw_fd() == write.as_raw_fd() {
            let events = if yes { READABLE | WRITABLE } else { READABLE };
            self.epoll.modify(read, events, TOKEN)?;
        } else if yes {
            self.epoll.add(write, WRITABLE, TOKEN)?;
        } else {
            self.epoll.delete(write)?;
        }
        *out = yes;
        Ok(())
    }
}

impl AsFd for PollSet {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}
