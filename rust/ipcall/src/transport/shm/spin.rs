//! When waiting spins. Spinning pays only while the peer runs at the same
//! time on another CPU and answers sooner than a sleep and wake-up would
//! take (~45 µs across CPUs here), *and* the spinner takes no CPU that a
//! runnable thread needs — the peer above all. So an `Adaptive` waiter
//!
//! 1. never spins when the peer last ran on its own CPU (it would only
//!    delay the peer — the "spin trap") or the machine has one CPU;
//! 2. spins only in one of this process's *spin slots*: at most online
//!    CPUs − 1 threads of a process spin at once, so that at least one CPU
//!    is left for the peer however many threads wait (64 client threads on
//!    2 CPUs: one spins, the others sleep at once, and the server keeps its
//!    CPU). A waiter that finds every slot taken watches the slots for a
//!    moment ([`HANDOFF_CHECKS`], no clock) before it sleeps, because the
//!    holder is often just finishing (two threads of one process taking
//!    turns, as an in-process server and client do);
//! 3. spins for a budget that follows what recent waits saw: a wait that
//!    ended within the maximum raises the budget to cover four times it (a
//!    busy peer: keep spinning), one that outlasted the maximum (an idle
//!    peer) halves it, down to a floor.
//!
//! `WaitMode::Spin` spins always and takes no slot; `WaitMode::Block` never
//! spins.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::core::options::WaitMode;

/// Longest spin: about one cross-CPU wake-up; spinning longer cannot pay.
pub(crate) const MAX_NS: u32 = 50_000;
/// Shortest budget: what an idle peer costs per wait, at most.
pub(crate) const MIN_NS: u32 = 5_000;
/// A `Spin` waiter looks at its deadline and its peer this often.
pub(crate) const PURE_SLICE_NS: u32 = 1_000_000;
/// How many times a waiter that found every slot taken looks again.
const HANDOFF_CHECKS: u32 = 32;

/// This process's spin slots.
static SLOTS: Slots = Slots::new();

/// An adaptive spin budget, in nanoseconds.
pub(crate) struct Budget(AtomicU32);

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget(AtomicU32::new(MAX_NS / 2))
    }

    /// Learns from a whole wait (spin and any sleep) that took `waited`.
    pub(crate) fn observe(&self, waited: Duration) {
        let ns = waited.as_nanos().min(u128::from(u32::MAX)) as u32;
        let current = self.0.load(Ordering::Relaxed);
        let next = if ns <= MAX_NS { current.max(ns.saturating_mul(4)).min(MAX_NS) } else { (current / 2).max(MIN_NS) };
        if next != current {
            self.0.store(next, Ordering::Relaxed);
        }
    }
}

fn online_cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(crate::sys::shm::online_cpus)
}

/// Spin slots: how many threads spin now in an `Adaptive` wait, of at
/// most `limit`.
pub(crate) struct Slots {
    spinning: AtomicUsize,
}

impl Slots {
    pub(crate) const fn new() -> Slots {
        Slots { spinning: AtomicUsize::new(0) }
    }

    /// Takes a slot if fewer than `limit` are taken.
    fn take(&self, limit: usize) -> bool {
        let mut spinning = self.spinning.load(Ordering::Relaxed);
        loop {
            if spinning >= limit {
                return false;
            }
            match self.spinning.compare_exchange_weak(spinning, spinning + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => spinning = now,
            }
        }
    }

    /// Takes a slot, watching for one to free up a moment if none is free.
    fn take_soon(&self, limit: usize) -> bool {
        for _ in 0..HANDOFF_CHECKS {
            if self.take(limit) {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }
}

/// Permission to spin for `ns` nanoseconds (zero: sleep at once). Holds a
/// spin slot while it lives: drop it before sleeping.
pub(crate) struct Allowance {
    pub(crate) ns: u32,
    slot: Option<&'static Slots>,
}

impl Drop for Allowance {
    fn drop(&mut self) {
        if let Some(slots) = self.slot {
            slots.spinning.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How long to spin now, and the slot to do it in.
pub(crate) fn allowance(mode: WaitMode, budget: &Budget, peer_cpu: u32, my_cpu: u32) -> Allowance {
    allowance_in(&SLOTS, online_cpus(), mode, budget, peer_cpu, my_cpu)
}

/// [`allowance`] with the slots and the CPU count given.
fn allowance_in(
    slots: &'static Slots,
    cpus: usize,
    mode: WaitMode,
    budget: &Budget,
    peer_cpu: u32,
    my_cpu: u32,
) -> Allowance {
    let none = Allowance { ns: 0, slot: None };
    match mode {
        WaitMode::Block => none,
        WaitMode::Spin => Allowance { ns: PURE_SLICE_NS, slot: None },
        WaitMode::Adaptive if cpus < 2 || peer_cpu == my_cpu => none,
        // One CPU is left for the peer.
        WaitMode::Adaptive if slots.take_soon(cpus - 1) => {
            Allowance { ns: budget.0.load(Ordering::Relaxed), slot: Some(slots) }
        }
        WaitMode::Adaptive => none,
    }
}

/// Checks before the clock is first read: an answer that arrives within
/// them costs no clock read (which takes ~50 ns in a VM).
const QUICK_CHECKS: u32 = 256;

/// A short spin without reading the clock (nothing if `ns` is zero).
pub(crate) fn quick(ns: u32, mut ready: impl FnMut() -> bool) -> bool {
    if ns == 0 {
        return false;
    }
    for _ in 0..QUICK_CHECKS {
        if ready() {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

/// Spins up to `ns` nanoseconds until `ready()`; returns whether it became true.
pub(crate) fn spin_for(ns: u32, mut ready: impl FnMut() -> bool) -> bool {
    if ns == 0 {
        return ready();
    }
    if quick(ns, &mut ready) {
        return true;
    }
    let start = Instant::now();
    let limit = Duration::from_nanos(u64::from(ns));
    loop {
        for _ in 0..32 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= limit {
            return ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_waiters_spin_in_at_most_cpus_minus_one_slots() {
        static SLOTS: Slots = Slots::new();
        let budget = Budget::new();
        let adaptive = |cpus, peer| allowance_in(&SLOTS, cpus, WaitMode::Adaptive, &budget, peer, 0);
        // Three CPUs: two spinners at once, the third waiter sleeps at once.
        let first = adaptive(3, 1);
        let second = adaptive(3, 1);
        assert_eq!((first.ns, second.ns), (MAX_NS / 2, MAX_NS / 2));
        assert_eq!(adaptive(3, 1).ns, 0);
        // A slot given back is taken again.
        drop(first);
        let third = adaptive(3, 1);
        assert_eq!(third.ns, MAX_NS / 2);
        drop((second, third));
        assert_eq!(SLOTS.spinning.load(Ordering::Relaxed), 0);
        // Never with the peer on our CPU, nor on one CPU; and no slot taken.
        assert_eq!(adaptive(3, 0).ns, 0);
        assert_eq!(adaptive(1, 1).ns, 0);
        assert_eq!(SLOTS.spinning.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn spin_and_block_ignore_the_slots() {
        static SLOTS: Slots = Slots::new();
        let budget = Budget::new();
        let held: Vec<Allowance> = (0..3).map(|_| allowance_in(&SLOTS, 2, WaitMode::Spin, &budget, 1, 0)).collect();
        assert!(held.iter().all(|a| a.ns == PURE_SLICE_NS));
        assert_eq!(allowance_in(&SLOTS, 2, WaitMode::Block, &budget, 1, 0).ns, 0);
        assert_eq!(SLOTS.spinning.load(Ordering::Relaxed), 0);
        // Two CPUs: one adaptive spinner.
        let one = allowance_in(&SLOTS, 2, WaitMode::Adaptive, &budget, 1, 0);
        assert_eq!(one.ns, MAX_NS / 2);
        assert_eq!(allowance_in(&SLOTS, 2, WaitMode::Adaptive, &budget, 1, 0).ns, 0);
    }

    #[test]
    fn the_budget_grows_with_short_waits_and_halves_after_long_ones() {
        let budget = Budget::new();
        budget.observe(Duration::from_micros(20));
        assert_eq!(budget.0.load(Ordering::Relaxed), MAX_NS);
        for _ in 0..10 {
            budget.observe(Duration::from_millis(1));
        }
        assert_eq!(budget.0.load(Ordering::Relaxed), MIN_NS);
    }
}
