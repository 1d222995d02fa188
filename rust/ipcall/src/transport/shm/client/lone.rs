//! The `shm:` client's call for an event loop that looks for the answer
//! at once (`Client::try_call`, `Client::try_call_spin`).
//!
//! A call alone in flight is mostly answered within a microsecond or two:
//! by a server on another CPU that spins for requests, or by one on this
//! CPU that the send woke. So the caller takes the answer as a blocking
//! `call` does: out of the reply ring, as the holder of the reading role,
//! never through the call's slot, its waker or the descriptor. The reading
//! role is taken before the request goes out, and the sleep announcement
//! in the reply ring withdrawn, so the server rings no bell for a reply
//! taken here.
//!
//! Only when the answer is not there after the look (and the brief spin,
//! if asked) does the call go to the loop, as `try_send`'s calls do: its
//! slot armed, sleep announced, and the ring looked at once more (§12.4).
//! Other calls' replies read meanwhile complete their slots as any
//! reader's do (their wakers ring the descriptor).

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use super::{Outbox, ReplyReader, ShmClient};
use crate::core::error::Result;
use crate::core::slot::Outcome;
use crate::core::wait::lock;
use crate::transport::evented::quietly;
use crate::transport::shm::ring::{announce_sleep, kind};
use crate::transport::shm::{publish_cpu, spin};
use crate::transport::Tried;

impl ShmClient {
    /// See [`ClientConn::try_call_here`](crate::transport::ClientConn::try_call_here).
    pub(super) fn lone_try_call(&self, data: &[u8], spin: bool) -> Option<Result<Tried>> {
        // Without the bell the reader thread reads for the loop: `try_send`'s way.
        if !self.shared.bell.load(Ordering::Acquire) {
            return None;
        }
        let tried = self.lone_send_and_look(data, spin);
        // The cancel records that waited for the writer (its release fenced
        // in `after_blocking_send`, or, on the ways out before it, here).
        if !matches!(tried, Ok(Tried::Sent(..) | Tried::Answered(_))) {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        self.shared.flush_cancels();
        Some(tried)
    }

    fn lone_send_and_look(&self, data: &[u8], spin: bool) -> Result<Tried> {
        let shared = &self.shared;
        shared.check_size(data.len())?;
        let Some(mut writer) = shared.writer_with_room()? else { return Ok(Tried::NoRoom) };
        let slot = writer.spare.fresh();
        let id = writer.next_id;
        // Not armed: an answer taken here never completes the slot. In the
        // table before the server can see the request.
        shared.insert_call(id, &slot, false)?;
        let header = shared.mapping.header();
        let flag = &header.replies.consumer_sleeping;
        // Taken while the writer is held (a `try_lock`: no order between
        // the two locks is assumed anywhere).
        let mut reader = shared.reader.try_lock().ok();
        if reader.is_some() {
            // As the reader (every store to the flag is a reader's, or the
            // server's taking it): a reply from now on rings no bell.
            flag.store(0, Ordering::Relaxed);
        }
        let my_cpu = publish_cpu(&header.client_cpu);
        let n = match writer.producer.write(kind::REQUEST, id, data, 0) {
            Ok(Some(n)) => n,
            Ok(None) => {
                drop(reader);
                shared.unsend(writer, id);
                return Ok(Tried::NoRoom);
            }
            Err(v) => {
                drop(reader);
                drop(writer);
                shared.remove(&mut lock(&shared.calls), id);
                return Err(shared.violated(v));
            }
        };
        writer.next_id += 1;
        shared.wake_server(&writer);
        let whole = n == data.len();
        if !whole {
            // The rest follows from the outbox (`progress`, or the next
            // send); no answer can come before it.
            writer.outbox = Some(Outbox { id, data: data.to_vec(), offset: n });
            if shared.wait_for_room_evented(&writer) {
                shared.notifier.ring();
            }
        }
        drop(writer);
        // A `try_send` that found the writer busy meanwhile tries again.
        shared.send_blocked.after_blocking_send(&shared.notifier);
        if let Some(held) = reader.as_mut().filter(|_| whole) {
            if let Some(outcome) = self.take_own(held, id, spin, my_cpu) {
                drop(reader);
                // Not quietly: the announcement was withdrawn, so a reader
                // leaving with calls pending tells their loop to look.
                shared.hand_on();
                return Ok(Tried::Answered(outcome));
            }
        }
        // To the loop. Armed first: a completion from now on (or one that
        // came already: a death, a close) rings the descriptor.
        shared.notifier.arm(&slot);
        announce_sleep(flag);
        match reader {
            Some(reader) => {
                if shared.has_news(&reader) {
                    shared.notifier.ring();
                }
                // Our announcement stands: leaving the role needs no ring.
                quietly(|| {
                    drop(reader);
                    shared.hand_on();
                });
            }
            None => {
                // Another thread reads: its completion of the (armed) slot
                // rings. A reply still in the ring makes the loop look too,
                // as after `try_send`.
                let replies = &header.replies;
                if replies.tail.load(Ordering::Acquire) != replies.head.load(Ordering::Relaxed) {
                    shared.notifier.ring();
                }
            }
        }
        Ok(Tried::Sent(id, slot))
    }

    /// Reads the replies there are (after a brief spin for one with
    /// `spin`), taking call `id`'s for the caller: `None` if it is not
    /// among them.
    fn take_own(&self, reader: &mut MutexGuard<'_, ReplyReader>, id: u64, spin: bool, my_cpu: u32) -> Option<Outcome> {
        let shared = &self.shared;
        let header = shared.mapping.header();
        let news = shared.has_news(reader)
            || (spin
                && spin::spin_evented(
                    shared.mode,
                    &shared.event_budget,
                    header.server_cpu.load(Ordering::Relaxed),
                    my_cpu,
                    || shared.has_news(reader),
                ));
        if !news {
            return None;
        }
        reader.own_id = id;
        shared.drain(reader);
        reader.own_id = 0;
        shared.check_closed();
        reader.own_answer.take()
    }
}
