//! The one-shot cell through which one call receives its outcome.
//!
//! Every transport ends a call the same way: whoever learns the outcome (the
//! server's `reply`, a reader thread, a disconnect sweep) calls
//! [`Slot::complete`], and the caller's `Pending` waits on the slot — by
//! spinning briefly, then on a condition variable, or through a `Waker`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::core::cancel::Cancel;
use crate::core::wait::{spin_until, Deadline, SpinHint, Spun};

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
    /// The server closed without taking the request: it never ran. The
    /// caller sees `Disconnected`, unless its call can go to another server
    /// (a pool's call, sent again to another member: docs/DECISIONS.md).
    NotTaken,
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

// The slot's state word. A completer claims the slot (`CLAIMED`), writes
// the outcome, then publishes it (`COMPLETE`, a Release read-modify-write);
// whoever sets `TAKEN` (the caller's `take`, or an abandon) owns the outcome
// from then on. `SLEEPING` and `WAKER` say that a completion must take the
// lock to wake someone: without them it takes none.
/// A completer owns the outcome cell until `COMPLETE`.
const CLAIMED: u32 = 1;
/// The outcome is written (set with Release after the write).
const COMPLETE: u32 = 1 << 1;
/// The outcome was taken or dropped; the cell is empty.
const TAKEN: u32 = 1 << 2;
/// The caller gave up: a completion is discarded.
const ABANDONED: u32 = 1 << 3;
/// A thread waits on `cond` (set under `waiters`, never cleared: a slot is
/// waited on by one call).
const SLEEPING: u32 = 1 << 4;
/// A waker is registered in `waiters` (set under it, never cleared).
const WAKER: u32 = 1 << 5;
/// `nudge` was called and the waiter has not seen it yet (under `waiters`).
const NUDGED: u32 = 1 << 6;

/// A one-shot outcome cell shared by a caller and whoever answers it.
///
/// Lock-free where a call passes when nobody sleeps: `complete` is one
/// compare-and-swap, a write and one `fetch_or`; `is_ready` one load;
/// `take` one compare-and-swap. The lock (`waiters`) is taken only to
/// sleep, to register a waker, to nudge, and by a completion that found a
/// sleeper or a waker to wake.
pub(crate) struct Slot {
    state: AtomicU32,
    /// Written once by the completer that set `CLAIMED`, read (taken) once
    /// by whoever set `TAKEN` after `COMPLETE`.
    outcome: UnsafeCell<Option<Outcome>>,
    /// An async caller to wake; the lock sleepers wait under.
    waiters: Mutex<Option<Waker>>,
    cond: Condvar,
    /// Sleep at once instead of spinning first ([`Slot::without_spin`]).
    no_spin: bool,
    /// Fired when the caller abandons the slot unanswered: over `mem:` the
    /// server's request watches it (its cancellation, with no message).
    cancel: Cancel,
}

// SAFETY: (1) `outcome` is the only field that is not `Sync`; it is written
// only by the one thread that won `CLAIMED`, before it publishes `COMPLETE`
// with Release, and read only by the one thread that won `TAKEN` after
// seeing `COMPLETE` with Acquire (or by `Drop`, which has `&mut`): never two
// threads at once. (2) `Outcome` is `Send`, so handing it between threads
// is sound.
unsafe impl Sync for Slot {}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("state", &self.state.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            state: AtomicU32::new(0),
            outcome: UnsafeCell::new(None),
            waiters: Mutex::new(None),
            cond: Condvar::new(),
            no_spin: false,
            cancel: Cancel::default(),
        }
    }
}

/// A client connection's reusable slot: a call takes it, reset, once
/// nobody else holds it (the previous call, its table entry and any late
/// answer are done with it), else a new one. In the usual case of one call
/// at a time that spares an allocation and a free per call (~200
/// instructions, callgrind); the spare itself is one more `Slot` per
/// connection. Kept under a lock its callers hold anyway (a client's
/// writer), so that taking it costs no lock of its own.
#[derive(Default)]
pub(crate) struct SpareSlot(Option<Arc<Slot>>);

impl SpareSlot {
    /// A fresh slot: the spare one, reset, if this is its only holder, else
    /// a new one (which becomes the spare).
    pub(crate) fn fresh(&mut self) -> Arc<Slot> {
        if let Some(slot) = self.0.as_mut().and_then(Arc::get_mut) {
            *slot = Slot::new();
        } else {
            self.0 = Some(Arc::new(Slot::new()));
        }
        self.0.clone().expect("a spare slot was just set")
    }
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

    fn lock(&self) -> MutexGuard<'_, Option<Waker>> {
        // A panic while holding this lock leaves the waker consistent (the
        // critical sections are single assignments), so poisoning is ignored.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers the outcome. Returns false (and drops it) if the slot was
    /// already completed or the caller abandoned it.
    pub(crate) fn complete(&self, outcome: Outcome) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (CLAIMED | ABANDONED) != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(state, state | CLAIMED, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        // SAFETY: (1) we set `CLAIMED`, which is set once: no other thread
        // writes the cell, and none reads it before `COMPLETE` (below).
        unsafe { *self.outcome.get() = Some(outcome) };
        let before = self.state.fetch_or(COMPLETE, Ordering::AcqRel);
        if before & ABANDONED != 0 {
            // The caller left after our claim and takes nothing: the
            // outcome is ours to drop (unless `abandon` already did).
            drop(self.take());
            return false;
        }
        if before & (SLEEPING | WAKER) != 0 {
            // Those flags are set under the lock before the waiter looks at
            // `COMPLETE` and sleeps; taking the lock here means it sleeps
            // already (or is gone), so the notification cannot be lost. It
            // is sent after unlocking: a sleeper woken while we still held
            // the lock would block on it at once.
            let waker = self.lock().take();
            if before & SLEEPING != 0 {
                self.cond.notify_all();
            }
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        true
    }

    /// The caller gives up: a later completion is discarded. Fires the
    /// slot's [`cancel`](Self::cancel) flag unless an answer was claimed.
    pub(crate) fn abandon(&self) {
        let before = self.state.fetch_or(ABANDONED, Ordering::AcqRel);
        if before & COMPLETE != 0 {
            // Completed before: drop the outcome now, not with the slot.
            drop(self.take());
        }
        if before & CLAIMED == 0 {
            self.cancel.fire();
        }
        if before & WAKER != 0 {
            drop(self.lock().take());
        }
    }

    /// The flag [`abandon`](Self::abandon) fires (see its field).
    pub(crate) fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// True once completed (even if the outcome was taken since).
    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) & COMPLETE != 0
    }

    /// Takes the outcome if there is one.
    pub(crate) fn take(&self) -> Option<Outcome> {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & COMPLETE == 0 || state & TAKEN != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(state, state | TAKEN, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        // SAFETY: (1) we set `TAKEN` (once) after `COMPLETE`, whose Release
        // our Acquire read: the completer's write is visible and done, and
        // no other thread touches the cell from now on.
        unsafe { (*self.outcome.get()).take() }
    }

    /// Blocks until completed or `deadline`; returns whether it completed.
    pub(crate) fn wait_ready(&self, deadline: Deadline) -> bool {
        self.wait_ready_for(deadline, None)
    }

    /// [`wait_ready`](Self::wait_ready), spinning first under the adaptive
    /// policy when `hint` says who completes it (`mem:`: the server thread),
    /// else with the fixed brief spin.
    pub(crate) fn wait_ready_for(&self, deadline: Deadline, hint: Option<SpinHint<'_>>) -> bool {
        if self.is_ready() {
            return true;
        }
        if deadline == Deadline::Now {
            return false;
        }
        if self.no_spin {
            return self.sleep(deadline);
        }
        let Some(hint) = hint else {
            return spin_until(|| self.is_ready()) || self.sleep(deadline);
        };
        match hint.spin_until(|| self.is_ready()) {
            Spun::Ready => true,
            Spun::NotReady(spun_since) => {
                let ready = self.sleep(deadline);
                if let Some(start) = spun_since {
                    hint.observe(start);
                }
                ready
            }
        }
    }

    /// The sleeping part of a wait.
    fn sleep(&self, deadline: Deadline) -> bool {
        let mut guard = self.lock();
        if self.state.fetch_or(SLEEPING, Ordering::AcqRel) & COMPLETE != 0 {
            return true;
        }
        loop {
            guard = match deadline.remaining() {
                None => self.cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(left) if left.is_zero() => return self.is_ready(),
                Some(left) => self.cond.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0,
            };
            if self.is_ready() {
                return true;
            }
        }
    }

    /// Wakes a thread in [`wait_ready_or_nudged`](Self::wait_ready_or_nudged)
    /// without completing the slot (stream transports use it to hand the
    /// reading role to a waiting caller).
    pub(crate) fn nudge(&self) {
        let before = {
            let _guard = self.lock();
            self.state.fetch_or(NUDGED, Ordering::AcqRel)
        };
        // After unlocking, as in `complete`.
        if before & SLEEPING != 0 {
            self.cond.notify_all();
        }
    }

    /// Like [`wait_ready`](Self::wait_ready), but also returns when nudged.
    pub(crate) fn wait_ready_or_nudged(&self, deadline: Deadline) -> Woken {
        if self.is_ready() {
            return Woken::Ready;
        }
        let mut guard = self.lock();
        loop {
            let state = self.state.fetch_or(SLEEPING, Ordering::AcqRel);
            if state & COMPLETE != 0 {
                return Woken::Ready;
            }
            if state & NUDGED != 0 {
                self.state.fetch_and(!NUDGED, Ordering::Relaxed);
                return Woken::Nudged;
            }
            guard = match deadline.remaining() {
                None => self.cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(left) if left.is_zero() => return Woken::TimedOut,
                Some(left) => self.cond.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0,
            };
        }
    }

    /// Registers `waker` to be woken at completion unless a waker is
    /// already registered (an event loop's notifier, set when the call is
    /// sent; a later `poll_ready` replaces it). Wakes it at once if the
    /// slot already completed.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut guard = self.lock();
        if guard.is_none() {
            *guard = Some(waker.clone());
        }
        if self.state.fetch_or(WAKER, Ordering::AcqRel) & COMPLETE != 0 {
            // The completion came first and saw no waker: wake it here.
            let waker = guard.take();
            drop(guard);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Async form of [`wait_ready`](Self::wait_ready): registers the waker.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_ready() {
            return Poll::Ready(());
        }
        let mut guard = self.lock();
        match &mut *guard {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        if self.state.fetch_or(WAKER, Ordering::AcqRel) & COMPLETE != 0 {
            *guard = None;
            return Poll::Ready(());
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
    fn racing_completions_and_abandons_deliver_at_most_once() {
        for round in 0..300 {
            let slot = Arc::new(Slot::new());
            let completers: Vec<_> = (0..2u8)
                .map(|i| {
                    let slot = slot.clone();
                    std::thread::spawn(move || slot.complete(Outcome::Reply(vec![i])))
                })
                .collect();
            let abandon = round % 2 == 0;
            if abandon {
                slot.abandon();
            }
            let wins = completers.into_iter().map(|t| t.join().unwrap()).filter(|&won| won).count();
            assert!(wins <= 1, "two completions were accepted");
            if abandon {
                // Completed before the abandon or refused after it: either
                // way nothing is left to take.
                assert!(slot.take().is_none());
            } else {
                assert_eq!(wins, 1);
                assert!(matches!(slot.take(), Some(Outcome::Reply(_))));
                assert!(slot.take().is_none());
            }
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
