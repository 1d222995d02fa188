//! A stream server's side of one connection: what requests hold to answer
//! through, and a request decoded from it that waits for a `recv`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::core::cancel::{Cancel, CancelRef, FlagSource, Pump};
use crate::core::error::Result;
use crate::core::frame::{self, FrameKind};
use crate::core::peer::Peer;
use crate::core::wait::lock;
use crate::transport::held::Held;
use crate::transport::stream::flush::{Flusher, Outbox, Sent};
use crate::transport::stream::{FrameReader, Wire};
use crate::transport::trace::{ConnTrace, DropReason};
use crate::transport::{Answer, Incoming, Responder};

/// One client connection. Requests hold it (as their `Responder`), so it
/// lives — and its descriptors stay open — until the server dropped it *and*
/// every request from it was answered.
pub(crate) struct ServerConn {
    /// Its epoll token.
    pub(crate) token: u64,
    pub(crate) wire: Box<dyn Wire>,
    pub(crate) peer: Peer,
    /// Replies its client has not made room for yet; its lock serialises
    /// whole frames written by answering threads (and is never held while
    /// waiting for the client).
    pub(crate) outbox: Mutex<Outbox>,
    /// The server's writer of queued replies.
    pub(crate) flusher: Arc<Flusher>,
    /// Most bytes that may wait in `outbox`.
    pub(crate) reply_budget: u64,
    /// This connection, for handing it to the flusher.
    pub(crate) me: Weak<ServerConn>,
    /// Held by the one thread reading this connection.
    pub(crate) reader: Mutex<FrameReader>,
    /// True while a thread that met a busy `reader` has disarmed the
    /// connection in epoll; cleared by whoever re-arms it. Read and written
    /// only under the server's state lock (an atomic only to be shared).
    pub(crate) disarmed: AtomicBool,
    /// When the frame being received began, in nanoseconds since
    /// [`EPOCH`] (0: no frame under way). Only readers touch it.
    pub(crate) frame_since: AtomicU64,
    /// The greatest id of the requests a `recv` took, for the `close`
    /// frame (see [`deliver`]). Written under the server's state lock.
    pub(crate) last_taken: AtomicU64,
    /// Its server's name for its events, and whether its drop was reported.
    pub(crate) trace: ConnTrace,
    /// The cancellation flags of the requests decoded and not yet answered,
    /// while both hellos announced `FLAG_CANCEL` (else empty): a cancel
    /// frame fires the one of its id; the server dropping the connection
    /// fires them all.
    pub(crate) held: Held,
    /// Its server, which reads it on behalf of a request's cancel flag.
    pub(crate) server: Weak<dyn ConnService>,
}

/// What a connection's [`Pump`] asks of its server.
pub(crate) trait ConnService: Send + Sync {
    /// Reads what connection `token` has now, without blocking, as `recv`
    /// would: cancel frames fire their flags, requests are queued.
    fn service_now(&self, token: u64);
}

impl Pump for ServerConn {
    fn pump(&self) {
        if let Some(server) = self.server.upgrade() {
            server.service_now(self.token);
        }
    }
}

/// The instant `frame_since` counts from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn nanos_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_nanos().min(u128::from(u64::MAX)) as u64
}

impl ServerConn {
    /// Notes, after a read, whether a frame is under way; true once one has
    /// been under way longer than `limit` (a peer trickling a frame is
    /// dropped: it would hold its connection slot forever).
    pub(crate) fn frame_overdue(&self, in_frame: bool, limit: Duration) -> bool {
        if !in_frame {
            self.frame_since.store(0, Ordering::Relaxed);
            return false;
        }
        let now = nanos_since_epoch(Instant::now()).max(1);
        match self.frame_since.load(Ordering::Relaxed) {
            0 => {
                self.frame_since.store(now, Ordering::Relaxed);
                false
            }
            since => Duration::from_nanos(now.saturating_sub(since)) > limit,
        }
    }

    /// When the frame under way must be complete, if one is.
    pub(crate) fn frame_deadline(&self, limit: Duration) -> Option<Instant> {
        match self.frame_since.load(Ordering::Relaxed) {
            0 => None,
            // A limit too long to reach is no deadline.
            since => (*EPOCH + Duration::from_nanos(since)).checked_add(limit),
        }
    }
    /// Sends one frame without ever blocking on the client (DESIGN §6): what
    /// the wire does not take now waits in the outbox for the flusher, and a
    /// client whose queue passes the budget is dropped alone.
    pub(crate) fn send_frame(&self, parts: &[&[u8]]) {
        let mut outbox = lock(&self.outbox);
        if !outbox.is_waiting() {
            let len = parts.iter().map(|p| p.len()).sum::<usize>();
            self.wire.before_write(len);
        }
        match outbox.send(&*self.wire, parts, self.reply_budget) {
            Sent::Done => {}
            Sent::Queued => {
                let watched = self.me.upgrade().is_some_and(|me| self.flusher.watch(&me));
                if !watched {
                    outbox.break_off(&*self.wire);
                }
            }
            Sent::OverBudget => {
                self.trace.dropped(self.token, &self.peer, DropReason::OverBudget);
                outbox.break_off(&*self.wire)
            }
        }
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

impl Responder for ServerConn {
    fn flag_source(&self) -> Option<&dyn FlagSource> {
        Some(self)
    }

    fn answer(&self, id: u64, answer: Answer<'_>) -> Result<()> {
        let (kind, payload) = match answer {
            Answer::Reply(ref data) => (FrameKind::Reply, data.as_slice()),
            Answer::Fail(data) => (FrameKind::Fail, data),
            Answer::NoReply => (FrameKind::NoReply, &[][..]),
            Answer::Control(data) => (FrameKind::ControlReply, data),
        };
        // Answered: a later cancel of it is ignored.
        self.held.release(id);
        let header = frame::encode_header(kind, id, payload.len() as u32);
        // A client that is gone, or was dropped, never gets the answer: like
        // a late reply to an abandoned call, it is discarded.
        self.send_frame(&[&header, payload]);
        Ok(())
    }
}

/// A decoded request waiting for a `recv`. Dropping it answers nothing (the
/// server's `close` frame tells the client it was never taken).
pub(crate) struct Decoded {
    pub(crate) conn: Arc<ServerConn>,
    pub(crate) id: u64,
    pub(crate) data: Vec<u8>,
    /// The negotiated maximum on its connection: the largest allowed reply.
    pub(crate) max: u32,
    /// The caller's deadline (see `transport::request_deadline`), if its
    /// request came with a deadline frame.
    pub(crate) deadline: Option<std::time::Instant>,
    /// Cancels were negotiated: `conn` holds the request (its flag is made
    /// if anyone looks, see `CancelRef::Lazy`).
    pub(crate) cancelable: bool,
}

impl Decoded {
    /// A request frame just decoded on `conn` by `reader`; its deadline
    /// counts from now, and it can be cancelled from now on if both hellos
    /// announced `FLAG_CANCEL`.
    pub(crate) fn new(conn: &Arc<ServerConn>, frame: crate::core::frame::Frame, reader: &FrameReader) -> Decoded {
        let deadline =
            frame.deadline_ns.map(|ns| crate::transport::request_deadline(std::time::Duration::from_nanos(ns)));
        let cancelable = reader.negotiated() & frame::FLAG_CANCEL != 0;
        if cancelable {
            conn.held.hold(frame.id);
        }
        Decoded { conn: conn.clone(), id: frame.id, data: frame.payload, max: reader.max(), deadline, cancelable }
    }
}

/// Requests one read decoded from a connection, in id order. The first
/// is kept apart so that the usual batch of one allocates nothing.
#[derive(Default)]
pub(crate) struct Batch {
    /// The first request; `None` only while the batch is empty.
    pub(crate) first: Option<Decoded>,
    /// The ones after it, in id order.
    pub(crate) rest: Vec<Decoded>,
}

impl Batch {
    pub(crate) fn push(&mut self, decoded: Decoded) {
        if self.first.is_none() {
            self.first = Some(decoded);
        } else {
            self.rest.push(decoded);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// Turns a decoded request into an `Incoming`; called under the state lock
/// (which orders `last_taken` against `close`).
///
/// `last_taken` only grows: two receiving threads that decoded requests of
/// one connection may deliver them out of id order, and the close frame
/// must never name an id below one the application holds (its caller would
/// be told the request was never taken, and a pool would send it again: it
/// would run twice). An earlier request still queued then is covered by
/// the close frame without being taken; its caller learns `Disconnected`
/// when the connection ends, as for a taken request that was never
/// answered.
pub(crate) fn deliver(decoded: Decoded) -> Incoming {
    let Decoded { conn, id, data, max, deadline, cancelable } = decoded;
    let peer = conn.peer;
    // Every writer holds the state lock: a load and a store lose no
    // maximum, without a locked instruction per request.
    if id > conn.last_taken.load(Ordering::Relaxed) {
        conn.last_taken.store(id, Ordering::Release);
    }
    let cancel = cancelable.then(|| CancelRef::lazy(id));
    let mut incoming = Incoming::new(data, peer, conn, id, max);
    incoming.deadline = deadline;
    incoming.cancel = cancel;
    incoming
}
