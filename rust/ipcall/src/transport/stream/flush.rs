//! Replies that did not fit at once (DESIGN §6: `reply` never blocks on the
//! peer). A connection's [`Outbox`] holds what its client has not made room
//! for yet; the server's [`Flusher`] thread — started the first time a reply
//! has to wait, and only then — writes it as the client reads, and drops a
//! connection whose queue passes its budget or stops moving. A server whose
//! clients keep up never starts it, so its replies make no thread hop.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::wait::lock;
use crate::sys::epoll::Epoll;
use crate::transport::stream::conn::ServerConn;
use crate::transport::stream::{remaining_slices, Wire};
use crate::transport::trace::DropReason;

/// Writability of a write descriptor (`EPOLLOUT`).
const WRITABLE: u32 = rustix::event::epoll::EventFlags::OUT.bits();

/// The replies of one connection that wait for its client to make room.
/// Invariant: `frames` is empty exactly while the connection is not
/// registered with its server's flusher; the front frame's first
/// `front_written` bytes are already on the wire.
#[derive(Default)]
pub(crate) struct Outbox {
    frames: VecDeque<Vec<u8>>,
    front_written: usize,
    /// Bytes in `frames` not yet written.
    queued: u64,
    /// Since when nothing of the queue was written (`None` while empty).
    stalled_since: Option<Instant>,
    /// The connection was dropped for a slow client or a broken wire: later
    /// answers are discarded, as a late reply to an abandoned call is.
    broken: bool,
}

/// What a write of a whole frame came to.
pub(crate) enum Sent {
    /// On the wire whole (or discarded on a broken connection).
    Done,
    /// Queued, at least in part: the flusher must watch the connection.
    Queued,
    /// The queue passed its budget: drop the connection.
    OverBudget,
}

impl Outbox {
    /// Writes the frame `parts` (header and payload) if nothing waits before
    /// it, as far as the wire takes it now; queues the rest behind anything
    /// already waiting. Never blocks.
    pub(crate) fn send(&mut self, wire: &dyn Wire, parts: &[&[u8]], budget: u64) -> Sent {
        if self.broken {
            return Sent::Done;
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = 0;
        if self.frames.is_empty() {
            match write_now_all(wire, parts) {
                Ok(n) if n == total => return Sent::Done,
                Ok(n) => written = n,
                Err(_) => {
                    // The client is gone: its answers are discarded, and the
                    // read side notices the hang-up and drops the connection.
                    self.break_off(wire);
                    return Sent::Done;
                }
            }
            self.stalled_since = Some(Instant::now());
        }
        let mut rest = Vec::with_capacity(total - written);
        let mut skip = written;
        for part in parts {
            let from = skip.min(part.len());
            rest.extend_from_slice(&part[from..]);
            skip -= from;
        }
        self.queued += rest.len() as u64;
        self.frames.push_back(rest);
        if self.queued > budget {
            Sent::OverBudget
        } else {
            Sent::Queued
        }
    }

    /// Writes what the wire takes now from the queue; true once it is empty.
    fn flush(&mut self, wire: &dyn Wire) -> io::Result<bool> {
        while let Some(front) = self.frames.front() {
            let pending = &front[self.front_written..];
            match wire.write_now(&[IoSlice::new(pending)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.queued -= n as u64;
                    self.stalled_since = Some(Instant::now());
                    if n == pending.len() {
                        self.frames.pop_front();
                        self.front_written = 0;
                    } else {
                        self.front_written += n;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.stalled_since = None;
        Ok(true)
    }

    /// Gives the connection up: nothing more is written; the client sees the
    /// end of the stream and fails its calls with `Disconnected`.
    pub(crate) fn break_off(&mut self, wire: &dyn Wire) {
        self.broken = true;
        self.frames.clear();
        self.front_written = 0;
        self.queued = 0;
        self.stalled_since = None;
        wire.hang_up();
    }

    /// True while replies wait in the queue.
    pub(crate) fn is_waiting(&self) -> bool {
        !self.frames.is_empty()
    }
}

/// Writes as much of `parts` as the wire takes without blocking.
fn write_now_all(wire: &dyn Wire, parts: &[&[u8]]) -> io::Result<usize> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut written = 0;
    while written < total {
        let slices = remaining_slices(parts, written);
        match wire.write_now(&slices.slices[..slices.len]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// One server's writer of queued replies (a thread while any wait).
pub(crate) struct Flusher {
    /// Watches the write descriptors of connections with queued replies.
    epoll: Epoll,
    state: Mutex<FlushState>,
    /// How long a queue may make no progress.
    reply_timeout: Duration,
}

struct FlushState {
    /// Connections with queued replies, by token. Invariant: exactly those
    /// whose write descriptor is registered in `epoll`.
    waiting: HashMap<u64, Arc<ServerConn>>,
    /// The flusher thread runs.
    running: bool,
}

impl Flusher {
    pub(crate) fn new(reply_timeout: Duration) -> io::Result<Flusher> {
        Ok(Flusher {
            epoll: Epoll::new()?,
            state: Mutex::new(FlushState { waiting: HashMap::new(), running: false }),
            reply_timeout,
        })
    }

    /// `conn` has queued replies (called under its outbox lock when its queue
    /// stops being empty): watch it, starting the thread if none runs. If
    /// that fails, the caller drops the connection (`false`).
    pub(crate) fn watch(self: &Arc<Self>, conn: &Arc<ServerConn>) -> bool {
        let mut state = lock(&self.state);
        if state.waiting.contains_key(&conn.token) {
            return true;
        }
        if self.epoll.add(conn.wire.write_fd(), WRITABLE, conn.token).is_err() {
            return false;
        }
        state.waiting.insert(conn.token, conn.clone());
        if !state.running {
            let flusher = self.clone();
            if std::thread::Builder::new().name("ipcall-flush".into()).spawn(move || flusher.run()).is_err() {
                state.waiting.remove(&conn.token);
                let _ = self.epoll.delete(conn.wire.write_fd());
                return false;
            }
            state.running = true;
        }
        true
    }

    /// Stops watching connection `token` (its queue is empty or it broke).
    /// Lock order everywhere: a connection's outbox, then this state.
    fn forget(&self, token: u64) {
        if let Some(conn) = lock(&self.state).waiting.remove(&token) {
            let _ = self.epoll.delete(conn.wire.write_fd());
        }
    }

    /// Writes queued replies as clients make room and drops the stalled;
    /// exits when no connection has queued replies.
    fn run(self: Arc<Self>) {
        loop {
            let waiting: Vec<Arc<ServerConn>> = {
                let mut state = lock(&self.state);
                if state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                state.waiting.values().cloned().collect()
            };
            // The state lock is released before any outbox is locked.
            let now = Instant::now();
            // (`None`: a timeout too long to reach; writability still wakes us.)
            let next_check = waiting
                .iter()
                .filter_map(|conn| lock(&conn.outbox).stalled_since)
                .min()
                .unwrap_or(now)
                .checked_add(self.reply_timeout)
                .map(|at| at.max(now));
            drop(waiting);
            let mut writable = Vec::new();
            let _ = self.epoll.wait(next_check, |token| writable.push(token));
            for token in writable {
                let conn = lock(&self.state).waiting.get(&token).cloned();
                if let Some(conn) = conn {
                    self.flush_one(&conn);
                }
            }
            self.drop_stalled();
        }
    }

    fn flush_one(&self, conn: &ServerConn) {
        let mut outbox = lock(&conn.outbox);
        match outbox.flush(&*conn.wire) {
            Ok(false) => {}
            Ok(true) => self.forget(conn.token),
            Err(_) => {
                outbox.break_off(&*conn.wire);
                self.forget(conn.token);
            }
        }
    }

    /// Drops every connection whose queue made no progress for the timeout.
    fn drop_stalled(&self) {
        let waiting: Vec<Arc<ServerConn>> = lock(&self.state).waiting.values().cloned().collect();
        let now = Instant::now();
        for conn in waiting {
            let mut outbox = lock(&conn.outbox);
            if outbox.stalled_since.is_some_and(|since| now.duration_since(since) >= self.reply_timeout) {
                conn.trace.dropped(conn.token, &conn.peer, DropReason::Stalled);
                outbox.break_off(&*conn.wire);
                self.forget(conn.token);
            }
        }
    }
}
