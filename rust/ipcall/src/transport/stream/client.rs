//! The client end of a stream connection.
//!
//! Calls are matched by id. Ids start at 1 and grow by one per request; one
//! is allocated under the writer lock, so requests go out in id order (the
//! server's `close` frame relies on it). An answer whose id is not pending —
//! never issued, abandoned, or already answered — is discarded.
//!
//! **Waiting without a thread hop (leader/follower; [`reading`]).** There is no reader
//! thread on the sync path: a waiting caller takes the *reading role* if it is
//! free, reads frames off the wire itself and completes whichever calls they
//! answer (its own or other callers'); the other waiting callers sleep on
//! their own [`Slot`]. When the reader's own call is done it gives up the role
//! and nudges one sleeping caller to take it over.
//!
//! **Async.** A `Pending` polled as a `Future` registers its waker in its slot
//! and marks its call async. The first time that happens on a connection, a
//! reader thread is started for it; the thread takes the reading role
//! whenever async calls are pending and nobody else reads, so futures
//! complete under any executor. Connections used only synchronously never
//! start it.
//!
//! **Event loops** ([`evented`]): `fd()` is an epoll set of the read
//! descriptor and the notifier (rung by another thread that completes an
//! evented call, or leaves read bytes undecoded); `progress()` takes the
//! reading role only if it is free and reads what is there without
//! blocking; `try_send` writes without blocking and keeps the tail of a
//! partly written frame in the outbox, which the next send or `progress()`
//! finishes first (while it is not empty `fd()` also reports writability).
//!
//! **Death.** End of stream, an I/O error or a protocol violation fails every
//! pending call at once (`Disconnected`, or `Protocol` naming the violation),
//! and every later call fails the same way.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::frame::{self, Event, FrameKind, Role};
use crate::core::slot::{Outcome, Slot, SpareSlot, Woken};
use crate::core::wait::lock;
use crate::core::wait::Deadline;
use crate::sys::poll::{poll_until, pollfd};
use crate::transport::calls::{busy, fail_all, Calls, Death, Entry};
use crate::transport::evented::{Notifier, PollSet};
use crate::transport::stream::{
    is_disconnect, remaining_slices, wait_fd, write_all_blocking, FrameReader, ReadError, Wire,
};
use crate::transport::{Call, ClientConn, Waited};

mod evented;
mod reading;

/// The writer's state, locked while a request is written.
struct Writer {
    /// The next request id.
    next_id: u64,
    /// The unsent tail of a frame `try_send` wrote only in part; written
    /// before anything else.
    outbox: Vec<u8>,
    /// The slot the next call reuses once its last call is done with it.
    spare: SpareSlot,
}
/// Most cancel frames that wait for a busy writer; later ones are dropped
/// (a cancel is best effort: the server just works on for nothing).
const MAX_QUEUED_CANCELS: usize = 1024;

/// How long a client waits for the server's half of the handshake, unless
/// its `connect_timeout` says otherwise.
pub(crate) const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client handle, its `Pending`s and the async reader share.
struct Shared {
    name: Arc<str>,
    wire: Box<dyn Wire>,
    /// The negotiated maximum message size, both ways.
    max: u32,
    /// Both hellos announced `FLAG_DEADLINE`: requests may carry deadline frames.
    sends_deadlines: bool,
    /// Both hellos announced `FLAG_CANCEL`: an abandoned call sends a cancel frame.
    sends_cancels: bool,
    /// Ids of abandoned calls whose cancel frame waits for the writer (at
    /// most [`MAX_QUEUED_CANCELS`]; more are dropped). Whoever holds the
    /// writer moves them into the outbox before letting it go.
    cancels: Mutex<Vec<u64>>,
    /// `cancels` is not empty (set and cleared under its lock): a writer
    /// letting go looks here, without the lock (see `flush_cancels`).
    cancels_queued: AtomicBool,
    /// Both hellos announced `FLAG_CONTROL`: control requests may be sent.
    sends_control: bool,
    /// The next request id and the outbox. Locked while a request is
    /// written, so requests leave in id order and never interleave.
    writer: Mutex<Writer>,
    calls: Mutex<Calls>,
    /// Wakes the async reader when async calls appear or the role frees up.
    async_cond: Condvar,
    /// Locked only by the holder of the reading role.
    reader: Mutex<FrameReader>,
    /// The id of the call whose sender took the reading role as it sent
    /// (a caller that waits at once, [`send_to_wait`](ClientConn::send_to_wait)),
    /// to read as soon as it waits: its `wait` holds the role without
    /// taking it (one look at the table fewer a call); its `abandon`
    /// hands it on. 0: none.
    reading_reserved: AtomicU64,
    /// The event loop's eventfd (made by the first `fd()`).
    notifier: Notifier,
    /// The event loop's descriptor (made by the first `fd()`).
    poll_set: std::sync::OnceLock<PollSet>,
    /// A `try_send` found the writer busy: the blocking sender that held
    /// it rings the notifier when it lets go.
    send_blocked: crate::transport::evented::SendGate,
}

/// The connection as `Client` sees it; its clones and `Pending`s share it.
/// Dropping the last one shuts the connection down.
pub(crate) struct StreamClient {
    shared: Arc<Shared>,
}

impl StreamClient {
    /// Performs the client half of the handshake over `wire` and returns the
    /// connection: `Timeout` if the server's hello does not come within the
    /// client's `connect_timeout` (default [`CLIENT_HANDSHAKE_TIMEOUT`]).
    pub(crate) fn handshake(
        name: Arc<str>,
        wire: Box<dyn Wire>,
        options: &crate::core::options::ClientOptions,
    ) -> Result<Arc<StreamClient>> {
        let local_max = options.max_message_size;
        let io_err = |e: io::Error| {
            if is_disconnect(&e) {
                Error::Disconnected { name: name.clone() }
            } else {
                Error::from_io(&name, e)
            }
        };
        // A server that refuses us may have closed before our hello went out:
        // its own hello (with the refusal) is still there to read.
        let flags = frame::FLAGS | wire.hello_flags();
        let written = write_all_blocking(&*wire, &[&frame::encode_hello(frame::STATUS_OK, local_max, flags)]);
        let mut reader = FrameReader::new(Role::Client, local_max, flags);
        let deadline = Deadline::after(options.connect_timeout.unwrap_or(CLIENT_HANDSHAKE_TIMEOUT));
        let hello = match reader.next(&*wire, deadline) {
            Ok(Some(Event::Hello(hello))) => hello,
            Ok(Some(Event::Frame(_))) => unreachable!("the decoder yields the hello first"),
            Ok(None) => return Err(Error::Timeout { name }),
            Err(ReadError::Eof) => {
                return Err(written.err().map_or(Error::Disconnected { name: name.clone() }, io_err))
            }
            Err(ReadError::Io(e)) => return Err(io_err(e)),
            Err(ReadError::Protocol(e)) => return Err(Error::Protocol { name, reason: e.to_string() }),
        };
        if hello.status == frame::STATUS_BUSY {
            return Err(busy(&name));
        }
        if hello.status == frame::STATUS_REFUSED {
            return Err(Error::PermissionDenied { name });
        }
        written.map_err(io_err)?;
        let shared = Shared {
            name,
            wire,
            max: reader.max(),
            sends_deadlines: reader.negotiated() & frame::FLAG_DEADLINE != 0,
            sends_cancels: reader.negotiated() & frame::FLAG_CANCEL != 0,
            cancels: Mutex::new(Vec::new()),
            cancels_queued: AtomicBool::new(false),
            sends_control: reader.negotiated() & frame::FLAG_CONTROL != 0,
            writer: Mutex::new(Writer { next_id: 1, outbox: Vec::new(), spare: SpareSlot::default() }),
            reading_reserved: AtomicU64::new(0),
            calls: Mutex::new(Calls::new()),
            async_cond: Condvar::new(),
            reader: Mutex::new(reader),
            notifier: Notifier::new(),
            poll_set: std::sync::OnceLock::new(),
            send_blocked: crate::transport::evented::SendGate::default(),
        };
        Ok(Arc::new(StreamClient { shared: Arc::new(shared) }))
    }
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        let shared = &self.shared;
        lock(&shared.calls).handle_gone = true;
        shared.async_cond.notify_all();
        // No `Pending` is left (each holds this handle), so nothing waits; this
        // ends the connection and any async reader blocked reading it.
        shared.wire.shutdown();
    }
}

impl Shared {
    fn error_for(&self, death: &Death) -> Error {
        death.error(&self.name)
    }

    /// Marks the connection dead and fails every pending call at once.
    fn die(&self, death: Death) {
        let Some(drained) = lock(&self.calls).kill(&death) else { return };
        crate::transport::trace::client_died(&self.name, &death);
        self.async_cond.notify_all();
        // Blocked readers and writers of this connection return now.
        self.wire.shutdown();
        fail_all(drained, &death, &self.name);
    }

    /// Writes one request while the writer lock is held. If the socket is
    /// full and nobody reads, reads answers meanwhile: a server blocked
    /// writing us a reply could otherwise never read this request.
    ///
    /// `reading`: this thread holds the reading role (reserved as it sent):
    /// it reads itself while the wire is full, and keeps the role.
    fn write_request(&self, header: &[u8], data: &[u8], reading: bool) -> io::Result<()> {
        let parts = [header, data];
        let total = header.len() + data.len();
        self.wire.before_write(total);
        let mut sent = 0usize;
        while sent < total {
            let slices = remaining_slices(&parts, sent);
            match self.wire.write_now(&slices.slices[..slices.len]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if reading || self.try_take_reading() {
                        let left = {
                            let mut reader = lock(&self.reader);
                            let mut fds = [
                                pollfd(self.wire.write_fd(), libc::POLLOUT),
                                pollfd(self.wire.read_fd(), libc::POLLIN),
                            ];
                            let polled = poll_until(&mut fds, Deadline::Never);
                            if polled.is_ok() && fds[1].revents != 0 {
                                self.read_one(&mut reader, Deadline::Now);
                            }
                            let left = self.leave_reader(&reader);
                            if let Err(e) = polled {
                                drop(reader);
                                if !reading {
                                    self.give_up_reading(left);
                                }
                                return Err(e);
                            }
                            left
                        };
                        if !reading {
                            self.give_up_reading(left);
                        }
                    } else {
                        // Someone else reads; re-check now and then in case
                        // they stop while we are still blocked.
                        wait_fd(self.wire.write_fd(), libc::POLLOUT, Deadline::after(Duration::from_millis(10)))?;
                    }
                    // A server that closed reads no more: this request
                    // will never be taken (its call already ended so), and
                    // the rest of it need not wait for room.
                    let calls = lock(&self.calls);
                    if calls.dead.is_some() || calls.server_closed.is_some() {
                        return Err(io::ErrorKind::BrokenPipe.into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes request `data` for `slot`, blocking while the wire is full;
    /// returns its id. The writer lock is held throughout.
    /// Sends a request (preceded by its deadline frame when `timeout_ns`
    /// is `Some`, which the caller allows only if both sides announced it).
    /// `kind` is `Request` or `ControlRequest` (whose ids come from the same
    /// sequence). `reserve`: the caller waits at once; if nobody holds the
    /// reading role it takes it in the same look at the table as the
    /// entry, for its `wait` (returned true then; see `reading_reserved`).
    fn send_blocking(
        &self,
        kind: FrameKind,
        data: &[u8],
        timeout_ns: Option<u64>,
        reserve: bool,
    ) -> Result<(u64, bool, Arc<Slot>)> {
        let mut writer = lock(&self.writer);
        let slot = writer.spare.fresh();
        if !reserve {
            // Its answer may be awaited through the descriptor.
            self.notifier.arm(&slot);
        }
        if !writer.outbox.is_empty() {
            let outbox = std::mem::take(&mut writer.outbox);
            if self.write_request(&outbox, &[], false).is_err() {
                drop(writer);
                return Err(self.broken_write(None));
            }
            self.want_write(false);
        }
        let (id, reserved);
        {
            let mut calls = lock(&self.calls);
            if let Some(death) = &calls.dead {
                return Err(self.error_for(death));
            }
            if calls.server_closed.is_some() || calls.write_broken {
                return Err(Error::Disconnected { name: self.name.clone() });
            }
            id = writer.next_id;
            calls.pending.insert(id, Entry { slot: slot.clone(), is_async: false, following: false });
            reserved = reserve && !calls.reading;
            calls.reading |= reserved;
        }
        writer.next_id += 1;
        let header = frame::encode_header(kind, id, data.len() as u32);
        let mut with_deadline = [0u8; 2 * frame::HEADER_LEN + frame::DEADLINE_LEN as usize];
        let header: &[u8] = match timeout_ns {
            None => &header,
            Some(ns) => {
                with_deadline[..frame::HEADER_LEN + 8].copy_from_slice(&frame::encode_deadline(id, ns));
                with_deadline[frame::HEADER_LEN + 8..].copy_from_slice(&header);
                &with_deadline
            }
        };
        if self.write_request(header, data, reserved).is_err() {
            drop(writer);
            let error = self.broken_write(Some(id));
            if reserved {
                self.give_up_reading(false);
            }
            return Err(error);
        }
        Ok((id, reserved, slot))
    }

    /// The async reader: reads whenever async calls are pending and nobody
    /// else holds the reading role; exits when the connection dies or the
    /// client handle is gone.
    fn async_reader(self: Arc<Self>) {
        loop {
            {
                let mut calls = lock(&self.calls);
                loop {
                    if calls.dead.is_some() || calls.handle_gone {
                        calls.async_reader = false;
                        return;
                    }
                    if calls.async_calls > 0 && !calls.reading {
                        break;
                    }
                    calls = self.async_cond.wait(calls).unwrap_or_else(|e| e.into_inner());
                }
                calls.reading = true;
            }
            let left = {
                let mut reader = lock(&self.reader);
                while self.read_one(&mut reader, Deadline::Never) {
                    if lock(&self.calls).async_calls == 0 {
                        break;
                    }
                }
                self.leave_reader(&reader)
            };
            self.give_up_reading(left);
        }
    }
}

impl StreamClient {
    fn send_with(self: Arc<Self>, data: &[u8], timeout: Option<Duration>, for_loop: bool) -> Result<Call> {
        self.send_kind(FrameKind::Request, data, timeout, for_loop)
    }

    /// `for_loop`: the answer may be awaited through the descriptor (its
    /// completion rings it), not by a caller that waits at once.
    fn send_kind(
        self: Arc<Self>,
        kind: FrameKind,
        data: &[u8],
        timeout: Option<Duration>,
        for_loop: bool,
    ) -> Result<Call> {
        let (id, slot) = self.send_kind_here(kind, data, timeout, for_loop)?;
        Ok(Call::new(self, id, slot))
    }

    /// [`send_kind`](Self::send_kind) without the `Call`: its id and slot.
    fn send_kind_here(
        &self,
        kind: FrameKind,
        data: &[u8],
        timeout: Option<Duration>,
        for_loop: bool,
    ) -> Result<(u64, Arc<Slot>)> {
        let shared = &self.shared;
        if data.len() as u64 > u64::from(shared.max) {
            return Err(Error::TooLarge { size: data.len() as u64, max: u64::from(shared.max) });
        }
        // A peer that did not announce deadlines never sees the frame.
        let timeout_ns = timeout.filter(|_| shared.sends_deadlines).map(crate::transport::timeout_ns);
        let sent = shared.send_blocking(kind, data, timeout_ns, !for_loop);
        // The writer is free again: an event loop whose `try_send` found it
        // busy may try again, and cancels queued meanwhile go out.
        shared.send_blocked.after_blocking_send(&shared.notifier);
        shared.flush_cancels();
        let (id, reserved, slot) = sent?;
        if reserved {
            // Only this thread reads it, in `wait` (or `abandon`) next.
            shared.reading_reserved.store(id, Ordering::Relaxed);
        }
        Ok((id, slot))
    }
}

impl ClientConn for StreamClient {
    fn send(self: Arc<Self>, data: &[u8]) -> Result<Call> {
        self.send_with(data, None, true)
    }

    fn send_timeout(self: Arc<Self>, data: &[u8], timeout: Duration) -> Result<Call> {
        self.send_with(data, Some(timeout), true)
    }

    fn send_to_wait(self: Arc<Self>, data: &[u8], timeout: Option<Duration>) -> Result<Call> {
        self.send_with(data, timeout, false)
    }

    fn send_here(&self, data: &[u8], timeout: Option<Duration>) -> Option<Result<(u64, Arc<Slot>)>> {
        Some(self.send_kind_here(FrameKind::Request, data, timeout, false))
    }

    fn control(self: Arc<Self>, request: &[u8]) -> Result<Call> {
        if !self.shared.sends_control {
            return Err(crate::transport::no_control(&self.shared.name));
        }
        self.send_kind(FrameKind::ControlRequest, request, None, true)
    }

    fn wait(&self, id: u64, slot: &Slot, deadline: Deadline) -> bool {
        self.wait_for(id, slot, deadline).into_ready(slot)
    }

    fn wait_take(&self, id: u64, slot: &Slot, deadline: Deadline) -> Option<Option<Outcome>> {
        self.wait_for(id, slot, deadline).into_outcome(slot)
    }

    fn poll(&self, id: u64, slot: &Slot, cx: &mut Context<'_>) -> Poll<()> {
        if slot.poll_ready(cx).is_ready() {
            return Poll::Ready(());
        }
        let shared = &self.shared;
        let start_reader = {
            let mut calls = lock(&shared.calls);
            let Some(entry) = calls.pending.get_mut(&id) else {
                // Answered or failed meanwhile; the slot is (being) completed.
                return slot.poll_ready(cx);
            };
            if !entry.is_async {
                entry.is_async = true;
                calls.async_calls += 1;
            }
            let start = !calls.async_reader;
            calls.async_reader = true;
            start
        };
        if start_reader {
            let shared = self.shared.clone();
            let spawned =
                std::thread::Builder::new().name("ipcall-async-reader".into()).spawn(move || shared.async_reader());
            if spawned.is_err() {
                lock(&self.shared.calls).async_reader = false;
                self.shared.die(Death::Disconnected);
            }
        } else {
            shared.async_cond.notify_all();
        }
        slot.poll_ready(cx)
    }

    fn abandon(&self, id: u64, slot: &Slot) {
        let shared = &self.shared;
        if shared.take_reservation(id) {
            shared.give_up_reading(false);
        }
        let unanswered = {
            let mut calls = lock(&shared.calls);
            let live = calls.dead.is_none() && calls.server_closed.is_none() && !calls.write_broken;
            calls.remove(id).is_some() && live
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
    }

    fn progress_edge(&self) -> bool {
        self.evented_progress()
    }

    fn needs_progress(&self) -> bool {
        true
    }

    fn try_send(self: Arc<Self>, data: &[u8], timeout: Option<Duration>) -> Result<Option<Call>> {
        self.evented_try_send(data, timeout)
    }

    fn in_flight(&self) -> usize {
        lock(&self.shared.calls).pending.len()
    }

    fn is_closed(&self) -> bool {
        let calls = lock(&self.shared.calls);
        calls.dead.is_some() || calls.server_closed.is_some() || calls.write_broken
    }
}

impl StreamClient {
    /// Waits until call `id`'s slot is completed (or the caller read its
    /// own answer, [`Waited::Own`]) or the deadline passes.
    fn wait_for(&self, id: u64, slot: &Slot, deadline: Deadline) -> Waited {
        let shared = &self.shared;
        // This call's sender took the reading role for it (`send_blocking`).
        let mut reserved = shared.take_reservation(id);
        loop {
            if slot.is_ready() && !reserved {
                return Waited::Ready;
            }
            if std::mem::take(&mut reserved) || shared.try_take_reading() {
                let led = shared.lead(id, slot, deadline);
                if let Some(left) = led.left {
                    shared.give_up_reading(left);
                }
                if let Some(outcome) = led.own {
                    return Waited::Own(outcome);
                }
                if led.ready || deadline.expired() {
                    return Waited::ready_if(led.ready);
                }
                continue;
            }
            if deadline == Deadline::Now {
                return Waited::ready_if(slot.is_ready());
            }
            {
                let mut calls = lock(&shared.calls);
                if calls.dead.is_some() || !calls.pending.contains_key(&id) {
                    // Out of the table: whoever took it out (an answer, or the
                    // connection's death) is completing the slot right now.
                    drop(calls);
                    return Waited::ready_if(slot.wait_ready(deadline));
                }
                if !calls.reading {
                    // The role freed up between our attempt and now.
                    continue;
                }
                if let Some(entry) = calls.pending.get_mut(&id) {
                    entry.following = true;
                }
                calls.followers += 1;
            }
            let woken = slot.wait_ready_or_nudged(deadline);
            {
                let mut guard = lock(&shared.calls);
                let calls = &mut *guard;
                if let Some(entry) = calls.pending.get_mut(&id) {
                    entry.following = false;
                    calls.followers -= 1;
                }
            }
            match woken {
                Woken::Ready => return Waited::Ready,
                Woken::Nudged => continue,
                Woken::TimedOut => return Waited::ready_if(slot.is_ready()),
            }
        }
    }
}
