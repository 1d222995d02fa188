//! `shm:` — shared-memory rings set up over a private rendezvous socket
//! (DESIGN §5; the layout byte by byte is in docs/PROTOCOL.md, "shm:").
//!
//! The rendezvous is a `unix:` listening socket with exactly `unix:`'s rules
//! (mode 0600 before bind, stale-file replacement, `SO_PEERCRED` checked
//! against the server's access rules): [`unix::listen`] itself. Per accepted
//! connection the server creates an anonymous, sealed `memfd` (never named in
//! `/dev/shm`) holding a [`ConnHeader`], a request ring and a reply ring, and
//! sends it with the server's doorbell eventfd by `SCM_RIGHTS` together with
//! a hello (the 16 bytes of `frame::encode_hello`). After that the socket
//! carries nothing: it only tells each side that the other died (hang-up).
//!
//! Waking: a waiting consumer announces itself in the ring's
//! `consumer_sleeping` flag (and a producer short of space in
//! `producer_sleeping`); whoever then publishes clears the flag and wakes it —
//! the server through its one doorbell eventfd (so one `epoll` waits for all
//! connections), the client by `FUTEX_WAKE` on the flag word. A busy pair
//! never announces, so it makes no system call.
//!
//! Spinning (`WaitMode::Adaptive`, the default; details in [`spin`]): a
//! waiter spins before it announces sleep only while spinning pays — its
//! peer last ran on another CPU, the machine has more than one, and one of
//! this process's spin slots is free: its threads spin on at most online
//! CPUs − 1 other CPUs at once (spinners on the waiter's own CPU are
//! preempted and do not count), so many waiting threads (64 clients on 2
//! CPUs) leave the peer its CPU and degrade toward the blocking floor
//! instead of below it — for a budget of 5–50 µs learned from recent waits.
//! `WaitMode::Spin` always spins and `WaitMode::Block` never does.
//!
//! SAFETY rule for everything under `shm/` (as in [`ring`](super::ring)):
//! every shared value is read once, checked, then used.

pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod flush;
pub(crate) mod ring;
pub(crate) mod server;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::{ClientOptions, ServerOptions, WaitMode};
use crate::sys;
pub(crate) use crate::sys::shm::{current_cpu, futex_wait, futex_wake, peer_gone};
pub(crate) use crate::sys::socket::{recv_with_fds, recv_with_fds_now, send_with_fds};
use crate::transport::shm::ring::{
    announce_sleep, take_sleeper, Consumer, Control, Producer, Ring, Violation, MAX_CAPACITY, MIN_CAPACITY,
};
use crate::transport::{ClientConn, ServerTransport};

/// The first 8 bytes of a connection's mapping.
pub(crate) const MAGIC: [u8; 8] = *b"IPCALLSH";
/// The layout version of the mapping.
pub(crate) const LAYOUT_VERSION: u32 = 1;
/// `features` bit: the server takes a client's bell eventfd (PROTOCOL.md
/// §12.6) and rings it whenever it wakes that client.
pub(crate) const FEATURE_CLIENT_BELL: u32 = 1;
/// `features` bit: the server takes deadline records (PROTOCOL.md §12.7),
/// so a client may precede a request with its caller's remaining time.
pub(crate) const FEATURE_DEADLINE: u32 = 2;
/// `features` bit: the server takes cancel records (PROTOCOL.md §12.8),
/// so a client may tell it that the caller of a request gave up.
pub(crate) const FEATURE_CANCEL: u32 = 4;
/// `features` bit: the server answers control records (PROTOCOL.md
/// §12.9: ping, stats) itself.
pub(crate) const FEATURE_CONTROL: u32 = 8;
/// The one byte that carries a client's bell eventfd over the socket.
pub(crate) const BELL_BYTE: u8 = b'B';
/// Bytes before the request ring's data: the [`ConnHeader`] page.
pub(crate) const HEADER_PAGE: usize = 4096;
/// How often a sleeping waiter looks whether its peer died (hang-up of the
/// rendezvous socket), and a `Spin` waiter whether its deadline passed.
pub(crate) const DEATH_CHECK: Duration = Duration::from_millis(100);

/// The first page of a connection's mapping (`#[repr(C)]`, see PROTOCOL.md).
#[repr(C)]
pub(crate) struct ConnHeader {
    /// [`MAGIC`], written by the server before the memfd is sent.
    pub(crate) magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub(crate) version: u32,
    /// Capacity in bytes of each ring's data area (a power of two).
    pub(crate) ring_capacity: u32,
    /// The server's maximum message size.
    pub(crate) server_max: u32,
    /// The client's maximum message size (the client writes it before its
    /// first request; the server reads it per request and clamps it).
    pub(crate) client_max: AtomicU32,
    /// 1 once the server reads no more requests (it closed).
    pub(crate) closed: AtomicU32,
    _pad0: u32,
    /// With `closed`: the id of the last request the server took.
    pub(crate) last_taken: std::sync::atomic::AtomicU64,
    /// 1 once the client sent its bell eventfd over the rendezvous socket
    /// (before its next request; see [`FEATURE_CLIENT_BELL`]).
    pub(crate) client_bell: AtomicU32,
    /// What the server supports beyond layout version 1 (`FEATURE_*`
    /// bits; 0 from a server that predates them), written before sending.
    pub(crate) features: AtomicU32,
    _pad1: [u8; 16],
    /// The CPU the server's thread last ran on (a hint for spinning).
    pub(crate) server_cpu: AtomicU32,
    _pad2: [u8; 60],
    /// The CPU the client last ran on (a hint for spinning).
    pub(crate) client_cpu: AtomicU32,
    _pad3: [u8; 124],
    /// Client → server ring.
    pub(crate) requests: Control,
    /// Server → client ring.
    pub(crate) replies: Control,
}

const _: () = {
    assert!(std::mem::offset_of!(ConnHeader, ring_capacity) == 12);
    assert!(std::mem::offset_of!(ConnHeader, client_max) == 20);
    assert!(std::mem::offset_of!(ConnHeader, closed) == 24);
    assert!(std::mem::offset_of!(ConnHeader, last_taken) == 32);
    assert!(std::mem::offset_of!(ConnHeader, client_bell) == 40);
    assert!(std::mem::offset_of!(ConnHeader, features) == 44);
    assert!(std::mem::offset_of!(ConnHeader, server_cpu) == 64);
    assert!(std::mem::offset_of!(ConnHeader, client_cpu) == 128);
    assert!(std::mem::offset_of!(ConnHeader, requests) == 256);
    assert!(std::mem::offset_of!(ConnHeader, replies) == 384);
    assert!(std::mem::size_of::<ConnHeader>() <= HEADER_PAGE);
};

/// Rounds a requested ring size to a valid capacity.
pub(crate) fn ring_capacity(requested: usize) -> usize {
    requested.clamp(MIN_CAPACITY, MAX_CAPACITY).next_power_of_two()
}

/// Total mapping size for a ring capacity.
pub(crate) fn mapping_len(capacity: usize) -> usize {
    HEADER_PAGE + 2 * capacity
}

/// A shared mapping of a connection's memfd. Unmapped on drop; the memfd's
/// pages are freed by the kernel once every mapping and descriptor is gone.
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
    capacity: usize,
}

// SAFETY: (1) the mapping is plain shared memory; all access to it goes
// through atomics or the ring's checked copies, serialised by owners' locks.
unsafe impl Send for Mapping {}
// SAFETY: (1) as for Send.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` read/write, shared, between two inaccessible
    /// guard pages: an access past either end of the mapping faults at once
    /// instead of touching other memory (the hostile-peer tests rely on it).
    fn map(fd: BorrowedFd<'_>, len: usize, capacity: usize) -> io::Result<Mapping> {
        Ok(Mapping { base: sys::shm::map_guarded(fd, len)?, len, capacity })
    }

    /// The connection header.
    pub(crate) fn header(&self) -> &ConnHeader {
        // SAFETY: (1) the mapping is at least HEADER_PAGE bytes, page-aligned,
        // and lives as long as `self`; (2) the fields the peer may write are
        // atomics; the plain ones are written once before the fd is sent
        // (and sealed sizes keep the memory mapped).
        unsafe { &*(self.base as *const ConnHeader) }
    }

    /// The request ring.
    pub(crate) fn requests(&self) -> Ring {
        // SAFETY: (1) the control block is in the header page and the data
        // area `[HEADER_PAGE, HEADER_PAGE + capacity)` inside the mapping,
        // which outlives every user (they hold the `Mapping` by `Arc`).
        unsafe { Ring::new(&self.header().requests, self.base.add(HEADER_PAGE), self.capacity) }
    }

    /// The reply ring.
    pub(crate) fn replies(&self) -> Ring {
        // SAFETY: (1) as for `requests`, the second data area.
        unsafe { Ring::new(&self.header().replies, self.base.add(HEADER_PAGE + self.capacity), self.capacity) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: (1) `base`/`len` are exactly what `map_guarded` returned,
        // and no reference into the mapping outlives `self` (users hold it
        // by Arc).
        unsafe { sys::shm::unmap_guarded(self.base, self.len) };
    }
}

/// Creates a connection's memfd: anonymous, close-on-exec, sized, sealed
/// against shrinking and growing (so that neither side can make the other's
/// accesses fault), and initialised. Returns it with its mapping.
pub(crate) fn create_conn_memory(capacity: usize, server_max: u32) -> io::Result<(OwnedFd, Mapping)> {
    let len = mapping_len(capacity);
    let fd = sys::shm::sealed_memfd(len)?;
    let mapping = Mapping::map(std::os::fd::AsFd::as_fd(&fd), len, capacity)?;
    // SAFETY: (1) the header page is ours alone until the memfd is sent: the
    // plain fields are written here once, before any peer can map it.
    unsafe {
        let header = mapping.base as *mut ConnHeader;
        (*header).magic = MAGIC;
        (*header).version = LAYOUT_VERSION;
        (*header).ring_capacity = capacity as u32;
        (*header).server_max = server_max;
        (*header).features = AtomicU32::new(FEATURE_CLIENT_BELL | FEATURE_DEADLINE | FEATURE_CANCEL | FEATURE_CONTROL);
    }
    Ok((fd, mapping))
}

/// What a client learns from a received memfd, checked: its mapping.
pub(crate) fn map_conn_memory(fd: &OwnedFd) -> std::result::Result<Mapping, String> {
    let size = sys::shm::sealed_size(fd.as_fd())?;
    if size < HEADER_PAGE as u64 {
        return Err(format!("the shared memory is {size} bytes, too small for its header"));
    }
    let page = Mapping::map(std::os::fd::AsFd::as_fd(fd), HEADER_PAGE, 0).map_err(|e| format!("mmap: {e}"))?;
    // Read once, checked, then used.
    let header = page.header();
    let (magic, version, capacity) = (header.magic, header.version, header.ring_capacity as usize);
    drop(page);
    if magic != MAGIC || version != LAYOUT_VERSION {
        return Err(format!("the shared memory has magic {magic:02x?} version {version}"));
    }
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(format!("ring capacity {capacity} is not a power of two in range"));
    }
    if size != mapping_len(capacity) as u64 {
        return Err(format!("the shared memory is {size} bytes, not {} for its rings", mapping_len(capacity)));
    }
    Mapping::map(std::os::fd::AsFd::as_fd(fd), mapping_len(capacity), capacity).map_err(|e| format!("mmap: {e}"))
}

/// Publishes `cpu` in `slot` only if it changed (the slot's line is then
/// not written on every message).
pub(crate) fn publish_cpu(slot: &AtomicU32) -> u32 {
    let cpu = current_cpu();
    if slot.load(std::sync::atomic::Ordering::Relaxed) != cpu {
        slot.store(cpu, std::sync::atomic::Ordering::Relaxed);
    }
    cpu
}

// The spin policy lives in the core: `mem:` waits under it too.
pub(crate) use crate::core::spin;

/// Why a message could not be written.
pub(crate) enum SendError {
    /// The consumer broke the ring protocol (its `head` is out of range).
    Violation(Violation),
    /// The consumer is gone (or the wait was given up).
    Gone,
}

/// How a writer waits for ring space and wakes the consumer.
pub(crate) struct Sending<'a> {
    pub(crate) mode: WaitMode,
    pub(crate) budget: &'a spin::Budget,
    /// Where the consumer publishes its CPU.
    pub(crate) peer_cpu: &'a AtomicU32,
    /// Wakes the consumer (it announced that it sleeps).
    pub(crate) wake_consumer: &'a dyn Fn(),
    /// Called between sleeps while waiting for space: false gives up (the
    /// peer died). The client also reads replies here, so that a server
    /// blocked on a full reply ring never deadlocks against it.
    pub(crate) on_wait: &'a mut dyn FnMut() -> bool,
}

/// Writes a whole message, in pieces as space frees up, waking the consumer
/// whenever it sleeps. A message larger than the ring streams through it.
pub(crate) fn send_message(
    producer: &mut Producer,
    kind: u32,
    id: u64,
    data: &[u8],
    how: &mut Sending<'_>,
) -> std::result::Result<(), SendError> {
    send_message_from(producer, kind, id, data, 0, how)
}

/// Like [`send_message`], for a message whose first `offset` bytes already
/// went out (an event loop's `try_send` left the rest in its outbox).
pub(crate) fn send_message_from(
    producer: &mut Producer,
    kind: u32,
    id: u64,
    data: &[u8],
    mut offset: usize,
    how: &mut Sending<'_>,
) -> std::result::Result<(), SendError> {
    loop {
        match producer.write(kind, id, data, offset).map_err(SendError::Violation)? {
            Some(n) => {
                offset += n;
                if take_sleeper(&producer.ring().control().consumer_sleeping) {
                    (how.wake_consumer)();
                }
                if offset == data.len() {
                    return Ok(());
                }
            }
            None => wait_for_space(producer, how)?,
        }
    }
}

fn wait_for_space(producer: &Producer, how: &mut Sending<'_>) -> std::result::Result<(), SendError> {
    let spinning = spin::allowance(how.mode, how.budget, how.peer_cpu.load(Ordering::Relaxed), current_cpu());
    let ns = spinning.ns;
    if spin::quick(ns, || producer.head_moved()) {
        return Ok(());
    }
    let start = Instant::now();
    if spin::spin_for(ns, || producer.head_moved()) {
        how.budget.observe(start.elapsed());
        return Ok(());
    }
    drop(spinning);
    let flag = &producer.ring().control().producer_sleeping;
    loop {
        if how.mode == WaitMode::Spin {
            if !(how.on_wait)() {
                return Err(SendError::Gone);
            }
            if spin::spin_for(spin::PURE_SLICE_NS, || producer.head_moved()) {
                return Ok(());
            }
            continue;
        }
        announce_sleep(flag);
        if !producer.head_moved() {
            futex_wait(flag, 1, Some(DEATH_CHECK));
        }
        flag.store(0, Ordering::Relaxed);
        if producer.head_moved() {
            how.budget.observe(start.elapsed());
            return Ok(());
        }
        if !(how.on_wait)() {
            return Err(SendError::Gone);
        }
    }
}

/// Announces that a consumer sleeps on several rings at once (one fence).
pub(crate) fn announce_sleep_all<'a>(flags: impl Iterator<Item = &'a AtomicU32>) {
    for flag in flags {
        flag.store(1, Ordering::Relaxed);
    }
    std::sync::atomic::fence(Ordering::SeqCst);
}

/// After a consumer released records: wakes a producer waiting for space.
pub(crate) fn wake_producer(consumer: &Consumer) {
    let flag = &consumer.ring().control().producer_sleeping;
    if take_sleeper(flag) {
        futex_wake(flag);
    }
}

/// Binds a `shm:` server.
pub(crate) fn bind(
    name: &Name,
    options: &ServerOptions,
    counters: Arc<crate::core::stats::Counters>,
) -> Result<Box<dyn ServerTransport>> {
    Ok(Box::new(server::ShmServer::bind(name, options, counters)?))
}

/// Connects to a `shm:` server.
pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    Ok(client::ShmClient::connect(name, options)?)
}

/// A `Protocol` error for connection `name`.
pub(crate) fn protocol(name: &Arc<str>, reason: impl ToString) -> Error {
    Error::Protocol { name: name.clone(), reason: reason.to_string() }
}
