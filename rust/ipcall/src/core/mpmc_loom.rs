//! loom model check of the lock-free ring (`make loom`): producers and a
//! consumer race on a ring small enough to fill and wrap, under every
//! interleaving (and every allowed reordering of the Acquire/Release
//! accesses) that loom explores. Nothing may be lost, duplicated or read
//! before it was written, and one producer's values come out in its order.

use super::*;
use loom::sync::Arc;

// Every thread makes a bounded number of attempts (a retry loop would
// make loom explore without end): a push that finds the ring full keeps
// its value, a pop that finds it empty gets `None`.

#[test]
fn two_producers_and_a_consumer_lose_and_duplicate_nothing() {
    loom::model(|| {
        // Two cells, one taken: of the two racing pushes, one may find it full.
        let ring = Arc::new(Ring::new(2));
        ring.push(0u32).unwrap();
        let producers: Vec<_> = [10u32, 20]
            .into_iter()
            .map(|v| {
                let ring = ring.clone();
                loom::thread::spawn(move || ring.push(v).err())
            })
            .collect();
        // The oldest value was published before: the consumer gets it.
        assert_eq!(ring.pop(), Some(0));
        let mut all = vec![0];
        for producer in producers {
            all.extend(producer.join().unwrap());
        }
        while let Some(v) = ring.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all, [0, 10, 20]);
    });
}

#[test]
fn a_producers_values_come_out_in_its_order() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2));
        let producer = {
            let ring = ring.clone();
            loom::thread::spawn(move || {
                ring.push(1u32).unwrap();
                ring.push(2u32).unwrap();
                ring.push(3u32).err()
            })
        };
        let first = ring.pop();
        let second = ring.pop();
        let refused = producer.join().unwrap();
        let mut got: Vec<u32> = [first, second].into_iter().flatten().collect();
        while let Some(v) = ring.pop() {
            got.push(v);
        }
        let pushed = if refused.is_some() { 2 } else { 3 };
        assert_eq!(got, (1..=pushed).collect::<Vec<_>>());
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
