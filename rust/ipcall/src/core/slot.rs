//! The one-shot cell through which one call receives its outcome.
//!
//! Every transport ends a call the same way: whoever learns the outcome (the
//! server's `reply`, a reader thread, a disconnect sweep) calls
//! [`Slot::complete`], and the caller's `Pending` waits on the slot — by
//! spinning briefly, then on a condition variable, or through a `Waker`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::core::wait::{spin_until, Deadline};

/// How a call ended, before it is turned into the caller's `Result` (which
/// needs the server name that only the caller's side keeps).
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `Request::reply`.
    Reply(Vec<u8>),
    /// `Request::fail` with its payload.
    Fail(Vec<u8>),
    /// The request was dropped unanswered.
    NoReply,
    /// The server or the connection went away.
    Disconnected,
    /// The call failed with this error (e.g. `Protocol`: the peer broke the
    /// wire format and the connection was dropped).
    Error(crate::core::error::Error),
}

/// Why [`Slot::wait_ready_or_nudged`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The slot is completed.
    Ready,
    /// Someone called [`Slot::nudge`] (e.g. the reading role became free).
    Nudged,
    /// The deadline passed.
    TimedOut,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The outcome, once completed and until taken.
    outcome: Option<Outcome>,
    /// Set once `complete` succeeded; later completions are ignored.
    completed: bool,
    /// The caller gave up; a completion is discarded.
    abandoned: bool,
    /// A thread sleeps on `cond`.
    sleeping: bool,
    /// `nudge` was called and the waiter has not seen it yet.
    nudged: bool,
    /// An async caller to wake.
    waker: Option<Waker>,
}

/// A one-shot outcome cell shared by a caller and whoever answers it.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Mirrors `state.completed`, readable without the lock for spinning.
    ready: AtomicBool,
    state: Mutex<SlotState>,
    cond: Condvar,
    /// Sleep at once instead of spinning first ([`Slot::without_spin`]).
    no_spin: bool,
}

impl Slot {
    pub(crate) fn new() -> Slot {
        Slot::default()
    }

    /// A slot whose sync waiter sleeps at once: for answers a network round
    /// trip away (`nats:`), which never come within a spin, so spinning and
    /// the yields that end it only take the CPU from the threads that
    /// produce the answer (on a busy machine, a yield can cost a time slice).
    // Only `nats:` uses it.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn without_spin() -> Slot {
        Slot { no_spin: true, ..Slot::default() }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding this lock leaves the state consistent (every
        // critical section is a few assignments), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers the outcome. Returns false (and drops it) if the slot was
    /// already completed or the caller abandoned it.
    pub(crate) fn complete(&self, outcome: Outcome) -> bool {
        let (sleeping, waker) = {
            let mut state = self.lock();
            if state.completed || state.abandoned {
                return false;
            }
            state.completed = true;
            state.outcome = Some(outcome);
            self.ready.store(true, Ordering::Release);
            (state.sleeping, state.waker.take())
        };
        // Notified after unlocking: a sleeper woken while we still held the
        // lock would block on it at once (two more futex calls and context
        // switches per call). It cannot miss the notification: it checks
        // `completed` under the lock before it sleeps.
        if sleeping {
            self.cond.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// The caller gives up: a later completion is discarded.
    pub(crate) fn abandon(&self) {
        let mut state = self.lock();
        state.abandoned = true;
        state.outcome = None;
        state.waker = None;
    }

    /// True once completed (even if the outcome was taken since).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Takes the outcome if there is one.
    pub(crate) fn take(&self) -> Option<Outcome> {
        if !self.is_ready() {
            return None;
        }
        self.lock().outcome.take()
    }

    /// Blocks until completed or `deadline`; returns whether it completed.
    pub(crate) fn wait_ready(&self, deadline: Deadline) -> bool {
        if self.is_ready() {
            return true;
        }
        if deadline == Deadline::Now {
            return false;
        }
        if !self.no_spin && spin_until(|| self.is_ready()) {
            return true;
        }
        let mut state = self.lock();
        while !state.completed {
            state.sleeping = true;
            state = match deadline.remaining() {
                None => self.cond.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(left) if left.is_zero() => break,
                Some(left) => self.cond.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0,
            };
        }
        state.sleeping = false;
        state.completed
    }

    /// Wakes a thread in [`wait_ready_or_nudged`](Self::wait_ready_or_nudged)
    /// without completing the slot (stream transports use it to hand the
    /// reading role to a waiting caller).
    pub(crate) fn nudge(&self) {
        let sleeping = {
            let mut state = self.lock();
            state.nudged = true;
            state.sleeping
        };
        // After unlocking, as in `complete`.
        if sleeping {
            self.cond.notify_all();
        }
    }

    /// Like [`wait_ready`](Self::wait_ready), but also returns when nudged.
    pub(crate) fn wait_ready_or_nudged(&self, deadline: Deadline) -> Woken {
        if self.is_ready() {
            return Woken::Ready;
        }
        let mut state = self.lock();
        loop {
            if state.completed {
                state.sleeping = false;
                return Woken::Ready;
            }
            if std::mem::take(&mut state.nudged) {
                state.sleeping = false;
                return Woken::Nudged;
            }
            state.sleeping = true;
            state = match deadline.remaining() {
                None => self.cond.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(left) if left.is_zero() => {
                    state.sleeping = false;
                    return Woken::TimedOut;
                }
                Some(left) => self.cond.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0,
            };
        }
    }

    /// Registers `waker` to be woken at completion unless a waker is
    /// already registered (an event loop's notifier, set when the call is
    /// sent; a later `poll_ready` replaces it). Wakes it at once if the
    /// slot already completed.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut state = self.lock();
        if state.completed {
            drop(state);
            waker.wake_by_ref();
            return;
        }
        if state.waker.is_none() {
            state.waker = Some(waker.clone());
        }
    }

    /// Async form of [`wait_ready`](Self::wait_ready): registers the waker.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_ready() {
            return Poll::Ready(());
        }
        let mut state = self.lock();
        if state.completed {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn second_completion_is_ignored() {
        let slot = Slot::new();
        assert!(slot.complete(Outcome::Reply(b"a".to_vec())));
        assert!(!slot.complete(Outcome::Reply(b"b".to_vec())));
        assert!(matches!(slot.take(), Some(Outcome::Reply(v)) if v == b"a"));
        assert!(slot.take().is_none());
    }

    #[test]
    fn abandoned_slot_discards_completion() {
        let slot = Slot::new();
        slot.abandon();
        assert!(!slot.complete(Outcome::Reply(b"late".to_vec())));
        assert!(slot.take().is_none());
    }

    #[test]
    fn wait_times_out_then_sees_completion_from_another_thread() {
        // Spinning first or (`without_spin`) sleeping at once, alike.
        for slot in [Slot::new(), Slot::without_spin()] {
            let slot = Arc::new(slot);
            assert!(!slot.wait_ready(Deadline::Now));
            assert!(!slot.wait_ready(Deadline::after(Duration::from_millis(20))));
            let other = slot.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                other.complete(Outcome::NoReply)
            });
            assert!(slot.wait_ready(Deadline::Never));
            assert!(t.join().unwrap());
            assert!(matches!(slot.take(), Some(Outcome::NoReply)));
        }
    }

    #[test]
    fn nudge_wakes_a_waiter_without_completing() {
        let slot = Arc::new(Slot::new());
        assert_eq!(slot.wait_ready_or_nudged(Deadline::after(Duration::from_millis(5))), Woken::TimedOut);
        let other = slot.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.nudge();
        });
        assert_eq!(slot.wait_ready_or_nudged(Deadline::Never), Woken::Nudged);
        t.join().unwrap();
        assert!(!slot.is_ready());
        slot.complete(Outcome::NoReply);
        assert_eq!(slot.wait_ready_or_nudged(Deadline::Never), Woken::Ready);
    }
}
