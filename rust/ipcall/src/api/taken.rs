//! Counting the requests a server has handed out and not yet seen answered,
//! so that [`Server::drain`](crate::Server::drain) can wait for them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::core::stats::{Counters, Outcome};
use crate::core::wait::Deadline;

/// How long [`Taken::wait_idle`] sleeps at most before it looks again: the
/// last request's end looks at `watched` without a fence, so it may miss a
/// waiter that began meanwhile (see [`TakenMark`]'s drop).
const IDLE_RECHECK: Duration = Duration::from_millis(10);

/// What a server and the requests it handed out share.
pub(crate) struct Taken {
    /// The server's counters: each request's outcome, size and latency,
    /// and the requests handed out and ended (what `wait_idle` waits on:
    /// no locked instruction per request on the thread that counts, see
    /// `core::tally`).
    pub(crate) counters: Arc<Counters>,
    /// True once someone waits in [`Taken::wait_idle`]: only then does
    /// a request's end take the lock to wake it.
    watched: AtomicBool,
    /// Guards nothing but the sleep of `wait_idle`.
    lock: Mutex<()>,
    idle: Condvar,
}

impl Taken {
    pub(crate) fn new(counters: Arc<Counters>) -> Taken {
        Taken { counters, watched: AtomicBool::new(false), lock: Mutex::new(()), idle: Condvar::new() }
    }

    /// Marks a request of `len` bytes as handed out (counted in the stats).
    pub(crate) fn mark(self: &Arc<Self>, len: usize) -> TakenMark {
        self.counters.taken(len);
        TakenMark { taken: self.clone(), at: Instant::now(), answered: false }
    }

    /// Waits until every request handed out has ended, or `deadline`:
    /// true if they all did. Woken by the last one's end; looks again every
    /// [`IDLE_RECHECK`] in case that end missed the waiter.
    pub(crate) fn wait_idle(&self, deadline: Deadline) -> bool {
        self.watched.store(true, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.counters.all_finished() {
                return true;
            }
            let left = match deadline {
                Deadline::Never => IDLE_RECHECK,
                _ => match deadline.remaining() {
                    Some(left) if !left.is_zero() => left.min(IDLE_RECHECK),
                    _ => return false,
                },
            };
            guard = self.idle.wait_timeout(guard, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

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
    /// After the answer went out (the request drops its transport part
    /// first). No fence between counting the end and looking at
    /// `watched`: a waiter that began in between is woken by its own
    /// recheck ([`IDLE_RECHECK`]) instead, and the common path has no
    /// locked instruction.
    fn drop(&mut self) {
        self.unanswered();
        let taken = &self.taken;
        taken.counters.finished();
        if taken.watched.load(Ordering::Acquire) && taken.counters.all_finished() {
            let _guard = taken.lock.lock().unwrap_or_else(PoisonError::into_inner);
            taken.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_idle_waits_for_requests_taken_on_one_thread_and_ended_on_another() {
        let taken = Arc::new(Taken::new(Counters::new()));
        assert!(taken.wait_idle(Deadline::Now), "nothing handed out: idle");
        let marks: Vec<TakenMark> = (0..3).map(|_| taken.mark(8)).collect();
        assert!(!taken.wait_idle(Deadline::after(Duration::from_millis(20))), "three held: not idle");
        let ender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(marks);
        });
        assert!(taken.wait_idle(Deadline::after(Duration::from_secs(30))), "idle once the other thread ended them");
        ender.join().unwrap();
        let stats = taken.counters.snapshot();
        assert_eq!((stats.calls, stats.no_replies()), (3, 3), "dropped unanswered: three no-replies");
    }
}
