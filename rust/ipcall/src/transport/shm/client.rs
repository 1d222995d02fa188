//! The `shm:` client: writes requests into its connection's request ring,
//! rings the server's doorbell only when the server announced that it
//! sleeps, and reads replies from the reply ring.
//!
//! **Waiting without a thread hop (leader/follower; [`reading`])**, as the stream client:
//! a waiting caller takes the reading role if it is free, reads the reply
//! ring itself and completes whichever calls the replies answer; the other
//! waiting callers sleep on their own slot and are nudged to take the role
//! over when it frees up. The reader spins while that may pay
//! ([`spin`](super::spin)), then sleeps on a futex on the reply ring's
//! `consumer_sleeping` flag, in slices of [`DEATH_CHECK`] between which it
//! looks for the server's hang-up on the rendezvous socket. A slice that
//! ends with nothing to read means the server holds the calls: the reader
//! then sleeps again without spinning until news comes or a call is sent.
//!
//! **Async.** The first `Pending` polled as a future starts a reader thread
//! for the connection, which takes the reading role while async calls are
//! pending.
//!
//! **Event loops** ([`evented`]): see there; a call that looks for its
//! answer at once ([`lone`]) takes it as a blocking call does.
//!
//! **Death.** The server's hang-up fails every pending call with
//! `Disconnected`; a broken reply ring with `Protocol`. A server that closed
//! publishes the last request it took: later calls fail at once.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use super::{
    map_conn_memory, peer_gone, protocol, publish_cpu, recv_with_fds, send_message, send_message_from, spin,
    wake_producer, Mapping, SendError, Sending, DEATH_CHECK,
};
use crate::core::error::{Error, Result};
use crate::core::frame;
use crate::core::name::Name;
use crate::core::options::{ClientOptions, WaitMode};
use crate::core::slot::{Outcome, Slot, SpareSlot, Woken};
use crate::core::wait::lock;
use crate::core::wait::Deadline;
use crate::transport::calls::{busy, fail_all, fail_not_taken, Calls, Death, Entry};
use crate::transport::evented::{Notifier, PollSet};
use crate::transport::shm::ring::{self, announce_sleep, kind, Consumer, Partial, Producer, Taken};
use crate::transport::stream::client::CLIENT_HANDSHAKE_TIMEOUT;
use crate::transport::stream::wait_fd;
use crate::transport::unix;
use crate::transport::{Call, ClientConn, Tried, Waited};

mod brief;
mod evented;
mod lone;
mod reading;

struct Writer {
    /// The next request id (ids start at 1 and grow by one).
    next_id: u64,
    producer: Producer,
    /// The rest of a request `try_send` wrote only in part: written before
    /// anything else.
    outbox: Option<Outbox>,
    /// The slot the next call reuses once its last call is done with it.
    spare: SpareSlot,
}

/// A request whose first `offset` bytes are in the ring.
struct Outbox {
    id: u64,
    data: Vec<u8>,
    offset: usize,
}

struct ReplyReader {
    consumer: Consumer,
    partial: Option<Partial>,
    /// The call whose caller holds the role and waits at once (0: none):
    /// [`drain`](Shared::drain) leaves its answer in `own_answer` instead of
    /// its slot, for the caller to take without the slot's claim, publish
    /// and take (three locked instructions).
    own_id: u64,
    own_answer: Option<Outcome>,
}

struct Shared {
    name: Arc<str>,
    socket: OwnedFd,
    /// The server's doorbell eventfd.
    doorbell: OwnedFd,
    mapping: Mapping,
    /// The negotiated maximum message size, both ways.
    max: u32,
    /// The server offers `FEATURE_DEADLINE`: requests may carry deadline records.
    sends_deadlines: bool,
    /// The server offers `FEATURE_CANCEL`: an abandoned call sends a cancel record.
    sends_cancels: bool,
    /// Ids of abandoned calls whose cancel record waits for the writer (at
    /// most `MAX_QUEUED_CANCELS`, more are dropped): written by whoever
    /// holds the writer with no request in the outbox, before letting go.
    cancels: Mutex<Vec<u64>>,
    /// `cancels` is not empty (kept so under its lock): a writer letting go
    /// looks here, without the lock (see `flush_cancels`).
    cancels_queued: AtomicBool,
    /// The server offers `FEATURE_CONTROL`: control records may be sent.
    sends_control: bool,
    mode: WaitMode,
    writer: Mutex<Writer>,
    calls: Mutex<Calls>,
    reader: Mutex<ReplyReader>,
    /// `calls.followers + calls.async_calls`, readable without the lock, so
    /// that handing on the reading role costs nothing when nobody waits.
    interest: AtomicUsize,
    async_cond: Condvar,
    /// Spin budget for replies, and for request-ring space.
    budget: spin::Budget,
    send_budget: spin::Budget,
    /// Spin budget of an event loop's `progress_spin` (see [`brief`]).
    event_budget: spin::EventBudget,
    /// The event loop's eventfd (made by the first `fd()`).
    notifier: Notifier,
    /// The event loop's descriptor (made by the first `fd()`).
    poll_set: std::sync::OnceLock<PollSet>,
    /// The server has our bell (the notifier's eventfd) and rings it with
    /// every wake-up: evented calls need no reader thread.
    bell: std::sync::atomic::AtomicBool,
    /// A `try_send` found no room (the event loop waits for the server to
    /// free some, announced in the request ring's `producer_sleeping`) or
    /// the writer busy (the blocking sender rings when it lets go).
    send_blocked: crate::transport::evented::SendGate,
    /// Serialises the first `fd()` (the bell is sent once).
    fd_init: Mutex<()>,
    /// The server's close (the header's `closed`) has been applied to the
    /// calls (`check_closed`): from then on `closed` is no longer news, so
    /// waiters for the calls it took still sleep until their replies.
    closed_applied: std::sync::atomic::AtomicBool,
    /// The reader's last sleep ended with nothing to read (a death-check
    /// slice ran out while the server held every pending call): the next
    /// wait sleeps without spinning first. Cleared by news and by a call
    /// sent (whose answer may come at once).
    reader_idle: std::sync::atomic::AtomicBool,
}

/// The connection as `Client` sees it; clones and `Pending`s share it.
pub(crate) struct ShmClient {
    shared: Arc<Shared>,
}

impl ShmClient {
    pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<ShmClient>> {
        let shared_name = name.shared().clone();
        let io_err = |e: io::Error| Error::from_io(&shared_name, e);
        let socket = crate::sys::socket::stream_socket(false).map_err(io_err)?;
        unix::connect_fd(&socket, name).map_err(io_err)?;
        if wait_fd(std::os::fd::AsFd::as_fd(&socket), libc::POLLIN, Deadline::after(CLIENT_HANDSHAKE_TIMEOUT))
            .map_err(io_err)?
            == 0
        {
            return Err(Error::Timeout { name: shared_name });
        }
        let mut hello = [0u8; frame::HELLO_LEN];
        let (n, mut fds) = recv_with_fds(socket.as_fd(), &mut hello).map_err(io_err)?;
        if n == 0 {
            return Err(Error::Disconnected { name: shared_name });
        }
        if n < frame::HELLO_LEN {
            return Err(protocol(&shared_name, format!("a hello of {n} bytes")));
        }
        let hello = frame::decode_hello(&hello).map_err(|e| protocol(&shared_name, e))?;
        if hello.status == frame::STATUS_BUSY {
            return Err(busy(&shared_name));
        }
        if hello.status == frame::STATUS_REFUSED {
            return Err(Error::PermissionDenied { name: shared_name });
        }
        if fds.len() != 2 {
            return Err(protocol(&shared_name, format!("the hello carried {} descriptors, not 2", fds.len())));
        }
        let doorbell = fds.pop().expect("two");
        let memfd = fds.pop().expect("two");
        if !crate::sys::shm::is_eventfd(doorbell.as_fd()) {
            return Err(protocol(&shared_name, "the doorbell descriptor is not an eventfd"));
        }
        let mapping = map_conn_memory(&memfd).map_err(|reason| protocol(&shared_name, reason))?;
        drop(memfd);
        let header = mapping.header();
        header.client_max.store(options.max_message_size, Ordering::Relaxed);
        publish_cpu(&header.client_cpu);
        let shared = Shared {
            name: shared_name,
            socket,
            doorbell,
            max: options.max_message_size.min(hello.max_message_size),
            sends_deadlines: header.features.load(Ordering::Relaxed) & super::FEATURE_DEADLINE != 0,
            sends_cancels: header.features.load(Ordering::Relaxed) & super::FEATURE_CANCEL != 0,
            cancels: Mutex::new(Vec::new()),
            cancels_queued: AtomicBool::new(false),
            sends_control: header.features.load(Ordering::Relaxed) & super::FEATURE_CONTROL != 0,
            mode: options.wait_mode,
            writer: Mutex::new(Writer {
                next_id: 1,
                producer: Producer::new(mapping.requests()),
                outbox: None,
                spare: SpareSlot::default(),
            }),
            reader: Mutex::new(ReplyReader {
                consumer: Consumer::new(mapping.replies()),
                partial: None,
                own_id: 0,
                own_answer: None,
            }),
            mapping,
            calls: Mutex::new(Calls::new()),
            interest: AtomicUsize::new(0),
            async_cond: Condvar::new(),
            budget: spin::Budget::new(),
            send_budget: spin::Budget::new(),
            event_budget: spin::EventBudget::new(),
            notifier: Notifier::new(),
            poll_set: std::sync::OnceLock::new(),
            bell: std::sync::atomic::AtomicBool::new(false),
            send_blocked: crate::transport::evented::SendGate::default(),
            fd_init: Mutex::new(()),
            closed_applied: std::sync::atomic::AtomicBool::new(false),
            reader_idle: std::sync::atomic::AtomicBool::new(false),
        };
        Ok(Arc::new(ShmClient { shared: Arc::new(shared) }))
    }
}

impl Drop for ShmClient {
    fn drop(&mut self) {
        let shared = &self.shared;
        lock(&shared.calls).handle_gone = true;
        shared.async_cond.notify_all();
        // The server sees the hang-up and frees its side of the rings.
        crate::sys::socket::shutdown(shared.socket.as_fd());
    }
}

impl Shared {
    fn error_for(&self, death: &Death) -> Error {
        death.error(&self.name)
    }

    /// `TooLarge` for a request over the connection's limit (nothing is sent).
    fn check_size(&self, len: usize) -> Result<()> {
        if len as u64 > u64::from(self.max) {
            return Err(Error::TooLarge { size: len as u64, max: u64::from(self.max) });
        }
        Ok(())
    }

    /// Marks the connection dead and fails every pending call at once.
    fn die(&self, death: Death) {
        let Some(drained) = lock(&self.calls).kill(&death) else { return };
        crate::transport::trace::client_died(&self.name, &death);
        self.interest.store(0, Ordering::Relaxed);
        self.async_cond.notify_all();
        if matches!(death, Death::Protocol(_)) {
            // Tell the server: it drops its side at once.
            crate::sys::socket::shutdown(self.socket.as_fd());
        }
        fail_all(drained, &death, &self.name);
    }

    /// Removes call `id` from the table (keeping `interest` right).
    fn remove(&self, calls: &mut Calls, id: u64) -> Option<Entry> {
        let entry = calls.remove(id)?;
        if entry.is_async || entry.following {
            self.interest.store(calls.async_calls + calls.followers, Ordering::Relaxed);
        }
        Some(entry)
    }

    /// Reads every whole reply in the ring and completes its call. An answer
    /// to an id that is not pending (abandoned, or never issued) is discarded.
    fn drain(&self, reader: &mut ReplyReader) {
        let control = self.sends_control;
        let allowed =
            |k: u32| matches!(k, kind::REPLY | kind::FAIL | kind::NO_REPLY) || (control && k == kind::CONTROL_REPLY);
        loop {
            let taken = ring::take(&mut reader.consumer, &mut reader.partial, self.max, allowed);
            wake_producer(&reader.consumer);
            match taken {
                Ok(Taken::Message(message)) => {
                    let entry = self.remove(&mut lock(&self.calls), message.id);
                    if let Some(entry) = entry {
                        let outcome = match message.kind {
                            kind::REPLY | kind::CONTROL_REPLY => Outcome::Reply(message.data),
                            kind::FAIL => Outcome::Fail(message.data),
                            _ => Outcome::NoReply,
                        };
                        // Out of the table, so nobody else completes it.
                        if message.id == reader.own_id && reader.own_id != 0 {
                            reader.own_answer = Some(outcome);
                        } else {
                            entry.slot.complete(outcome);
                        }
                    }
                }
                Ok(Taken::Empty) => return,
                Err(violation) => {
                    self.die(Death::Protocol(violation.to_string()));
                    return;
                }
            }
        }
    }

    /// After a drain: applies the server's close (calls it never took end
    /// as not taken: `Disconnected`, or sent again by a pool).
    fn check_closed(&self) {
        let header = self.mapping.header();
        if header.closed.load(Ordering::Acquire) == 0 {
            return;
        }
        let last = header.last_taken.load(Ordering::Relaxed);
        let failed = {
            let mut calls = lock(&self.calls);
            let failed = calls.remove_after(last);
            self.interest.store(calls.async_calls + calls.followers, Ordering::Relaxed);
            failed
        };
        self.closed_applied.store(true, Ordering::Release);
        fail_not_taken(failed);
    }

    /// True once the server's side of the rendezvous is gone; then fails
    /// what is left (after reading the replies it wrote before dying, and
    /// its close if it closed first: the calls it never took end as such).
    fn check_gone(&self, reader: &mut ReplyReader) -> bool {
        if !peer_gone(self.socket.as_fd()) {
            return false;
        }
        self.drain(reader);
        self.check_closed();
        self.die(Death::Disconnected);
        true
    }

    /// Replies to read, or a close not yet applied. A close already applied
    /// is not news: the server may still answer the calls it took (a
    /// draining server), and their waiters must sleep, not spin, until then.
    fn has_news(&self, reader: &ReplyReader) -> bool {
        reader.consumer.has_data()
            || (self.mapping.header().closed.load(Ordering::Relaxed) != 0
                && !self.closed_applied.load(Ordering::Acquire))
    }

    /// The async reader thread: reads for async calls while they are pending.
    fn async_reader(self: Arc<Self>) {
        loop {
            {
                let mut calls = lock(&self.calls);
                while calls.async_calls == 0 && !calls.handle_gone && calls.dead.is_none() {
                    calls = self.async_cond.wait(calls).unwrap_or_else(|e| e.into_inner());
                }
                if calls.handle_gone || calls.dead.is_some() {
                    calls.async_reader = false;
                    return;
                }
            }
            {
                let mut reader = lock(&self.reader);
                // One slice at a time, so that sync callers get the role back.
                let deadline = Deadline::after(DEATH_CHECK);
                self.lead(&mut reader, deadline, |_| {
                    let calls = lock(&self.calls);
                    calls.async_calls == 0 || calls.handle_gone
                });
            }
            self.hand_on();
        }
    }

    fn ring_doorbell(&self) {
        // The peer's eventfd, checked to be one at connect.
        crate::sys::eventfd::signal(self.doorbell.as_fd());
    }
}

impl ShmClient {
    fn send_with(self: Arc<Self>, data: &[u8], timeout: Option<Duration>, for_loop: bool) -> Result<Call> {
        self.send_kind(kind::REQUEST, data, timeout, for_loop)
    }

    /// Sends a message of kind `what` (a request, or a control request of the
    /// same id sequence); `for_loop`: its answer may be awaited through `fd`.
    fn send_kind(self: Arc<Self>, what: u32, data: &[u8], timeout: Option<Duration>, for_loop: bool) -> Result<Call> {
        let (id, slot) = self.send_kind_here(what, data, timeout, for_loop)?;
        Ok(Call::new(self, id, slot))
    }

    /// [`send_kind`](Self::send_kind) without the `Call`: its id and slot.
    fn send_kind_here(
        &self,
        what: u32,
        data: &[u8],
        timeout: Option<Duration>,
        for_loop: bool,
    ) -> Result<(u64, Arc<Slot>)> {
        let shared = &self.shared;
        shared.check_size(data.len())?;
        let mut writer = lock(&shared.writer);
        let slot = writer.spare.fresh();
        let id = writer.next_id;
        let start_reader = match shared.insert_call(id, &slot, for_loop) {
            Ok(start) => start,
            Err(e) => {
                drop(writer);
                shared.send_blocked.after_blocking_send(&shared.notifier);
                return Err(e);
            }
        };
        writer.next_id += 1;
        let header = shared.mapping.header();
        if for_loop && shared.bell.load(Ordering::Acquire) {
            // A blocking send on an event loop's client (Node's writer
            // thread): the loop's last `progress` may have seen no call
            // pending and so announced no sleep; announced now, the server
            // rings the bell for this call's answer. Without it the answer
            // sat in the ring while the loop slept (a Node process hung).
            announce_sleep(&header.replies.consumer_sleeping);
        }
        publish_cpu(&header.client_cpu);
        let wake = || shared.ring_doorbell();
        let mut on_wait = || {
            // Read replies meanwhile: the server may be blocked writing one.
            if let Ok(mut reader) = shared.reader.try_lock() {
                shared.drain(&mut reader);
                if shared.check_gone(&mut reader) {
                    return false;
                }
            }
            // A server that closed takes nothing more: stop waiting for room.
            lock(&shared.calls).dead.is_none()
                && header.closed.load(Ordering::Acquire) == 0
                && !peer_gone(shared.socket.as_fd())
        };
        let mut how = Sending {
            mode: shared.mode,
            budget: &shared.send_budget,
            peer_cpu: &header.server_cpu,
            wake_consumer: &wake,
            on_wait: &mut on_wait,
        };
        let mut sent = Ok(());
        if let Some(rest) = writer.outbox.take() {
            sent = send_message_from(&mut writer.producer, kind::REQUEST, rest.id, &rest.data, rest.offset, &mut how);
        }
        // A server that does not offer deadlines never sees the record.
        if let Some(timeout) = timeout.filter(|_| shared.sends_deadlines) {
            if sent.is_ok() {
                let ns = crate::transport::timeout_ns(timeout).to_le_bytes();
                sent = send_message(&mut writer.producer, kind::DEADLINE, id, &ns, &mut how);
            }
        }
        if sent.is_ok() {
            sent = send_message(&mut writer.producer, what, id, data, &mut how);
        }
        drop(writer);
        shared.send_blocked.after_blocking_send(&shared.notifier);
        shared.flush_cancels();
        if start_reader {
            self.start_reader_thread();
        }
        match sent {
            Ok(()) => {}
            Err(SendError::Gone) => {
                // A server that closed first never took this call (nor any
                // after its `last_taken`): they end as such. Closed but not
                // gone, it still answers the calls it took.
                shared.check_closed();
                if header.closed.load(Ordering::Acquire) == 0 || peer_gone(shared.socket.as_fd()) {
                    shared.die(Death::Disconnected);
                }
            }
            Err(SendError::Violation(v)) => shared.die(Death::Protocol(v.to_string())),
        }
        Ok((id, slot))
    }
}

impl ClientConn for ShmClient {
    fn send(self: Arc<Self>, data: &[u8]) -> Result<Call> {
        self.send_with(data, None, true)
    }

    fn send_timeout(self: Arc<Self>, data: &[u8], timeout: std::time::Duration) -> Result<Call> {
        self.send_with(data, Some(timeout), true)
    }

    fn send_to_wait(self: Arc<Self>, data: &[u8], timeout: Option<Duration>) -> Result<Call> {
        self.send_with(data, timeout, false)
    }

    fn send_here(&self, data: &[u8], timeout: Option<Duration>) -> Option<Result<(u64, Arc<Slot>)>> {
        Some(self.send_kind_here(kind::REQUEST, data, timeout, false))
    }

    fn control(self: Arc<Self>, request: &[u8]) -> Result<Call> {
        if !self.shared.sends_control {
            return Err(crate::transport::no_control(&self.shared.name));
        }
        self.send_kind(kind::CONTROL_REQUEST, request, None, true)
    }

    fn wait(&self, id: u64, slot: &Slot, deadline: Deadline) -> bool {
        self.wait_for(id, slot, deadline).into_ready(slot)
    }

    fn wait_take(&self, id: u64, slot: &Slot, deadline: Deadline) -> Option<Option<Outcome>> {
        self.wait_for(id, slot, deadline).into_outcome(slot)
    }

    fn poll(&self, id: u64, slot: &Slot, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        if slot.poll_ready(cx).is_ready() {
            return Poll::Ready(());
        }
        if let Ok(mut reader) = shared.reader.try_lock() {
            shared.drain(&mut reader);
            shared.check_closed();
            drop(reader);
            shared.hand_on();
            if slot.is_ready() {
                return Poll::Ready(());
            }
        }
        let start = {
            let mut calls = lock(&shared.calls);
            if let Some(entry) = calls.pending.get_mut(&id) {
                if !entry.is_async {
                    entry.is_async = true;
                    calls.async_calls += 1;
                    shared.interest.store(calls.async_calls + calls.followers, Ordering::Relaxed);
                }
            }
            let start = !calls.async_reader && calls.dead.is_none();
            if start {
                calls.async_reader = true;
            }
            start
        };
        if start {
            self.start_reader_thread();
        } else {
            shared.async_cond.notify_all();
        }
        // The slot holds our waker: whoever completes it wakes us.
        if slot.is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn abandon(&self, id: u64, slot: &Slot) {
        let shared = &self.shared;
        let unanswered = {
            let mut calls = lock(&shared.calls);
            let live = calls.dead.is_none() && calls.server_closed.is_none();
            shared.remove(&mut calls, id).is_some() && live
        };
        slot.abandon();
        if unanswered && shared.sends_cancels {
            shared.cancel(id);
        }
    }

    fn notifier(&self) -> &Notifier {
        &self.shared.notifier
    }

    fn fd(&self) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        self.evented_fd()
    }

    fn progress(&self) {
        self.evented_progress();
        self.shared.flush_cancels();
    }

    fn needs_progress(&self) -> bool {
        true
    }

    fn try_send(self: Arc<Self>, data: &[u8], timeout: Option<Duration>) -> Result<Option<Call>> {
        self.evented_try_send_and_cancels(data, timeout)
    }

    fn try_call_here(&self, data: &[u8], spin: bool) -> Option<Result<Tried>> {
        self.lone_try_call(data, spin)
    }

    fn progress_spin(&self) -> bool {
        let caught = self.evented_progress_spin();
        self.shared.flush_cancels();
        caught
    }

    fn progress_edge(&self) -> bool {
        self.evented_progress();
        self.shared.flush_cancels();
        false
    }

    fn in_flight(&self) -> usize {
        lock(&self.shared.calls).pending.len()
    }

    /// Also asks the kernel whether the server's side of the rendezvous is
    /// gone (one `poll`): a request written into the ring of a killed
    /// server would otherwise wait for its death to be noticed.
    fn is_closed(&self) -> bool {
        let shared = &self.shared;
        lock(&shared.calls).dead.is_some()
            || shared.mapping.header().closed.load(Ordering::Acquire) != 0
            || peer_gone(shared.socket.as_fd())
    }
}

impl ShmClient {
    /// Waits until call `id`'s slot is completed (or its answer came to
    /// this caller as the reader, [`Waited::Own`]) or the deadline passes.
    fn wait_for(&self, id: u64, slot: &Slot, deadline: Deadline) -> Waited {
        let shared = &self.shared;
        // The common case first: nobody reads, so take the role at once.
        if let Ok(reader) = shared.reader.try_lock() {
            return self.lead_for(reader, id, slot, deadline);
        }
        loop {
            if slot.is_ready() {
                return Waited::Ready;
            }
            // Registered before trying the role again: a reader that leaves
            // after our attempt failed sees us and nudges.
            shared.set_following(id, true);
            match shared.reader.try_lock() {
                Ok(reader) => {
                    shared.set_following(id, false);
                    return self.lead_for(reader, id, slot, deadline);
                }
                Err(_) => match slot.wait_ready_or_nudged(deadline) {
                    Woken::Ready => {
                        shared.set_following(id, false);
                        return Waited::Ready;
                    }
                    Woken::TimedOut => {
                        shared.set_following(id, false);
                        return Waited::ready_if(slot.is_ready());
                    }
                    Woken::Nudged => {}
                },
            }
        }
    }

    /// Reads as the holder of the role (`reader`) for call `id`, then
    /// lets the reader go and hands the role on.
    fn lead_for(&self, mut reader: MutexGuard<'_, ReplyReader>, id: u64, slot: &Slot, deadline: Deadline) -> Waited {
        let shared = &self.shared;
        reader.own_id = id;
        let done = shared.lead(&mut reader, deadline, |r| r.own_answer.is_some() || slot.is_ready());
        reader.own_id = 0;
        let own = reader.own_answer.take();
        drop(reader);
        shared.hand_on();
        match own {
            Some(outcome) => Waited::Own(outcome),
            None if done => Waited::Ready,
            None => Waited::TimedOut,
        }
    }
}
