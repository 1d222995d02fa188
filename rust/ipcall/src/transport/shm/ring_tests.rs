//! Unit tests of the ring over heap memory: every size, wrapping, pieces,
//! two threads, and every kind of garbage a hostile peer can publish.

use super::*;
use std::sync::Arc;

/// A ring in ordinary memory (8-byte aligned data area).
struct HeapRing {
    ctrl: Box<Control>,
    data: Vec<u64>,
}

impl HeapRing {
    fn new(capacity: usize) -> HeapRing {
        HeapRing { ctrl: Box::new(Control::new()), data: vec![0u64; capacity / 8] }
    }
    fn ring(&mut self) -> Ring {
        // SAFETY: (1) both live as long as the HeapRing, which every test
        // keeps alive while it uses the ring; capacity is a power of two.
        unsafe { Ring::new(&*self.ctrl, self.data.as_mut_ptr().cast(), self.data.len() * 8) }
    }
    /// Writes raw bytes at a data offset (what a hostile peer does).
    fn poke(&mut self, at: usize, bytes: &[u8]) {
        let data: &mut [u8] =
            // SAFETY: (1) a u64 vector viewed as its bytes.
            unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast(), self.data.len() * 8) };
        data[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

fn message(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

const ANY: fn(u32) -> bool = |k| k == kind::REQUEST;

/// Sends `msgs` through one ring, alternating writer and reader in one thread.
fn pass_through(capacity: usize, msgs: &[Vec<u8>]) {
    let mut heap = HeapRing::new(capacity);
    let ring = heap.ring();
    let mut producer = Producer::new(ring);
    let mut consumer = Consumer::new(ring);
    let mut partial = None;
    let mut received = Vec::new();
    for (i, msg) in msgs.iter().enumerate() {
        let mut offset = 0;
        loop {
            match producer.write(kind::REQUEST, i as u64 + 1, msg, offset).unwrap() {
                Some(n) => {
                    offset += n;
                    if offset == msg.len() {
                        break;
                    }
                }
                None => {
                    // Full: the reader takes what is there.
                    if let Taken::Message(m) = take(&mut consumer, &mut partial, u32::MAX, ANY).unwrap() {
                        received.push(m);
                    }
                }
            }
        }
    }
    while received.len() < msgs.len() {
        match take(&mut consumer, &mut partial, u32::MAX, ANY).unwrap() {
            Taken::Message(m) => received.push(m),
            Taken::Empty => panic!("ring empty with {} of {} messages", received.len(), msgs.len()),
        }
    }
    for (i, (m, want)) in received.iter().zip(msgs).enumerate() {
        assert_eq!(m.id, i as u64 + 1);
        assert_eq!(m.kind, kind::REQUEST);
        assert!(m.data == *want, "message {i} of {} bytes differs", want.len());
    }
}

#[test]
fn every_size_from_empty_to_three_rings_passes_whole() {
    let capacity = MIN_CAPACITY;
    let mut sizes: Vec<usize> = (0..64).collect();
    for base in [capacity / 8, capacity / 2, capacity, 2 * capacity, 3 * capacity] {
        sizes.extend([base - 25, base - 24, base - 8, base - 1, base, base + 1, base + 7, base + 24]);
    }
    let msgs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| message(n, i as u8)).collect();
    pass_through(capacity, &msgs);
}

#[test]
fn wrapping_at_every_offset_uses_skips_and_keeps_small_messages_whole() {
    // Sizes that walk the write position across every 8-byte offset near the end.
    for first in (0..200).step_by(8) {
        let msgs: Vec<Vec<u8>> = (0..40).map(|i| message(first + i * 13, i as u8)).collect();
        pass_through(MIN_CAPACITY, &msgs);
    }
}

#[test]
fn two_threads_exchange_three_thousand_messages() {
    let mut heap = HeapRing::new(MIN_CAPACITY);
    let ring = heap.ring();
    let count = 3_000u64;
    let writer = std::thread::spawn(move || {
        let mut producer = Producer::new(ring);
        for i in 0..count {
            let msg = message((i as usize * 37) % 3000, i as u8);
            let mut offset = 0;
            loop {
                match producer.write(kind::REQUEST, i, &msg, offset).unwrap() {
                    Some(n) => {
                        offset += n;
                        if offset == msg.len() {
                            break;
                        }
                    }
                    None => std::hint::spin_loop(),
                }
            }
        }
    });
    let mut consumer = Consumer::new(ring);
    let mut partial = None;
    let mut next = 0;
    while next < count {
        match take(&mut consumer, &mut partial, u32::MAX, ANY).unwrap() {
            Taken::Message(m) => {
                assert_eq!(m.id, next);
                assert!(m.data == message((next as usize * 37) % 3000, next as u8));
                next += 1;
            }
            Taken::Empty => std::hint::spin_loop(),
        }
    }
    writer.join().unwrap();
    drop(heap);
}

#[test]
fn in_place_view_sees_the_ring_bytes_and_releases_after() {
    let mut heap = HeapRing::new(MIN_CAPACITY);
    let ring = heap.ring();
    let mut producer = Producer::new(ring);
    let mut consumer = Consumer::new(ring);
    producer.write(kind::REQUEST, 7, b"in place", 0).unwrap().unwrap();
    let mut partial = None;
    let mut seen = Vec::new();
    let taken = take_with(&mut consumer, &mut partial, 100, ANY, &mut |b| seen.extend_from_slice(b)).unwrap();
    assert!(matches!(taken, Taken::Message(Message { id: 7, ref data, .. }) if data.is_empty()));
    assert_eq!(seen, b"in place");
    assert_eq!(ring.control().head.load(Ordering::Relaxed), ring.control().tail.load(Ordering::Relaxed));
}

/// Publishes one raw record header at offset 0 and `tail`.
fn hostile(header: Header, tail: u64) -> Result<Taken, Violation> {
    let mut heap = HeapRing::new(MIN_CAPACITY);
    heap.poke(0, &header.encode());
    let ring = heap.ring();
    ring.control().tail.store(tail, Ordering::Release);
    let mut consumer = Consumer::new(ring);
    take(&mut consumer, &mut None, 1 << 20, ANY)
}

fn request(len: u32) -> Header {
    Header { len, kind: kind::REQUEST, id: 1, total: len, offset: 0 }
}

#[test]
fn garbage_from_the_producer_is_a_violation_never_an_access_outside() {
    let cap = MIN_CAPACITY as u64;
    let cases: Vec<(&str, Header, u64)> = vec![
        ("tail past the end", request(8), cap + 8),
        ("tail that wraps u64", request(8), u64::MAX),
        ("length past the tail", request(64), 32),
        ("length past the end of the data", request(cap as u32), cap),
        ("length that wraps", request(u32::MAX - 3), cap),
        ("unknown kind", Header { kind: 99, ..request(8) }, 32),
        ("skip with a length", Header { len: 8, kind: kind::SKIP, id: 0, total: 0, offset: 0 }, cap),
        ("skip past the tail", Header { len: 0, kind: kind::SKIP, id: 0, total: 0, offset: 0 }, 24),
        ("partial header", request(0), 16),
        ("total over the maximum", Header { total: 2 << 20, ..request(8) }, 32),
        ("offset + len past total", Header { offset: u32::MAX, total: 16, ..request(8) }, 32),
        ("first piece not at zero", Header { offset: 8, total: 16, ..request(8) }, 32),
    ];
    for (what, header, tail) in cases {
        let result = hostile(header, tail);
        assert!(result.is_err(), "{what}: accepted");
    }
}

#[test]
fn a_tail_that_runs_backwards_is_a_violation() {
    let mut heap = HeapRing::new(MIN_CAPACITY);
    let ring = heap.ring();
    let mut producer = Producer::new(ring);
    let mut consumer = Consumer::new(ring);
    producer.write(kind::REQUEST, 1, &[1; 100], 0).unwrap().unwrap();
    assert!(matches!(take(&mut consumer, &mut None, 1000, ANY), Ok(Taken::Message(_))));
    ring.control().tail.store(8, Ordering::Release);
    assert!(matches!(consumer.peek(ANY), Err(Violation::Index { what: "tail", .. })));
}

/// Writes a message larger than the ring until the producer must read
/// `head` again; returns what that read found.
fn write_until_head_is_read(producer: &mut Producer) -> Result<(), Violation> {
    let big = vec![9u8; 2 * MIN_CAPACITY];
    let mut offset = 0;
    while offset < big.len() {
        match producer.write(kind::REQUEST, 9, &big, offset)? {
            Some(n) => offset += n,
            None => return Ok(()),
        }
    }
    Ok(())
}

#[test]
fn a_head_that_runs_backwards_or_ahead_is_a_violation() {
    let mut heap = HeapRing::new(MIN_CAPACITY);
    let ring = heap.ring();
    let mut producer = Producer::new(ring);
    producer.write(kind::REQUEST, 1, &[1; 100], 0).unwrap().unwrap();
    // The consumer took it; the producer learns so when it next needs room.
    ring.control().head.store(128, Ordering::Release);
    assert!(write_until_head_is_read(&mut producer).is_ok());
    ring.control().head.store(64, Ordering::Release);
    assert!(matches!(write_until_head_is_read(&mut producer), Err(Violation::Index { what: "head", .. })));
    let mut producer = Producer::new(ring);
    ring.control().head.store(1 << 40, Ordering::Release);
    assert!(write_until_head_is_read(&mut producer).is_err());
}

#[test]
fn a_piece_that_does_not_continue_its_message_is_a_violation() {
    let mut heap = HeapRing::new(MIN_CAPACITY);
    let first = Header { len: 8, kind: kind::REQUEST, id: 1, total: 32, offset: 0 };
    let wrong_id = Header { id: 2, offset: 8, ..first };
    heap.poke(0, &first.encode());
    heap.poke(32, &wrong_id.encode());
    let ring = heap.ring();
    ring.control().tail.store(64, Ordering::Release);
    let mut consumer = Consumer::new(ring);
    let mut partial = None;
    assert!(matches!(take(&mut consumer, &mut partial, 100, ANY), Err(Violation::Piece(_))));
}

#[test]
fn shared_ring_survives_concurrent_garbage_without_faulting() {
    // A thread scribbles over the data area while a consumer reads: whatever
    // it reads, it must only report data or violations (never fault).
    let mut heap = HeapRing::new(MIN_CAPACITY);
    let ring = heap.ring();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scribbler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0x1234_5678_9abc_def0u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) & (MIN_CAPACITY - 8);
                ring.write_at(at, &x.to_le_bytes());
                ring.control().tail.store(x % (2 * MIN_CAPACITY as u64), Ordering::Release);
            }
        })
    };
    for _ in 0..5_000 {
        let mut consumer = Consumer::new(ring);
        let _ = take(&mut consumer, &mut None, 1 << 16, ANY);
    }
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
    drop(heap);
}
