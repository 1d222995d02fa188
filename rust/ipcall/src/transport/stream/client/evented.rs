//! The stream client's face for event loops (see
//! [`transport::evented`](crate::transport::evented)): `fd`, `progress`
//! and `try_send`, and what the blocking paths do so that an event loop
//! never misses a completion.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use super::{Shared, StreamClient, Writer};
use crate::core::error::{Error, Result};
use crate::core::frame::{self, Event, FrameKind};
use crate::core::slot::Slot;
use crate::core::wait::{lock, Deadline};
use crate::transport::calls::{Death, Entry};
use crate::transport::evented::{quietly, PollSet};
use crate::transport::stream::{remaining_slices, FrameReader, ReadError};
use crate::transport::Call;

impl Shared {
    /// Called by a holder of the reading role as it leaves, while it still
    /// holds the reader: whether it leaves bytes it read but did not decode.
    /// Those make no descriptor readable, so
    /// [`give_up_reading`](Self::give_up_reading) is told to ring the event
    /// loop's notifier — after the role is free, so the `progress` the ring
    /// calls for can take it.
    pub(super) fn leave_reader(&self, reader: &FrameReader) -> bool {
        reader.has_buffered()
    }

    /// The error of a send whose write failed. After a half-written frame no
    /// request can reach the server; the calls already sent may still be
    /// answered (a server that closed answers what it took), so they are
    /// left to the read side, which fails them when the stream ends.
    pub(super) fn broken_write(&self, id: Option<u64>) -> Error {
        let mut calls = lock(&self.calls);
        calls.write_broken = true;
        if let Some(id) = id {
            calls.remove(id);
        }
        match &calls.dead {
            Some(death) => self.error_for(death),
            None => Error::Disconnected { name: self.name.clone() },
        }
    }

    /// Watches (or stops watching) the write descriptor in the event loop's
    /// descriptor, if there is one. Called holding the writer, so that the
    /// changes land in the order of the outbox states they were decided
    /// from: a stop decided on an empty outbox cannot land after a start
    /// for bytes queued since (which would leave them unwatched).
    pub(super) fn want_write(&self, yes: bool) {
        // Held by this thread (a mutex cannot say by whom; held at all is
        // what a call made after letting it go would fail, in tests).
        debug_assert!(self.try_writer().is_none(), "want_write called without holding the writer");
        if let Some(set) = self.poll_set.get() {
            if set.want_write(self.wire.read_fd(), self.wire.write_fd(), yes).is_err() {
                // epoll_ctl failed (out of memory): have the loop call
                // `progress` anyway, which retries.
                self.notifier.ring();
            }
        }
    }

    /// The writer, unless another thread is writing.
    fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        crate::core::wait::try_lock(&self.writer)
    }

    /// Writes what it can of the outbox without blocking; `Ok(true)` once
    /// it is empty.
    fn flush_now(&self, writer: &mut Writer) -> io::Result<bool> {
        while !writer.outbox.is_empty() {
            match self.wire.write_now(&[IoSlice::new(&writer.outbox)]) {
                Ok(n) => {
                    writer.outbox.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Sends a cancel frame for call `id` without ever blocking: queued for
    /// the writer, then flushed if no other thread writes (that thread
    /// flushes it as it lets the writer go). Dropped when the queue is full;
    /// a frame the wire does not take now waits in the outbox for the next
    /// send or `progress`.
    pub(super) fn cancel(&self, id: u64) {
        {
            let mut cancels = lock(&self.cancels);
            if cancels.len() >= super::MAX_QUEUED_CANCELS {
                return;
            }
            cancels.push(id);
            self.cancels_queued.store(true, Ordering::Relaxed);
        }
        // Pairs with the fence of a writer letting go (see `flush_cancels`).
        fence(Ordering::SeqCst);
        self.flush_cancels();
    }

    /// Moves the queued cancels into the outbox and writes what the wire
    /// takes now, if no other thread writes. Called after a SeqCst fence
    /// that follows letting the writer go (`after_blocking_send`) or
    /// queueing a cancel ([`cancel`](Self::cancel)): either the writer
    /// letting go sees the cancel's `cancels_queued`, or the cancel's
    /// `try_writer` finds the writer free — a queued cancel is never left
    /// behind. The look is a load, not a lock: it runs after every request.
    pub(super) fn flush_cancels(&self) {
        if !self.cancels_queued.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut writer) = self.try_writer() else { return };
        let ids = {
            let mut cancels = lock(&self.cancels);
            self.cancels_queued.store(false, Ordering::Relaxed);
            std::mem::take(&mut *cancels)
        };
        for id in ids {
            writer.outbox.extend_from_slice(&frame::encode_cancel(id));
        }
        match self.flush_now(&mut writer) {
            Ok(empty) => {
                self.want_write(!empty);
                drop(writer);
            }
            Err(_) => {
                writer.outbox.clear();
                self.want_write(false);
                drop(writer);
                let _ = self.broken_write(None);
            }
        }
    }

    /// Flushes the outbox as far as the wire takes now, if no other thread
    /// writes. `Err` if the write failed (the connection is then broken
    /// for writing).
    fn flush_outbox_now(&self) -> Result<()> {
        let Some(mut writer) = self.try_writer() else { return Ok(()) };
        let flushed = match self.flush_now(&mut writer) {
            Ok(empty) => {
                self.want_write(!empty);
                drop(writer);
                Ok(())
            }
            Err(_) => {
                writer.outbox.clear();
                self.want_write(false);
                drop(writer);
                Err(self.broken_write(None))
            }
        };
        // A `try_send` that found the writer busy meanwhile tries again.
        self.send_blocked.after_blocking_send(&self.notifier);
        self.flush_cancels();
        flushed
    }

    /// Reads and dispatches the frames the wire has now, if the reading
    /// role is free; never blocks. False if another thread held the role
    /// (the wire may stay readable for what that thread leaves).
    ///
    /// It stops after a frame when the read that brought it found the wire
    /// emptied (it returned less than asked) and no undecoded bytes are
    /// left: the read that would follow is an EAGAIN for nothing. Bytes
    /// that arrive meanwhile make the read descriptor, which `fd()`
    /// watches level-triggered, readable again; the rest of a frame begun
    /// is still to come on the wire, so it does too.
    fn read_available(&self) -> bool {
        if !self.try_take_reading() {
            // The holder reads (and rings the notifier for what it leaves).
            return false;
        }
        {
            let mut reader = lock(&self.reader);
            loop {
                match reader.next(&*self.wire, Deadline::Now) {
                    Ok(Some(Event::Frame(frame))) => {
                        self.dispatch(frame);
                        if reader.drained() {
                            break;
                        }
                    }
                    Ok(Some(Event::Hello(_))) => unreachable!("the decoder yields the hello once, at handshake"),
                    Ok(None) => break,
                    Err(ReadError::Eof) | Err(ReadError::Io(_)) => {
                        self.die(Death::Disconnected);
                        break;
                    }
                    Err(ReadError::Protocol(e)) => {
                        self.die(Death::Protocol(e.to_string()));
                        break;
                    }
                }
            }
        }
        // Everything read was decoded: nothing to ring for.
        self.give_up_reading(false);
        true
    }

    /// The rest of `evented_try_send`, holding the writer: the request,
    /// preceded by its deadline frame when `timeout_ns` is `Some`.
    /// Returns the id and slot of the call sent, or `None` if the wire
    /// took nothing.
    fn try_send_holding(
        &self,
        mut writer: MutexGuard<'_, Writer>,
        data: &[u8],
        timeout_ns: Option<u64>,
    ) -> Result<Option<(u64, Arc<Slot>)>> {
        match self.flush_now(&mut writer) {
            Ok(true) => self.want_write(false),
            Ok(false) => return Ok(None),
            Err(_) => {
                writer.outbox.clear();
                self.want_write(false);
                drop(writer);
                return Err(self.broken_write(None));
            }
        }
        let slot = writer.spare.fresh();
        self.notifier.arm(&slot);
        let id = writer.next_id;
        {
            let mut calls = lock(&self.calls);
            if let Some(death) = &calls.dead {
                return Err(self.error_for(death));
            }
            if calls.server_closed.is_some() || calls.write_broken {
                return Err(Error::Disconnected { name: self.name.clone() });
            }
            calls.pending.insert(id, Entry { slot: slot.clone(), is_async: false, following: false });
        }
        let header = frame::encode_header(FrameKind::Request, id, data.len() as u32);
        // The deadline frame and its request leave as one run of bytes: a
        // partial write keeps the rest of both in the outbox, so the request
        // still follows its deadline frame at once.
        let deadline = timeout_ns.map(|ns| frame::encode_deadline(id, ns));
        let parts = [deadline.as_ref().map_or(&[][..], |d| &d[..]), &header[..], data];
        let total = parts.iter().map(|part| part.len()).sum::<usize>();
        self.wire.before_write(total);
        let mut sent = 0usize;
        while sent < total {
            let slices = remaining_slices(&parts, sent);
            match self.wire.write_now(&slices.slices[..slices.len]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    drop(writer);
                    return Err(self.broken_write(Some(id)));
                }
            }
        }
        if sent == 0 {
            // Nothing went out: as if never sent (the id is reused). The
            // descriptor reports when the wire takes bytes again.
            lock(&self.calls).remove(id);
            self.want_write(true);
            drop(writer);
            return Ok(None);
        }
        writer.next_id += 1;
        if sent < total {
            // Keep the frame whole on the wire: its tail goes out before
            // anything else, by `progress` or the next send.
            let mut rest = Vec::with_capacity(total - sent);
            for part in &remaining_slices(&parts, sent).slices {
                rest.extend_from_slice(part);
            }
            writer.outbox = rest;
            self.want_write(true);
        }
        drop(writer);
        Ok(Some((id, slot)))
    }
}

impl StreamClient {
    /// See [`ClientConn::fd`](crate::transport::ClientConn::fd): an epoll
    /// set of the notifier and the read descriptor.
    pub(super) fn evented_fd(&self) -> io::Result<BorrowedFd<'_>> {
        let shared = &self.shared;
        if let Some(set) = shared.poll_set.get() {
            return Ok(set.as_fd());
        }
        let bell = shared.notifier.get_or_make()?;
        let set = PollSet::new(bell, shared.wire.read_fd())?;
        // A racing first call may have set it meanwhile: either one is kept.
        let _ = shared.poll_set.set(set);
        match shared.try_writer() {
            Some(writer) if !writer.outbox.is_empty() => shared.want_write(true),
            Some(_) => {}
            // A writer is busy: let the loop look again soon.
            None => shared.notifier.ring(),
        }
        Ok(shared.poll_set.get().expect("set above").as_fd())
    }

    /// See [`ClientConn::progress`](crate::transport::ClientConn::progress);
    /// returns what [`ClientConn::progress_edge`](crate::transport::ClientConn::progress_edge) does.
    pub(super) fn evented_progress(&self) -> bool {
        let shared = &self.shared;
        // First: every ring comes after the state it announces (a
        // completion, a reading role given up with bytes left), so what a
        // ring cleared here announced is seen by the work below, and a
        // ring from now on stays readable.
        shared.notifier.clear_own();
        // A failed flush already marked the connection broken for writing;
        // its calls end through the read side. (Not quietly: a failed
        // `epoll_ctl` rings to have the loop call again.)
        let _ = shared.flush_outbox_now();
        // What this thread completes is seen when `progress` returns: no
        // ring (a write and a read of the eventfd) for it.
        quietly(|| shared.read_available())
    }

    /// See [`ClientConn::try_send`](crate::transport::ClientConn::try_send).
    pub(super) fn evented_try_send(self: Arc<Self>, data: &[u8], timeout: Option<Duration>) -> Result<Option<Call>> {
        let shared = &*self.shared;
        if data.len() as u64 > u64::from(shared.max) {
            return Err(Error::TooLarge { size: data.len() as u64, max: u64::from(shared.max) });
        }
        let Some(writer) = shared.send_blocked.writer_or_ring_later(&shared.writer) else { return Ok(None) };
        // A peer that did not announce deadlines never sees the frame.
        let timeout_ns = timeout.filter(|_| shared.sends_deadlines).map(crate::transport::timeout_ns);
        let sent = shared.try_send_holding(writer, data, timeout_ns);
        // The writer is free again: a `try_send` that found it busy
        // meanwhile (another thread's, or task's) is told to try again, and
        // cancels queued meanwhile go out.
        shared.send_blocked.after_blocking_send(&shared.notifier);
        shared.flush_cancels();
        Ok(sent?.map(|(id, slot)| Call::new(self, id, slot)))
    }
}
