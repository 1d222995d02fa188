//! The reading role (see the parent module): taking it, reading as its
//! holder until one's own answer is in, dispatching what is read, and
//! handing the role on.

use super::Shared;
use crate::core::frame::{Event, Frame, FrameKind};
use crate::core::slot::{Outcome, Slot};
use crate::core::wait::{lock, Deadline};
use crate::transport::calls::{fail_not_taken, Calls, Death};
use crate::transport::stream::{FrameReader, ReadError};
use std::sync::atomic::Ordering;

/// A frame that answers its call, as the call's outcome; any other frame
/// back (a close, or a kind the client decoder never yields).
fn answer_of(frame: Frame) -> std::result::Result<Outcome, Frame> {
    match frame.kind {
        FrameKind::Reply | FrameKind::ControlReply => Ok(Outcome::Reply(frame.payload)),
        FrameKind::Fail => Ok(Outcome::Fail(frame.payload)),
        FrameKind::NoReply => Ok(Outcome::NoReply),
        _ => Err(frame),
    }
}

/// How [`Shared::lead`] ended.
pub(super) struct Led {
    /// The call is answered: its slot is completed, or `own` holds it.
    pub(super) ready: bool,
    /// `Some` of whether undecoded bytes are left (for
    /// [`give_up_reading`](Shared::give_up_reading)) while the role is
    /// still held. `None`: the role is given up already — the answer read
    /// was this call's own with nothing after it, so taking its entry out
    /// and handing the role on took one look at the table, not two.
    pub(super) left: Option<bool>,
    /// The call's own answer, read by this caller and not put in its slot.
    pub(super) own: Option<Outcome>,
}

impl Shared {
    /// Delivers one frame from the server.
    pub(super) fn dispatch(&self, frame: Frame) {
        let id = frame.id;
        let outcome = match answer_of(frame) {
            Ok(outcome) => outcome,
            Err(frame) if frame.kind == FrameKind::Close => {
                // The server took requests up to `id` and will answer those;
                // it will never read the later ones.
                let last_taken = frame.id;
                // Later calls must not be sent; the answers still owed
                // arrive before the server's end of stream.
                let orphans = lock(&self.calls).remove_after(last_taken);
                fail_not_taken(orphans);
                return;
            }
            Err(_) => unreachable!("the client decoder refuses requests"),
        };
        let entry = lock(&self.calls).remove(id);
        // An unknown id (abandoned, or never issued) is discarded.
        if let Some(entry) = entry {
            entry.slot.complete(outcome);
        }
    }

    /// Reads and dispatches one event; returns false once the connection died.
    pub(super) fn read_one(&self, reader: &mut FrameReader, deadline: Deadline) -> bool {
        let event = reader.next(&*self.wire, deadline);
        self.read_event(event)
    }

    /// Acts on what one read of the reader gave; false once the connection died.
    pub(super) fn read_event(&self, event: std::result::Result<Option<Event>, ReadError>) -> bool {
        match event {
            Ok(Some(Event::Frame(frame))) => self.dispatch(frame),
            Ok(Some(Event::Hello(_))) => unreachable!("the decoder yields the hello once, at handshake"),
            Ok(None) => {}
            Err(ReadError::Eof) | Err(ReadError::Io(_)) => {
                self.die(Death::Disconnected);
                return false;
            }
            Err(ReadError::Protocol(e)) => {
                self.die(Death::Protocol(e.to_string()));
                return false;
            }
        }
        true
    }

    /// True (once) if call `id`'s sender took the reading role for it.
    pub(super) fn take_reservation(&self, id: u64) -> bool {
        // A load and a store, no locked instruction: only the holder of
        // the reading role writes it (its sender stores `id` while holding
        // the role it reserved, and its caller clears it here before handing
        // the role on), and another call's id never matches.
        let reserved = self.reading_reserved.load(Ordering::Relaxed) == id;
        if reserved {
            self.reading_reserved.store(0, Ordering::Relaxed);
        }
        reserved
    }

    /// Tries to take the reading role.
    pub(super) fn try_take_reading(&self) -> bool {
        let mut calls = lock(&self.calls);
        if calls.reading || calls.dead.is_some() {
            return false;
        }
        calls.reading = true;
        true
    }

    /// Gives the reading role back and hands it on: to a sleeping caller if
    /// there is one, and to the async reader if async calls are pending.
    ///
    /// `left_bytes` (from [`leave_reader`](Self::leave_reader)): rings the
    /// event loop's notifier once the role is free.
    pub(super) fn give_up_reading(&self, left_bytes: bool) {
        self.hand_on_reading(&mut lock(&self.calls));
        if left_bytes {
            self.notifier.ring();
        }
    }

    /// [`give_up_reading`](Self::give_up_reading)'s look at the table.
    pub(super) fn hand_on_reading(&self, calls: &mut Calls) {
        calls.reading = false;
        if calls.followers > 0 {
            if let Some(next) = calls.pending.values().find(|e| e.following && !e.slot.is_ready()) {
                next.slot.nudge();
            }
        }
        if calls.async_calls > 0 {
            self.async_cond.notify_all();
        }
    }

    /// Reads as the holder of the reading role until `slot` (call `id`'s)
    /// is answered or the deadline passes (see [`Led`]).
    pub(super) fn lead(&self, id: u64, slot: &Slot, deadline: Deadline) -> Led {
        let mut reader = lock(&self.reader);
        loop {
            if slot.is_ready() {
                return Led { ready: true, left: Some(self.leave_reader(&reader)), own: None };
            }
            let frame = match reader.next(&*self.wire, deadline) {
                Ok(Some(Event::Frame(frame))) => frame,
                other => {
                    if !self.read_event(other) {
                        return Led { ready: slot.is_ready(), left: Some(false), own: None };
                    }
                    if deadline.expired() && !reader.has_buffered() {
                        return Led { ready: slot.is_ready(), left: Some(false), own: None };
                    }
                    continue;
                }
            };
            // Someone else's frame, or more bytes after it: as `read_one`.
            let own = if frame.id != id || reader.has_buffered() { Err(frame) } else { answer_of(frame) };
            let outcome = match own {
                Ok(outcome) => outcome,
                Err(frame) => {
                    self.dispatch(frame);
                    if deadline.expired() && !reader.has_buffered() {
                        return Led { ready: slot.is_ready(), left: Some(false), own: None };
                    }
                    continue;
                }
            };
            let entry = {
                let mut calls = lock(&self.calls);
                let entry = calls.remove(id);
                self.hand_on_reading(&mut calls);
                entry
            };
            drop(reader);
            // Ours, and nobody else can complete the slot now that the
            // entry is out: handed over as it is (the caller stores it in
            // the slot, or takes it without the slot's round trip). Out of
            // the table already (the connection died meanwhile and completed
            // the slot): discarded, as `dispatch` does.
            return match entry {
                Some(_) => Led { ready: true, left: None, own: Some(outcome) },
                None => Led { ready: slot.is_ready(), left: None, own: None },
            };
        }
    }
}
