//! Deadlines and the brief spin that precedes every blocking wait.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::core::options::WaitMode;
use crate::core::spin::{self, Budget};

/// When a wait gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Do not wait at all.
    Now,
    /// Give up at this instant.
    At(Instant),
}

impl Deadline {
    /// `Now` for a zero timeout, else `At(now + timeout)` (saturating to `Never`).
    pub(crate) fn after(timeout: Duration) -> Deadline {
        if timeout.is_zero() {
            Deadline::Now
        } else {
            Instant::now().checked_add(timeout).map_or(Deadline::Never, Deadline::At)
        }
    }

    /// Time left, `None` for `Never`; zero once passed.
    pub(crate) fn remaining(self) -> Option<Duration> {
        match self {
            Deadline::Never => None,
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
        }
    }

    /// True once the deadline has passed (always for `Now`).
    pub(crate) fn expired(self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }
}

/// Spinning only pays when the peer can run at the same time on another CPU;
/// on one CPU it only delays the peer we wait for (yielding, which
/// [`spin_until`] does next, hands it the CPU instead). Decided once, from
/// the first caller's affinity: a process confined to one CPU spins not.
/// (A thread pinned to one CPU in a process that has more also turns it
/// off: `mem:` waits under [`SpinHint`] instead, which asks where the peer
/// runs each time.)
fn spin_rounds() -> u32 {
    static ROUNDS: AtomicUsize = AtomicUsize::new(usize::MAX);
    let cached = ROUNDS.load(Ordering::Relaxed);
    if cached != usize::MAX {
        return cached as u32;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rounds = if cpus > 1 { 7 } else { 0 };
    ROUNDS.store(rounds, Ordering::Relaxed);
    rounds as u32
}

/// Spins with exponential backoff (1, 2, 4 … 64 PAUSEs, where there is more
/// than one CPU), then yields a few times, until `ready()` is true; returns
/// whether it became true. The caller then blocks for real. This is what
/// crossbeam-channel does before parking, so a busy pair rarely pays for a
/// sleep and wake-up. On one CPU the yields matter most: a peer that is
/// runnable gets the CPU at once, one context switch, where sleeping on a
/// futex costs a wait, a wake and two more switches per hand-over.
pub(crate) fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    let rounds = spin_rounds();
    for step in 0..rounds {
        for _ in 0..(1u32 << step) {
            std::hint::spin_loop();
        }
        if ready() {
            return true;
        }
    }
    yield_until(ready)
}

/// Yields a few times until `ready()`: a peer runnable on this CPU gets it.
fn yield_until(mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..4 {
        std::thread::yield_now();
        if ready() {
            return true;
        }
    }
    ready()
}

/// What a waiter knows of the thread it waits for, to decide whether to
/// spin: the CPU that thread last ran on (it publishes it) and the spin
/// budget learnt from the recent waits of this kind.
#[derive(Clone, Copy)]
pub(crate) struct SpinHint<'a> {
    pub(crate) peer_cpu: &'a AtomicU32,
    pub(crate) budget: &'a Budget,
}

/// How a [`SpinHint::spin_until`] ended.
pub(crate) enum Spun {
    /// `ready()` became true.
    Ready,
    /// Not yet: the caller sleeps, then reports the whole wait with
    /// [`SpinHint::observe`] if it spun (`Some(start)`). A wait that was
    /// not allowed to spin reads no clock and teaches the budget nothing.
    NotReady(Option<Instant>),
}

impl SpinHint<'_> {
    /// [`spin_until`] under the adaptive policy of [`spin`]: spins only
    /// while the peer last ran on another CPU and a spin slot of this
    /// process is free (so N waiters on fewer CPUs sleep instead of taking
    /// the peer's CPU), for the learnt budget; then yields a few times.
    pub(crate) fn spin_until(self, mut ready: impl FnMut() -> bool) -> Spun {
        let cpu = crate::sys::shm::current_cpu();
        let allowed = spin::allowance(WaitMode::Adaptive, self.budget, self.peer_cpu.load(Ordering::Relaxed), cpu);
        let start = (allowed.ns > 0).then(Instant::now);
        if spin::spin_for(allowed.ns, &mut ready) {
            if let Some(start) = start {
                self.observe(start);
            }
            return Spun::Ready;
        }
        drop(allowed);
        if yield_until(ready) {
            return Spun::Ready;
        }
        Spun::NotReady(start)
    }

    /// Learns from a whole wait (spin and any sleep) that began at `start`.
    pub(crate) fn observe(self, start: Instant) {
        self.budget.observe(start.elapsed());
    }
}

/// Publishes the calling thread's CPU in `cell`, for a [`SpinHint`] of
/// whoever waits for this thread.
pub(crate) fn publish_cpu(cell: &AtomicU32) {
    let cpu = crate::sys::shm::current_cpu();
    if cell.load(Ordering::Relaxed) != cpu {
        cell.store(cpu, Ordering::Relaxed);
    }
}

/// Waits on `cond` (with `guard` held between checks) until `check` returns
/// `Some`, or the deadline passes (`None`). Poisoning is ignored: every
/// state guarded this way stays consistent under a panic.
pub(crate) fn wait_until<S, T>(
    mut guard: std::sync::MutexGuard<'_, S>,
    cond: &std::sync::Condvar,
    deadline: Deadline,
    mut check: impl FnMut(&S) -> Option<T>,
) -> Option<T> {
    loop {
        if let Some(done) = check(&guard) {
            return Some(done);
        }
        guard = match deadline.remaining() {
            None => cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(left) if left.is_zero() => return None,
            Some(left) => cond.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0,
        };
    }
}

/// Locks `m`, ignoring poison: every state guarded in the core stays
/// consistent under a panic (each critical section leaves it whole).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks `m` if no other thread holds it, ignoring poison as [`lock`] does.
pub(crate) fn try_lock<T>(m: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The instant a system wait gives up (`None`: never), for `sys`, which
/// knows no `Deadline`.
impl From<Deadline> for Option<Instant> {
    fn from(deadline: Deadline) -> Option<Instant> {
        match deadline {
            Deadline::Never => None,
            Deadline::Now => Some(Instant::now()),
            Deadline::At(at) => Some(at),
        }
    }
}
