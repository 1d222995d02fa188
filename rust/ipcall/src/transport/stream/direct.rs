//! The fast paths of a stream server with one connection: a blocking
//! `recv` reads it directly instead of waiting in epoll (unless that keeps
//! its thread woken for nothing: [`DirectCheck`]), and an event loop's
//! `try_recv` reads it without asking epoll first.

use super::*;

impl Shared {
    /// The connection to read directly, if the single-connection fast path
    /// applies: this is the only thread receiving (blocking), exactly one
    /// connection exists, its handshake is done, nothing is queued, and
    /// the direct read is not paused ([`DirectCheck`]).
    pub(super) fn sole_connection(&self, state: &State, deadline: Deadline) -> Option<Arc<ServerConn>> {
        if deadline == Deadline::Now
            || self.direct_pause.load(Ordering::Relaxed) != 0
            || self.receivers.load(Ordering::Acquire) != 1
            || state.conns.len() != 1
            || !state.handshakes.is_empty()
            || !state.incoming.is_empty()
        {
            return None;
        }
        state.conns.values().next().cloned()
    }

    /// A blocking `recv` begins: while the direct read is paused (see
    /// [`DirectCheck`]), one `recv` fewer to make through epoll before it
    /// is tried again.
    pub(super) fn count_down_direct_pause(&self) {
        let left = self.direct_pause.load(Ordering::Relaxed);
        if left != 0 {
            // Racy between receiving threads, and harmless: a pause is a hint.
            self.direct_pause.store(left - 1, Ordering::Relaxed);
        }
    }

    /// A request read directly: counted in this thread's [`DirectCheck`],
    /// which may pause the direct read.
    fn read_directly_once(&self) {
        if DIRECT_CHECK.with(DirectCheck::counts_against) {
            self.direct_pause.store(DIRECT_PAUSE, Ordering::Relaxed);
        }
    }

    /// An event loop's `try_recv` (the server polled, `deadline` now) while
    /// one connection exists, its handshake done and nothing queued: that
    /// connection, to read without blocking instead of asking epoll first.
    /// A request there costs one system call, not two; finding none costs
    /// one as before (a `recv` of nothing instead of an empty `epoll_wait`),
    /// and what else epoll could report then is seen elsewhere: a new
    /// client's hello makes the next look turn (`handshakes`), `close` is in
    /// the state, and this connection's end is read here.
    pub(super) fn sole_polled_now(&self, state: &State, deadline: Deadline, turned: bool) -> Option<Arc<ServerConn>> {
        if deadline != Deadline::Now
            || turned
            || !self.polled.load(Ordering::Acquire)
            || state.conns.len() != 1
            || !state.handshakes.is_empty()
            || !state.incoming.is_empty()
        {
            return None;
        }
        state.conns.values().next().cloned()
    }

    /// The single-connection fast path: blocks in a plain read of the one
    /// connection instead of in epoll (waking from epoll costs a cross-CPU
    /// round trip ~10 µs more, see docs/DECISIONS.md). A socket reads in
    /// slices of [`DIRECT_SLICE`] (a receive timeout: still one system
    /// call) and goes back to epoll as soon as a second connection, a
    /// second receiving thread or `close` shows up — so a new client's
    /// first request waits at most one slice when the only receiving thread
    /// is busy here. Once a slice passed with nothing read, the socket is
    /// quiet: it then waits as a FIFO always does, polling its read end and
    /// the epoll descriptor without a timeout (`Wire::read_or_wake`), and
    /// leaves as soon as epoll is readable — an idle server does not wake
    /// fifty times a second, and its next request costs one `poll` more.
    /// Returns the first request read, taken (or `None` if it is queued
    /// behind requests already there: the caller takes from the queue);
    /// any others that one read brought are queued.
    pub(super) fn read_directly(&self, conn: &Arc<ServerConn>, deadline: Deadline) -> Option<Incoming> {
        let mut reader = match conn.reader.try_lock() {
            Ok(reader) => reader,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if !self.polled.load(Ordering::Acquire) && self.direct_token.load(Ordering::Relaxed) != conn.token {
            // While it is the only connection and nobody polls the server,
            // keep it out of epoll: a registered socket makes every send to
            // it also run epoll's wake-up callback (~0.5 µs per round trip).
            // Once out, later reads skip this lock (`direct_token`).
            let mut state = lock(&self.state);
            if state.direct != Some(conn.token) && !state.closed {
                self.restore_direct(&mut state);
                if self.epoll.delete(conn.wire.read_fd()).is_ok() {
                    self.set_direct(&mut state, Some(conn.token));
                }
            }
        }
        let mut failed = None;
        let mut batch = Batch::default();
        // The last wait for `wake` ended with nothing read and nothing to
        // leave for: the next one is a timed slice, so that epoll staying
        // readable for a reason this loop does not act on cannot make it spin.
        let mut idle_wake = false;
        // The last timed slice passed with nothing read (a socket).
        let mut quiet = false;
        let slices = conn.wire.timed_read_is_cheaper();
        loop {
            let by_wake = !idle_wake && !reader.in_frame() && (!slices || quiet);
            let read = match deadline {
                // One look, without blocking (`sole_polled_now`).
                Deadline::Now => reader.next(&*conn.wire, deadline),
                Deadline::At(at) if at < Instant::now() + DIRECT_SLICE => reader.next(&*conn.wire, deadline),
                // Between frames, a wire that can (a FIFO) waits for its
                // next request or for the epoll descriptor, with no time
                // slice: epoll becomes readable when another connection
                // speaks (a new client's hello) or the wake eventfd is set
                // (`close`); a second receiving thread waits in epoll
                // itself. Inside a frame, slices bound the wait so that a
                // stalled frame is seen (`frame_overdue`).
                _ if by_wake => reader.next_or_wake(&*conn.wire, self.epoll.as_fd(), deadline),
                _ => reader.next_within(&*conn.wire, DIRECT_SLICE),
            };
            match read {
                Ok(Some(Event::Frame(f))) if f.kind == FrameKind::Request => {
                    if deadline != Deadline::Now {
                        self.read_directly_once();
                    }
                    batch.push(Decoded::new(conn, f, &reader));
                    conn.frame_overdue(false, self.frame_timeout);
                    // Decode whatever else that read brought, without reading more.
                    while reader.has_buffered() {
                        match reader.next(&*conn.wire, Deadline::Now) {
                            Ok(Some(Event::Frame(f))) if f.kind == FrameKind::Request => {
                                batch.push(Decoded::new(conn, f, &reader))
                            }
                            Ok(Some(Event::Frame(f))) if f.kind == FrameKind::Cancel => conn.held.cancel(f.id),
                            Ok(Some(Event::Frame(f))) if f.kind == FrameKind::ControlRequest => {
                                self.answer_control(conn, &f)
                            }
                            Ok(None) => break,
                            other => {
                                failed = Some(Self::why_failed(other));
                                break;
                            }
                        }
                    }
                    // A partial frame after them starts its clock now.
                    conn.frame_overdue(reader.in_frame(), self.frame_timeout);
                    break;
                }
                Ok(Some(Event::Frame(f))) if matches!(f.kind, FrameKind::Cancel | FrameKind::ControlRequest) => {
                    if f.kind == FrameKind::Cancel {
                        conn.held.cancel(f.id);
                    } else {
                        self.answer_control(conn, &f);
                    }
                    // Not a request: read on, as after a read of nothing.
                    conn.frame_overdue(reader.in_frame(), self.frame_timeout);
                    let state = lock(&self.state);
                    if deadline.expired() || state.closed || self.sole_connection(&state, deadline).is_none() {
                        break;
                    }
                }
                Ok(None) => {
                    if conn.frame_overdue(reader.in_frame(), self.frame_timeout) {
                        failed = Some(DropReason::FrameTimeout);
                        break;
                    }
                    let state = lock(&self.state);
                    if deadline.expired() || state.closed || self.sole_connection(&state, deadline).is_none() {
                        break;
                    }
                    idle_wake = by_wake && !reader.in_frame();
                    quiet = !by_wake && !reader.in_frame();
                }
                // The decoder yields the hello once, first: a client whose
                // hello waited in the kernel past the handshake deadline
                // (nobody was receiving) finishes its handshake here.
                Ok(Some(Event::Hello(hello))) if hello.status == frame::STATUS_OK => {}
                // Anything else from the client (close, a reply, a refused
                // hello, bad bytes, end of stream) ends it.
                other => {
                    failed = Some(Self::why_failed(other));
                    break;
                }
            }
        }
        let mut taken = None;
        self.publish_and_release(batch, Some(&mut taken), conn, reader);
        if let Some(reason) = failed {
            if !lock(&self.state).closed {
                self.drop_conn(conn, reason);
            }
        }
        taken
    }
}

/// Requests read directly per check of [`DirectCheck`].
const DIRECT_WINDOW: u32 = 256;
/// `recv`s made through epoll after a check found the direct read paying
/// nothing, before it is tried again (at ~5 µs each, ~80 ms; the trial
/// costs one window).
const DIRECT_PAUSE: u32 = 16_384;

/// Whether the blocking direct read pays on this thread. A thread blocked
/// in `recv` on a Unix stream socket is woken whenever its peer reads what
/// it sent (`unix_write_space` wakes every waiter of the socket, and a
/// blocking read's wait does not look at why); epoll's wait does. After
/// each reply, then, the client's read of it wakes the server's thread for
/// nothing. A fast client is back with its next request before that
/// matters; a slower one (Python, Node: ~1 µs more of its own work a call)
/// lets the server's thread run, find nothing and sleep again: ~1.85
/// voluntary context switches a request against ~0.7, and ~1 µs a call
/// more than through epoll on one CPU (docs/DECISIONS.md). So every
/// [`DIRECT_WINDOW`] requests read directly, this thread's voluntary
/// switches are compared with them; more than 1.5 a request pauses the
/// direct read for [`DIRECT_PAUSE`] `recv`s.
#[derive(Clone, Copy, Default)]
pub(super) struct DirectCheck {
    /// Requests read directly in this window (0: none yet).
    reads: u32,
    /// This thread's voluntary context switches when the window began.
    switches_at: u64,
}

thread_local! {
    static DIRECT_CHECK: std::cell::Cell<DirectCheck> = const {
        std::cell::Cell::new(DirectCheck { reads: 0, switches_at: 0 })
    };
}

impl DirectCheck {
    /// Counts one request read directly; true if the window just ended
    /// with the direct read not paying.
    fn counts_against(cell: &std::cell::Cell<DirectCheck>) -> bool {
        let mut check = cell.get();
        let (next, pays) = check.count(crate::sys::thread_voluntary_switches);
        check = next;
        cell.set(check);
        !pays
    }

    /// The check after one more request read directly, and whether the
    /// direct read pays (false only at the end of a window that found too
    /// many switches). `switches` reads the thread's count: once a window,
    /// at its end, which begins the next.
    fn count(self, switches: impl FnOnce() -> u64) -> (DirectCheck, bool) {
        match self.reads {
            0 => (DirectCheck { reads: 1, switches_at: switches() }, true),
            reads if reads < DIRECT_WINDOW => (DirectCheck { reads: reads + 1, ..self }, true),
            reads => {
                // The reading that ends this window begins the next.
                let now = switches();
                let slept = now.saturating_sub(self.switches_at);
                (DirectCheck { reads: 1, switches_at: now }, slept * 2 <= u64::from(reads) * 3)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a window in which the thread slept `slept` times pays.
    fn window(slept: u64) -> bool {
        let (mut check, pays) = DirectCheck::default().count(|| 1_000);
        assert!(pays, "a window begins");
        for _ in 1..DIRECT_WINDOW {
            let (next, pays) = check.count(|| unreachable!("the count is read at the ends only"));
            assert!(pays, "nothing is decided inside a window");
            check = next;
        }
        let (check, pays) = check.count(|| 1_000 + slept);
        assert_eq!((check.reads, check.switches_at), (1, 1_000 + slept), "the next window begins where this one ended");
        pays
    }

    #[test]
    fn the_direct_read_pays_while_its_thread_sleeps_at_most_one_and_a_half_times_a_request() {
        assert!(window(0));
        assert!(window(u64::from(DIRECT_WINDOW)), "once a request: the usual blocking read");
        assert!(window(u64::from(DIRECT_WINDOW) * 3 / 2), "the threshold itself");
        assert!(!window(u64::from(DIRECT_WINDOW) * 3 / 2 + 1));
        assert!(!window(u64::from(DIRECT_WINDOW) * 2), "twice a request: woken for nothing after each reply");
    }
}
