//! loom model check of the lock-free ring (`make loom`): producers and a
//! consumer race on a ring small enough to fill and wrap, under every
//! interleaving (and every allowed reordering of the Acquire/Release
//! accesses) that loom explores. Nothing may be lost, duplicated or read
//! before it was written, and one producer's values come out in its order.

use super::*;
use loom::sync::Arc;

#[test]
fn two_producers_and_a_consumer_lose_and_duplicate_nothing() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let ring = Arc::new(Ring::new(2));
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    // Two values each, into two cells: some pushes find it full.
                    for i in 0..2 {
                        let mut v = p * 10 + i;
                        while let Err(back) = ring.push(v) {
                            v = back;
                            loom::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 4 {
            match ring.pop() {
                Some(v) => got.push(v),
                None => loom::thread::yield_now(),
            }
        }
        producers.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(ring.pop(), None);
        for p in 0..2 {
            let mine: Vec<u32> = got.iter().copied().filter(|v| v / 10 == p).collect();
            assert_eq!(mine, [p * 10, p * 10 + 1]);
        }
    });
}

#[test]
fn two_consumers_each_take_a_value_once() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2));
        let other = {
            let ring = ring.clone();
            loom::thread::spawn(move || ring.pop())
        };
        ring.push(1u32).unwrap();
        ring.push(2u32).unwrap();
        let mine = ring.pop();
        let theirs = other.join().unwrap();
        let rest = ring.pop();
        let mut all: Vec<u32> = [mine, theirs, rest].into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
    });
}
