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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::{
    announce_sleep_all, create_conn_memory, futex_wake, publish_cpu, ring_capacity, send_message, send_with_fds, spin,
    wake_producer, Mapping, SendError, Sending,
};
use crate::error::{Error, Result};
use crate::frame;
use crate::name::Name;
use crate::options::{ServerOptions, WaitMode};
use crate::server::{Peer, Request};
use crate::sys::EventFd;
use crate::transport::backoff::AcceptBackoff;
use crate::transport::ring::{self, kind, take_sleeper, Consumer, Partial, Producer, Taken};
use crate::transport::stream::poll_timeout_ms;
use crate::transport::stream::server::Access;
use crate::transport::stream::{wait_fd, Acceptor};
use crate::transport::unix::{self, Listener};
use crate::transport::{Answer, Responder, ServerTransport};
use crate::wait::{wait_until, Deadline};

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent; poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn epoll_ctl(epoll: &OwnedFd, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: (1) both descriptors are open for the call; (2) `event` is a
    // live epoll_event (ignored by EPOLL_CTL_DEL).
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut event) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The reading end of a connection's request ring.
struct RequestReader {
    consumer: Consumer,
    partial: Option<Partial>,
}

/// One client connection. Requests hold it (as their `Responder`), so its
/// mapping and socket live until the server dropped it *and* every request
/// from it was answered; then the client sees the hang-up.
pub(crate) struct ServerConn {
    token: u64,
    /// The rendezvous connection: its hang-up is the client's death.
    socket: OwnedFd,
    /// Declared before nothing that outlives it: the rings point into it.
    mapping: Mapping,
    peer: Peer,
    local_max: u32,
    mode: WaitMode,
    /// Held by the one thread reading the request ring.
    reader: Mutex<RequestReader>,
    /// Serialises whole replies (pieces of two replies never interleave).
    writer: Mutex<Producer>,
    /// The id of the last request taken (ids only grow); written under `reader`.
    last_taken: AtomicU64,
    /// The client broke the protocol or died: answers are discarded.
    broken: AtomicBool,
    /// Spin budget for waiting on reply-ring space.
    budget: spin::Budget,
}

impl ServerConn {
    /// True if the request ring may hold a record (two plain loads).
    fn has_requests(&self) -> bool {
        let ctrl = &self.mapping.header().requests;
        ctrl.tail.load(Ordering::Acquire) != ctrl.head.load(Ordering::Relaxed)
    }

    fn max_reply(&self) -> u32 {
        // Read once; a client that lies only limits its own replies.
        let client = self.mapping.header().client_max.load(Ordering::Relaxed);
        if client == 0 {
            self.local_max
        } else {
            client.min(self.local_max)
        }
    }
}

impl Responder for ServerConn {
    fn answer(&self, id: u64, answer: Answer<'_>) -> Result<()> {
        let (kind, payload) = match answer {
            Answer::Reply(data) => (kind::REPLY, data),
            Answer::Fail(data) => (kind::FAIL, data),
            Answer::NoReply => (kind::NO_REPLY, &[][..]),
        };
        if self.broken.load(Ordering::Relaxed) {
            return Ok(());
        }
        let header = self.mapping.header();
        let mut writer = lock(&self.writer);
        publish_cpu(&header.server_cpu);
        let wake = || futex_wake(&header.replies.consumer_sleeping);
        let mut on_wait = || !self.broken.load(Ordering::Relaxed) && !super::peer_gone(&self.socket);
        let mut how = Sending {
            mode: self.mode,
            budget: &self.budget,
            peer_cpu: &header.client_cpu,
            wake_consumer: &wake,
            on_wait: &mut on_wait,
        };
        match send_message(&mut writer, kind, id, payload, &mut how) {
            Ok(()) => {}
            // Like a late reply to an abandoned call, the answer is
            // discarded: the client is gone or broke its ring.
            Err(SendError::Gone) | Err(SendError::Violation(_)) => {
                self.broken.store(true, Ordering::Relaxed);
                // SAFETY: (1) shutdown takes no pointers; the client sees the hang-up.
                unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
        Ok(())
    }
}

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
    /// Async `recv`s waiting for readiness.
    wakers: Vec<Waker>,
    /// The watcher thread for async `recv`s runs.
    watcher: bool,
}

struct Shared {
    name: Arc<str>,
    epoll: OwnedFd,
    /// Rung by clients that saw our `consumer_sleeping` flag.
    doorbell: EventFd,
    /// Readable while finished, or (for pollers) while a request waits.
    wake: EventFd,
    /// Set once by `close`: ends the accepting thread.
    stop: EventFd,
    local_max: u32,
    capacity: usize,
    mode: WaitMode,
    one_shot: bool,
    access: Access,
    /// Spin budget of `recv`.
    budget: spin::Budget,
    /// Mirrors `State::closed` for the ring readers (checked under `reader`).
    closed: AtomicBool,
    /// Threads sleeping in `epoll_wait` inside `recv`.
    sleepers: AtomicUsize,
    /// The descriptor is watched (by a caller or the async watcher): the
    /// rings stay armed between `recv`s so that a request makes it readable.
    pollable: AtomicBool,
    /// Rotates the scan's starting connection (fairness).
    scan_start: AtomicUsize,
    /// Requests received (paces hang-up checks of a busy server).
    received: AtomicUsize,
    state: Mutex<State>,
    accepted_cond: Condvar,
    watch_cond: Condvar,
}

/// A `shm:` server (`ServerTransport`).
pub(crate) struct ShmServer {
    shared: Arc<Shared>,
    accepting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ShmServer {
    pub(crate) fn bind(name: &Name, options: &ServerOptions) -> Result<ShmServer> {
        let listener = unix::listen(name, options)?;
        let io_err = |e: io::Error| Error::Io { name: name.shared().clone(), source: e };
        // SAFETY: (1) epoll_create1 takes no pointers; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        // SAFETY: (1) `raw` is a fresh descriptor owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let doorbell = EventFd::new().map_err(io_err)?;
        let wake = EventFd::new().map_err(io_err)?;
        let edge = (libc::EPOLLIN | libc::EPOLLET) as u32;
        epoll_ctl(&epoll, libc::EPOLL_CTL_ADD, doorbell.as_fd(), edge, DOORBELL).map_err(io_err)?;
        epoll_ctl(&epoll, libc::EPOLL_CTL_ADD, wake.as_fd(), libc::EPOLLIN as u32, WAKE).map_err(io_err)?;
        let shared = Arc::new(Shared {
            name: name.shared().clone(),
            epoll,
            doorbell,
            wake,
            stop: EventFd::new().map_err(io_err)?,
            local_max: options.max_message_size,
            capacity: ring_capacity(options.ring_size),
            mode: options.wait_mode,
            one_shot: options.one_shot,
            access: Access::from_options(options),
            budget: spin::Budget::new(),
            closed: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            pollable: AtomicBool::new(false),
            scan_start: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            state: Mutex::new(State {
                conns: Arc::new(Vec::new()),
                next_token: FIRST_CONN,
                listener: Some(listener),
                accepted: 0,
                closed: false,
                wake_set: false,
                data_pending: false,
                wakers: Vec::new(),
                watcher: false,
            }),
            accepted_cond: Condvar::new(),
            watch_cond: Condvar::new(),
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
    /// request waits in a ring.
    fn update_wake(&self, state: &mut State) {
        let want = state.data_pending || self.finished(state);
        if want != state.wake_set {
            state.wake_set = want;
            if want {
                self.wake.set();
            } else {
                self.wake.clear();
            }
        }
        if want && !state.wakers.is_empty() {
            for waker in state.wakers.drain(..) {
                waker.wake();
            }
        }
    }

    /// Drops a connection: the client sees the hang-up once no request
    /// holds it any more.
    fn drop_conn(&self, token: u64) {
        let mut state = lock(&self.state);
        if let Some(conn) = state.conns.iter().find(|c| c.token == token).cloned() {
            let _ = epoll_ctl(&self.epoll, libc::EPOLL_CTL_DEL, conn.socket.as_fd(), 0, token);
            conn.broken.store(true, Ordering::Relaxed);
            // SAFETY: (1) shutdown takes no pointers.
            unsafe { libc::shutdown(conn.socket.as_raw_fd(), libc::SHUT_RDWR) };
            let rest: Vec<Arc<ServerConn>> = state.conns.iter().filter(|c| c.token != token).cloned().collect();
            state.conns = Arc::new(rest);
        }
        self.update_wake(&mut state);
    }

    /// Sets up one accepted connection: memfd, hello and descriptors.
    fn set_up(&self, socket: OwnedFd, peer: Peer) {
        if !self.access.allows(&peer) {
            let hello = frame::encode_hello(frame::STATUS_REFUSED, self.local_max);
            let _ = send_with_fds(&socket, &hello, &[]);
            return;
        }
        let Ok((memfd, mapping)) = create_conn_memory(self.capacity, self.local_max) else { return };
        // Armed from the start: the first request rings the doorbell, which
        // wakes a sleeping `recv` (it then rescans with this connection) and
        // makes the descriptor readable for pollers.
        mapping.header().requests.consumer_sleeping.store(1, Ordering::Relaxed);
        // The connection joins the server *before* the client learns of it:
        // its first request may come the moment the hello is out.
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        let token = state.next_token;
        state.next_token += 1;
        let reader = RequestReader { consumer: Consumer::new(mapping.requests()), partial: None };
        let writer = Producer::new(mapping.replies());
        let conn = Arc::new(ServerConn {
            token,
            socket,
            mapping,
            peer,
            local_max: self.local_max,
            mode: self.mode,
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
            last_taken: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            budget: spin::Budget::new(),
        });
        let hangup = (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32;
        if epoll_ctl(&self.epoll, libc::EPOLL_CTL_ADD, conn.socket.as_fd(), hangup, token).is_err() {
            return;
        }
        let hello = frame::encode_hello(frame::STATUS_OK, self.local_max);
        let fds = [memfd.as_raw_fd(), self.doorbell.as_fd().as_raw_fd()];
        if send_with_fds(&conn.socket, &hello, &fds).is_err() {
            let _ = epoll_ctl(&self.epoll, libc::EPOLL_CTL_DEL, conn.socket.as_fd(), 0, token);
            return;
        }
        // Our descriptor of the memfd is no longer needed: the mapping keeps
        // the pages, and once both sides unmapped them the kernel frees them.
        drop(memfd);
        let mut conns: Vec<Arc<ServerConn>> = state.conns.iter().cloned().collect();
        conns.push(conn);
        state.conns = Arc::new(conns);
        state.accepted += 1;
        if self.one_shot {
            // Its one client is here: nobody else may find the name.
            if let Some(listener) = state.listener.take() {
                listener.unbind_name();
            }
        }
        self.accepted_cond.notify_all();
    }

    /// The accepting thread: exits when the server closes or a one-shot
    /// server has its client.
    fn accept_loop(self: Arc<Self>) {
        let mut backoff = AcceptBackoff::default();
        loop {
            let listener_fd = match &lock(&self.state).listener {
                Some(listener) if !self.closed.load(Ordering::Relaxed) => listener.fd().as_raw_fd(),
                _ => return,
            };
            let mut fds = [
                libc::pollfd { fd: self.stop.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
                // Ignored by poll while paused (-1).
                libc::pollfd { fd: backoff.listener_fd(listener_fd), events: libc::POLLIN, revents: 0 },
            ];
            let timeout = poll_timeout_ms(backoff.paused_until().map_or(Deadline::Never, Deadline::At));
            // SAFETY: (1) two live pollfds. (2) If `close` drops the listener
            // while we poll, poll reports POLLNVAL or the `stop` eventfd, and
            // we only touch the listener again through `state`.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
            if fds[0].revents != 0 {
                return;
            }
            loop {
                let accepted = match &lock(&self.state).listener {
                    Some(listener) => listener.accept_fd(),
                    None => return,
                };
                match accepted {
                    Ok(Some((socket, peer))) => self.set_up(socket, peer),
                    Ok(None) => {
                        backoff.succeeded();
                        break;
                    }
                    // Out of descriptors or memory: see `transport::backoff`.
                    Err(_) => {
                        backoff.failed();
                        break;
                    }
                }
            }
        }
    }

    /// Takes one whole request from some ring, if any is there.
    fn scan(&self, conns: &[Arc<ServerConn>], in_place: &mut InPlace<'_>) -> Option<Request> {
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
            let Ok(mut reader) = conn.reader.try_lock() else { continue };
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            let reader = &mut *reader;
            let max = conn.local_max;
            let allowed = |k: u32| k == kind::REQUEST;
            let taken = match in_place {
                Some(f) => ring::take_with(&mut reader.consumer, &mut reader.partial, max, allowed, *f),
                None => ring::take(&mut reader.consumer, &mut reader.partial, max, allowed),
            };
            wake_producer(&reader.consumer);
            match taken {
                Ok(Taken::Message(message)) => {
                    conn.last_taken.store(message.id, Ordering::Release);
                    publish_cpu(&conn.mapping.header().server_cpu);
                    let reply_max = conn.max_reply();
                    let responder: Arc<dyn crate::transport::Responder> = conn.clone();
                    return Some(Request::new(message.data, conn.peer, responder, message.id, reply_max));
                }
                Ok(Taken::Empty) => {}
                Err(_violation) => {
                    // The client broke the ring: drop it alone. Its pending
                    // calls see the hang-up (Disconnected).
                    let token = conn.token;
                    self.drop_conn(token);
                }
            }
        }
        None
    }

    /// Waits on the epoll descriptor until `deadline`; handles hang-ups
    /// (all that are pending, however many).
    fn wait_events(&self, deadline: Deadline) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut timeout = poll_timeout_ms(deadline);
        loop {
            // SAFETY: (1) `events` is a live, writable array of 64 epoll_events.
            let n =
                unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, timeout) };
            for event in events.iter().take(n.max(0) as usize) {
                let token = event.u64;
                if token >= FIRST_CONN {
                    // Only hang-ups are registered for connections.
                    self.drop_conn(token);
                }
            }
            if n < events.len() as i32 {
                return;
            }
            timeout = 0;
        }
    }

    fn recv(&self, deadline: Deadline, mut in_place: InPlace<'_>) -> Result<Request> {
        let result = self.recv_loop(deadline, &mut in_place);
        self.after_recv();
        result
    }

    fn recv_loop(&self, deadline: Deadline, in_place: &mut InPlace<'_>) -> Result<Request> {
        let pollable = self.pollable.load(Ordering::Relaxed);
        if pollable {
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
                return Err(self.out_of_time());
            }
            let my_cpu = super::current_cpu();
            // Spin if some client last ran on another CPU.
            let peer_cpu = conns
                .iter()
                .map(|c| c.mapping.header().client_cpu.load(Ordering::Relaxed))
                .find(|&cpu| cpu != my_cpu)
                .unwrap_or(my_cpu);
            let ns = spin::allowance(self.mode, &self.budget, peer_cpu, my_cpu);
            if waiting_since.is_none() && spin::quick(ns, || conns.iter().any(|c| c.has_requests())) {
                continue;
            }
            let at = *waiting_since.get_or_insert_with(Instant::now);
            if spin::spin_for(ns, || conns.iter().any(|c| c.has_requests()) || self.closed.load(Ordering::Relaxed)) {
                continue;
            }
            if self.mode == WaitMode::Spin {
                // Look at hang-ups and new connections now and then.
                self.wait_events(Deadline::Now);
                continue;
            }
            announce_sleep_all(conns.iter().map(|c| &c.mapping.header().requests.consumer_sleeping));
            if conns.iter().any(|c| c.has_requests()) {
                continue;
            }
            // Sleep without our snapshot: another thread may drop a
            // connection meanwhile, and a snapshot held by a thread asleep
            // would keep that client's socket and rings until some event.
            drop(conns);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            self.wait_events(deadline);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
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

    /// When a `recv` leaves: if pollers watch or other receivers sleep, the
    /// rings are armed (their next request rings the doorbell) and a request
    /// already waiting is signalled, so no wake-up is lost.
    fn after_recv(&self) {
        let pollable = self.pollable.load(Ordering::Relaxed);
        if !pollable && self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        let conns = lock(&self.state).conns.clone();
        announce_sleep_all(conns.iter().map(|c| &c.mapping.header().requests.consumer_sleeping));
        let waiting = conns.iter().any(|c| c.has_requests());
        if waiting && self.sleepers.load(Ordering::SeqCst) > 0 {
            self.doorbell.set();
        }
        if pollable {
            let mut state = lock(&self.state);
            state.data_pending = waiting;
            self.update_wake(&mut state);
        }
    }

    /// The async watcher: while async `recv`s wait, blocks on the epoll
    /// descriptor and wakes them when it is readable.
    fn watch(self: Arc<Self>) {
        loop {
            {
                let mut state = lock(&self.state);
                while state.wakers.is_empty() {
                    if state.closed {
                        state.watcher = false;
                        return;
                    }
                    state = self.watch_cond.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            }
            let _ = wait_fd(self.epoll.as_fd(), libc::POLLIN, Deadline::Never);
            let wakers: Vec<Waker> = std::mem::take(&mut lock(&self.state).wakers);
            for waker in wakers {
                waker.wake();
            }
        }
    }
}

impl ShmServer {
    /// `recv` that shows a request sitting whole in its ring to `in_place`
    /// without copying it (see `Server::recv_with`).
    pub(crate) fn recv_in_place(&self, deadline: Deadline, in_place: &mut dyn FnMut(&[u8])) -> Result<Request> {
        self.shared.recv(deadline, Some(in_place))
    }
}

impl ServerTransport for ShmServer {
    fn recv(&self, deadline: Deadline) -> Result<Request> {
        self.shared.recv(deadline, None)
    }

    fn recv_with(&self, deadline: Deadline, in_place: &mut dyn FnMut(&[u8])) -> Result<Request> {
        self.recv_in_place(deadline, in_place)
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Request>> {
        let shared = &self.shared;
        shared.pollable.store(true, Ordering::SeqCst);
        match shared.recv(Deadline::Now, None) {
            Err(Error::Timeout { .. }) => {}
            other => return Poll::Ready(other),
        }
        let start_watcher = {
            let mut state = lock(&shared.state);
            if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.wakers.push(cx.waker().clone());
            }
            let start = !state.watcher;
            state.watcher = true;
            start
        };
        if start_watcher {
            let watcher = shared.clone();
            if std::thread::Builder::new().name("ipcall-shm-watch".into()).spawn(move || watcher.watch()).is_err() {
                lock(&shared.state).watcher = false;
                return Poll::Ready(Err(Error::Io {
                    name: shared.name.clone(),
                    source: io::Error::other("cannot start the async watcher thread"),
                }));
            }
        } else {
            shared.watch_cond.notify_all();
        }
        // The rings were armed when that `recv` left: a request arriving
        // since rings the doorbell, which the watcher sees.
        Poll::Pending
    }

    fn accept(&self, deadline: Deadline) -> Result<()> {
        let shared = &self.shared;
        let name = || shared.name.clone();
        let accepted = wait_until(lock(&shared.state), &shared.accepted_cond, deadline, |state| {
            if state.accepted > 0 {
                Some(Ok(()))
            } else if state.closed {
                Some(Err(Error::Closed { name: name() }))
            } else {
                None
            }
        });
        accepted.unwrap_or_else(|| Err(Error::Timeout { name: name() }))
    }

    fn fd(&self) -> BorrowedFd<'_> {
        let shared = &self.shared;
        if !shared.pollable.swap(true, Ordering::SeqCst) {
            // From now on the rings stay armed between `recv`s; arm them now.
            shared.after_recv();
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
                let _ = epoll_ctl(&shared.epoll, libc::EPOLL_CTL_DEL, conn.socket.as_fd(), 0, conn.token);
            }
            shared.update_wake(&mut state);
            std::mem::take(&mut state.conns)
        };
        shared.watch_cond.notify_all();
        shared.accepted_cond.notify_all();
        shared.stop.set();
        if let Some(accepting) = lock(&self.accepting).take() {
            let _ = accepting.join();
        }
        for conn in conns.iter() {
            // Under the reader lock no `recv` is taking a request from this
            // ring, so `last_taken` is final: calls after it fail at once.
            let _reading = lock(&conn.reader);
            let header = conn.mapping.header();
            header.last_taken.store(conn.last_taken.load(Ordering::Acquire), Ordering::Relaxed);
            header.closed.store(1, Ordering::Release);
            if take_sleeper(&header.replies.consumer_sleeping) {
                futex_wake(&header.replies.consumer_sleeping);
            }
        }
    }
}

impl Drop for ShmServer {
    fn drop(&mut self) {
        self.close();
    }
}
