//! loom model check of the ring's index logic (`make loom`): a producer
//! thread and a consumer thread exchange messages that wrap the ring and
//! stream through it in pieces, under every interleaving (and every
//! allowed reordering of the Acquire/Release index accesses) that loom
//! explores. The consumer must see exactly the messages sent, in order.

use super::*;

const CAPACITY: usize = MIN_CAPACITY;

fn message(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

#[test]
fn producer_and_consumer_agree_under_every_interleaving() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let ctrl: &'static Control = Box::leak(Box::new(Control::new()));
        let data: &'static mut [u64] = Box::leak(vec![0u64; CAPACITY / 8].into_boxed_slice());
        // SAFETY: (1) leaked for the model's duration; power-of-two capacity.
        let ring = unsafe { Ring::new(ctrl, data.as_mut_ptr().cast(), CAPACITY) };
        // Set-up without threads: the write position ends 40 bytes short
        // of the end, so the model's first message must wrap (a skip).
        let mut producer = Producer::new(ring);
        let mut consumer = Consumer::new(ring);
        let mut partial = None;
        let filler = CAPACITY - 40 - RECORD_HEADER;
        let mut offset = 0;
        while offset < filler {
            offset += producer.write(kind::REQUEST, 0, &message(filler, 0), offset).unwrap().unwrap();
            while let Taken::Message(_) = take(&mut consumer, &mut partial, u32::MAX, |_| true).unwrap() {}
        }
        while let Taken::Message(_) = take(&mut consumer, &mut partial, u32::MAX, |_| true).unwrap() {}
        // The model: a message that wraps, then one streamed in 3 pieces;
        // the producer never has to wait (the ring is empty), the consumer
        // polls.
        let sizes = [100usize, CAPACITY / 8 * 2 + 100];
        let writer = loom::thread::spawn(move || {
            for (i, &len) in sizes.iter().enumerate() {
                let msg = message(len, i as u8 + 1);
                let mut offset = 0;
                while offset < len {
                    offset += producer.write(kind::REQUEST, i as u64 + 1, &msg, offset).unwrap().unwrap();
                }
            }
        });
        let mut next = 0;
        while next < sizes.len() {
            match take(&mut consumer, &mut partial, u32::MAX, |k| k == kind::REQUEST).unwrap() {
                Taken::Message(m) => {
                    assert_eq!(m.id, next as u64 + 1);
                    assert!(m.data == message(sizes[next], next as u8 + 1));
                    next += 1;
                }
                Taken::Empty => loom::thread::yield_now(),
            }
        }
        writer.join().unwrap();
    });
}

#[test]
fn a_sleeping_consumer_is_always_seen_or_sees_the_data() {
    // The Dekker handshake of announce_sleep/take_sleeper: either the
    // producer sees the flag (and wakes), or the consumer sees the data.
    loom::model(|| {
        let ctrl: &'static Control = Box::leak(Box::new(Control::new()));
        let producer = loom::thread::spawn(move || {
            ctrl.tail.store(8, Ordering::Release);
            take_sleeper(&ctrl.consumer_sleeping)
        });
        announce_sleep(&ctrl.consumer_sleeping);
        let saw_data = ctrl.tail.load(Ordering::Acquire) != 0;
        let woke = producer.join().unwrap();
        assert!(saw_data || woke, "lost wake-up");
    });
}
