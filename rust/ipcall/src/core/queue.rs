//! A multi-producer request queue with blocking, timed, non-blocking and
//! async pops, a pollable descriptor, and "no more producers" detection.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use std::time::Instant;

use crate::core::spin::Budget;
use crate::core::wait::{publish_cpu, wait_until, Deadline, SpinHint};
use crate::sys::EventFd;

/// Why a pop returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PopError {
    /// The deadline passed with the queue empty.
    Timeout,
    /// Empty, and no item can ever arrive.
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    /// `close` was called: pushes fail, pops drain nothing more.
    closed: bool,
    /// Live producers (connected clients).
    producers: usize,
    /// New producers may still appear (a named, not yet used endpoint).
    open_to_new: bool,
    /// Threads sleeping on `cond`.
    sleepers: usize,
    /// Async consumers to wake.
    wakers: Vec<Waker>,
}

impl<T> State<T> {
    /// No item can ever arrive again.
    fn finished(&self) -> bool {
        self.closed || (!self.open_to_new && self.producers == 0)
    }
}

/// The sleeping threads to wake after a state change, learnt under the lock.
#[must_use = "wake them with `run` once the lock is released"]
struct Wake {
    /// Threads sleep on the condition variable.
    sleepers: bool,
}

impl Wake {
    fn run(self, cond: &Condvar) {
        // A sleeper cannot miss it: it checks the state under the lock
        // before it sleeps, and the change was made under the lock.
        if self.sleepers {
            cond.notify_all();
        }
    }
}

/// The queue. Invariant: once `armed`, `event` is readable exactly when an
/// item is queued or the queue is finished (kept in step under the lock).
pub(crate) struct Queue<T> {
    /// `items.len()`, readable without the lock for spinning.
    len: AtomicUsize,
    state: Mutex<State<T>>,
    cond: Condvar,
    event: EventFd,
    /// Someone asked for the descriptor; only then is it kept in step, so a
    /// pair that never polls makes no system calls per message.
    armed: AtomicBool,
    /// Spin before sleeping in `pop` ([`Queue::without_spin`] turns it off).
    spin: bool,
    /// The CPU the latest producer pushed from and the latest consumer
    /// popped on (kept only when `spin`): what a consumer's or a caller's
    /// spin asks ([`SpinHint`]).
    producer_cpu: AtomicU32,
    consumer_cpu: AtomicU32,
    /// The spin budget of `pop`'s waits.
    budget: Budget,
}

impl<T> Queue<T> {
    pub(crate) fn new() -> io::Result<Queue<T>> {
        Ok(Queue {
            len: AtomicUsize::new(0),
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                producers: 0,
                open_to_new: true,
                sleepers: 0,
                wakers: Vec::new(),
            }),
            cond: Condvar::new(),
            event: EventFd::new()?,
            armed: AtomicBool::new(false),
            spin: true,
            producer_cpu: AtomicU32::new(u32::MAX),
            consumer_cpu: AtomicU32::new(u32::MAX),
            budget: Budget::new(),
        })
    }

    /// A queue whose `pop` sleeps at once: for items that come over the
    /// network (`nats:`), far later than any spin lasts, so spinning and its
    /// closing yields would only take the CPU from the thread that feeds it.
    // Only `nats:` uses it.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn without_spin() -> io::Result<Queue<T>> {
        Ok(Queue { spin: false, ..Queue::new()? })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Critical sections never leave the state half-updated, so a poisoned
        // lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the descriptor in step after a state change made under
    /// `state`, wakes async waiters, and says whether threads sleep;
    /// [`Wake::run`] wakes those once the lock is released (a thread woken
    /// while we still hold it would block on it at once).
    fn wake(&self, state: &mut State<T>) -> Wake {
        if self.armed.load(Ordering::Relaxed) {
            if state.items.is_empty() && !state.finished() {
                self.event.clear();
            } else {
                self.event.set();
            }
        }
        // Async waiters are woken here: waking schedules a task, and
        // draining keeps the list's allocation for the next registration.
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
        Wake { sleepers: state.sleepers > 0 }
    }

    /// Registers a producer; fails if the queue is finished or closed to new ones.
    pub(crate) fn add_producer(&self) -> bool {
        let mut state = self.lock();
        if state.finished() || !state.open_to_new {
            return false;
        }
        state.producers += 1;
        if state.sleepers > 0 {
            // `wait_for_producer` sleeps on the same condition variable.
            self.cond.notify_all();
        }
        true
    }

    /// A producer went away.
    pub(crate) fn remove_producer(&self) {
        let mut state = self.lock();
        state.producers = state.producers.saturating_sub(1);
        if state.finished() {
            let wake = self.wake(&mut state);
            drop(state);
            wake.run(&self.cond);
        }
    }

    /// No new producers from now on (a one-shot server got its client).
    pub(crate) fn close_to_new(&self) {
        let mut state = self.lock();
        state.open_to_new = false;
        if state.finished() {
            let wake = self.wake(&mut state);
            drop(state);
            wake.run(&self.cond);
        }
    }

    /// Appends an item; gives it back if the queue is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        if self.spin {
            publish_cpu(&self.producer_cpu);
        }
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        self.len.store(state.items.len(), Ordering::Release);
        if state.items.len() == 1 || state.sleepers > 0 || !state.wakers.is_empty() {
            let wake = self.wake(&mut state);
            drop(state);
            wake.run(&self.cond);
        }
        Ok(())
    }

    fn pop_locked(&self, state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        self.len.store(state.items.len(), Ordering::Release);
        if state.items.is_empty() && self.armed.load(Ordering::Relaxed) && !state.finished() {
            self.event.clear();
        }
        Some(item)
    }

    /// Takes the oldest item, waiting until `deadline`.
    pub(crate) fn pop(&self, deadline: Deadline) -> Result<T, PopError> {
        let mut start = None;
        if self.spin && deadline != Deadline::Now {
            publish_cpu(&self.consumer_cpu);
            if self.len.load(Ordering::Acquire) == 0 {
                start = Some(Instant::now());
                let hint = SpinHint { peer_cpu: &self.producer_cpu, budget: &self.budget };
                if hint.spin_until(|| self.len.load(Ordering::Acquire) != 0) {
                    hint.observe(start.take().expect("set above"));
                }
            }
        }
        let popped = self.pop_or_sleep(deadline);
        if let Some(start) = start {
            SpinHint { peer_cpu: &self.producer_cpu, budget: &self.budget }.observe(start);
        }
        popped
    }

    /// The locked part of `pop`: takes an item or sleeps for one.
    fn pop_or_sleep(&self, deadline: Deadline) -> Result<T, PopError> {
        let mut state = self.lock();
        loop {
            if let Some(item) = self.pop_locked(&mut state) {
                return Ok(item);
            }
            if state.finished() {
                return Err(PopError::Closed);
            }
            state.sleepers += 1;
            let timed_out;
            (state, timed_out) = match deadline.remaining() {
                None => (self.cond.wait(state).unwrap_or_else(|e| e.into_inner()), false),
                Some(left) if left.is_zero() => (state, true),
                Some(left) => {
                    let (s, r) = self.cond.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner());
                    (s, r.timed_out())
                }
            };
            state.sleepers -= 1;
            if timed_out {
                return match self.pop_locked(&mut state) {
                    Some(item) => Ok(item),
                    None if state.finished() => Err(PopError::Closed),
                    None => Err(PopError::Timeout),
                };
            }
        }
    }

    /// Async pop: registers the waker when empty.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Result<T, PopError>> {
        let mut state = self.lock();
        if let Some(item) = self.pop_locked(&mut state) {
            return Poll::Ready(Ok(item));
        }
        if state.finished() {
            return Poll::Ready(Err(PopError::Closed));
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Blocks until at least one producer is registered, or the queue is
    /// finished (`Closed`), or the deadline passes (`Timeout`).
    pub(crate) fn wait_for_producer(&self, deadline: Deadline) -> Result<(), PopError> {
        // `sleepers` counts this waiter so that `add_producer` notifies it.
        let mut state = self.lock();
        state.sleepers += 1;
        let outcome = wait_until(state, &self.cond, deadline, |state| {
            if state.producers > 0 || !state.items.is_empty() {
                Some(Ok(()))
            } else if state.finished() {
                Some(Err(PopError::Closed))
            } else {
                None
            }
        });
        self.lock().sleepers -= 1;
        outcome.unwrap_or(Err(PopError::Timeout))
    }

    /// Closes the queue and returns what was still in it.
    pub(crate) fn close(&self) -> VecDeque<T> {
        let mut state = self.lock();
        state.closed = true;
        let items = std::mem::take(&mut state.items);
        self.len.store(0, Ordering::Release);
        let wake = self.wake(&mut state);
        drop(state);
        wake.run(&self.cond);
        items
    }

    /// What a caller waiting for a consumer's answer knows of that
    /// consumer, to decide whether to spin: the CPU it last popped on.
    pub(crate) fn consumer_cpu(&self) -> &AtomicU32 {
        &self.consumer_cpu
    }

    /// The pollable descriptor; from the first call on it is kept readable
    /// exactly while an item is queued or the queue is finished.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        if !self.armed.swap(true, Ordering::AcqRel) {
            let mut state = self.lock();
            let wake = self.wake(&mut state);
            drop(state);
            wake.run(&self.cond);
        }
        self.event.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn pop_waits_alike_with_or_without_the_spin() {
        for queue in [Queue::new().unwrap(), Queue::without_spin().unwrap()] {
            let queue = Arc::new(queue);
            assert!(queue.add_producer());
            assert_eq!(queue.pop(Deadline::after(Duration::from_millis(10))).unwrap_err(), PopError::Timeout);
            let other = queue.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                other.push(7u8).is_ok()
            });
            assert_eq!(queue.pop(Deadline::Never).unwrap(), 7);
            assert!(t.join().unwrap());
            queue.close();
            assert_eq!(queue.pop(Deadline::Never).unwrap_err(), PopError::Closed);
        }
    }
}
