//! A `shm:` server's side of one connection: its rings, and answering
//! through its reply ring without ever blocking on the client.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::{current_cpu, futex_wait, futex_wake, publish_cpu, recv_with_fds_now, spin, Mapping, BELL_BYTE};
use crate::core::cancel::{Cancel, CancelRef, FlagSource, Pump};
use crate::core::error::Result;
use crate::core::frame;
use crate::core::options::WaitMode;
use crate::core::peer::Peer;
use crate::core::stats::{self, Counters};
use crate::core::wait::lock;
use crate::sys;
use crate::transport::held::Held;
use crate::transport::shm::flush::{Flushable, Flushed, ReplyWriter, ShmFlusher};
use crate::transport::shm::ring::{
    self, announce_sleep, kind, take_sleeper, Consumer, Partial, Producer, SLEEPING_ON_FUTEX,
};
use crate::transport::stream::flush::Sent;
use crate::transport::trace::{ConnTrace, DropReason};
use crate::transport::{Answer, Responder};

/// The reading end of a connection's request ring.
pub(crate) struct RequestReader {
    pub(crate) consumer: Consumer,
    pub(crate) partial: Option<Partial>,
    /// A deadline record was taken: (its id, its remaining nanoseconds).
    /// Invariant: while `Some`, the next message must be request `id`.
    pub(crate) deadline: Option<(u64, u64)>,
    /// The id of the last control record taken (0: none). A client that
    /// gives up waiting for a control answer may cancel it as any call
    /// (PROTOCOL.md §12.8), so a cancel may name this id, which no `recv`
    /// ever took.
    pub(crate) last_control: u64,
}

/// One client connection. Requests hold it (as their `Responder`), so its
/// mapping and socket live until the server dropped it *and* every request
/// from it was answered; then the client sees the hang-up.
pub(crate) struct ServerConn {
    pub(crate) token: u64,
    /// The rendezvous connection: its hang-up is the client's death.
    pub(crate) socket: OwnedFd,
    /// Declared before nothing that outlives it: the rings point into it.
    pub(crate) mapping: Mapping,
    pub(crate) peer: Peer,
    pub(crate) local_max: u32,
    pub(crate) mode: WaitMode,
    /// Held by the one thread reading the request ring.
    pub(crate) reader: Mutex<RequestReader>,
    /// Threads holding `reader`, or about to try it, for a look that takes
    /// no request ([`glance`](Self::glance): the accepting thread's look at
    /// an idle server, a cancel check). Non-zero whenever one holds it: a
    /// receiver that finds `reader` held then waits for it
    /// ([`reader_for_request`](Self::reader_for_request)) rather than pass
    /// the connection by and report no request while one waits.
    pub(crate) glances: AtomicUsize,
    /// The reply ring's producer and the replies waiting for room in it;
    /// serialises whole replies (pieces of two never interleave) and is never
    /// held while waiting for the client.
    pub(crate) writer: Mutex<ReplyWriter>,
    /// The server's mover of queued replies.
    pub(crate) flusher: Arc<ShmFlusher<ServerConn>>,
    /// Most reply bytes that may wait for this client.
    pub(crate) reply_budget: u64,
    /// This connection, for handing it to the flusher.
    pub(crate) me: Weak<ServerConn>,
    /// The id of the last request taken (ids only grow); written under `reader`.
    pub(crate) last_taken: AtomicU64,
    /// The client broke the protocol or died: answers are discarded.
    pub(crate) broken: AtomicBool,
    /// Spin budget for waiting on reply-ring space.
    pub(crate) budget: spin::Budget,
    /// The client's bell eventfd (PROTOCOL.md §12.6), rung with every wake-up.
    pub(crate) bell: std::sync::OnceLock<OwnedFd>,
    /// The client's `client_bell` flag was seen and handled.
    pub(crate) bell_seen: AtomicBool,
    /// Its server's name for its events, and whether its drop was reported.
    pub(crate) trace: ConnTrace,
    /// The cancellation flags of the requests taken and not yet answered:
    /// a cancel record fires the one of its id; the server dropping the
    /// connection fires them all.
    pub(crate) held: Held,
}

impl Pump for ServerConn {
    /// Takes the cancel records at the head of the request ring, if no
    /// other thread reads it. A cancel queued behind a request not yet
    /// received is seen when `recv` takes that request; a broken record is
    /// left for `recv`, which drops the connection.
    fn pump(&self) {
        if self.broken.load(Ordering::Relaxed) || !self.has_requests() {
            return;
        }
        let Some(mut reader) = self.glance() else { return };
        let _ = take_between(&mut reader, self, None);
        self.wake_producer(&reader.consumer);
    }
}

/// The request ring's reader held for a look that takes no request:
/// counted in `glances` from before it is taken until after it is let go.
pub(crate) struct Glance<'a> {
    conn: &'a ServerConn,
    reader: Option<MutexGuard<'a, RequestReader>>,
}

impl std::ops::Deref for Glance<'_> {
    type Target = RequestReader;
    fn deref(&self) -> &RequestReader {
        self.reader.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Glance<'_> {
    fn deref_mut(&mut self) -> &mut RequestReader {
        self.reader.as_mut().expect("held until dropped")
    }
}

impl Drop for Glance<'_> {
    fn drop(&mut self) {
        drop(self.reader.take());
        self.conn.glances.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ServerConn {
    /// The reader for a look that takes no request, if no other thread
    /// reads the ring now (see `glances`).
    pub(crate) fn glance(&self) -> Option<Glance<'_>> {
        self.glances.fetch_add(1, Ordering::SeqCst);
        match self.reader.try_lock() {
            Ok(reader) => Some(Glance { conn: self, reader: Some(reader) }),
            Err(_) => {
                self.glances.fetch_sub(1, Ordering::SeqCst);
                None
            }
        }
    }

    /// The reader for a receiver: `None` if another receiver reads the
    /// ring now (it takes what waits there); held by a look that takes no
    /// request, waited for (such a look is short).
    pub(crate) fn reader_for_request(&self) -> Option<MutexGuard<'_, RequestReader>> {
        if let Ok(reader) = self.reader.try_lock() {
            return Some(reader);
        }
        if self.glances.load(Ordering::SeqCst) > 0 {
            return Some(lock(&self.reader));
        }
        // The look may have just ended: one more try.
        self.reader.try_lock().ok()
    }
}

impl ServerConn {
    /// A request just taken: held until answered, its cancellation flag
    /// made by the connection if anyone looks.
    pub(crate) fn hold(&self, id: u64) -> CancelRef {
        self.held.hold(id);
        CancelRef::lazy(id)
    }
}

impl FlagSource for ServerConn {
    fn flag(&self, id: u64) -> Arc<Cancel> {
        let pump: Weak<dyn Pump> = self.me.clone();
        self.held.flag(id, pump)
    }

    fn fired(&self, id: u64) -> bool {
        self.held.fired(id)
    }
}

/// Takes the records that may come between messages: a deadline record
/// (PROTOCOL.md §12.7), which must be whole (8 bytes, offset 0) and waits
/// for its request (only one may: a record after it is refused by the
/// request's `allowed`); cancel records (§12.8), empty and naming a request
/// already taken; control records (§12.9), answered at once from
/// `counters`, never reaching a `recv`. Without `counters` (a cancel
/// check's look from a handler's thread) a control record stops the look:
/// `recv` or the idle accepting thread answers it. Anything else is a
/// violation. At most [`BETWEEN_RECORDS`] are taken in one call
/// ([`Head::More`] if it stopped there), so that a client writing such
/// records as fast as they are taken holds no thread for long.
pub(crate) fn take_between(
    reader: &mut RequestReader,
    conn: &ServerConn,
    counters: Option<&Counters>,
) -> std::result::Result<Head, ring::Violation> {
    for _ in 0..BETWEEN_RECORDS {
        if reader.partial.is_some() || reader.deadline.is_some() {
            return Ok(Head::Message);
        }
        let between = |k: u32| matches!(k, kind::REQUEST | kind::DEADLINE | kind::CANCEL | kind::CONTROL_REQUEST);
        let Some(record) = reader.consumer.peek(between)? else { return Ok(Head::Nothing) };
        let h = record.header;
        match h.kind {
            kind::DEADLINE => {
                if h.len != 8 || h.total != 8 || h.offset != 0 {
                    return Err(ring::Violation::Piece("a deadline record must be one whole 8-byte piece"));
                }
                let ns = u64::from_le_bytes(reader.consumer.payload(&record).try_into().expect("8 bytes"));
                reader.consumer.release(&record);
                reader.deadline = Some((h.id, ns));
            }
            kind::CANCEL => {
                if h.len != 0 || h.total != 0 || h.offset != 0 {
                    return Err(ring::Violation::Piece("a cancel record must be empty"));
                }
                // Only a request already taken, or a control request
                // already answered, can be cancelled (ids grow).
                if h.id == 0 || h.id > conn.last_taken.load(Ordering::Acquire).max(reader.last_control) {
                    return Err(ring::Violation::Piece("a cancel record for a request never sent"));
                }
                reader.consumer.release(&record);
                conn.held.cancel(h.id);
            }
            kind::CONTROL_REQUEST => {
                if h.len != h.total || h.offset != 0 || h.total > frame::MAX_CONTROL_REQUEST {
                    return Err(ring::Violation::Piece("a control record must be one whole piece of at most 64 bytes"));
                }
                let Some(counters) = counters else { return Ok(Head::Nothing) };
                let answer = stats::answer_control(counters, reader.consumer.payload(&record));
                reader.consumer.release(&record);
                reader.last_control = reader.last_control.max(h.id);
                let _ = conn.answer(h.id, Answer::Control(&answer));
            }
            _ => return Ok(Head::Message),
        }
    }
    Ok(Head::More)
}

/// What [`take_between`] left at the head of a request ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// A request (or the rest of one) is next: `ring::take` takes it.
    Message,
    /// Nothing it takes: the ring was empty when it looked (a record the
    /// client writes after that is for the next look: taking a message then
    /// would find whatever came, a cancel included, where a message must
    /// be), or a control record waits for a `recv` or the idle thread.
    Nothing,
    /// It stopped after [`BETWEEN_RECORDS`]: more such records may wait.
    More,
}

/// Most records [`take_between`] takes in one call: what is left is taken
/// by the next look or `recv` (a receiver may wait for a
/// [`glance`](ServerConn::glance), and a receiver's scan moves on to the
/// other connections).
pub(crate) const BETWEEN_RECORDS: usize = 64;

impl ServerConn {
    /// True if the request ring may hold a record (two plain loads).
    pub(crate) fn has_requests(&self) -> bool {
        let ctrl = &self.mapping.header().requests;
        ctrl.tail.load(Ordering::Acquire) != ctrl.head.load(Ordering::Relaxed)
    }

    pub(crate) fn max_reply(&self) -> u32 {
        // Read once; a client that lies only limits its own replies.
        let client = self.mapping.header().client_max.load(Ordering::Relaxed);
        if client == 0 {
            self.local_max
        } else {
            client.min(self.local_max)
        }
    }
}

impl ServerConn {
    /// Gives the connection up (a slow or broken client): queued replies are
    /// dropped and the client sees the hang-up, failing its calls with
    /// `Disconnected`.
    pub(crate) fn break_off(&self, writer: &mut ReplyWriter) {
        self.broken.store(true, Ordering::Relaxed);
        writer.clear();
        sys::socket::shutdown(self.socket.as_fd());
    }

    pub(crate) fn wake_client(&self) {
        self.wake_client_as(1);
    }

    /// Wakes the client that announced `how` it sleeps in the reply ring's
    /// flag: a thread on the futex alone ([`SLEEPING_ON_FUTEX`]) needs no
    /// bell, whose readiness its event loop would take for nothing.
    pub(crate) fn wake_client_as(&self, how: u32) {
        futex_wake(&self.mapping.header().replies.consumer_sleeping);
        if how != SLEEPING_ON_FUTEX {
            self.ring_bell();
        }
    }

    /// Rings the client's bell, if it gave us one (an event loop's client).
    fn ring_bell(&self) {
        if let Some(bell) = self.bell.get() {
            sys::eventfd::signal(bell.as_fd());
        }
    }

    /// After taking from the request ring: wakes a client waiting for room.
    pub(crate) fn wake_producer(&self, consumer: &Consumer) {
        let flag = &consumer.ring().control().producer_sleeping;
        if take_sleeper(flag) {
            futex_wake(flag);
            self.ring_bell();
        }
    }

    /// Before taking a request: takes the client's bell once its flag says
    /// it was sent. False if the client broke the protocol (flag set but no
    /// bell, or not one eventfd behind the one byte).
    pub(crate) fn look_for_bell(&self) -> bool {
        if self.bell_seen.load(Ordering::Relaxed) {
            return true;
        }
        if self.mapping.header().client_bell.load(Ordering::Acquire) == 0 {
            return true;
        }
        self.bell_seen.store(true, Ordering::Relaxed);
        let mut byte = [0u8; 2];
        let Ok((n, mut fds)) = recv_with_fds_now(self.socket.as_fd(), &mut byte) else { return false };
        if n != 1 || byte[0] != BELL_BYTE || fds.len() != 1 || !sys::shm::is_eventfd(fds[0].as_fd()) {
            return false;
        }
        let _ = self.bell.set(fds.pop().expect("one"));
        true
    }
}

impl Responder for ServerConn {
    fn flag_source(&self) -> Option<&dyn FlagSource> {
        Some(self)
    }

    fn answer(&self, id: u64, answer: Answer<'_>) -> Result<()> {
        let (kind, payload) = match answer {
            Answer::Reply(ref data) => (kind::REPLY, data.as_slice()),
            Answer::Fail(data) => (kind::FAIL, data),
            Answer::NoReply => (kind::NO_REPLY, &[][..]),
            Answer::Control(data) => (kind::CONTROL_REPLY, data),
        };
        // Answered: a later cancel of it is ignored.
        self.held.release(id);
        if self.broken.load(Ordering::Relaxed) {
            // Like a late reply to an abandoned call, the answer is discarded:
            // the client is gone, broke its ring, or was dropped.
            return Ok(());
        }
        let header = self.mapping.header();
        let mut writer = lock(&self.writer);
        if self.broken.load(Ordering::Relaxed) {
            // Checked again under the lock: a connection given up on while
            // we waited for it must not get a message after a cut-off one.
            return Ok(());
        }
        publish_cpu(&header.server_cpu);
        let wake = |how| self.wake_client_as(how);
        // Never blocks on the client (DESIGN §6): a short spin while it may
        // pay, as a busy pair always makes, then what does not fit waits.
        let mut room = |producer: &Producer| {
            let spinning =
                spin::allowance(self.mode, &self.budget, header.client_cpu.load(Ordering::Relaxed), current_cpu());
            spin::quick(spinning.ns, || producer.head_moved()) || spin::spin_for(spinning.ns, || producer.head_moved())
        };
        match writer.send(kind, id, payload, self.reply_budget, &wake, &mut room) {
            Ok(Sent::Done) => {}
            Ok(Sent::Queued) => {
                if !self.me.upgrade().is_some_and(|me| self.flusher.watch(&me)) {
                    self.break_off(&mut writer);
                }
            }
            Ok(Sent::OverBudget) => {
                self.trace.dropped(self.token, &self.peer, DropReason::OverBudget);
                self.break_off(&mut writer)
            }
            Err(_) => self.break_off(&mut writer),
        }
        Ok(())
    }
}

impl Flushable for ServerConn {
    fn token(&self) -> u64 {
        self.token
    }

    fn flush(&self) -> Flushed {
        let mut writer = lock(&self.writer);
        if self.broken.load(Ordering::Relaxed) {
            writer.clear();
            return Flushed::Broken;
        }
        let before = writer.queued();
        match writer.flush(&|how| self.wake_client_as(how)) {
            Ok(true) => Flushed::Empty,
            Ok(false) if writer.queued() < before => Flushed::Progress,
            Ok(false) => Flushed::Stuck,
            Err(_) => {
                self.break_off(&mut writer);
                Flushed::Broken
            }
        }
    }

    fn stalled_since(&self) -> Option<Instant> {
        lock(&self.writer).stalled_since
    }

    fn give_up(&self) {
        self.trace.dropped(self.token, &self.peer, DropReason::Stalled);
        self.break_off(&mut lock(&self.writer));
    }

    fn forget_if_idle(&self, forget: &mut dyn FnMut()) {
        let writer = lock(&self.writer);
        if !writer.is_waiting() {
            forget();
        }
    }

    fn wait_for_room(&self, timeout: Duration) {
        let flag = &self.mapping.header().replies.producer_sleeping;
        announce_sleep(flag);
        // Not under the writer lock: answering threads must not wait on us.
        // A read between this look and the sleep clears the flag, and the
        // futex then returns at once.
        if !lock(&self.writer).producer.head_moved() {
            futex_wait(flag, 1, Some(timeout));
        }
        flag.store(0, Ordering::Relaxed);
    }
}
