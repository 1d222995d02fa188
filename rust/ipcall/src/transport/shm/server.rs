//! The `shm:` server: one rendezvous listener, one memfd per connection,
//! and one `epoll` — the server's single wake-up point and its pollable
//! descriptor — holding the doorbell eventfd every client rings, each
//! connection's rendezvous socket (hang-up = the client died), and a local
//! eventfd that is readable while the server is finished or, for pollers,
//! while a request waits in a ring.
//!
//! **No thread hop, no thread per connection.** A thread in `recv` scans the
//! request rings itself (spinning while it may pay), announces that it
//! sleeps in every connection's `consumer_sleeping` flag, re-checks, and
//! waits in `epoll_wait`. `reply` writes into the reply ring from whatever
//! thread holds the request. An accepting thread only sets connections up.
//!
//! **Isolation.** A client that breaks the ring protocol is dropped alone
//! (its calls see `Protocol` or `Disconnected`); the others keep being served.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{announce_sleep_all, create_conn_memory, publish_cpu, ring_capacity, send_with_fds, spin};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::frame;
use crate::core::name::Name;
use crate::core::options::{ServerOptions, WaitMode};
use crate::core::peer::Peer;
use crate::core::stats::Counters;
use crate::core::wait::{lock, Deadline};
use crate::sys::epoll::{Epoll, EPOLL_BATCH, READABLE};
use crate::sys::EventFd;
use crate::transport::access::Access;
use crate::transport::backoff::AcceptBackoff;
use crate::transport::shm::conn::{take_between, Head, RequestReader, ServerConn};
use crate::transport::shm::flush::{ReplyWriter, ShmFlusher};
use crate::transport::shm::ring::{self, kind, take_sleeper, Consumer, Producer, Taken};
use crate::transport::stream::Acceptor;
use crate::transport::trace::{self, ConnTrace, DropReason};
use crate::transport::unix::{self, Listener};
use crate::transport::watch::{stop_accepting, wait_accepted, Watch, Watched};
use crate::transport::{Incoming, ServerTransport};

#[path = "accept.rs"]
mod accept;

/// Where `recv_with` wants a request's bytes shown in place (`None`: copy them).
type InPlace<'a> = Option<&'a mut dyn FnMut(&[u8])>;

/// epoll token of the doorbell (edge-triggered: it is never read).
const DOORBELL: u64 = 0;
/// epoll token of the local readiness eventfd.
const WAKE: u64 = 1;
/// Tokens of connections start here.
const FIRST_CONN: u64 = 2;
/// A busy server with several clients looks for hang-ups once per this
/// many requests.
const HANGUP_CHECK: usize = 64;
/// How long no `recv` must have begun before the accepting thread answers
/// control records (ping, stats) of a server whose application is busy or
/// not receiving.
const IDLE_TICK: Duration = Duration::from_millis(100);

struct State {
    /// The live connections (copy-on-write: `recv` clones the `Arc`).
    conns: Arc<Vec<Arc<ServerConn>>>,
    next_token: u64,
    listener: Option<Listener>,
    /// Connections accepted so far (a one-shot server takes one).
    accepted: usize,
    closed: bool,
    /// The wake eventfd is set (avoids redundant system calls).
    wake_set: bool,
    /// A poller should look: a ring held a request when the last `recv` left.
    data_pending: bool,
    /// The last `recv` took a request for a poller, which comes back for
    /// the next: the descriptor is kept readable and the rings are left
    /// disarmed (see `after_recv`). Unlike `data_pending`, it says nothing
    /// about the rings, so the accepting thread still helps an idle server.
    kept_readable: bool,
}

struct Shared {
    name: Arc<str>,
    /// The server's statistics: connections, violations, and what control
    /// records are answered from.
    counters: Arc<Counters>,
    epoll: Epoll,
    /// Rung by clients that saw our `consumer_sleeping` flag.
    doorbell: EventFd,
    /// Readable while finished, or (for pollers) while a request waits.
    wake: EventFd,
    /// Set once by `close`: ends the accepting thread.
    stop: EventFd,
    local_max: u32,
    /// Moves replies that had to wait into their rings.
    flusher: Arc<ShmFlusher<ServerConn>>,
    /// Most reply bytes that may wait on one connection.
    reply_budget: u64,
    /// Most connections served at once.
    max_connections: usize,
    capacity: usize,
    mode: WaitMode,
    one_shot: bool,
    access: Access,
    /// Spin budget of `recv`.
    budget: spin::Budget,
    /// Spin budget of an event loop's `try_recv_spin`.
    event_budget: spin::EventBudget,
    /// Mirrors `State::closed` for the ring readers (checked under `reader`).
    closed: AtomicBool,
    /// Threads sleeping in `epoll_wait` inside `recv`.
    sleepers: AtomicUsize,
    /// The descriptor is watched (by a caller or the async watcher): the
    /// rings stay armed between `recv`s so that a request makes it readable.
    pollable: AtomicBool,
    /// The doorbell may have been rung since a `recv` last took the events:
    /// set (before the fact) whenever rings are armed, a connection joins
    /// (armed from the start) or the server rings the doorbell itself. A
    /// pollable `recv` takes the events first only then: a busy event loop,
    /// whose rings stay disarmed, makes no system call for them. A `recv`
    /// that finds no request always takes them.
    needs_look: AtomicBool,
    /// Mirrors, as `update_wake` leaves them, that the descriptor is kept
    /// readable after a poller's take and nothing else is to change
    /// (`kept_readable && !data_pending && wake_set`): the next take then
    /// leaves the state as it is, without the lock.
    kept_steady: AtomicBool,
    /// Rotates the scan's starting connection (fairness).
    scan_start: AtomicUsize,
    /// Requests received (paces hang-up checks of a busy server).
    received: AtomicUsize,
    /// `recv`s begun (any form): the accepting thread answers control
    /// records only once none began for a whole [`IDLE_TICK`].
    recvs: std::sync::atomic::AtomicU64,
    /// The accepting thread watches the doorbell (idle server); a `recv`
    /// that begins then rings `nudge` so that it stops.
    helping: AtomicBool,
    /// Wakes the accepting thread out of its idle watch, or out of a sleep
    /// without its tick (`untimed`).
    nudge: EventFd,
    /// The accepting thread sleeps without its tick: a `recv` has slept
    /// through a whole tick, and a sleeping `recv` takes every request and
    /// control record itself. The last sleeper to leave rings `nudge`
    /// (SeqCst with `sleepers`: the thread stores this, then loads
    /// `sleepers`; a sleeper decrements `sleepers`, then loads this), and
    /// the ticks resume.
    untimed: AtomicBool,
    state: Mutex<State>,
    accepted_cond: Condvar,
    /// Async `recv`s waiting for readiness.
    watch: Watch,
}

impl Watched for Shared {
    fn watched(&self) -> (&Watch, BorrowedFd<'_>) {
        (&self.watch, self.epoll.as_fd())
    }
}

/// A `shm:` server (`ServerTransport`).
pub(crate) struct ShmServer {
    shared: Arc<Shared>,
    accepting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ShmServer {
    pub(crate) fn bind(name: &Name, options: &ServerOptions, counters: Arc<Counters>) -> Result<ShmServer> {
        let listener = unix::listen(name, options)?;
        let io_err = |e: io::Error| Error::Io { name: name.shared().clone(), source: e };
        let epoll = Epoll::new().map_err(io_err)?;
        let doorbell = EventFd::new().map_err(io_err)?;
        let wake = EventFd::new().map_err(io_err)?;
        let edge = (libc::EPOLLIN | libc::EPOLLET) as u32;
        epoll.add(doorbell.as_fd(), edge, DOORBELL).map_err(io_err)?;
        epoll.add(wake.as_fd(), READABLE, WAKE).map_err(io_err)?;
        let shared = Arc::new(Shared {
            name: name.shared().clone(),
            counters,
            epoll,
            doorbell,
            wake,
            stop: EventFd::new().map_err(io_err)?,
            local_max: options.max_message_size,
            flusher: Arc::new(ShmFlusher::new(options.reply_timeout)),
            reply_budget: options.get_max_queued_reply_bytes(),
            max_connections: options.max_connections,
            capacity: ring_capacity(options.ring_size),
            mode: options.wait_mode,
            one_shot: options.one_shot,
            access: Access::from_options(options),
            budget: spin::Budget::new(),
            event_budget: spin::EventBudget::new(),
            closed: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            pollable: AtomicBool::new(false),
            needs_look: AtomicBool::new(true),
            kept_steady: AtomicBool::new(false),
            scan_start: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            recvs: std::sync::atomic::AtomicU64::new(0),
            helping: AtomicBool::new(false),
            untimed: AtomicBool::new(false),
            nudge: EventFd::new().map_err(io_err)?,
            state: Mutex::new(State {
                conns: Arc::new(Vec::new()),
                next_token: FIRST_CONN,
                listener: Some(listener),
                accepted: 0,
                closed: false,
                wake_set: false,
                data_pending: false,
                kept_readable: false,
            }),
            accepted_cond: Condvar::new(),
            watch: Watch::new(),
        });
        let accepting = shared.clone();
        let accepting = std::thread::Builder::new()
            .name("ipcall-shm-accept".into())
            .spawn(move || accepting.accept_loop())
            .map_err(io_err)?;
        Ok(ShmServer { shared, accepting: Mutex::new(Some(accepting)) })
    }
}

impl Shared {
    /// No request can come any more.
    fn finished(&self, state: &State) -> bool {
        state.closed || (self.one_shot && state.accepted > 0 && state.conns.is_empty())
    }

    /// Keeps `wake` readable exactly while finished or (for pollers) a
    /// request waits in a ring or the last `recv` took one (`kept_readable`).
    fn update_wake(&self, state: &mut State) {
        let want = state.data_pending || state.kept_readable || self.finished(state);
        if want != state.wake_set {
            state.wake_set = want;
            if want {
                self.wake.set();
            } else {
                self.wake.clear();
            }
        }
        self.kept_steady.store(state.kept_readable && !state.data_pending && state.wake_set, Ordering::Release);
        if want {
            self.watch.wake_all();
        }
    }

    /// Drops a connection: the client sees the hang-up once no request
    /// holds it any more, and the requests it still holds are cancelled:
    /// their caller is gone.
    fn drop_conn(&self, token: u64, reason: DropReason) {
        let mut state = lock(&self.state);
        // Not there after `close`, which took every connection: requests
        // the server keeps answering while it closes are not cancelled.
        let dropped = state.conns.iter().find(|c| c.token == token).cloned();
        if let Some(conn) = &dropped {
            if reason.is_violation() {
                self.counters.error(ErrorKind::Protocol);
            }
            self.counters.connections_closed(1);
            conn.trace.dropped(token, &conn.peer, reason);
            let _ = self.epoll.delete(conn.socket.as_fd());
            conn.broken.store(true, Ordering::Relaxed);
            crate::sys::socket::shutdown(conn.socket.as_fd());
            let rest: Vec<Arc<ServerConn>> = state.conns.iter().filter(|c| c.token != token).cloned().collect();
            state.conns = Arc::new(rest);
        }
        self.update_wake(&mut state);
        drop(state);
        if let Some(conn) = dropped {
            conn.held.caller_gone();
        }
    }

    /// Takes one whole request from some ring, if any is there.
    fn scan(&self, conns: &[Arc<ServerConn>], in_place: &mut InPlace<'_>) -> Option<Incoming> {
        let n = conns.len();
        if n == 0 {
            return None;
        }
        let start = self.scan_start.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            let conn = &conns[(start + i) % n];
            if !conn.has_requests() || conn.broken.load(Ordering::Relaxed) {
                continue;
            }
            let Some(mut reader) = conn.reader_for_request() else { continue };
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            let reader = &mut *reader;
            if !conn.look_for_bell() {
                // The client said it sent its bell and did not: drop it alone.
                let token = conn.token;
                self.drop_conn(token, DropReason::Misbehaved("a client's bell flag set with no bell sent"));
                continue;
            }
            let max = conn.local_max;
            let allowed = |k: u32| k == kind::REQUEST;
            match take_between(reader, conn, Some(&self.counters)) {
                Ok(Head::Message) => {}
                // Nothing to take yet, or more such records wait: the
                // other connections first.
                Ok(Head::Nothing | Head::More) => {
                    conn.wake_producer(&reader.consumer);
                    continue;
                }
                Err(violation) => {
                    let token = conn.token;
                    self.drop_conn(token, DropReason::Ring(violation));
                    continue;
                }
            }
            let taken = match in_place {
                Some(f) => ring::take_with(&mut reader.consumer, &mut reader.partial, max, allowed, *f),
                None => ring::take(&mut reader.consumer, &mut reader.partial, max, allowed),
            };
            conn.wake_producer(&reader.consumer);
            match taken {
                Ok(Taken::Message(message)) => {
                    let deadline = match reader.deadline.take() {
                        None => None,
                        Some((id, ns)) if id == message.id => {
                            Some(crate::transport::request_deadline(Duration::from_nanos(ns)))
                        }
                        // The deadline of another request: a violation.
                        Some(_) => {
                            let token = conn.token;
                            self.drop_conn(token, DropReason::Misbehaved("a deadline record for another request"));
                            continue;
                        }
                    };
                    conn.last_taken.store(message.id, Ordering::Release);
                    publish_cpu(&conn.mapping.header().server_cpu);
                    let reply_max = conn.max_reply();
                    let responder: Arc<dyn crate::transport::Responder> = conn.clone();
                    let mut incoming = Incoming::new(message.data, conn.peer, responder, message.id, reply_max);
                    incoming.deadline = deadline;
                    // Over a ring without the feature's records nothing
                    // could cancel it: the server offers it to every client.
                    incoming.cancel = Some(conn.hold(message.id));
                    return Some(incoming);
                }
                Ok(Taken::Empty) => {}
                Err(violation) => {
                    // The client broke the ring: drop it alone. Its pending
                    // calls see the hang-up (Disconnected).
                    let token = conn.token;
                    self.drop_conn(token, DropReason::Ring(violation));
                }
            }
        }
        None
    }

    /// Waits on the epoll descriptor until `deadline`; handles hang-ups
    /// (all that are pending, however many).
    fn wait_events(&self, deadline: Deadline) {
        let mut wait = deadline;
        loop {
            let mut reported = 0;
            let _ = self.epoll.wait(wait, |token| {
                reported += 1;
                if token >= FIRST_CONN {
                    // Only hang-ups are registered for connections.
                    self.drop_conn(token, DropReason::ClientLeft);
                }
            });
            if reported < EPOLL_BATCH {
                return;
            }
            wait = Deadline::Now;
        }
    }

    /// A `recv` begins: counted, and the accepting thread stops helping
    /// (SeqCst with its `helping` then `recvs`: one of us sees the other).
    fn recv_begins(&self) {
        self.recvs.fetch_add(1, Ordering::SeqCst);
        if self.helping.load(Ordering::SeqCst) {
            self.nudge.set();
        }
    }

    fn recv(&self, deadline: Deadline, mut in_place: InPlace<'_>) -> Result<Incoming> {
        self.recv_begins();
        let result = self.recv_loop(deadline, &mut in_place, false);
        self.after_recv(result.is_ok());
        result
    }

    /// `recv(Deadline::Now)` that, if no request is ready, first spins
    /// briefly for one as an event loop may (see `Server::try_recv_spin`).
    fn try_recv_spin(&self) -> Result<Incoming> {
        self.recv_begins();
        let result = self.recv_loop(Deadline::Now, &mut None, true);
        self.after_recv(result.is_ok());
        result
    }

    /// An event loop's brief spin for the next request: under the policy
    /// (some client on another CPU, a spin slot) and `event_budget`.
    /// Returns whether a request (or the close) came. Never sleeps.
    fn spin_briefly(&self, conns: &[Arc<ServerConn>]) -> bool {
        let my_cpu = super::current_cpu();
        let Some(peer_cpu) =
            conns.iter().map(|c| c.mapping.header().client_cpu.load(Ordering::Relaxed)).find(|&cpu| cpu != my_cpu)
        else {
            return false;
        };
        let mut withdrawn = false;
        spin::spin_evented(self.mode, &self.event_budget, peer_cpu, my_cpu, || {
            if !withdrawn {
                // Once allowed to spin we look ourselves: a request sent now
                // need not ring the doorbell (`after_recv` arms the rings
                // again and looks once more before the loop sleeps).
                for conn in conns {
                    conn.mapping.header().requests.consumer_sleeping.store(0, Ordering::Relaxed);
                }
                withdrawn = true;
            }
            conns.iter().any(|c| c.has_requests()) || self.closed.load(Ordering::Relaxed)
        })
    }

    fn recv_loop(&self, deadline: Deadline, in_place: &mut InPlace<'_>, mut spin_once: bool) -> Result<Incoming> {
        let pollable = self.pollable.load(Ordering::Relaxed);
        // Loaded first: a busy loop's rings stay disarmed, and the swap is a locked write.
        if pollable && self.needs_look.load(Ordering::Relaxed) && self.needs_look.swap(false, Ordering::AcqRel) {
            // Consumes the doorbell's edge and any hang-ups, so that the
            // descriptor is not left readable for nothing.
            self.wait_events(Deadline::Now);
        }
        // When the current wait for data began (for the spin budget).
        let mut waiting_since: Option<Instant> = None;
        loop {
            let conns = {
                let state = lock(&self.state);
                if state.closed || self.finished(&state) {
                    return Err(Error::Closed { name: self.name.clone() });
                }
                state.conns.clone()
            };
            let progress = conns.iter().any(|c| c.has_requests());
            if let Some(request) = self.scan(&conns, in_place) {
                if let Some(at) = waiting_since {
                    self.budget.observe(at.elapsed());
                }
                // A server kept busy never sleeps in epoll, where hang-ups
                // are seen: with several clients, look every so often (one
                // system call per HANGUP_CHECK requests; a lone busy pair
                // makes none).
                if conns.len() > 1 && self.received.fetch_add(1, Ordering::Relaxed) % HANGUP_CHECK == 0 {
                    self.wait_events(Deadline::Now);
                }
                return Ok(request);
            }
            if progress {
                // A piece of a larger request came: the wait for it is over.
                if let Some(at) = waiting_since.take() {
                    self.budget.observe(at.elapsed());
                }
            }
            if deadline.expired() {
                if std::mem::take(&mut spin_once) && self.spin_briefly(&conns) {
                    continue;
                }
                return Err(self.out_of_time());
            }
            let my_cpu = super::current_cpu();
            // Spin if some client last ran on another CPU.
            let peer_cpu = conns
                .iter()
                .map(|c| c.mapping.header().client_cpu.load(Ordering::Relaxed))
                .find(|&cpu| cpu != my_cpu)
                .unwrap_or(my_cpu);
            let spinning = spin::allowance(self.mode, &self.budget, peer_cpu, my_cpu);
            let ns = spinning.ns;
            if waiting_since.is_none() && spin::quick(ns, || conns.iter().any(|c| c.has_requests())) {
                continue;
            }
            let at = *waiting_since.get_or_insert_with(Instant::now);
            if spin::spin_for(ns, || conns.iter().any(|c| c.has_requests()) || self.closed.load(Ordering::Relaxed)) {
                continue;
            }
            drop(spinning);
            if self.mode == WaitMode::Spin {
                // Look at hang-ups and new connections now and then.
                self.wait_events(Deadline::Now);
                continue;
            }
            self.arm(&conns);
            if conns.iter().any(|c| c.has_requests()) {
                continue;
            }
            // Sleep without our snapshot: another thread may drop a
            // connection meanwhile, and a snapshot held by a thread asleep
            // would keep that client's socket and rings until some event.
            drop(conns);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            self.wait_events(deadline);
            // Loaded before it is swapped, as the stream server does: the
            // swap is a locked instruction, and the thread is timed again
            // for most wake-ups.
            if self.sleepers.fetch_sub(1, Ordering::SeqCst) == 1
                && self.untimed.load(Ordering::SeqCst)
                && self.untimed.swap(false, Ordering::SeqCst)
            {
                self.nudge.set();
            }
            if deadline.expired() && !lock(&self.state).conns.iter().any(|c| c.has_requests()) {
                self.budget.observe(at.elapsed());
                return Err(self.out_of_time());
            }
        }
    }

    /// What a `recv` whose deadline passed reports: `Closed` if the server
    /// is finished, else `Timeout`. Hang-ups are seen only in `wait_events`,
    /// which a `try_recv` never reaches otherwise: without this look a
    /// one-shot server whose client left would report `Timeout` to a
    /// poll-only loop for ever.
    fn out_of_time(&self) -> Error {
        self.wait_events(Deadline::Now);
        if self.finished(&lock(&self.state)) {
            Error::Closed { name: self.name.clone() }
        } else {
            Error::Timeout { name: self.name.clone() }
        }
    }

    /// Arms the rings of `conns`: their next request rings the doorbell.
    pub(super) fn arm(&self, conns: &[Arc<ServerConn>]) {
        self.needs_look.store(true, Ordering::SeqCst);
        announce_sleep_all(conns.iter().map(|c| &c.mapping.header().requests.consumer_sleeping));
    }

    /// Readiness follows the rings again (they are armed): a descriptor
    /// kept readable after a poller's last take is made unreadable unless a
    /// request waits or the server is finished.
    pub(super) fn stop_keeping_readable(&self) {
        let mut state = lock(&self.state);
        if state.kept_readable {
            state.kept_readable = false;
            self.update_wake(&mut state);
        }
    }

    /// The server rings its own doorbell (a wake-up it took is handed on).
    pub(super) fn ring_doorbell(&self) {
        self.needs_look.store(true, Ordering::SeqCst);
        self.doorbell.set();
    }

    /// When a `recv` leaves: if pollers watch or other receivers sleep, the
    /// rings are armed (their next request rings the doorbell) and a request
    /// already waiting is signalled, so no wake-up is lost.
    ///
    /// Except after a `recv` that `took` a request while only pollers
    /// watch: the descriptor is then kept readable instead (a request may
    /// well be waiting: readiness may be spurious), and the rings stay as
    /// they are. An event loop comes back for the next request anyway, and
    /// only the `recv` that finds none arms the rings; armed after every
    /// request, they made each next request ring the doorbell — a system
    /// call in the client and one here to take the doorbell's edge — while
    /// the loop was on its way back to look.
    fn after_recv(&self, took: bool) {
        let pollable = self.pollable.load(Ordering::Relaxed);
        if !pollable && self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        if took && pollable && self.sleepers.load(Ordering::SeqCst) == 0 {
            if self.kept_steady.load(Ordering::Acquire) {
                // Kept readable since the last take: nothing to change (a
                // waker registered since sees the readable descriptor).
                self.watch.wake_all();
                return;
            }
            let mut state = lock(&self.state);
            // Readable for the poller's next look, which takes what waits;
            // no longer "a request seen waiting", which keeps the accepting
            // thread from helping (and so from seeing hang-ups).
            state.kept_readable = true;
            state.data_pending = false;
            self.update_wake(&mut state);
            return;
        }
        let conns = lock(&self.state).conns.clone();
        self.arm(&conns);
        let waiting = conns.iter().any(|c| c.has_requests());
        if waiting && self.sleepers.load(Ordering::SeqCst) > 0 {
            self.ring_doorbell();
        }
        if pollable {
            let mut state = lock(&self.state);
            state.data_pending = waiting;
            state.kept_readable = false;
            self.update_wake(&mut state);
        }
    }
}

impl ShmServer {
    /// `recv` that shows a request sitting whole in its ring to `in_place`
    /// without copying it (see `Server::recv_with`).
    pub(crate) fn recv_in_place(&self, deadline: Deadline, in_place: &mut dyn FnMut(&[u8])) -> Result<Incoming> {
        self.shared.recv(deadline, Some(in_place))
    }
}

impl ServerTransport for ShmServer {
    fn recv(&self, deadline: Deadline) -> Result<Incoming> {
        self.shared.recv(deadline, None)
    }

    fn recv_with(&self, deadline: Deadline, in_place: &mut dyn FnMut(&[u8])) -> Result<Incoming> {
        self.recv_in_place(deadline, in_place)
    }

    fn try_recv_spin(&self) -> Result<Incoming> {
        self.shared.try_recv_spin()
    }

    fn waits_on_fd(&self) -> bool {
        true
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Incoming>> {
        let shared = &self.shared;
        shared.pollable.store(true, Ordering::SeqCst);
        // The rings were armed when that `recv` left: a request arriving
        // since rings the doorbell, which the watcher sees.
        Watch::poll_recv(shared, cx.waker(), "ipcall-shm-watch", &shared.name, shared.recv(Deadline::Now, None))
    }

    fn accept(&self, deadline: Deadline) -> Result<()> {
        let shared = &self.shared;
        wait_accepted(&shared.state, &shared.accepted_cond, deadline, &shared.name, |state| {
            (state.accepted, state.closed)
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        let shared = &self.shared;
        if !shared.pollable.swap(true, Ordering::SeqCst) {
            // From now on the rings stay armed between `recv`s; arm them now.
            shared.after_recv(false);
        }
        shared.epoll.as_fd()
    }

    fn close(&self) {
        let shared = &self.shared;
        let conns: Arc<Vec<Arc<ServerConn>>> = {
            let mut state = lock(&shared.state);
            if state.closed {
                return;
            }
            state.closed = true;
            shared.closed.store(true, Ordering::SeqCst);
            if let Some(listener) = state.listener.take() {
                listener.unbind_name();
            }
            for conn in state.conns.iter() {
                let _ = shared.epoll.delete(conn.socket.as_fd());
            }
            shared.update_wake(&mut state);
            shared.counters.connections_closed(state.conns.len());
            std::mem::take(&mut state.conns)
        };
        shared.watch.close();
        stop_accepting(&shared.accepted_cond, &shared.stop, &self.accepting);
        for conn in conns.iter() {
            // Under the reader lock no `recv` is taking a request from this
            // ring, so `last_taken` is final: calls after it fail at once.
            let _reading = lock(&conn.reader);
            let header = conn.mapping.header();
            header.last_taken.store(conn.last_taken.load(Ordering::Acquire), Ordering::Relaxed);
            header.closed.store(1, Ordering::Release);
            if take_sleeper(&header.replies.consumer_sleeping) {
                conn.wake_client();
            }
        }
    }
}

impl Drop for ShmServer {
    fn drop(&mut self) {
        self.close();
    }
}
