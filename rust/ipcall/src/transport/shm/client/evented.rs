//! The `shm:` client's face for event loops (see
//! [`transport::evented`](crate::transport::evented)).
//!
//! `fd()` is an epoll set of the notifier's eventfd and the rendezvous
//! socket (which turns readable when the server dies). With a server that
//! takes a client's bell (PROTOCOL.md §12.6), the first `fd()` sends it the
//! notifier's eventfd over the socket and sets `client_bell`; the server
//! then rings it whenever it wakes this client — which it does only when
//! the client announced sleep in a ring's `*_sleeping` flag, so a busy
//! pair still makes no system call. `progress()` reads the reply ring if no
//! other thread does and, while calls are pending, announces sleep in
//! `consumer_sleeping` (and in the request ring's `producer_sleeping` while
//! a request waits for room) before it returns.
//!
//! With an older server (no bell), calls sent after `fd()` are marked
//! async: the connection's reader thread reads for them, and completing
//! them rings the notifier.
//!
//! `try_send` writes a request only if the request ring has room for it
//! (or, for a request larger than one piece, for its first piece: the rest
//! waits in the outbox for `progress()` or the next send). A request with a
//! deadline is sent once its deadline record fits; if the request then does
//! not, all of it waits in the outbox, so that it still follows its record.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use super::{Outbox, Shared, ShmClient, Writer};
use crate::core::error::{Error, Result};
use crate::core::slot::Slot;
use crate::core::wait::lock;
use crate::transport::calls::{Death, Entry};
use crate::transport::evented::{quietly, PollSet};
use crate::transport::shm::ring::{announce_sleep, kind, take_sleeper, Violation};
use crate::transport::shm::{publish_cpu, send_with_fds, BELL_BYTE, FEATURE_CLIENT_BELL};
use crate::transport::Call;

/// Most cancel records that wait for the writer; later ones are dropped (a
/// cancel is best effort: the server just works on for nothing).
const MAX_QUEUED_CANCELS: usize = 1024;

impl Shared {
    /// Enters call `id` in the table. Once an event loop asked for the
    /// descriptor, a call whose answer may be awaited through it
    /// (`for_loop`) completes by ringing it, and with a server without the
    /// bell it is an async call (the reader thread reads for it); a call
    /// its caller waits for at once (`send_to_wait`) is neither. Returns
    /// whether the reader thread must be started.
    pub(super) fn insert_call(&self, id: u64, slot: &Arc<Slot>, for_loop: bool) -> Result<bool> {
        if for_loop {
            self.notifier.arm(slot);
        }
        let threaded = for_loop && self.notifier.is_armed() && !self.bell.load(Ordering::Acquire);
        let start = {
            let mut calls = lock(&self.calls);
            if let Some(death) = &calls.dead {
                return Err(self.error_for(death));
            }
            if calls.server_closed.is_some() || self.mapping.header().closed.load(Ordering::Acquire) != 0 {
                return Err(Error::Disconnected { name: self.name.clone() });
            }
            calls.pending.insert(id, Entry { slot: slot.clone(), is_async: threaded, following: false });
            if self.reader_idle.load(Ordering::Relaxed) {
                self.reader_idle.store(false, Ordering::Relaxed);
            }
            if !threaded {
                return Ok(false);
            }
            calls.async_calls += 1;
            self.interest.store(calls.async_calls + calls.followers, Ordering::Relaxed);
            let start = !calls.async_reader;
            calls.async_reader = true;
            start
        };
        if !start {
            self.async_cond.notify_all();
        }
        Ok(start)
    }

    /// Called by a reader leaving the role: it may have cleared the
    /// announcement an event loop made, so the loop is told to look again.
    pub(super) fn after_leading(&self) {
        if self.bell.load(Ordering::Relaxed) && !lock(&self.calls).pending.is_empty() {
            self.notifier.ring();
        }
    }

    /// The writer, unless another thread is writing.
    fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        crate::core::wait::try_lock(&self.writer)
    }

    /// Wakes the server if it announced that it sleeps.
    pub(super) fn wake_server(&self, writer: &Writer) {
        if take_sleeper(&writer.producer.ring().control().consumer_sleeping) {
            self.ring_doorbell();
        }
    }

    /// Writes what the ring takes now of the outbox; `Ok(true)` once empty.
    fn flush_now(&self, writer: &mut Writer) -> std::result::Result<bool, Violation> {
        let writer = &mut *writer;
        while let Some(rest) = &mut writer.outbox {
            match writer.producer.write(kind::REQUEST, rest.id, &rest.data, rest.offset)? {
                Some(n) => {
                    rest.offset += n;
                    if rest.offset == rest.data.len() {
                        writer.outbox = None;
                    }
                    if take_sleeper(&writer.producer.ring().control().consumer_sleeping) {
                        self.ring_doorbell();
                    }
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Sends a cancel record for call `id` without ever blocking: queued
    /// for the writer, then written if no other thread writes (that thread
    /// writes it as it lets the writer go). Dropped when the queue is full.
    pub(super) fn cancel(&self, id: u64) {
        {
            let mut cancels = lock(&self.cancels);
            if cancels.len() >= MAX_QUEUED_CANCELS {
                return;
            }
            cancels.push(id);
            self.cancels_queued.store(true, Ordering::Relaxed);
        }
        // Pairs with the fence of a writer letting go (see `flush_cancels`).
        fence(Ordering::SeqCst);
        self.flush_cancels();
    }

    /// Writes the queued cancel records the ring takes now, if no other
    /// thread writes and no request waits in the outbox (pieces of two
    /// messages never interleave); the rest stay queued for the next send
    /// or `progress`. A writer letting go calls this after the SeqCst fence
    /// of `after_blocking_send`, and [`cancel`](Self::cancel) after its own
    /// following the push: either the writer sees the cancel's
    /// `cancels_queued`, or the cancel's `try_writer` finds the writer free
    /// — no queued cancel is left behind. The look is a load, not a lock:
    /// it runs after every request.
    pub(super) fn flush_cancels(&self) {
        if !self.cancels_queued.load(Ordering::Acquire) {
            return;
        }
        let Some(mut writer) = self.try_writer() else { return };
        if writer.outbox.is_some() {
            return;
        }
        let mut cancels = lock(&self.cancels);
        let mut sent = 0;
        for &id in cancels.iter() {
            match writer.producer.write(kind::CANCEL, id, &[], 0) {
                Ok(Some(_)) => sent += 1,
                Ok(None) => break,
                Err(violation) => {
                    drop(cancels);
                    drop(writer);
                    self.die(Death::Protocol(violation.to_string()));
                    return;
                }
            }
        }
        cancels.drain(..sent);
        self.cancels_queued.store(!cancels.is_empty(), Ordering::Relaxed);
        drop(cancels);
        if sent > 0 {
            self.wake_server(&writer);
        }
    }

    /// With the bell: asks the server to ring it when it frees room in the
    /// request ring; true if room freed meanwhile (try again now).
    pub(super) fn wait_for_room_evented(&self, writer: &Writer) -> bool {
        announce_sleep(&writer.producer.ring().control().producer_sleeping);
        writer.producer.head_moved()
    }

    /// The writer for a send that never waits, with what waits in the
    /// outbox written first; `Ok(None)` if another thread writes or the
    /// outbox does not fit yet (the descriptor turns readable when trying
    /// again may pay).
    pub(super) fn writer_with_room(&self) -> Result<Option<MutexGuard<'_, Writer>>> {
        let Some(mut writer) = self.send_blocked.writer_or_ring_later(&self.writer) else { return Ok(None) };
        match self.flush_now(&mut writer) {
            Ok(true) => Ok(Some(writer)),
            Ok(false) => {
                self.send_blocked.set(true);
                if self.bell.load(Ordering::Acquire) && self.wait_for_room_evented(&writer) {
                    self.notifier.ring();
                }
                Ok(None)
            }
            Err(v) => {
                drop(writer);
                Err(self.violated(v))
            }
        }
    }

    /// Call `id` found no room in the request ring: as if never sent (its
    /// id is used by the next), and the descriptor turns readable when
    /// room frees.
    pub(super) fn unsend(&self, writer: MutexGuard<'_, Writer>, id: u64) {
        self.send_blocked.set(true);
        let retry = self.bell.load(Ordering::Acquire) && self.wait_for_room_evented(&writer);
        drop(writer);
        self.remove(&mut lock(&self.calls), id);
        if retry {
            self.notifier.ring();
        }
    }

    /// The error of a broken ring (the connection is dead after it).
    pub(super) fn violated(&self, v: Violation) -> Error {
        self.die(Death::Protocol(v.to_string()));
        lock(&self.calls).dead.as_ref().map_or(Error::Disconnected { name: self.name.clone() }, |d| self.error_for(d))
    }
}

/// How much [`ShmClient::evented_progress_as`] looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// All of `progress`: clears the descriptor, looks for a hang-up.
    Full,
    /// After a brief spin that caught a reply (only with the bell).
    AfterSpin,
}

impl ShmClient {
    /// Starts the connection's reader thread (its `async_reader` flag is set).
    pub(super) fn start_reader_thread(&self) {
        let shared = &self.shared;
        let reader = shared.clone();
        if std::thread::Builder::new().name("ipcall-shm-reader".into()).spawn(move || reader.async_reader()).is_err() {
            lock(&shared.calls).async_reader = false;
            shared.die(Death::Protocol("cannot start the async reader thread".into()));
        }
    }

    /// See [`ClientConn::fd`](crate::transport::ClientConn::fd).
    pub(super) fn evented_fd(&self) -> io::Result<BorrowedFd<'_>> {
        let shared = &self.shared;
        if let Some(set) = shared.poll_set.get() {
            return Ok(set.as_fd());
        }
        let _once = lock(&shared.fd_init);
        if let Some(set) = shared.poll_set.get() {
            return Ok(set.as_fd());
        }
        let bell = shared.notifier.get_or_make()?;
        let set = PollSet::new(bell, shared.socket.as_fd())?;
        let header = shared.mapping.header();
        // Read once: a server without the feature (0) never rings a bell.
        let features = header.features.load(Ordering::Relaxed);
        // The bell goes first, then the flag: a server that sees the flag
        // (before it takes our next request) finds the bell in the socket.
        // If sending fails, the reader thread serves the event loop.
        if features & FEATURE_CLIENT_BELL != 0 && send_with_fds(shared.socket.as_fd(), &[BELL_BYTE], &[bell]).is_ok() {
            header.client_bell.store(1, Ordering::Release);
            shared.bell.store(true, Ordering::Release);
        }
        let _ = shared.poll_set.set(set);
        Ok(shared.poll_set.get().expect("set above").as_fd())
    }

    /// See [`ClientConn::progress`](crate::transport::ClientConn::progress).
    pub(super) fn evented_progress(&self) {
        self.evented_progress_as(Look::Full);
    }

    /// `progress`, or with [`Look::AfterSpin`] the lighter step after a
    /// brief spin caught a reply: it leaves the descriptor's readiness (and
    /// the look for a hang-up, which that readiness reports) to the loop's
    /// next `progress`, which saves the two system calls per call that a
    /// loop caught by the spin would otherwise make. The server rang no bell
    /// unless it saw the sleep announcement before the spin withdrew it;
    /// then the descriptor stays readable, and costs the loop one look.
    pub(super) fn evented_progress_as(&self, look: Look) {
        let shared = &self.shared;
        let bell = shared.bell.load(Ordering::Acquire);
        // First: a wake-up from now on stays readable.
        let rung = match look {
            Look::Full => bell && shared.notifier.clear(),
            // As if rung: no poll for a hang-up.
            Look::AfterSpin => true,
        };
        let mut again = false;
        quietly(|| {
            if let Some(mut writer) = shared.try_writer() {
                match shared.flush_now(&mut writer) {
                    Ok(empty) => {
                        if !empty || shared.send_blocked.is_set() {
                            // Without the bell nobody tells us about room:
                            // stay readable until the outbox is written.
                            again = !bell || shared.wait_for_room_evented(&writer);
                        }
                    }
                    Err(violation) => {
                        drop(writer);
                        shared.die(Death::Protocol(violation.to_string()));
                    }
                }
            }
            if let Ok(mut reader) = shared.reader.try_lock() {
                loop {
                    shared.drain(&mut reader);
                    shared.check_closed();
                    if !bell {
                        break;
                    }
                    let waiting = {
                        let calls = lock(&shared.calls);
                        calls.dead.is_none() && !calls.pending.is_empty()
                    };
                    if !waiting {
                        break;
                    }
                    announce_sleep(&shared.mapping.header().replies.consumer_sleeping);
                    if !shared.has_news(&reader) {
                        break;
                    }
                }
                // The rendezvous socket is in `fd()`'s epoll set, level-
                // triggered: a hang-up keeps it readable. When the bell
                // rang (the usual wake-up) the `poll` is left to the next
                // `progress`, which that readiness calls for; it finds the
                // bell quiet unless someone rang again, and then looks.
                if !rung {
                    shared.check_gone(&mut reader);
                }
                drop(reader);
                shared.hand_on();
            }
        });
        if again {
            shared.notifier.ring();
        } else if !bell {
            // Last: a completion after this (by the reader thread) rings again.
            shared.notifier.clear();
        }
    }

    /// [`evented_try_send`](Self::evented_try_send), then the cancel
    /// records that waited for the writer.
    pub(super) fn evented_try_send_and_cancels(
        self: Arc<Self>,
        data: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Option<Call>> {
        let shared = self.shared.clone();
        let sent = self.evented_try_send(data, timeout);
        // A send ends with `after_blocking_send`, whose fence `flush_cancels`
        // pairs with; the other ways out of `evented_try_send` do not.
        if !matches!(sent, Ok(Some(_))) {
            fence(Ordering::SeqCst);
        }
        shared.flush_cancels();
        sent
    }

    /// See [`ClientConn::try_send`](crate::transport::ClientConn::try_send).
    pub(super) fn evented_try_send(self: Arc<Self>, data: &[u8], timeout: Option<Duration>) -> Result<Option<Call>> {
        let shared = &self.shared;
        shared.check_size(data.len())?;
        let Some(mut writer) = shared.writer_with_room()? else { return Ok(None) };
        let bell = shared.bell.load(Ordering::Acquire);
        let slot = writer.spare.fresh();
        let id = writer.next_id;
        // In the table before the server can see the request.
        let start_reader = shared.insert_call(id, &slot, true)?;
        publish_cpu(&shared.mapping.header().client_cpu);
        // A server that does not offer deadlines never sees the record.
        let deadline =
            timeout.filter(|_| shared.sends_deadlines).map(|t| crate::transport::timeout_ns(t).to_le_bytes());
        let mut wrote_deadline = false;
        let mut written = Ok(None);
        if let Some(ns) = &deadline {
            written = writer.producer.write(kind::DEADLINE, id, ns, 0);
            wrote_deadline = matches!(written, Ok(Some(_)));
        }
        if deadline.is_none() || wrote_deadline {
            written = writer.producer.write(kind::REQUEST, id, data, 0);
        }
        // How much of the request went out; `None` if nothing did, yet it
        // is sent: its deadline record is out, so it follows from the outbox.
        let n = match written {
            Ok(Some(n)) => Some(n),
            Ok(None) if wrote_deadline => None,
            Ok(None) => {
                shared.unsend(writer, id);
                if start_reader {
                    self.start_reader_thread();
                }
                return Ok(None);
            }
            Err(v) => {
                drop(writer);
                shared.remove(&mut lock(&shared.calls), id);
                return Err(shared.violated(v));
            }
        };
        writer.next_id += 1;
        shared.wake_server(&writer);
        // The reply is here and no bell will say so: the descriptor owes a readiness.
        let mut owed = false;
        if bell {
            // Ask for a wake-up for the reply (a `progress` with nothing
            // pending announced none), then look again (§12.4): a reply
            // published before the announcement woke nobody.
            let replies = &shared.mapping.header().replies;
            announce_sleep(&replies.consumer_sleeping);
            if replies.tail.load(Ordering::Acquire) != replies.head.load(Ordering::Relaxed) {
                // A server on this CPU has often answered while `wake_server`
                // woke it. Withdraw the announcement then: left standing, it
                // would make the server ring the bell for the next reply
                // too, a system call for a reply the loop collects anyway.
                // Only as the reply ring's reader, as the brief spin does (a
                // blocking reader sleeps on this flag's futex, and every
                // other store to it is a reader's too): then a flag found
                // clear was taken by the server, whose bell is on the way.
                let server_rings =
                    shared.reader.try_lock().is_ok_and(|_reader| !take_sleeper(&replies.consumer_sleeping));
                owed = !server_rings;
            }
        }
        if n != Some(data.len()) {
            writer.outbox = Some(Outbox { id, data: data.to_vec(), offset: n.unwrap_or(0) });
            if !bell || shared.wait_for_room_evented(&writer) {
                shared.notifier.ring();
            }
        }
        drop(writer);
        if owed {
            shared.notifier.ring();
        }
        // Sent, so the ring had room: a `try_send` that found the writer
        // busy (or the ring full) meanwhile is told to try again.
        shared.send_blocked.after_blocking_send(&shared.notifier);
        if start_reader {
            self.start_reader_thread();
        }
        Ok(Some(Call::new(self, id, slot)))
    }
}
