//! The single-producer/single-consumer byte ring of `shm:` (docs/PROTOCOL.md,
//! "shm:"), without any system call, so that its index logic can be checked
//! under loom (`make loom`) exactly as it runs.
//!
//! A ring is a [`Control`] block (two cache lines: the producer's `tail` and
//! the consumer's `head`, each a count of bytes ever written/consumed) and a
//! data area of `capacity` bytes, a power of two. Records are 8-byte aligned:
//! a 24-byte [header](RECORD_HEADER) then the payload, padded to 8. A record
//! never wraps: when fewer than a whole record's bytes remain before the end,
//! the producer writes a `SKIP` record (or, with fewer than 24 bytes left,
//! nothing: the gap is skipped implicitly) and continues at offset 0. A
//! message larger than [`Producer::max_piece`] travels as several records
//! ("pieces") with increasing `offset`; pieces of different messages never
//! interleave in one ring.
//!
//! **The peer is untrusted.** SAFETY rule of this module: *every shared value
//! is read once, checked, then used*. `tail` (for a consumer) and `head` (for
//! a producer) are loaded once per look and checked against our own index and
//! the capacity before any offset is derived from them; a record header is
//! copied out of the mapping once and every field is checked (kind, length
//! against what was published and against the end of the data area, piece
//! order, total against the maximum) before a payload byte is touched. A
//! violation is reported as a [`Violation`]; nothing here ever reads or
//! writes outside `data[..capacity]`.

use std::fmt;

#[cfg(ipcall_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(ipcall_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Bytes of a record header: `len: u32, kind: u32, id: u64, total: u32, offset: u32`.
pub(crate) const RECORD_HEADER: usize = 24;
/// Record alignment (and granularity of ring offsets).
pub(crate) const ALIGN: usize = 8;
/// The smallest ring capacity (a power of two).
pub(crate) const MIN_CAPACITY: usize = 4096;
/// The largest ring capacity.
#[cfg_attr(ipcall_loom, allow(dead_code))]
pub(crate) const MAX_CAPACITY: usize = 1 << 30;

/// Record kinds (the `kind` field).
pub(crate) mod kind {
    /// Client to server: a request (or a piece of one).
    pub(crate) const REQUEST: u32 = 1;
    /// Server to client: a reply.
    pub(crate) const REPLY: u32 = 2;
    /// Server to client: an application error payload.
    pub(crate) const FAIL: u32 = 3;
    /// Server to client: the request was dropped unanswered (empty).
    pub(crate) const NO_REPLY: u32 = 4;
    /// Padding to the end of the data area; the next record is at offset 0.
    pub(crate) const SKIP: u32 = 5;
    /// Client to server, only if the server offers `FEATURE_DEADLINE`: the
    /// caller's remaining time (8 bytes, `u64` LE nanoseconds) for request
    /// `id`, whose first record follows at once.
    pub(crate) const DEADLINE: u32 = 6;
    /// Client to server, only if the server offers `FEATURE_CANCEL`: the
    /// caller of request `id` (all of it already sent) gave up; no payload.
    pub(crate) const CANCEL: u32 = 7;
    /// Client to server, only if the server offers `FEATURE_CONTROL`: a
    /// control request (ping, stats), one whole piece, answered by the
    /// server's transport itself.
    pub(crate) const CONTROL_REQUEST: u32 = 8;
    /// Server to client: the answer to control request `id`.
    pub(crate) const CONTROL_REPLY: u32 = 9;
}

/// The shared control block of one ring. `#[repr(C)]`, 128 bytes: the
/// producer's line (`tail`, `consumer_sleeping`) and the consumer's line
/// (`head`, `producer_sleeping`), so that neither side writes the line the
/// other writes on the fast path.
#[repr(C, align(64))]
pub(crate) struct Control {
    /// Bytes ever published by the producer (records complete up to here).
    /// Written by the producer only.
    pub(crate) tail: AtomicU64,
    /// 1 while the consumer sleeps (or wants a wake-up): set by the
    /// consumer, cleared by the producer that wakes it.
    pub(crate) consumer_sleeping: AtomicU32,
    _pad0: [u8; 52],
    /// Bytes ever consumed by the consumer. Written by the consumer only.
    pub(crate) head: AtomicU64,
    /// 1 while the producer sleeps waiting for space: set by the producer,
    /// cleared by the consumer that wakes it.
    pub(crate) producer_sleeping: AtomicU32,
    _pad1: [u8; 52],
}

impl Control {
    /// A zeroed control block (for tests; in shared memory it starts zeroed).
    #[cfg(any(test, ipcall_loom))]
    pub(crate) fn new() -> Control {
        Control {
            tail: AtomicU64::new(0),
            consumer_sleeping: AtomicU32::new(0),
            _pad0: [0; 52],
            head: AtomicU64::new(0),
            producer_sleeping: AtomicU32::new(0),
            _pad1: [0; 52],
        }
    }
}

#[cfg(not(ipcall_loom))]
const _: () = {
    assert!(std::mem::size_of::<Control>() == 128);
    assert!(std::mem::offset_of!(Control, tail) == 0);
    assert!(std::mem::offset_of!(Control, consumer_sleeping) == 8);
    assert!(std::mem::offset_of!(Control, head) == 64);
    assert!(std::mem::offset_of!(Control, producer_sleeping) == 72);
};

/// How the peer broke the ring protocol. The connection is dropped with
/// `Protocol`; the text names the violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// The peer's index ran backwards or past what the ring can hold.
    Index { what: &'static str, seen: u64, ours: u64 },
    /// A record header promised more than is published, or crosses the end.
    Length { len: u64, available: u64 },
    /// A kind that is not legal in this ring.
    Kind(u32),
    /// A message over the maximum size.
    TooLarge { total: u32, max: u32 },
    /// A piece that does not continue the message in progress.
    Piece(&'static str),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Index { what, seen, ours } => {
                write!(f, "shared ring {what} index {seen} is out of range (ours is {ours})")
            }
            Violation::Length { len, available } => {
                write!(f, "ring record of {len} bytes exceeds the {available} bytes it may occupy")
            }
            Violation::Kind(k) => write!(f, "ring record kind {k} is not allowed here"),
            Violation::TooLarge { total, max } => {
                write!(f, "ring message of {total} bytes is over the maximum of {max}")
            }
            Violation::Piece(why) => write!(f, "ring message piece out of order: {why}"),
        }
    }
}

/// Rounds `n` up to a multiple of [`ALIGN`].
pub(crate) fn align_up(n: u64) -> u64 {
    (n + (ALIGN as u64 - 1)) & !(ALIGN as u64 - 1)
}

/// Where one ring lives: its control block and its data area.
///
/// Invariant: `ctrl` points to a live `Control` and `data` to `capacity`
/// live bytes (a power of two ≥ [`MIN_CAPACITY`]) for as long as the `Ring`
/// is used; the owner of the mapping guarantees it (see `shm`).
#[derive(Clone, Copy)]
pub(crate) struct Ring {
    ctrl: *const Control,
    data: *mut u8,
    capacity: usize,
}

// SAFETY: (1) a Ring is two addresses in a mapping shared between
// processes; every access goes through atomics or the checked copies below,
// and the mutable ends are serialised by their owners' locks.
unsafe impl Send for Ring {}
// SAFETY: (1) as for Send.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring over `ctrl` and `data[..capacity]`.
    ///
    /// # Safety
    /// Both must stay valid (mapped, readable and writable) while the ring
    /// or anything derived from it is used, and `capacity` must be a power
    /// of two ≥ [`MIN_CAPACITY`].
    pub(crate) unsafe fn new(ctrl: *const Control, data: *mut u8, capacity: usize) -> Ring {
        debug_assert!(capacity.is_power_of_two() && capacity >= MIN_CAPACITY);
        Ring { ctrl, data, capacity }
    }

    /// The control block.
    pub(crate) fn control(&self) -> &Control {
        // SAFETY: (1) by the invariant `ctrl` is live; Control is all atomics.
        unsafe { &*self.ctrl }
    }

    /// Copies `bytes` to data offset `at`. Callers check `at + len <= capacity`.
    fn write_at(&self, at: usize, bytes: &[u8]) {
        assert!(at <= self.capacity && bytes.len() <= self.capacity - at);
        // SAFETY: (1) the assert keeps the range inside `data[..capacity]`,
        // live by the invariant; (2) `bytes` is local memory, not the ring.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(at), bytes.len()) };
    }

    /// The data bytes `[at, at + len)`. Callers check the range; the peer may
    /// write them concurrently (only if it breaks the protocol), which can
    /// change what we read but never where.
    fn slice_at(&self, at: usize, len: usize) -> &[u8] {
        assert!(at <= self.capacity && len <= self.capacity - at);
        // SAFETY: (1) the assert keeps the range inside the live data area.
        unsafe { std::slice::from_raw_parts(self.data.add(at), len) }
    }
}

/// The producing end (our own `tail` is authoritative; the peer's `head`
/// is read once per look and checked).
pub(crate) struct Producer {
    ring: Ring,
    /// Bytes we published. Only we write `ctrl.tail`.
    tail: u64,
    /// The last `head` we accepted: it may only grow.
    head_seen: u64,
}

/// One record header, as read once from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) kind: u32,
    pub(crate) id: u64,
    pub(crate) total: u32,
    pub(crate) offset: u32,
}

impl Header {
    fn encode(&self) -> [u8; RECORD_HEADER] {
        let mut b = [0u8; RECORD_HEADER];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.kind.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..20].copy_from_slice(&self.total.to_le_bytes());
        b[20..24].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    fn decode(b: &[u8; RECORD_HEADER]) -> Header {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            len: u32_at(0),
            kind: u32_at(4),
            id: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            total: u32_at(16),
            offset: u32_at(20),
        }
    }
}

impl Producer {
    pub(crate) fn new(ring: Ring) -> Producer {
        let tail = ring.control().tail.load(Ordering::Relaxed);
        let head_seen = ring.control().head.load(Ordering::Relaxed);
        Producer { ring, tail, head_seen }
    }

    /// The ring.
    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The largest piece of one message per record: an eighth of the ring,
    /// so that the consumer copies one piece out while we write the next.
    pub(crate) fn max_piece(&self) -> usize {
        self.ring.capacity / 8
    }

    /// Free bytes, from one checked read of the consumer's `head`.
    fn free(&mut self) -> Result<usize, Violation> {
        let head = self.ring.control().head.load(Ordering::Acquire);
        if head < self.head_seen || head > self.tail {
            return Err(Violation::Index { what: "head", seen: head, ours: self.tail });
        }
        self.head_seen = head;
        let used = self.tail - head;
        if used > self.ring.capacity as u64 {
            return Err(Violation::Index { what: "head", seen: head, ours: self.tail });
        }
        Ok(self.ring.capacity - used as usize)
    }

    /// True if the consumer released bytes since we last looked (a hint).
    pub(crate) fn head_moved(&self) -> bool {
        self.ring.control().head.load(Ordering::Acquire) != self.head_seen
    }

    /// Publishes what was written (Release: the bytes before the index).
    fn publish(&self) {
        self.ring.control().tail.store(self.tail, Ordering::Release);
    }

    /// Writes as much of message `(kind, id)` from `offset` on as fits now
    /// (whole, or a piece), publishes it, and returns how many payload bytes
    /// went out (`None` = no room yet; wait for the consumer and call again).
    /// A message that fits in one record is never split across the end.
    ///
    /// The consumer's `head` is read (once, checked) only when the last
    /// value seen leaves too little room, so that a busy pair does not pull
    /// the consumer's cache line over on every message.
    pub(crate) fn write(
        &mut self,
        kind: u32,
        id: u64,
        message: &[u8],
        offset: usize,
    ) -> Result<Option<usize>, Violation> {
        let cached = self.ring.capacity - (self.tail - self.head_seen) as usize;
        match self.write_with_free(kind, id, message, offset, cached)? {
            Some(n) => Ok(Some(n)),
            None => {
                let free = self.free()?;
                self.write_with_free(kind, id, message, offset, free)
            }
        }
    }

    fn write_with_free(
        &mut self,
        kind: u32,
        id: u64,
        message: &[u8],
        offset: usize,
        mut free: usize,
    ) -> Result<Option<usize>, Violation> {
        let total = message.len();
        debug_assert!(total <= u32::MAX as usize && offset <= total);
        loop {
            let pos = (self.tail as usize) & (self.ring.capacity - 1);
            let to_end = self.ring.capacity - pos;
            let remaining = total - offset;
            let whole = offset == 0 && remaining <= self.max_piece();
            let want = if whole { remaining } else { remaining.min(self.max_piece()) };
            let need = RECORD_HEADER + align_up(want as u64) as usize;
            // Wrap when the record would cross the end, or when too little
            // is left before it for a useful piece.
            let wrap = if whole { need > to_end } else { to_end < RECORD_HEADER + ALIGN.max(want.min(4096)) };
            if wrap {
                if free < to_end {
                    return Ok(None);
                }
                if to_end >= RECORD_HEADER {
                    let skip = Header { len: 0, kind: kind::SKIP, id: 0, total: 0, offset: 0 };
                    self.ring.write_at(pos, &skip.encode());
                }
                self.tail += to_end as u64;
                free -= to_end;
                self.publish();
                continue;
            }
            let room = free.min(to_end);
            if whole {
                if room < need {
                    return Ok(None);
                }
            } else if room < RECORD_HEADER + ALIGN.max(want.min(4096)) {
                // Wait for a useful amount of space rather than dribbling.
                return Ok(None);
            }
            let piece = if whole { want } else { want.min((room - RECORD_HEADER) & !(ALIGN - 1)) };
            let header = Header { len: piece as u32, kind, id, total: total as u32, offset: offset as u32 };
            self.ring.write_at(pos, &header.encode());
            self.ring.write_at(pos + RECORD_HEADER, &message[offset..offset + piece]);
            self.tail += (RECORD_HEADER + align_up(piece as u64) as usize) as u64;
            self.publish();
            return Ok(Some(piece));
        }
    }
}

/// The consuming end (our own `head` is authoritative; the peer's `tail`
/// is read once per look and checked).
pub(crate) struct Consumer {
    ring: Ring,
    /// Bytes we consumed and released. Only we write `ctrl.head`.
    head: u64,
    /// The last `tail` we accepted: it may only grow.
    tail_seen: u64,
}

/// A whole record in the ring, checked, not yet released.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) header: Header,
    /// Data offset of the payload.
    at: usize,
    /// Bytes the record occupies (header + padded payload), after any skip.
    advance: u64,
}

impl Consumer {
    pub(crate) fn new(ring: Ring) -> Consumer {
        let head = ring.control().head.load(Ordering::Relaxed);
        Consumer { ring, head, tail_seen: head }
    }

    /// The ring.
    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// True if the producer published bytes we have not consumed (one plain
    /// load; for spinning — `peek` does the checking).
    pub(crate) fn has_data(&self) -> bool {
        self.ring.control().tail.load(Ordering::Acquire) != self.head
    }

    /// The next whole record, if one is published: skips are consumed here.
    /// `allowed(kind)` says which kinds are legal in this direction.
    pub(crate) fn peek(&mut self, allowed: impl Fn(u32) -> bool) -> Result<Option<Record>, Violation> {
        let capacity = self.ring.capacity as u64;
        let tail = self.ring.control().tail.load(Ordering::Acquire);
        if tail < self.tail_seen || tail < self.head || tail - self.head > capacity {
            return Err(Violation::Index { what: "tail", seen: tail, ours: self.head });
        }
        self.tail_seen = tail;
        let mut head = self.head;
        loop {
            let available = tail - head;
            if available == 0 {
                if head != self.head {
                    self.release_to(head);
                }
                return Ok(None);
            }
            let pos = (head & (capacity - 1)) as usize;
            let to_end = capacity - pos as u64;
            if pos % ALIGN != 0 {
                return Err(Violation::Index { what: "tail", seen: tail, ours: head });
            }
            if to_end < RECORD_HEADER as u64 {
                // The implicit skip: too little room before the end for a header.
                if available < to_end {
                    return Err(Violation::Length { len: to_end, available });
                }
                head += to_end;
                continue;
            }
            if available < RECORD_HEADER as u64 {
                return Err(Violation::Length { len: RECORD_HEADER as u64, available });
            }
            let mut raw = [0u8; RECORD_HEADER];
            raw.copy_from_slice(self.ring.slice_at(pos, RECORD_HEADER));
            let header = Header::decode(&raw);
            if header.kind == kind::SKIP {
                if header.len != 0 || available < to_end {
                    return Err(Violation::Length { len: to_end, available });
                }
                head += to_end;
                continue;
            }
            if !allowed(header.kind) {
                return Err(Violation::Kind(header.kind));
            }
            let size = RECORD_HEADER as u64 + align_up(u64::from(header.len));
            if size > to_end || size > available {
                return Err(Violation::Length { len: size, available: available.min(to_end) });
            }
            let skipped = head - self.head;
            return Ok(Some(Record { header, at: pos + RECORD_HEADER, advance: skipped + size }));
        }
    }

    /// The payload of `record` in place (valid until it is released).
    pub(crate) fn payload(&self, record: &Record) -> &[u8] {
        self.ring.slice_at(record.at, record.header.len as usize)
    }

    /// Releases `record` (and any skip before it) to the producer.
    pub(crate) fn release(&mut self, record: &Record) {
        self.release_to(self.head + record.advance);
    }

    fn release_to(&mut self, head: u64) {
        self.head = head;
        self.ring.control().head.store(head, Ordering::Release);
    }
}

/// A message being assembled from pieces. Invariant: `data.len()` is the
/// next expected `offset` and `data.len() < total`.
pub(crate) struct Partial {
    kind: u32,
    id: u64,
    total: u32,
    data: Vec<u8>,
}

/// A whole message taken out of a ring.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) kind: u32,
    pub(crate) id: u64,
    pub(crate) data: Vec<u8>,
}

/// What [`take`] found.
pub(crate) enum Taken {
    /// A whole message.
    Message(Message),
    /// Nothing (more) published yet; a partial message may be in progress.
    Empty,
}

/// Consumes records until one message is whole (copying its bytes out) or
/// the ring is empty. `max` bounds every message's `total`, checked before
/// any allocation; `partial` carries a message across calls.
pub(crate) fn take(
    consumer: &mut Consumer,
    partial: &mut Option<Partial>,
    max: u32,
    allowed: impl Fn(u32) -> bool + Copy,
) -> Result<Taken, Violation> {
    loop {
        let Some(record) = consumer.peek(allowed)? else { return Ok(Taken::Empty) };
        let h = record.header;
        if h.total > max {
            return Err(Violation::TooLarge { total: h.total, max });
        }
        if u64::from(h.offset) + u64::from(h.len) > u64::from(h.total) {
            return Err(Violation::Piece("a piece runs past its message's total"));
        }
        match partial {
            None => {
                if h.offset != 0 {
                    return Err(Violation::Piece("a message starts at a non-zero offset"));
                }
                let mut data = Vec::with_capacity(h.total as usize);
                data.extend_from_slice(consumer.payload(&record));
                consumer.release(&record);
                if data.len() == h.total as usize {
                    return Ok(Taken::Message(Message { kind: h.kind, id: h.id, data }));
                }
                if h.len == 0 {
                    return Err(Violation::Piece("an empty piece"));
                }
                *partial = Some(Partial { kind: h.kind, id: h.id, total: h.total, data });
            }
            Some(p) => {
                if h.kind != p.kind || h.id != p.id || h.total != p.total || h.offset as usize != p.data.len() {
                    return Err(Violation::Piece("a piece does not continue the message in progress"));
                }
                if h.len == 0 {
                    return Err(Violation::Piece("an empty piece"));
                }
                p.data.extend_from_slice(consumer.payload(&record));
                consumer.release(&record);
                if p.data.len() == p.total as usize {
                    let p = partial.take().expect("in progress");
                    return Ok(Taken::Message(Message { kind: p.kind, id: p.id, data: p.data }));
                }
            }
        }
    }
}

/// Like [`take`], but a message that sits whole in one record is shown to
/// `in_place` in the ring itself (no copy) and released afterwards; returns
/// its kind and id with empty data. Pieced messages are assembled as `take` does,
/// shown to `in_place`, and also returned without their data.
pub(crate) fn take_with(
    consumer: &mut Consumer,
    partial: &mut Option<Partial>,
    max: u32,
    allowed: impl Fn(u32) -> bool + Copy,
    in_place: &mut dyn FnMut(&[u8]),
) -> Result<Taken, Violation> {
    if partial.is_none() {
        if let Some(record) = consumer.peek(allowed)? {
            let h = record.header;
            if h.offset == 0 && h.len == h.total {
                if h.total > max {
                    return Err(Violation::TooLarge { total: h.total, max });
                }
                in_place(consumer.payload(&record));
                consumer.release(&record);
                return Ok(Taken::Message(Message { kind: h.kind, id: h.id, data: Vec::new() }));
            }
        }
    }
    let mut taken = take(consumer, partial, max, allowed)?;
    if let Taken::Message(m) = &mut taken {
        in_place(&m.data);
        // As for a message shown in place, the caller gets no copy.
        m.data = Vec::new();
    }
    Ok(taken)
}

/// Publishes a wake-up request and checks for data (Dekker: the store of
/// our flag and the peer's store of its index are both followed by a SeqCst
/// fence, so at least one side sees the other's).
pub(crate) fn announce_sleep(flag: &AtomicU32) {
    flag.store(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
}

/// After publishing: true if the peer announced it sleeps (the flag is
/// cleared; the caller must wake it).
pub(crate) fn take_sleeper(flag: &AtomicU32) -> bool {
    take_sleeper_as(flag) != 0
}

/// The value a reply ring's consumer announces when it sleeps on the
/// futex alone (a client's blocking reader): the server wakes the futex
/// and rings no bell (PROTOCOL.md §12.6). Any other non-zero value asks
/// for both.
pub(crate) const SLEEPING_ON_FUTEX: u32 = 2;

/// [`announce_sleep`] with `value` ([`SLEEPING_ON_FUTEX`]).
pub(crate) fn announce_sleep_as(flag: &AtomicU32, value: u32) {
    flag.store(value, Ordering::Relaxed);
    fence(Ordering::SeqCst);
}

/// [`take_sleeper`] that says how the peer sleeps: what it announced, 0 if
/// it does not.
pub(crate) fn take_sleeper_as(flag: &AtomicU32) -> u32 {
    fence(Ordering::SeqCst);
    if flag.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    flag.swap(0, Ordering::AcqRel)
}

#[cfg(all(test, not(ipcall_loom)))]
#[path = "ring_tests.rs"]
mod tests;

#[cfg(all(test, ipcall_loom))]
#[path = "ring_loom.rs"]
mod loom_tests;
