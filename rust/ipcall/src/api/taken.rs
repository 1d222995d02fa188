//! Counting the requests a server has handed out and not yet seen answered,
//! so that [`Server::drain`](crate::Server::drain) can wait for them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::core::stats::{Counters, Outcome};
use crate::core::wait::Deadline;

/// What a server and the requests it handed out share.
pub(crate) struct Taken {
    /// The server's counters: each request's outcome, size and latency.
    pub(crate) counters: Arc<Counters>,
    /// Requests handed out by `recv` and not yet answered or dropped.
    /// Invariant: equals the number of live [`TakenMark`]s of this server.
    count: AtomicUsize,
    /// True once someone waits in [`Taken::wait_idle`]: only then does
    /// the last answer take the lock to wake it (the common path stays two
    /// atomic operations per request).
    watched: AtomicBool,
    /// Guards nothing but the sleep of `wait_idle` (no lost wake-up).
    lock: Mutex<()>,
    idle: Condvar,
}

impl Taken {
    pub(crate) fn new(counters: Arc<Counters>) -> Taken {
        Taken {
            counters,
            count: AtomicUsize::new(0),
            watched: AtomicBool::new(false),
            lock: Mutex::new(()),
            idle: Condvar::new(),
        }
    }

    /// Marks one more request (of `len` bytes) handed out; the mark ends
    /// it when dropped.
    pub(crate) fn mark(self: &Arc<Self>, len: usize) -> TakenMark {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.counters.taken(len);
        TakenMark { taken: self.clone(), at: Instant::now(), answered: false }
    }

    /// Waits until no request is out, at most until `deadline`; true if none is.
    pub(crate) fn wait_idle(&self, deadline: Deadline) -> bool {
        // SeqCst with `TakenMark::drop`: either it sees `watched` and
        // wakes us under the lock, or we see its decrement below.
        self.watched.store(true, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.count.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let left = match deadline {
                Deadline::Never => Duration::from_secs(3600),
                _ => match deadline.remaining() {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
            };
            guard = self.idle.wait_timeout(guard, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// One request out of its server's hands; dropped when the request is
/// answered or dropped.
pub(crate) struct TakenMark {
    taken: Arc<Taken>,
    /// When `recv` handed the request out (its latency counts from here).
    at: Instant,
    /// An answer was sent and counted; dropped without one, the request
    /// counts as a no-reply.
    answered: bool,
}

impl TakenMark {
    /// The request was answered with `outcome`, of `len` bytes.
    pub(crate) fn answered(&mut self, outcome: Outcome, len: usize) {
        if !std::mem::replace(&mut self.answered, true) {
            self.taken.counters.answered(outcome, len, self.at.elapsed());
        }
    }

    /// The request is dropped: a no-reply, unless it was answered.
    pub(crate) fn unanswered(&mut self) {
        self.answered(Outcome::NoReply, 0);
    }

    /// The server's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.taken.counters
    }
}

impl Drop for TakenMark {
    fn drop(&mut self) {
        self.unanswered();
        let taken = &self.taken;
        if taken.count.fetch_sub(1, Ordering::SeqCst) == 1 && taken.watched.load(Ordering::SeqCst) {
            let _guard = taken.lock.lock().unwrap_or_else(PoisonError::into_inner);
            taken.idle.notify_all();
        }
    }
}
