//! A bounded lock-free multi-producer multi-consumer ring (Dmitry Vyukov's
//! bounded MPMC queue): the fast path of [`Queue`](crate::core::queue::Queue).
//!
//! Each cell carries a sequence number that says whose turn it is: a
//! producer may write cell `pos % capacity` when its sequence is `pos`, a
//! consumer may read it when it is `pos + 1`. A producer claims `pos` by a
//! compare-and-swap on `tail`, writes the value, then publishes it with a
//! Release store of the sequence; a consumer claims by a compare-and-swap
//! on `head`, reads, and hands the cell back to the producers one lap later
//! (`pos + capacity`). Neither side locks or allocates; a push into a full
//! ring and a pop from an empty one fail at once (the queue then takes its
//! locked path). A consumer that finds the head cell claimed but not yet
//! written sees the ring empty: the producer publishes, then looks for
//! sleepers (see the queue).
//!
//! `make loom` model-checks it (`--cfg ipcall_loom`, `mpmc_loom.rs`).

#[cfg(ipcall_loom)]
use loom::cell::UnsafeCell;
#[cfg(ipcall_loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(ipcall_loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

use std::mem::MaybeUninit;

/// `std`'s `UnsafeCell` with loom's access methods, so the ring's code is
/// the same in both builds.
#[cfg(not(ipcall_loom))]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(ipcall_loom))]
impl<T> UnsafeCell<T> {
    fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

struct Cell<T> {
    /// Whose turn: `pos` for the producer of `pos`, `pos + 1` for its consumer.
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// The ring. Invariant: the cells whose sequence is `pos + 1` for some
/// `head <= pos < tail` hold an initialised value; no other cell does.
pub(crate) struct Ring<T> {
    cells: Box<[Cell<T>]>,
    mask: usize,
    /// Next position to pop.
    head: AtomicUsize,
    /// Next position to push.
    tail: AtomicUsize,
}

// SAFETY: (1) a value is written only by the producer that won its
// position on `tail` and read only by the consumer that won it on `head`
// after the producer's Release publication (see the module comment): one
// thread at a time per cell. (2) Values move between threads, hence `T: Send`.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: (1) the ring owns its values; sending it sends them (`T: Send`).
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> Ring<T> {
    /// A ring of `capacity` cells (a power of two, at least 2).
    pub(crate) fn new(capacity: usize) -> Ring<T> {
        assert!(capacity.is_power_of_two() && capacity >= 2, "ring capacity {capacity}");
        let cells =
            (0..capacity).map(|i| Cell { seq: AtomicUsize::new(i), value: UnsafeCell::new(MaybeUninit::uninit()) });
        Ring { cells: cells.collect(), mask: capacity - 1, head: AtomicUsize::new(0), tail: AtomicUsize::new(0) }
    }

    /// Appends `value`; gives it back if the ring is full.
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[pos & self.mask];
            let seq = cell.seq.load(Ordering::Acquire);
            match seq.wrapping_sub(pos) as isize {
                0 => match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: (1) we won `pos`: the cell is ours until we
                        // publish it, and it holds no value (its consumer
                        // handed it back, Acquire above).
                        cell.value.with_mut(|p| unsafe { (*p).write(value) });
                        cell.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => pos = now,
                },
                // The cell still holds the value of a lap ago: full.
                d if d < 0 => return Err(value),
                // Another producer took `pos`: catch up.
                _ => pos = self.tail.load(Ordering::Relaxed),
            }
        }
    }

    /// Takes the oldest value, `None` if there is none (or its producer has
    /// not finished writing it).
    pub(crate) fn pop(&self) -> Option<T> {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[pos & self.mask];
            let seq = cell.seq.load(Ordering::Acquire);
            match seq.wrapping_sub(pos.wrapping_add(1)) as isize {
                0 => match self.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: (1) we won `pos` after its producer
                        // published the value (Acquire above): it is
                        // initialised and no one else reads it.
                        let value = cell.value.with_mut(|p| unsafe { (*p).assume_init_read() });
                        cell.seq.store(pos.wrapping_add(self.mask).wrapping_add(1), Ordering::Release);
                        return Some(value);
                    }
                    Err(now) => pos = now,
                },
                d if d < 0 => return None,
                _ => pos = self.head.load(Ordering::Relaxed),
            }
        }
    }

    /// True if the oldest position holds a published value (a hint: it may
    /// be taken the next moment).
    pub(crate) fn has_items(&self) -> bool {
        let pos = self.head.load(Ordering::Relaxed);
        self.cells[pos & self.mask].seq.load(Ordering::Acquire) == pos.wrapping_add(1)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

#[cfg(all(test, not(ipcall_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fills_refuses_and_drains_in_order_across_laps() {
        let ring = Ring::new(4);
        for lap in 0..3 {
            for i in 0..4 {
                ring.push(lap * 10 + i).unwrap();
            }
            assert_eq!(ring.push(99), Err(99));
            assert!(ring.has_items());
            for i in 0..4 {
                assert_eq!(ring.pop(), Some(lap * 10 + i));
            }
            assert_eq!(ring.pop(), None);
            assert!(!ring.has_items());
        }
    }

    #[test]
    fn values_left_in_the_ring_are_dropped_with_it() {
        let counted = std::sync::Arc::new(());
        let ring = Ring::new(8);
        for _ in 0..5 {
            ring.push(counted.clone()).unwrap();
        }
        drop(ring.pop());
        drop(ring);
        assert_eq!(std::sync::Arc::strong_count(&counted), 1);
    }

    #[test]
    fn many_producers_and_consumers_lose_and_duplicate_nothing() {
        use std::sync::Arc;
        let ring = Arc::new(Ring::new(8));
        let per = 5_000usize;
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let mut v = p * per + i;
                        while let Err(back) = ring.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    // Each producer's values arrive in its order.
                    let mut last = [None::<usize>; 3];
                    while got.len() < per * 3 / 2 {
                        match ring.pop() {
                            Some(v) => {
                                let p = v / per;
                                assert!(last[p].map_or(true, |l| l < v), "out of order");
                                last[p] = Some(v);
                                got.push(v);
                            }
                            None => std::thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        producers.into_iter().for_each(|t| t.join().unwrap());
        let mut all: Vec<usize> = consumers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..per * 3).collect::<Vec<_>>());
    }
}

#[cfg(all(test, ipcall_loom))]
#[path = "mpmc_loom.rs"]
mod loom_tests;
