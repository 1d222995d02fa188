//! What lets an event loop drive a client without threads: the client's
//! pollable descriptor.
//!
//! A [`Notifier`] is an eventfd, made on the first `Client::fd()` and shared
//! by the clones of the client (it lives in the connection). From then on
//! every call sent on the connection carries the notifier's waker in its
//! [`Slot`]: whoever completes the call — the server's thread (`mem:`), the
//! NATS runtime, another thread holding the reading role, a connection's
//! death — makes the eventfd readable, and not for what a `progress` on this
//! thread completes ([`quietly`]: it is seen when `progress` returns).
//! `progress()` clears it either after its work, so a completion that
//! raced with it is seen by the caller or sets the eventfd again, or — when
//! every ring comes after the state it announces — before its work, which
//! then sees what the cleared rings announced: never a lost wake-up.
//!
//! Calls sent before the first `fd()` carry no waker, and calls later
//! `.await`ed replace it with their task's; those are not announced on the
//! descriptor. Transports that read a wire (`unix:`, `pipe:`, `shm:`) add
//! the wire itself to the descriptor ([`PollSet`]), so replies waiting to
//! be read make it readable too.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Wake, Waker};

use crate::core::slot::Slot;
use crate::core::wait::{lock, try_lock};
use crate::sys::epoll::{Epoll, READABLE, WRITABLE};
use crate::sys::EventFd;

/// The eventfd, woken as a `Waker`.
///
/// `rung` lets the rings of this process write the eventfd once per
/// clearing instead of once each: a ring that finds it set writes nothing,
/// because a write it did is still to be read. It is reset only after a
/// read (see [`Notifier::clear`] and [`Notifier::clear_own`]); the reset
/// is a swap, so it reads every skipped ring's swap and whoever cleared
/// sees what those rings announced.
struct Bell {
    fd: EventFd,
    /// A ring of this process wrote the eventfd and no read took it since.
    rung: AtomicBool,
}

impl Bell {
    fn ring(&self) {
        if QUIET.get() {
            return;
        }
        if !self.rung.swap(true, Ordering::SeqCst) {
            self.fd.set();
        }
    }
}

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.ring();
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
            return Ok(bell.fd.as_fd());
        }
        let bell = Arc::new(Bell { fd: EventFd::new()?, rung: AtomicBool::new(false) });
        let waker = Waker::from(bell.clone());
        // A racing first call may have set it meanwhile: either one is kept.
        let _ = self.bell.set((bell, waker));
        Ok(self.bell.get().expect("set above").0.fd.as_fd())
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
            bell.ring();
        }
    }

    /// Makes the eventfd unreadable (if made); true if it was readable.
    /// Call it after the work a readiness asked for is done, or before it
    /// if every ring comes after the state it announces. Always reads: for
    /// an eventfd another process may write too (the `shm:` bell).
    pub(crate) fn clear(&self) -> bool {
        let Some((bell, _)) = self.bell.get() else { return false };
        let was = bell.fd.clear();
        // After the read: a ring whose write is still in flight leaves the
        // eventfd readable (read next time), and one that skipped its write
        // is seen through this swap by whoever cleared.
        bell.rung.swap(false, Ordering::SeqCst);
        was
    }

    /// Like [`clear`](Self::clear), for an eventfd only this process
    /// writes (through [`ring`](Self::ring) and the waker): reads it only
    /// if a ring wrote it, so a `progress` that nothing rang for makes no
    /// system call here. Call it *before* the work: a ring that skips its
    /// write (one is pending) is seen by the work that follows.
    ///
    /// `rung` goes false only after a read took the one write of its
    /// cycle; a read that finds nothing leaves it set, the write in flight
    /// then lands on a set flag and the next call reads it. So a readable
    /// eventfd always has `rung` set: never a readiness this call ignores.
    pub(crate) fn clear_own(&self) {
        let Some((bell, _)) = self.bell.get() else { return };
        if bell.rung.load(Ordering::SeqCst) && bell.fd.clear() {
            bell.rung.swap(false, Ordering::SeqCst);
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

/// The hand-off between an event loop's `try_send`, which never waits for
/// a connection's writer, and a blocking sender holding it: the loop marks
/// the gate before it looks at the lock once more, and the blocking sender
/// rings the notifier when it lets go and finds the gate marked, so the
/// loop learns when to try again. (`shm:` marks it too when the ring has
/// no room.)
#[derive(Debug, Default)]
pub(crate) struct SendGate {
    /// Set: some `try_send` gave up and waits for a ring.
    blocked: AtomicBool,
}

impl SendGate {
    /// `writer`, unless another thread holds it; then marks the gate and
    /// looks once more: the holder may have let go before it saw the mark.
    pub(crate) fn writer_or_ring_later<'a, T>(&self, writer: &'a Mutex<T>) -> Option<MutexGuard<'a, T>> {
        if let Some(guard) = try_lock(writer) {
            return Some(guard);
        }
        self.blocked.store(true, Ordering::SeqCst);
        // Pairs with the fence in `after_blocking_send` (store, then look
        // at the lock; against unlock, then look at the flag).
        fence(Ordering::SeqCst);
        try_lock(writer)
    }

    /// Called by a sender (a blocking one; an evented one that held the
    /// writer, or a `progress` that flushed) after it let go of the
    /// writer: rings `notifier` if a `try_send` gave up meanwhile.
    pub(crate) fn after_blocking_send(&self, notifier: &Notifier) {
        fence(Ordering::SeqCst);
        if self.blocked.load(Ordering::Relaxed) && self.blocked.swap(false, Ordering::SeqCst) {
            notifier.ring();
        }
    }

    /// Marks (or clears) the gate without a lock hand-off.
    pub(crate) fn set(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    /// True while some `try_send` waits for a ring.
    pub(crate) fn is_set(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }
}
