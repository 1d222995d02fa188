//! Async waiting on tokio's own reactor (feature `tokio`): a connection's
//! or a server's pollable descriptor registered with the I/O driver of the
//! runtime that polls its futures, so that `.await` needs no thread of ours.
//!
//! A [`Registry`] (one per client connection, one per server) keeps one
//! [`Reactor`] per runtime: the descriptor in a `tokio::io::unix::AsyncFd`,
//! registered on the first future polled in that runtime and kept until the
//! client or server is dropped. A runtime without I/O (no `enable_io`) gets
//! none, and its futures take the executor-neutral path: tokio tells it
//! only by panicking, so the panic is caught and the runtime remembered
//! for the process (its message is printed once).
//!
//! The tasks waiting on one reactor take turns at watching it. tokio keeps
//! one waker per direction of an `AsyncFd`, so only the *leader* — the task
//! that polled last — is woken by readiness. It makes progress for all (a
//! client's `progress()` completes every call the connection answered, and
//! each call's slot wakes its own task), and a leader that finishes or is
//! dropped hands the role to another waiting task ([`Reactor::leave`]), so
//! the descriptor is never left unwatched while anyone waits. Senders that
//! found no room are woken after every readiness (it may have brought room).
//!
//! tokio registers descriptors edge-triggered and clears its readiness only
//! when told; the descriptors here are level-triggered. Where one
//! `progress` may leave it readable with no new edge to come (`shm:` leaves
//! a hang-up for the next `progress`; a server's `try_recv` that found
//! nothing), readiness is cleared only after a zero-timeout `poll(2)` found
//! the descriptor quiet ([`Reactor::settle`]);
//! what arrives after that look is a new edge, and what arrived between the
//! readiness and the clearing keeps tokio's readiness (its clearing is tied
//! to the event it saw).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;
use tokio::runtime::{Handle, Id};

use crate::core::wait::{lock, Deadline};
use crate::sys::poll::wait_fd;

/// A descriptor number owned elsewhere: by the connection or server that
/// outlives every [`Reactor`] made of it (see [`Registry`]).
pub(crate) struct Raw(RawFd);

impl AsRawFd for Raw {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One descriptor registered with one runtime's reactor, and the tasks
/// waiting on it.
pub(crate) struct Reactor {
    /// Deregistered when dropped, before `_owner`.
    fd: AsyncFd<Raw>,
    runtime: Id,
    waiters: Mutex<Waiters>,
    /// What keeps the descriptor open (a client's connection), if the
    /// registry's owner does not outlive it by itself.
    _owner: Option<Box<dyn Send + Sync>>,
}

#[derive(Default)]
struct Waiters {
    /// Tokens handed out so far.
    issued: u64,
    /// Every waiting task, by token, with its latest waker.
    tasks: Vec<(u64, Waker)>,
    /// The task whose waker tokio holds now.
    leader: Option<u64>,
    /// Senders waiting for room, woken after every readiness.
    senders: Vec<Waker>,
}

/// How many times in a row [`Reactor::settle`] may find the descriptor
/// still readable before the leader yields to the other tasks.
const ROUNDS: u32 = 4;

impl Reactor {
    /// Registers `fd` with the current runtime's reactor.
    ///
    /// # Safety
    ///
    /// `fd` is open and stays open (the same open file) while the reactor
    /// lives: `owner` keeps it so, or the registry's owner drops the
    /// registry before it closes `fd`.
    unsafe fn new(fd: RawFd, runtime: Id, owner: Option<Box<dyn Send + Sync>>) -> io::Result<Reactor> {
        // SAFETY: (1) the caller's promise above is what tokio asks: the
        // descriptor outlives the `AsyncFd` and stays the same file.
        let fd =
            unsafe { AsyncFd::register_with_interest(Raw(fd), Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
        Ok(Reactor { fd, runtime, waiters: Mutex::new(Waiters::default()), _owner: owner })
    }

    /// Waits as the leader: records the task under `token` (given one on
    /// its first wait) and hands tokio its waker. `Ready` with a guard when
    /// the descriptor is readable: the caller makes progress, then calls
    /// [`settle`](Self::settle). `sender`: the task waits for room to send.
    /// `Err` only while the runtime shuts down.
    pub(crate) fn poll_wait(
        &self,
        token: &mut Option<u64>,
        sender: bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<AsyncFdReadyGuard<'_, Raw>>> {
        let mut waiters = lock(&self.waiters);
        let waiters = &mut *waiters;
        let me = *token.get_or_insert_with(|| {
            waiters.issued += 1;
            waiters.issued
        });
        // Tokens only grow, so `tasks` stays sorted by them.
        match waiters.tasks.binary_search_by_key(&me, |(t, _)| *t) {
            Ok(at) => {
                let waker = &mut waiters.tasks[at].1;
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            Err(at) => waiters.tasks.insert(at, (me, cx.waker().clone())),
        }
        if sender && !waiters.senders.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.senders.push(cx.waker().clone());
        }
        waiters.leader = Some(me);
        // Under our lock: the leader we name is the task whose waker tokio
        // keeps, even when several threads of the runtime poll at once.
        self.fd.poll_read_ready(cx)
    }

    /// After the progress a readiness asked for: wakes the waiting senders
    /// and clears the readiness if the descriptor is quiet now. `Ready` to
    /// look again at once (the caller loops); `Pending` after the leader
    /// yielded (it found the descriptor readable [`ROUNDS`] times running:
    /// someone else's work is in the way, e.g. another thread reading).
    /// `look`: the work may have left a readiness without a new edge, so
    /// look with `poll(2)` before clearing.
    pub(crate) fn settle(
        &self,
        guard: AsyncFdReadyGuard<'_, Raw>,
        look: bool,
        round: &mut u32,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let senders = {
            let mut waiters = lock(&self.waiters);
            if waiters.senders.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut waiters.senders)
            }
        };
        for sender in senders {
            if !sender.will_wake(cx.waker()) {
                sender.wake();
            }
        }
        // SAFETY: (1) the descriptor is open while this reactor lives
        // (its owner is dropped after it, see `Registry`).
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd.get_ref().0) };
        let readable = look && wait_fd(fd, libc::POLLIN, Deadline::Now).is_ok_and(|events| events != 0);
        if !readable {
            *round = 0;
            let mut guard = guard;
            guard.clear_ready();
            return Poll::Ready(());
        }
        *round += 1;
        if *round < ROUNDS {
            return Poll::Ready(());
        }
        *round = 0;
        // Readiness stays set: the next poll of any task finds it.
        drop(guard);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// True if no task but the one of `token` waits here.
    pub(crate) fn is_alone(&self, token: Option<u64>) -> bool {
        lock(&self.waiters).tasks.iter().all(|(t, _)| Some(*t) == token)
    }

    /// The task of `token` stops waiting (done, or dropped). If it was the
    /// leader, or no task leads (a hand-off is on its way, and its target
    /// may be this very task, finishing on another thread), another
    /// waiting task is woken to take the role.
    pub(crate) fn leave(&self, token: Option<u64>) {
        let Some(me) = token else { return };
        let next = {
            let mut waiters = lock(&self.waiters);
            if let Ok(at) = waiters.tasks.binary_search_by_key(&me, |(t, _)| *t) {
                waiters.tasks.remove(at);
            }
            if waiters.leader.is_some_and(|leader| leader != me) {
                return;
            }
            waiters.leader = None;
            waiters.tasks.first().map(|(_, waker)| waker.clone())
        };
        if let Some(next) = next {
            next.wake();
        }
    }

    /// True if this reactor belongs to the runtime polling now.
    pub(crate) fn is_current(&self) -> bool {
        Handle::try_current().is_ok_and(|handle| handle.id() == self.runtime)
    }
}

/// The runtimes of this process found to have no I/O driver.
static WITHOUT_IO: Mutex<Vec<Id>> = Mutex::new(Vec::new());

/// A descriptor to register, and what keeps it open (see [`Registry::current`]).
pub(crate) type Owned = (RawFd, Option<Box<dyn Send + Sync>>);

/// The reactors of one descriptor, one per runtime that polled a future
/// on it. Its owner keeps the descriptor open until the registry is gone.
#[derive(Default)]
pub(crate) struct Registry {
    /// One per runtime.
    reactors: Mutex<Vec<Arc<Reactor>>>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry::default()
    }

    /// The reactor of the runtime polling now, registering `fd()` with it
    /// on first use. `None` outside a tokio runtime, in a runtime without
    /// I/O, or if the descriptor cannot be had or registered (then the
    /// caller takes the executor-neutral path). `fd()` gives the descriptor
    /// and, if needed, what keeps it open while the reactor lives.
    pub(crate) fn current(&self, fd: impl FnOnce() -> io::Result<Owned>) -> Option<Arc<Reactor>> {
        let runtime = Handle::try_current().ok()?.id();
        let mut reactors = lock(&self.reactors);
        if let Some(reactor) = reactors.iter().find(|r| r.runtime == runtime) {
            return Some(reactor.clone());
        }
        if lock(&WITHOUT_IO).contains(&runtime) {
            return None;
        }
        let (fd, owner) = fd().ok()?;
        // tokio panics (rather than failing) when the runtime has no I/O
        // driver; the panic is caught, and that runtime is remembered for
        // the whole process, so its message is printed once.
        // SAFETY: (1) `fd()` gave an open descriptor and what keeps it open
        // (a client's connection), or the registry's owner closes it only
        // after dropping the registry (a server's field order).
        match catch_unwind(AssertUnwindSafe(|| unsafe { Reactor::new(fd, runtime, owner) })) {
            Ok(Ok(reactor)) => {
                let reactor = Arc::new(reactor);
                reactors.push(reactor.clone());
                Some(reactor)
            }
            // Out of memory or descriptors in the kernel: try again next time.
            Ok(Err(_)) => None,
            Err(_) => {
                lock(&WITHOUT_IO).push(runtime);
                None
            }
        }
    }
}
