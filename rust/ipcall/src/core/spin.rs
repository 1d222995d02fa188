//! When waiting spins. Spinning pays only while the peer runs at the same
//! time on another CPU and answers sooner than a sleep and wake-up would
//! take (~45 µs across CPUs here), *and* the spinner takes no CPU that a
//! runnable thread needs — the peer above all. So an `Adaptive` waiter
//!
//! 1. never spins when the peer last ran on its own CPU (it would only
//!    delay the peer — the "spin trap") or the machine has one CPU;
//! 2. spins only in one of this process's *spin slots*: threads of a
//!    process spin on at most online CPUs − 1 CPUs at once, so that at
//!    least one CPU is left for the peer however many threads wait (64
//!    client threads on 2 CPUs: while one spins on CPU 0, those that run on
//!    CPU 1 sleep at once, and the server keeps CPU 1). Spinners registered
//!    on the waiter's own CPU do not count: the waiter runs there, so they
//!    are preempted — they use no CPU, and their answer waits for them
//!    without a wake-up (threads that share one CPU away from the peer keep
//!    spinning in turns, the cheapest way for them). A waiter that finds
//!    every slot taken watches the slots for a moment ([`HANDOFF_CHECKS`],
//!    no clock) before it sleeps, because the holder is often just
//!    finishing (two threads of one process taking turns, as an in-process
//!    server and client do);
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

/// The spin budget of an event loop's brief spin (`progress_spin`,
/// `try_recv_spin`). Unlike [`Budget`], which learns from whole waits, an
/// event loop only sees its spin: one that ended with an answer after
/// `waited` raises the budget to cover four times it; one that failed
/// halves it, and below [`MIN_NS`] drops it to zero, so that a slow or idle
/// peer soon costs nothing. At zero, one spin in [`PROBE_EVERY`] probes
/// with [`MIN_NS`], so that a peer that became fast is found again.
pub(crate) struct EventBudget {
    ns: AtomicU32,
    /// Spins skipped at zero since the last probe.
    skipped: AtomicU32,
}

/// At a zero budget, one spin in this many probes with [`MIN_NS`].
pub(crate) const PROBE_EVERY: u32 = 32;

impl EventBudget {
    pub(crate) fn new() -> EventBudget {
        EventBudget { ns: AtomicU32::new(MAX_NS / 2), skipped: AtomicU32::new(0) }
    }

    /// How long the next spin may last (zero: do not spin).
    pub(crate) fn next(&self) -> u32 {
        let ns = self.ns.load(Ordering::Relaxed);
        if ns != 0 {
            return ns;
        }
        let skipped = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        if skipped >= PROBE_EVERY {
            self.skipped.store(0, Ordering::Relaxed);
            MIN_NS
        } else {
            0
        }
    }

    /// A spin ended with an answer after `waited`.
    pub(crate) fn succeeded(&self, waited: Duration) {
        let ns = waited.as_nanos().min(u128::from(MAX_NS)) as u32;
        let current = self.ns.load(Ordering::Relaxed);
        self.ns.store(current.max(ns.saturating_mul(4)).clamp(MIN_NS, MAX_NS), Ordering::Relaxed);
    }

    /// A spin ended without an answer.
    pub(crate) fn failed(&self) {
        let half = self.ns.load(Ordering::Relaxed) / 2;
        self.ns.store(if half < MIN_NS { 0 } else { half }, Ordering::Relaxed);
    }
}

/// An event loop's brief spin: under `mode`'s policy (the peer on another
/// CPU, a spin slot, `budget`) spins until `ready()` or the budget ends,
/// and learns from the outcome. Returns whether `ready()` became true;
/// `false` at once if the policy says not to spin. Never sleeps.
pub(crate) fn spin_evented(
    mode: WaitMode,
    budget: &EventBudget,
    peer_cpu: u32,
    my_cpu: u32,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let ns = match mode {
        WaitMode::Block => return false,
        // A `Spin` waiter's event loop still returns to its loop: one budget.
        WaitMode::Spin => MAX_NS,
        WaitMode::Adaptive => budget.next(),
    };
    if ns == 0 {
        return false;
    }
    // The slot and the CPUs as for a blocking wait; the length is ours.
    let allowed = allowance(mode, &Budget::new(), peer_cpu, my_cpu);
    if allowed.ns == 0 {
        return false;
    }
    let start = Instant::now();
    let got = spin_for(ns, &mut ready);
    drop(allowed);
    if mode == WaitMode::Adaptive {
        if got {
            budget.succeeded(start.elapsed());
        } else {
            budget.failed();
        }
    }
    got
}

fn online_cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(crate::sys::shm::online_cpus)
}

/// Per-CPU counters kept (CPU numbers above wrap around).
const CPU_COUNTERS: usize = 64;

/// Spin slots: how many threads spin now in an `Adaptive` wait, in all
/// and by the CPU they started spinning on.
pub(crate) struct Slots {
    total: AtomicUsize,
    on_cpu: [AtomicUsize; CPU_COUNTERS],
}

impl Slots {
    pub(crate) const fn new() -> Slots {
        Slots { total: AtomicUsize::new(0), on_cpu: [const { AtomicUsize::new(0) }; CPU_COUNTERS] }
    }

    /// Takes a slot on `cpu` if fewer than `limit` threads spin on other
    /// CPUs. Spinners registered on our own CPU do not count: we run there
    /// now, so they are preempted (they use no CPU, and their answer waits
    /// for them without a wake-up). A heuristic: two threads may both see a
    /// free slot and both spin, and a spinner may migrate.
    fn take(&self, limit: usize, cpu: usize) -> bool {
        let mine = &self.on_cpu[cpu % CPU_COUNTERS];
        let others = self.total.load(Ordering::Relaxed).saturating_sub(mine.load(Ordering::Relaxed));
        if others >= limit {
            return false;
        }
        mine.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Takes a slot, watching for one to free up a moment if none is free.
    fn take_soon(&self, limit: usize, cpu: usize) -> bool {
        for _ in 0..HANDOFF_CHECKS {
            if self.take(limit, cpu) {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    fn give_back(&self, cpu: usize) {
        self.on_cpu[cpu % CPU_COUNTERS].fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Permission to spin for `ns` nanoseconds (zero: sleep at once). Holds a
/// spin slot (with the CPU it was taken on) while it lives: drop it before
/// sleeping.
pub(crate) struct Allowance {
    pub(crate) ns: u32,
    slot: Option<(&'static Slots, usize)>,
}

impl Drop for Allowance {
    fn drop(&mut self) {
        if let Some((slots, cpu)) = self.slot {
            slots.give_back(cpu);
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
        WaitMode::Adaptive if slots.take_soon(cpus - 1, my_cpu as usize) => {
            Allowance { ns: budget.0.load(Ordering::Relaxed), slot: Some((slots, my_cpu as usize)) }
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
    fn adaptive_waiters_spin_on_at_most_cpus_minus_one_other_cpus() {
        static SLOTS: Slots = Slots::new();
        let budget = Budget::new();
        // (CPUs online, the peer's CPU, ours)
        let adaptive = |cpus, peer, mine| allowance_in(&SLOTS, cpus, WaitMode::Adaptive, &budget, peer, mine);
        let spins = MAX_NS / 2;
        // Two CPUs: one spinning on CPU 0 leaves none for CPU 1...
        let first = adaptive(2, 7, 0);
        assert_eq!(first.ns, spins);
        assert_eq!(adaptive(2, 7, 1).ns, 0);
        // ...but another waiter on CPU 0 runs there, so the first one is
        // preempted: it may spin.
        let second = adaptive(2, 7, 0);
        assert_eq!(second.ns, spins);
        assert_eq!(SLOTS.total.load(Ordering::Relaxed), 2);
        // Slots given back are taken again.
        drop((first, second));
        let third = adaptive(2, 7, 1);
        assert_eq!(third.ns, spins);
        // Three CPUs: spinners on two other CPUs fill the slots.
        let fourth = adaptive(3, 7, 2);
        assert_eq!(fourth.ns, spins);
        assert_eq!(adaptive(3, 7, 0).ns, 0);
        drop((third, fourth));
        assert_eq!(SLOTS.total.load(Ordering::Relaxed), 0);
        // Never with the peer on our CPU, nor on one CPU; and no slot taken.
        assert_eq!(adaptive(3, 0, 0).ns, 0);
        assert_eq!(adaptive(1, 1, 0).ns, 0);
        assert_eq!(SLOTS.total.load(Ordering::Relaxed), 0);
        assert!(SLOTS.on_cpu.iter().all(|n| n.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn spin_and_block_ignore_the_slots() {
        static SLOTS: Slots = Slots::new();
        let budget = Budget::new();
        let held: Vec<Allowance> = (0..3).map(|_| allowance_in(&SLOTS, 2, WaitMode::Spin, &budget, 1, 0)).collect();
        assert!(held.iter().all(|a| a.ns == PURE_SLICE_NS));
        assert_eq!(allowance_in(&SLOTS, 2, WaitMode::Block, &budget, 1, 0).ns, 0);
        assert_eq!(SLOTS.total.load(Ordering::Relaxed), 0);
        // Two CPUs: an adaptive spinner on CPU 0 keeps CPU 1's waiters asleep.
        let one = allowance_in(&SLOTS, 2, WaitMode::Adaptive, &budget, 1, 0);
        assert_eq!(one.ns, MAX_NS / 2);
        assert_eq!(allowance_in(&SLOTS, 2, WaitMode::Adaptive, &budget, 0, 1).ns, 0);
    }

    #[test]
    fn the_event_budget_drops_to_zero_after_failed_spins_and_probes_now_and_then() {
        let budget = EventBudget::new();
        assert_eq!(budget.next(), MAX_NS / 2);
        budget.failed();
        budget.failed();
        assert_eq!(budget.next(), MAX_NS / 8);
        budget.failed();
        assert_eq!(budget.next(), 0);
        // At zero: one probe of MIN_NS in PROBE_EVERY.
        let probes = (0..PROBE_EVERY * 2).filter(|_| budget.next() != 0).count();
        assert_eq!(probes, 2);
        // A probe that succeeded makes it spin again, covering four times the wait.
        budget.succeeded(Duration::from_micros(3));
        assert_eq!(budget.next(), 12_000);
        budget.succeeded(Duration::from_micros(40));
        assert_eq!(budget.next(), MAX_NS);
    }

    #[test]
    fn an_event_loop_spin_follows_the_policy() {
        let budget = EventBudget::new();
        // Never with the peer on our CPU, nor in Block mode: and nothing learnt.
        assert!(!spin_evented(WaitMode::Adaptive, &budget, 0, 0, || true));
        assert!(!spin_evented(WaitMode::Block, &budget, 1, 0, || true));
        assert_eq!(budget.next(), MAX_NS / 2);
        if online_cpus() >= 2 && SLOTS.total.load(Ordering::Relaxed) == 0 {
            // Peer elsewhere: it spins (a ready answer ends it at once).
            let mut looks = 0;
            let got = spin_evented(WaitMode::Adaptive, &budget, 1, 0, || {
                looks += 1;
                looks > 3
            });
            // Another test's waiter may hold the only slot meanwhile.
            if got {
                assert!(looks > 3);
            }
        }
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
