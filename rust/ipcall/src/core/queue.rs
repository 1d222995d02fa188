//! A multi-producer request queue with blocking, timed, non-blocking and
//! async pops, a pollable descriptor, and "no more producers" detection.
//!
//! Lock-free where a call passes: an item goes through a bounded lock-free
//! ring ([`Ring`]), and a push or a pop takes the lock only to wake a
//! sleeping or async consumer, to keep an armed descriptor in step, to
//! spill into (and drain) the overflow list while the ring is full, and to
//! sleep. A push and a sleeper meet through one SeqCst fence each: the
//! push publishes its item, fences, then looks for watchers; the sleeper
//! counts itself a watcher, fences, then looks for items; so at least one
//! of them sees the other (never a lost wake-up). `close` and the first
//! `fd()` meet pushes the same way.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::core::mpmc::Ring;
use crate::core::spin::Budget;
use crate::core::wait::{publish_cpu, wait_until, Deadline, SpinHint, Spun};
use crate::sys::EventFd;

/// Cells of the lock-free ring; more items in flight spill into the list.
const RING_CELLS: usize = 64;

/// Why a pop returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PopError {
    /// The deadline passed with the queue empty.
    Timeout,
    /// Empty, and no item can ever arrive.
    Closed,
}

struct State<T> {
    /// Items pushed while the ring was full, or while this list was not
    /// empty (so that they stay behind it): the ring's items come first.
    overflow: VecDeque<T>,
    /// Live producers (connected clients).
    producers: usize,
    /// New producers may still appear (a named, not yet used endpoint).
    open_to_new: bool,
    /// Threads sleeping on `cond`.
    sleepers: usize,
    /// Async consumers to wake.
    wakers: Vec<Waker>,
    /// `event` is readable as far as we made it (armed only): a push into
    /// a queue already readable writes nothing.
    readable: bool,
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
        // before it sleeps, and the change was made under the lock (or,
        // for a lock-free push, seen through the fences described above).
        if self.sleepers {
            cond.notify_all();
        }
    }
}

/// The queue. Invariant: once `armed`, `event` is readable exactly when an
/// item is queued or the queue is finished (kept in step under the lock;
/// a lock-free push or pop that sees `armed` takes the lock to do so).
pub(crate) struct Queue<T> {
    ring: Ring<T>,
    state: Mutex<State<T>>,
    cond: Condvar,
    event: EventFd,
    /// Someone asked for the descriptor; only then is it kept in step, so a
    /// pair that never polls makes no system calls per message.
    armed: AtomicBool,
    /// `close` was called: pushes fail, pops drain nothing more (set under
    /// the lock).
    closed: AtomicBool,
    /// `overflow` is not empty (set and cleared under the lock).
    spilled: AtomicBool,
    /// Sleeping threads plus registered async waiters (kept under the
    /// lock): a lock-free push that sees none takes no lock.
    watchers: AtomicUsize,
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
            ring: Ring::new(RING_CELLS),
            state: Mutex::new(State {
                overflow: VecDeque::new(),
                producers: 0,
                open_to_new: true,
                sleepers: 0,
                wakers: Vec::new(),
                readable: false,
            }),
            cond: Condvar::new(),
            event: EventFd::new()?,
            armed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            spilled: AtomicBool::new(false),
            watchers: AtomicUsize::new(0),
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

    /// No item can ever arrive again (read under the lock).
    fn finished(&self, state: &State<T>) -> bool {
        self.closed.load(Ordering::Relaxed) || (!state.open_to_new && state.producers == 0)
    }

    /// Something is queued (a hint without the lock; exact under it, but
    /// for a push still writing its item, which then takes the lock).
    fn has_items(&self) -> bool {
        self.ring.has_items() || self.spilled.load(Ordering::Acquire)
    }

    /// Publishes the watcher count after a change under the lock; the
    /// caller fences before it looks for items again.
    fn watch(&self, state: &State<T>) {
        self.watchers.store(state.sleepers + state.wakers.len(), Ordering::Relaxed);
    }

    /// Makes the armed descriptor unreadable (under the lock).
    fn clear_event(&self, state: &mut State<T>) {
        if state.readable {
            state.readable = false;
            self.event.clear();
        }
    }

    /// Brings the descriptor in step after a state change made under
    /// `state`, wakes async waiters, and says whether threads sleep;
    /// [`Wake::run`] wakes those once the lock is released (a thread woken
    /// while we still hold it would block on it at once).
    fn wake(&self, state: &mut State<T>) -> Wake {
        if self.armed.load(Ordering::Relaxed) {
            if !self.ring.has_items() && state.overflow.is_empty() && !self.finished(state) {
                self.clear_event(state);
            } else if !state.readable {
                state.readable = true;
                self.event.set();
            }
        }
        // Async waiters are woken here: waking schedules a task, and
        // draining keeps the list's allocation for the next registration.
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
        self.watch(state);
        Wake { sleepers: state.sleepers > 0 }
    }

    /// Registers a producer; fails if the queue is finished or closed to new ones.
    pub(crate) fn add_producer(&self) -> bool {
        let mut state = self.lock();
        if self.finished(&state) || !state.open_to_new {
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
        if self.finished(&state) {
            let wake = self.wake(&mut state);
            drop(state);
            wake.run(&self.cond);
        }
    }

    /// No new producers from now on (a one-shot server got its client).
    pub(crate) fn close_to_new(&self) {
        let mut state = self.lock();
        state.open_to_new = false;
        if self.finished(&state) {
            let wake = self.wake(&mut state);
            drop(state);
            wake.run(&self.cond);
        }
    }

    /// Appends an item; gives it back if the queue is closed. (An item
    /// pushed while `close` runs may instead be dropped with those `close`
    /// drained, as if it had been queued just before.)
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        if self.spin {
            publish_cpu(&self.producer_cpu);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(item);
        }
        let item = if self.spilled.load(Ordering::Acquire) {
            item
        } else {
            match self.ring.push(item) {
                Ok(()) => {
                    self.after_lock_free_push();
                    return Ok(());
                }
                Err(back) => back,
            }
        };
        // The ring is full, or items wait in the overflow list.
        let mut state = self.lock();
        if self.closed.load(Ordering::Relaxed) {
            return Err(item);
        }
        if self.spilled.load(Ordering::Relaxed) {
            state.overflow.push_back(item);
        } else if let Err(item) = self.ring.push(item) {
            state.overflow.push_back(item);
            self.spilled.store(true, Ordering::Release);
        }
        if self.armed.load(Ordering::Relaxed) || state.sleepers > 0 || !state.wakers.is_empty() {
            let wake = self.wake(&mut state);
            drop(state);
            wake.run(&self.cond);
        }
        Ok(())
    }

    /// After an item went into the ring without the lock: wakes whoever
    /// watches, keeps an armed descriptor in step, and drops what a racing
    /// `close` left behind.
    fn after_lock_free_push(&self) {
        // Pairs with the fence of a sleeper (`pop`), of `close` and of the
        // first `fd()`: either they see the item, or we see them.
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::Relaxed) {
            let left = self.drain(&mut self.lock());
            drop(left);
            return;
        }
        if self.armed.load(Ordering::Relaxed) || self.watchers.load(Ordering::Relaxed) > 0 {
            let wake = self.wake(&mut self.lock());
            wake.run(&self.cond);
        }
    }

    /// Takes every queued item (under the lock).
    fn drain(&self, state: &mut State<T>) -> VecDeque<T> {
        let mut items = VecDeque::new();
        while let Some(item) = self.ring.pop() {
            items.push_back(item);
        }
        items.append(&mut state.overflow);
        self.spilled.store(false, Ordering::Relaxed);
        items
    }

    /// Takes the oldest item without the lock, if the ring has one (the
    /// lock only for a spilled queue or an armed descriptor).
    fn try_pop(&self) -> Option<T> {
        let item = self.ring.pop();
        if item.is_none() && !self.spilled.load(Ordering::Acquire) {
            return None;
        }
        if item.is_some() {
            // Pairs with the fence of the first `fd()`.
            fence(Ordering::SeqCst);
            if !self.armed.load(Ordering::Relaxed) {
                return item;
            }
        }
        let mut state = self.lock();
        match item {
            // Armed: bring the descriptor in step.
            Some(item) => {
                if !self.ring.has_items() && state.overflow.is_empty() && !self.finished(&state) {
                    self.clear_event(&mut state);
                }
                Some(item)
            }
            None => self.pop_locked(&mut state),
        }
    }

    fn pop_locked(&self, state: &mut State<T>) -> Option<T> {
        let item = match self.ring.pop() {
            Some(item) => item,
            None => {
                let item = state.overflow.pop_front()?;
                if state.overflow.is_empty() {
                    self.spilled.store(false, Ordering::Relaxed);
                }
                item
            }
        };
        if self.armed.load(Ordering::Relaxed)
            && !self.ring.has_items()
            && state.overflow.is_empty()
            && !self.finished(state)
        {
            self.clear_event(state);
        }
        Some(item)
    }

    /// Takes the oldest item, waiting until `deadline`.
    pub(crate) fn pop(&self, deadline: Deadline) -> Result<T, PopError> {
        let mut spun_since = None;
        if self.spin && deadline != Deadline::Now {
            publish_cpu(&self.consumer_cpu);
            if !self.has_items() {
                let hint = SpinHint { peer_cpu: &self.producer_cpu, budget: &self.budget };
                if let Spun::NotReady(start) = hint.spin_until(|| self.has_items()) {
                    spun_since = start;
                }
            }
        }
        let popped = match self.try_pop() {
            Some(item) => Ok(item),
            None => self.pop_or_sleep(deadline),
        };
        if let Some(start) = spun_since {
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
            if self.finished(&state) {
                return Err(PopError::Closed);
            }
            if deadline == Deadline::Now {
                return Err(PopError::Timeout);
            }
            state.sleepers += 1;
            self.watch(&state);
            // Pairs with the fence of a lock-free push: either it sees us
            // watching, or we see its item here.
            fence(Ordering::SeqCst);
            let timed_out;
            if self.ring.has_items() {
                timed_out = false;
            } else {
                (state, timed_out) = match deadline.remaining() {
                    None => (self.cond.wait(state).unwrap_or_else(|e| e.into_inner()), false),
                    Some(left) if left.is_zero() => (state, true),
                    Some(left) => {
                        let (s, r) = self.cond.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner());
                        (s, r.timed_out())
                    }
                };
            }
            state.sleepers -= 1;
            self.watch(&state);
            if timed_out {
                return match self.pop_locked(&mut state) {
                    Some(item) => Ok(item),
                    None if self.finished(&state) => Err(PopError::Closed),
                    None => Err(PopError::Timeout),
                };
            }
        }
    }

    /// Async pop: registers the waker when empty.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Result<T, PopError>> {
        if let Some(item) = self.try_pop() {
            return Poll::Ready(Ok(item));
        }
        let mut state = self.lock();
        if let Some(item) = self.pop_locked(&mut state) {
            return Poll::Ready(Ok(item));
        }
        if self.finished(&state) {
            return Poll::Ready(Err(PopError::Closed));
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
            self.watch(&state);
        }
        // As a sleeper does: a lock-free push sees the waker, or we its item.
        fence(Ordering::SeqCst);
        match self.pop_locked(&mut state) {
            Some(item) => Poll::Ready(Ok(item)),
            None => Poll::Pending,
        }
    }

    /// Blocks until at least one producer is registered, or the queue is
    /// finished (`Closed`), or the deadline passes (`Timeout`).
    pub(crate) fn wait_for_producer(&self, deadline: Deadline) -> Result<(), PopError> {
        // `sleepers` counts this waiter so that `add_producer` and pushes
        // notify it.
        let mut state = self.lock();
        state.sleepers += 1;
        self.watch(&state);
        fence(Ordering::SeqCst);
        let outcome = wait_until(state, &self.cond, deadline, |state| {
            if state.producers > 0 || self.ring.has_items() || !state.overflow.is_empty() {
                Some(Ok(()))
            } else if self.finished(state) {
                Some(Err(PopError::Closed))
            } else {
                None
            }
        });
        let mut state = self.lock();
        state.sleepers -= 1;
        self.watch(&state);
        outcome.unwrap_or(Err(PopError::Timeout))
    }

    /// True once `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the queue and returns what was still in it.
    pub(crate) fn close(&self) -> VecDeque<T> {
        let mut state = self.lock();
        self.closed.store(true, Ordering::Relaxed);
        // Pairs with the fence of a lock-free push: either we drain its
        // item here, or it sees `closed` and drains it itself.
        fence(Ordering::SeqCst);
        let items = self.drain(&mut state);
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
            // Pairs with the fence of a lock-free push or pop: either it
            // sees `armed`, or the state read below includes it.
            fence(Ordering::SeqCst);
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

    fn readable(queue: &Queue<u32>) -> bool {
        crate::sys::poll::wait_fd(queue.fd(), libc::POLLIN, Some(std::time::Instant::now())).unwrap() != 0
    }

    #[test]
    fn items_past_the_ring_spill_and_come_out_in_order_with_the_fd_in_step() {
        let queue = Queue::new().unwrap();
        assert!(queue.add_producer());
        assert!(!readable(&queue));
        let n = RING_CELLS as u32 * 3;
        for i in 0..n {
            queue.push(i).unwrap();
            if i == 10 {
                assert!(readable(&queue));
            }
        }
        assert!(queue.spilled.load(Ordering::Relaxed));
        for i in 0..n {
            assert!(readable(&queue), "readable while item {i} is queued");
            assert_eq!(queue.pop(Deadline::Now).unwrap(), i);
        }
        assert!(!readable(&queue));
        assert!(!queue.spilled.load(Ordering::Relaxed));
        assert_eq!(queue.pop(Deadline::Now).unwrap_err(), PopError::Timeout);
        // Closing returns what is left, ring and overflow, in order.
        for i in 0..RING_CELLS as u32 + 5 {
            queue.push(i).unwrap();
        }
        let left: Vec<u32> = queue.close().into_iter().collect();
        assert_eq!(left, (0..RING_CELLS as u32 + 5).collect::<Vec<_>>());
        assert_eq!(queue.push(7).unwrap_err(), 7);
        assert_eq!(queue.pop(Deadline::Now).unwrap_err(), PopError::Closed);
        assert!(readable(&queue), "a finished queue is readable");
    }

    #[test]
    fn producers_and_sleeping_consumers_lose_nothing() {
        let queue = Arc::new(Queue::new().unwrap());
        assert!(queue.add_producer());
        let per = 2_000u32;
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(v) = queue.pop(Deadline::after(Duration::from_secs(30))) {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        queue.push(p * per + i).unwrap();
                        if i % 64 == 0 {
                            // Let the consumers fall asleep now and then.
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                })
            })
            .collect();
        producers.into_iter().for_each(|t| t.join().unwrap());
        // Every item taken: then the producer leaves and the consumers see `Closed`.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while queue.has_items() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        queue.remove_producer();
        queue.close_to_new();
        let mut all: Vec<u32> = consumers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..per * 2).collect::<Vec<_>>());
    }

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
