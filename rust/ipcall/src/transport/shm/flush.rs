//! `shm:` replies that did not fit in the reply ring at once (DESIGN §6:
//! `reply` never blocks on the client). A connection's [`ReplyWriter`] writes
//! what the ring takes now (after the same short spin a busy pair always
//! makes) and queues the rest; the server's [`ShmFlusher`] thread — started
//! the first time a reply has to wait — moves the queue into the ring as the
//! client reads, and the server drops a connection whose queue passes its
//! budget or stops moving.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::wait::lock;
use crate::transport::shm::ring::{take_sleeper_as, Producer, Violation};
use crate::transport::stream::flush::Sent;

/// One reply, or what is left of it, waiting for ring space.
struct Queued {
    kind: u32,
    id: u64,
    data: Vec<u8>,
    /// Payload bytes already in the ring.
    offset: usize,
}

/// The reply ring's producer and the replies waiting for room in it.
/// Invariant: `queue` is empty exactly while the connection is not
/// registered with the server's flusher.
pub(crate) struct ReplyWriter {
    pub(crate) producer: Producer,
    queue: VecDeque<Queued>,
    /// Payload bytes in `queue` not yet in the ring.
    queued: u64,
    /// Since when no queued byte went into the ring (`None` while empty).
    pub(crate) stalled_since: Option<Instant>,
}

impl ReplyWriter {
    pub(crate) fn new(producer: Producer) -> ReplyWriter {
        ReplyWriter { producer, queue: VecDeque::new(), queued: 0, stalled_since: None }
    }

    /// True while replies wait for room.
    pub(crate) fn is_waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Payload bytes waiting for room.
    pub(crate) fn queued(&self) -> u64 {
        self.queued
    }

    /// Writes reply `(kind, id, data)` as far as the ring takes it now (if
    /// nothing waits before it) and queues the rest. `room` is called when
    /// the ring is full, to spin briefly for space (true if some freed up).
    pub(crate) fn send(
        &mut self,
        kind: u32,
        id: u64,
        data: &[u8],
        budget: u64,
        wake_consumer: &dyn Fn(u32),
        room: &mut dyn FnMut(&Producer) -> bool,
    ) -> Result<Sent, Violation> {
        let mut offset = 0;
        if self.queue.is_empty() {
            let (written, complete) = self.write_now(kind, id, data, 0, wake_consumer, room)?;
            if complete {
                return Ok(Sent::Done);
            }
            offset = written;
            self.stalled_since = Some(Instant::now());
        }
        self.queued += (data.len() - offset) as u64;
        self.queue.push_back(Queued { kind, id, data: data.to_vec(), offset });
        Ok(if self.queued > budget { Sent::OverBudget } else { Sent::Queued })
    }

    /// Writes message pieces from `offset` while the ring has room (after
    /// `room`'s spin); returns the new offset and whether the message is
    /// now whole in the ring (an empty one is written whole or not at all).
    fn write_now(
        &mut self,
        kind: u32,
        id: u64,
        data: &[u8],
        mut offset: usize,
        wake_consumer: &dyn Fn(u32),
        room: &mut dyn FnMut(&Producer) -> bool,
    ) -> Result<(usize, bool), Violation> {
        loop {
            match self.producer.write(kind, id, data, offset)? {
                Some(n) => {
                    offset += n;
                    // Told how it sleeps (see `SLEEPING_ON_FUTEX`).
                    match take_sleeper_as(&self.producer.ring().control().consumer_sleeping) {
                        0 => {}
                        how => wake_consumer(how),
                    }
                    if offset == data.len() {
                        return Ok((offset, true));
                    }
                }
                None if room(&self.producer) => {}
                None => return Ok((offset, false)),
            }
        }
    }

    /// Moves queued replies into the ring while it has room; true once the
    /// queue is empty.
    pub(crate) fn flush(&mut self, wake_consumer: &dyn Fn(u32)) -> Result<bool, Violation> {
        while let Some(front) = self.queue.front_mut() {
            let (kind, id, before) = (front.kind, front.id, front.offset);
            let data = std::mem::take(&mut front.data);
            let mut no_spin = |_: &Producer| false;
            let written = self.write_now(kind, id, &data, before, wake_consumer, &mut no_spin);
            let front = self.queue.front_mut().expect("the front is still queued");
            front.data = data;
            let (offset, complete) = written?;
            front.offset = offset;
            self.queued -= (offset - before) as u64;
            if offset > before || complete {
                self.stalled_since = Some(Instant::now());
            }
            if !complete {
                return Ok(false);
            }
            self.queue.pop_front();
        }
        self.stalled_since = None;
        Ok(true)
    }

    /// Forgets every queued reply (the connection is being dropped).
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.queued = 0;
        self.stalled_since = None;
    }
}

/// What a flush of one connection came to.
pub(crate) enum Flushed {
    /// Nothing waits any more.
    Empty,
    /// Some went out; more waits.
    Progress,
    /// The ring had no room.
    Stuck,
    /// The connection broke (or was dropped) meanwhile.
    Broken,
}

/// A connection the flusher can drive.
pub(crate) trait Flushable: Send + Sync + 'static {
    /// Its token (unique within its server).
    fn token(&self) -> u64;
    /// Moves what it can of its queue into its ring.
    fn flush(&self) -> Flushed;
    /// Since when its queue made no progress.
    fn stalled_since(&self) -> Option<Instant>;
    /// Drops it for a stalled queue.
    fn give_up(&self);
    /// Sleeps until its client frees ring space, or `timeout`.
    fn wait_for_room(&self, timeout: Duration);
    /// Calls `forget` under its writer lock if its queue is (still) empty:
    /// a reply queued meanwhile registers it again, so none is forgotten.
    fn forget_if_idle(&self, forget: &mut dyn FnMut());
}

/// One server's mover of queued replies (a thread while any wait).
pub(crate) struct ShmFlusher<C: Flushable> {
    state: Mutex<FlushState<C>>,
    reply_timeout: Duration,
}

struct FlushState<C> {
    /// Connections with queued replies, by token.
    waiting: HashMap<u64, Arc<C>>,
    running: bool,
}

/// Longest sleep between looks when several connections are stuck.
const MAX_IDLE: Duration = Duration::from_millis(5);

impl<C: Flushable> ShmFlusher<C> {
    pub(crate) fn new(reply_timeout: Duration) -> ShmFlusher<C> {
        ShmFlusher { state: Mutex::new(FlushState { waiting: HashMap::new(), running: false }), reply_timeout }
    }

    /// `conn`'s queue stopped being empty: watch it, starting the thread if
    /// none runs; `false` if the thread cannot start (drop the connection).
    pub(crate) fn watch(self: &Arc<Self>, conn: &Arc<C>) -> bool {
        let mut state = lock(&self.state);
        state.waiting.insert(conn.token(), conn.clone());
        if !state.running {
            let flusher = self.clone();
            if std::thread::Builder::new().name("ipcall-shm-flush".into()).spawn(move || flusher.run()).is_err() {
                state.waiting.remove(&conn.token());
                return false;
            }
            state.running = true;
        }
        true
    }

    fn run(self: Arc<Self>) {
        let mut idle = Duration::from_micros(50);
        loop {
            let waiting: Vec<Arc<C>> = {
                let mut state = lock(&self.state);
                if state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                state.waiting.values().cloned().collect()
            };
            let mut progress = false;
            let now = Instant::now();
            for conn in &waiting {
                match conn.flush() {
                    Flushed::Empty => {
                        conn.forget_if_idle(&mut || {
                            lock(&self.state).waiting.remove(&conn.token());
                        });
                        progress = true;
                    }
                    Flushed::Broken => {
                        lock(&self.state).waiting.remove(&conn.token());
                        progress = true;
                    }
                    Flushed::Progress => progress = true,
                    Flushed::Stuck => {
                        if conn.stalled_since().is_some_and(|since| now.duration_since(since) >= self.reply_timeout) {
                            conn.give_up();
                            lock(&self.state).waiting.remove(&conn.token());
                        }
                    }
                }
            }
            if progress {
                idle = Duration::from_micros(50);
                continue;
            }
            let until_timeout = waiting
                .iter()
                .filter_map(|c| c.stalled_since())
                .map(|since| {
                    since.checked_add(self.reply_timeout).map_or(Duration::MAX, |at| at.saturating_duration_since(now))
                })
                .min()
                .unwrap_or(self.reply_timeout);
            if let [only] = &waiting[..] {
                // The common case: one client is slow. Its reads wake us.
                only.wait_for_room(until_timeout.min(Duration::from_millis(100)));
            } else {
                std::thread::sleep(idle.min(until_timeout));
                idle = (idle * 2).min(MAX_IDLE);
            }
        }
    }
}
